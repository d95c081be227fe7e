"""How late a fix may arrive, and what the storage policies and the alert worker must
allow for it.

The ingestor stores fixes up to ``CLEARDAY_INGEST_MAX_PAST_S`` old (7 days by default:
a terminal that was out of coverage uploads its backlog). Anything that treats data of
some age as settled must start later than that, with a margin for the clocks of the
ingestor and the database and for a batch that waited for the database:

- TimescaleDB compresses a chunk of ``position`` only once no accepted fix can land in
  it (``compress_after`` >= accepted past + margin); the ingestor refuses to start
  otherwise;
- the refresh window of ``truck_daily_distance`` covers every bucket an accepted fix
  can land in (open-ended in the shipped policy);
- the alert worker looks for new fixes only in chunks that can hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Clock differences between the ingestor and the database, a batch held while the
# database was away, and the compression job's own schedule (12 h for 1-day chunks).
LATE_MARGIN_S = 86_400
BUCKET_S = 86_400  # truck_daily_distance buckets by the local day


@dataclass(frozen=True)
class StoragePolicies:
    """The TimescaleDB policies that decide when fixes are settled (all None on plain
    PostgreSQL, which has neither)."""

    compress_after_s: float | None = None  # position's compression; None: no policy
    refresh_policy: bool = False  # truck_daily_distance has a refresh policy
    refresh_start_offset_s: float | None = None  # None: open-ended (the whole history)


def settled_after_s(max_past_s: float) -> float:
    """Age after which no accepted fix can arrive any more."""
    return max_past_s + LATE_MARGIN_S


def recorded_since(received_since: datetime, *, max_past_s: float) -> datetime:
    """A lower bound on ``recorded_at`` of every fix received after ``received_since``:
    the ingestor refuses fixes older than its accepted past when it receives them."""
    return received_since - timedelta(seconds=settled_after_s(max_past_s))


def _days(seconds: float) -> str:
    days = seconds / 86_400
    return f"{days:g} day" if days == 1 else f"{days:g} days"


def policy_problems(policies: StoragePolicies, *, max_past_s: float) -> list[str]:
    """Where a policy would settle data the ingestor may still write, in words that name
    both settings; empty when they agree."""
    need_s = settled_after_s(max_past_s)
    accepted = f"CLEARDAY_INGEST_MAX_PAST_S={max_past_s:g} ({_days(max_past_s)})"
    problems = []
    compress_s = policies.compress_after_s
    if compress_s is not None and compress_s < need_s:
        problems.append(
            f"the compression policy of position compresses chunks after {_days(compress_s)}, "
            f"but {accepted} lets the ingestor write fixes that old: compress_after must be at "
            f"least the accepted past plus {_days(LATE_MARGIN_S)} ({_days(need_s)}). "
            "Lower CLEARDAY_INGEST_MAX_PAST_S, or move the policy: CALL "
            "remove_columnstore_policy('position'); CALL add_columnstore_policy('position', "
            f"after => INTERVAL '{_days(need_s)}')"
        )
    start_s = policies.refresh_start_offset_s
    if policies.refresh_policy and start_s is not None and start_s < need_s + BUCKET_S:
        problems.append(
            f"the refresh policy of truck_daily_distance looks back {_days(start_s)}, but "
            f"{accepted} lets late fixes change days up to {_days(need_s + BUCKET_S)} back, "
            "which would never be re-aggregated: give the policy start_offset => NULL "
            "(see fleet/migrations/0008_timeseries_policies.timescale.sql)"
        )
    return problems
