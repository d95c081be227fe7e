"""The link between the ingest's accepted past and the TimescaleDB policies, and the
device-time bound of the alert worker's "what is new" query."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources

from fleet.config import Settings
from fleet.positions.policies import (
    LATE_MARGIN_S,
    StoragePolicies,
    policy_problems,
    recorded_since,
    settled_after_s,
)

DAY_S = 86_400
WEEK_S = 7 * DAY_S


def test_compression_at_the_edge_of_the_accepted_past_is_refused_naming_both_settings() -> None:
    """The issue's setting (compress after 7 days, fixes accepted 7 days late) is refused."""
    [problem] = policy_problems(StoragePolicies(compress_after_s=WEEK_S), max_past_s=WEEK_S)
    assert "CLEARDAY_INGEST_MAX_PAST_S=604800 (7 days)" in problem
    assert "compression policy of position compresses chunks after 7 days" in problem
    assert "add_columnstore_policy('position', after => INTERVAL '8 days')" in problem


def test_compression_after_the_accepted_past_plus_the_margin_is_accepted() -> None:
    ok = StoragePolicies(compress_after_s=WEEK_S + LATE_MARGIN_S, refresh_policy=True)
    assert policy_problems(ok, max_past_s=WEEK_S) == []
    # A longer accepted past needs a later compression.
    assert len(policy_problems(ok, max_past_s=WEEK_S + 1)) == 1


def test_plain_postgresql_has_no_policies_and_nothing_to_refuse() -> None:
    assert policy_problems(StoragePolicies(), max_past_s=30 * DAY_S) == []


def test_a_refresh_window_shorter_than_the_accepted_past_is_refused() -> None:
    """The issue's 3-day refresh window: late fixes 3-7 days old would never be re-aggregated."""
    short = StoragePolicies(refresh_policy=True, refresh_start_offset_s=3 * DAY_S)
    [problem] = policy_problems(short, max_past_s=WEEK_S)
    assert "truck_daily_distance looks back 3 days" in problem
    assert "CLEARDAY_INGEST_MAX_PAST_S" in problem
    open_ended = StoragePolicies(refresh_policy=True, refresh_start_offset_s=None)
    assert policy_problems(open_ended, max_past_s=WEEK_S) == []
    # The last bucket an accepted fix can land in must lie wholly inside the window.
    edge = StoragePolicies(refresh_policy=True, refresh_start_offset_s=settled_after_s(WEEK_S))
    assert len(policy_problems(edge, max_past_s=WEEK_S)) == 1


def test_the_shipped_migration_satisfies_the_default_settings() -> None:
    """0008 compresses after the default accepted past plus the margin, and refreshes
    truck_daily_distance without a lower bound, in real time."""
    sql = (
        resources.files("fleet.migrations") / "0008_timeseries_policies.timescale.sql"
    ).read_text()
    compress = re.search(
        r"add_columnstore_policy\('position', after => INTERVAL '(\d+) days'\)", sql
    )
    assert compress is not None
    policies = StoragePolicies(compress_after_s=int(compress.group(1)) * DAY_S, refresh_policy=True)
    assert policy_problems(policies, max_past_s=Settings().ingest.max_past_s) == []
    assert "start_offset => NULL" in sql
    assert "timescaledb.materialized_only = false" in sql
    assert "DROP INDEX IF EXISTS position_recorded_at_idx" in sql


def test_the_timescale_aggregate_has_the_plain_views_definition() -> None:
    """Both truck_daily_distance definitions: the same columns, the same local-day
    buckets (Asia/Shanghai), the same aggregates."""
    files = resources.files("fleet.migrations")
    plain = (files / "0002_timeseries.plain.sql").read_text()
    timescale = (files / "0002_timeseries.timescale.sql").read_text()
    for sql in (plain, timescale):
        assert "max(odometer_km) - min(odometer_km) AS distance_km" in sql
        assert "count(*) AS fixes" in sql
        assert "FROM position" in sql
    assert (
        "(date_trunc('day', recorded_at AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE "
        "'Asia/Shanghai') AS day" in plain
    )
    assert "time_bucket(INTERVAL '1 day', recorded_at, 'Asia/Shanghai') AS day" in timescale


def test_recorded_since_lies_before_any_accepted_fix_received_after_the_watermark() -> None:
    since = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    bound = recorded_since(since, max_past_s=WEEK_S)
    # A fix received just after `since` may be as old as the accepted past, decoded up to
    # the margin earlier by a clock that runs behind.
    oldest_accepted = since - timedelta(seconds=WEEK_S + LATE_MARGIN_S - 1)
    assert bound <= oldest_accepted
    assert bound == since - timedelta(days=8)
