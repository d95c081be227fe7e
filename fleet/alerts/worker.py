"""The alert worker: new and late data in, visits → ledger → alerts → cases out.

One tick, in one transaction (so a crash loses nothing and repeats nothing):

1. find the (truck, day) pairs whose fixes or events arrived since the watermark
   (by ``received_at``, so a blind-zone batch of old fixes is found like any other);
2. re-detect each such truck's visits from a little before its earliest new fix
   (see ``repo.window_start``: the re-detected window never cuts a stay, so the result
   equals a re-detection of the whole day);
3. for every district-day that is current or was touched: recompute the ledger,
   evaluate the rules at ``now``, raise the alerts not raised before (the alert key
   makes that idempotent), open or join cases, queue webhooks, and auto-close the
   cases whose point is now cleared (or whose truck has now unloaded);
4. escalate overdue cases; advance the watermark.

A running worker ticks as soon as the ingestor commits new fixes or events (it listens
for their announcement, ``DataSignal``) and at least every ``interval_s`` besides.

``replay`` does the same for one whole day from scratch: re-running it gives the
same visits and ledger, and raises nothing twice.

``now`` comes from a clock: the wall clock in production, a scaled clock that
follows an accelerated simulation in demos and benchmarks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from fleet import db
from fleet.alerts import cases, ledger, notify, repo, rules, visits
from fleet.alerts.cache import Cache
from fleet.alerts.cases import CaseAction, CaseState
from fleet.config import AlertSettings, IngestSettings, Settings
from fleet.fields import DEFAULT_TIMEZONE
from fleet.positions import policies
from fleet.positions import repo as positions_repo

log = logging.getLogger("clearday.alerts")

Clock = Callable[[], datetime]
OVERLAP_S = 5.0  # re-read data received this long before the watermark (slow commits)
LOOKBACK_S = 900.0  # re-detect from this long before a truck's earliest new fix
REFERENCE_TTL_S = 300.0  # reference data (trucks, sites, due points) is read again after
DISTRICTS_KEPT = 256  # per-district caches keep this many districts (or district-days)
DAYS_KEPT = 8  # service days whose raised alert keys are kept
WRITTEN_KEPT = 250_000  # rows (ledger, visits by truck-day) remembered as last written
FIRST_RUN_BACK_S = 86_400.0  # a worker's first tick looks back this far
STOP_CHECK_S = 1.0  # a worker waiting for data sees a stop within this
# A worker drops everything it remembers this often, so that its next tick evaluates
# every point and truck from the stored visits: the safety net under the caches.
FULL_EVERY_S = 600.0


def _reference(max_entries: int) -> Cache[Any, Any]:
    return Cache(ttl_s=REFERENCE_TTL_S, max_entries=max_entries)


def _written() -> Cache[Any, Any]:
    return Cache(ttl_s=None, max_entries=WRITTEN_KEPT)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class ScaledClock:
    """`now` that runs `speed` times faster than real time from `start` (simulations).
    With `anchor` (a Unix time) it reads `start` at that wall-clock moment, so that
    several processes follow one simulation on the same clock."""

    def __init__(self, start: datetime, speed: float, anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start, self.speed = start, speed
        self.anchor = time.time() if anchor is None else anchor

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)


# The settings' defaults, whatever the environment says.
_DEFAULTS = AlertSettings.model_construct()


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Every tunable of the pipeline, built once from Settings; unset fields take the
    settings' defaults."""

    visit: visits.VisitParams = field(default_factory=visits.VisitParams)
    ledger: ledger.LedgerParams = field(default_factory=ledger.LedgerParams)
    rules: rules.RuleParams = field(default_factory=rules.RuleParams)
    min_dwell_fraction: float = _DEFAULTS.min_dwell_fraction
    station_min_dwell_fraction: float = _DEFAULTS.station_min_dwell_fraction
    station_radius_m: float = _DEFAULTS.station_radius_m
    depot_radius_m: float = _DEFAULTS.depot_radius_m
    case_due_h_high: float = _DEFAULTS.case_due_h_high
    case_due_h_normal: float = _DEFAULTS.case_due_h_normal
    escalation_repeat_h: float = _DEFAULTS.escalation_repeat_h
    webhook_urls: tuple[str, ...] = ()
    # How late the ingestor accepts a fix (CLEARDAY_INGEST_MAX_PAST_S): bounds where
    # newly received fixes can lie in device time.
    ingest_max_past_s: float = IngestSettings.model_construct().max_past_s
    # The zone of a district the database does not name (CLEARDAY_TIMEZONE).
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def from_settings(cls, s: Settings) -> AlertConfig:
        a = s.alerts
        return cls(
            visit=visits.VisitParams(stop_speed_kmh=a.stop_speed_kmh),
            ledger=ledger.LedgerParams(
                missed_grace_s=a.missed_grace_s,
                unload_grace_s=a.not_unloaded_grace_s,
                hidden_visit_speed_kmh=a.hidden_visit_speed_kmh,
            ),
            rules=rules.RuleParams(
                missed_grace_s=a.missed_grace_s,
                deadline_grace_s=a.deadline_grace_s,
                offline_after_s=a.offline_after_s,
                stationary_after_s=a.stationary_after_s,
                not_unloaded_grace_s=a.not_unloaded_grace_s,
            ),
            min_dwell_fraction=a.min_dwell_fraction,
            station_min_dwell_fraction=a.station_min_dwell_fraction,
            station_radius_m=a.station_radius_m,
            depot_radius_m=a.depot_radius_m,
            case_due_h_high=a.case_due_h_high,
            case_due_h_normal=a.case_due_h_normal,
            escalation_repeat_h=a.escalation_repeat_h,
            webhook_urls=tuple(a.webhook_url_list),
            ingest_max_past_s=s.ingest.max_past_s,
            timezone=s.timezone,
        )


@dataclass(slots=True)
class TickStats:
    skipped: bool = False
    truck_days: int = 0
    district_days: int = 0
    ledger_written: int = 0
    alerts_raised: int = 0
    cases_opened: int = 0
    cases_auto_closed: int = 0
    cases_escalated: int = 0
    duration_s: float = 0.0
    raised: list[repo.RaisedAlert] = field(default_factory=list)

    def add(self, other: TickStats) -> None:
        for name in ("truck_days", "district_days", "ledger_written", "alerts_raised",
                     "cases_opened", "cases_auto_closed", "cases_escalated"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.raised += other.raised


class Pipeline:
    """The processing steps, on a connection the caller owns. Its caches (see
    fleet.alerts.cache: one shape, one eviction rule) are dropped whenever a
    transaction fails or another worker may have written meanwhile."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        # Reference data, read again after a while.
        self._trucks: Cache[None, dict[str, repo.TruckRef]] = _reference(1)
        self._station_dwell: Cache[None, dict[str, float]] = _reference(1)
        self._sites: Cache[str, visits.SiteIndex] = _reference(DISTRICTS_KEPT)
        self._due: Cache[tuple[str, date], list[ledger.DuePoint]] = _reference(DISTRICTS_KEPT)
        self._planned: Cache[tuple[str, date], dict[str, tuple[ledger.PlannedStop, ...]]] = (
            _reference(DISTRICTS_KEPT)
        )
        # The connection and the zone its session reads times in (repo.read_in_zone).
        self._zone: tuple[psycopg.Connection, str] | None = None
        self._tz: Cache[str, ZoneInfo] = Cache(ttl_s=None, max_entries=DISTRICTS_KEPT)
        # What this worker last wrote or raised, kept while it holds the district.
        self._keys: Cache[date, dict[str, frozenset[str]]] = Cache(
            ttl_s=None, max_entries=DAYS_KEPT
        )
        self._ledger: Cache[tuple[date, str], ledger.Verdict] = _written()
        # A point cleared and delivered, with the visits it was computed from.
        self._final: Cache[tuple[date, str], tuple[tuple[visits.Visit, ...], ledger.Verdict]] = (
            _written()
        )
        self._visits: Cache[tuple[str, date], list[visits.Visit]] = _written()
        # truck -> (latest received_at seen, worker time it was first seen); None: never heard
        self._heard: Cache[str, tuple[datetime, datetime] | None] = _written()

    def _caches(self) -> tuple[Cache[Any, Any], ...]:
        return (
            self._trucks, self._station_dwell, self._sites, self._due, self._planned, self._tz,
            self._keys, self._ledger, self._final, self._visits, self._heard,
        )  # fmt: skip

    def reset(self) -> None:
        for cache in self._caches():
            cache.clear()
        self._zone = None  # a failed transaction takes the session's zone back

    def read_in_zone(self, conn: psycopg.Connection, timezone: str) -> None:
        """repo.read_in_zone, skipped when `conn` already reads in `timezone`."""
        if self._zone is None or self._zone[0] is not conn or self._zone[1] != timezone:
            repo.read_in_zone(conn, timezone)
            self._zone = (conn, timezone)

    def _read_heard(self, conn: psycopg.Connection, truck_ids: Iterable[str]) -> None:
        """When the platform last heard each truck, as whichever worker had it stored
        it: a district taken over (or a restart) goes on where the last one was."""
        unread = [t for t in truck_ids if t not in self._heard]
        if unread:
            stored = repo.heard(conn, unread)
            for truck_id in unread:
                self._heard.put(truck_id, stored.get(truck_id))

    # -- cached reference data
    def trucks(self, conn: psycopg.Connection) -> dict[str, repo.TruckRef]:
        return self._trucks.get_or_read(None, lambda: repo.trucks(conn))

    def site_index(self, conn: psycopg.Connection, district_id: str) -> visits.SiteIndex:
        c = self.config

        def read() -> visits.SiteIndex:
            sites = repo.sites(
                conn, district_id=district_id, min_dwell_fraction=c.min_dwell_fraction,
                station_min_dwell_fraction=c.station_min_dwell_fraction,
                station_radius_m=c.station_radius_m, depot_radius_m=c.depot_radius_m,
            )  # fmt: skip
            return visits.SiteIndex(sites, roads=repo.roads(conn, district_id=district_id))

        return self._sites.get_or_read(district_id, read)

    def due_points(
        self, conn: psycopg.Connection, district_id: str, service_date: date, *, plan: int | None
    ) -> list[ledger.DuePoint]:
        """The day's due points, re-read when the published plan (`plan`) changes (or
        after a while)."""
        return self._due.get_or_read(
            (district_id, service_date),
            lambda: repo.due_points(
                conn,
                district_id=district_id,
                service_date=service_date,
                min_dwell_fraction=self.config.min_dwell_fraction,
            ),
            version=plan,
        )

    def planned_stops(
        self, conn: psycopg.Connection, district_id: str, service_date: date, *, plan: int | None
    ) -> dict[str, tuple[ledger.PlannedStop, ...]]:
        """The trucks' planned stops of the day, re-read when the published plan (`plan`)
        changes (or after a while)."""
        return self._planned.get_or_read(
            (district_id, service_date),
            lambda: repo.planned_stops(conn, district_id=district_id, service_date=service_date),
            version=plan,
        )

    def district_tz(self, conn: psycopg.Connection, district_id: str) -> ZoneInfo:
        """The district's zone; the configured zone for a district not stored."""
        if district_id not in self._tz:
            for d_id, name in repo.district_timezones(conn).items():
                self._tz.put(d_id, ZoneInfo(name))
        return self._tz.get(district_id) or ZoneInfo(self.config.timezone)

    def station_dwell(self, conn: psycopg.Connection) -> dict[str, float]:
        fraction = self.config.station_min_dwell_fraction
        return self._station_dwell.get_or_read(
            None, lambda: repo.station_min_dwell(conn, fraction=fraction)
        )

    # -- step 2: visits
    def redetect(
        self,
        conn: psycopg.Connection,
        *,
        truck_id: str,
        service_date: date,
        earliest_new: datetime | None,
    ) -> None:
        """Re-detect a truck's visits from shortly before `earliest_new` (None: the whole day)."""
        ref = self.trucks(conn).get(truck_id)
        if ref is None:
            return
        self.read_in_zone(conn, ref.timezone)
        day_start, day_end = repo.day_bounds(service_date, ref.timezone)
        if earliest_new is None:
            replace_from = ctx = day_start
        else:
            replace_from, ctx = repo.window_start(
                conn, truck_id=truck_id, service_date=service_date, earliest_new=earliest_new,
                lookback_s=LOOKBACK_S, day_start=day_start,
            )  # fmt: skip
        slack = timedelta(seconds=self.config.visit.event_slack_s)
        track = repo.fixes(conn, truck_id=truck_id, start=ctx, end=day_end)
        evs = repo.events(conn, truck_id=truck_id, start=max(day_start, ctx - slack), end=day_end)
        found = visits.detect(
            truck_id, track, evs, self.site_index(conn, ref.district_id), self.config.visit,
            window_from=replace_from,
        )  # fmt: skip
        with conn.pipeline():
            repo.replace_detection(
                conn, truck_id=truck_id, service_date=service_date, replace_from=replace_from,
                gaps_from=ctx, visits=found.visits, gaps=found.gaps,
            )  # fmt: skip
            repo.refresh_truck_day(
                conn, truck_id=truck_id, service_date=service_date, start=day_start, end=day_end
            )
        key = (truck_id, service_date)
        known = self._visits.get(key)
        if known is not None or earliest_new is None:
            kept = [v for v in known or [] if v.arrived_at < replace_from]
            self._visits.put(key, kept + [v for v in found.visits if v.arrived_at >= replace_from])

    # -- step 3: ledger, alerts, cases
    def evaluate(
        self, conn: psycopg.Connection, *, district_id: str, service_date: date, now: datetime
    ) -> TickStats:
        stats = TickStats(district_days=1)
        tz = self.district_tz(conn, district_id)
        self.read_in_zone(conn, tz.key)
        now = now.astimezone(tz)
        plan = repo.published_plan_id(conn, district_id=district_id, service_date=service_date)
        due = self.due_points(conn, district_id, service_date, plan=plan)
        days = repo.truck_days(
            conn, district_id=district_id, service_date=service_date,
            planned=self.planned_stops(conn, district_id, service_date, plan=plan),
        )  # fmt: skip
        by_truck = self._day_visits(conn, days, due, service_date)
        days = [
            replace(d, visits=tuple(by_truck.get(d.truck_id, ())), last_heard_at=self._heard_at(d))
            for d in days
        ]
        truck_map = {d.truck_id: d for d in days}
        station_dwell = self.station_dwell(conn)
        verdicts = self._verdicts(due, by_truck, truck_map, station_dwell, service_date, now)
        stats.ledger_written = self._write_ledger(
            conn, verdicts, district_id=district_id, service_date=service_date, now=now
        )
        for cand in rules.evaluate(verdicts, days, station_dwell, now, self.config.rules):
            self._raise(conn, cand, service_date=service_date, now=now, stats=stats)
        stats.cases_auto_closed += self._auto_close(
            conn, district_id, service_date, truck_map, station_dwell, verdicts, now
        )
        return stats

    def _heard_at(self, day: ledger.TruckDay) -> datetime | None:
        seen = self._heard.get(day.truck_id)
        return None if seen is None else seen[1]

    def _day_visits(
        self,
        conn: psycopg.Connection,
        days: Sequence[ledger.TruckDay],
        due: Sequence[ledger.DuePoint],
        service_date: date,
    ) -> dict[str, list[visits.Visit]]:
        """The day's visits by truck: the district's own trucks' from the cache (read
        on first use), other trucks' visits to its points read every time."""
        ours = {d.truck_id for d in days}
        self._read_heard(conn, ours)
        cached = {t: self._visits.get((t, service_date)) for t in ours}
        missing = [t for t, vs in cached.items() if vs is None]
        by_truck: dict[str, list[visits.Visit]] = defaultdict(list)
        for v in repo.day_visits(
            conn, service_date=service_date, truck_ids=missing,
            point_ids=[p.point_id for p in due],
            exclude_trucks=[t for t in ours if t not in missing],
        ):  # fmt: skip
            by_truck[v.truck_id].append(v)
        for t in missing:
            self._visits.put((t, service_date), by_truck.get(t, []))
        for t, vs in cached.items():
            by_truck[t] = vs if vs is not None else by_truck.get(t, [])
        return by_truck

    def _verdicts(
        self,
        due: Sequence[ledger.DuePoint],
        by_truck: dict[str, list[visits.Visit]],
        truck_map: dict[str, ledger.TruckDay],
        station_dwell: dict[str, float],
        service_date: date,
        now: datetime,
    ) -> list[ledger.Verdict]:
        """Each due point's verdict, in `due`'s order. A point cleared and delivered
        stays so while its visits and its plan (a re-plan may hand it to another
        truck) are unchanged: reuse."""
        at_point: dict[str, list[visits.Visit]] = defaultdict(list)
        for vs in by_truck.values():
            for v in vs:
                if v.site_kind == "point" and v.site_id:
                    at_point[v.site_id].append(v)
        verdict_of: dict[str, ledger.Verdict] = {}
        todo = []
        for point in due:
            final = self._final.get((service_date, point.point_id))
            if (
                final is not None
                and final[0] == tuple(at_point.get(point.point_id, ()))
                and final[1].due == point
            ):
                verdict_of[point.point_id] = final[1]
            else:
                todo.append(point)
        for vd in ledger.compute(todo, at_point, truck_map, station_dwell, now, self.config.ledger):
            verdict_of[vd.point_id] = vd
            if vd.status == "cleared" and vd.delivery == "delivered":
                self._final.put(
                    (service_date, vd.point_id), (tuple(at_point.get(vd.point_id, ())), vd)
                )
        return [verdict_of[p.point_id] for p in due]

    def _write_ledger(
        self,
        conn: psycopg.Connection,
        verdicts: Sequence[ledger.Verdict],
        *,
        district_id: str,
        service_date: date,
        now: datetime,
    ) -> int:
        """Write the verdicts that changed since last written; drop rows of points no
        longer due. Returns how many were written."""
        changed = []
        for vd in verdicts:
            key = (service_date, vd.point_id)
            previous = self._ledger.get(key)
            if previous is not vd and previous != vd:
                changed.append(repo.ledger_row(vd))
                self._ledger.put(key, vd)
        if changed:
            repo.write_ledger(conn, changed, now=now)
        repo.drop_ledger_except(
            conn, district_id=district_id, service_date=service_date,
            keep=[vd.point_id for vd in verdicts],
        )  # fmt: skip
        return len(changed)

    def _raise(
        self,
        conn: psycopg.Connection,
        cand: rules.AlertCandidate,
        *,
        service_date: date,
        now: datetime,
        stats: TickStats,
    ) -> None:
        """Raise (or escalate) one candidate alert unless each of its stages was raised
        before; open or join its case and queue its webhooks."""
        c = self.config
        keys = self._keys.get_or_read(
            service_date, lambda: repo.known_alert_keys(conn, dates=[service_date])
        )
        had = keys.get(cand.key)
        stages = rules.stages_of(cand)
        if had is not None and stages <= had:
            return  # nothing new: every stage of it was raised before
        keys[cand.key] = stages
        if had is None:
            raised = repo.insert_alert(conn, cand, now=now)
        else:
            raised = repo.escalate_alert(conn, cand, now=now)
        if raised is None:
            return
        due_at = cases.due_at(
            now, cand.severity, due_h_high=c.case_due_h_high, due_h_normal=c.case_due_h_normal
        )
        case_id, opened = repo.open_case_for(conn, raised, due_at=due_at, now=now)
        stats.alerts_raised += 1
        stats.cases_opened += int(opened)
        stats.raised.append(raised)
        event = "alert.raised" if had is None else "alert.escalated"
        repo.enqueue_webhook(
            conn, urls=c.webhook_urls, event=event,
            payload=notify.alert_payload(raised, case_id=case_id, event=event),
        )  # fmt: skip

    def _auto_close(
        self,
        conn: psycopg.Connection,
        district_id: str,
        service_date: date,
        trucks: dict[str, ledger.TruckDay],
        station_dwell: dict[str, float],
        verdicts: Sequence[ledger.Verdict],
        now: datetime,
    ) -> int:
        closed = 0
        for case in repo.open_point_cases_now_cleared(
            conn, district_id=district_id, service_date=service_date
        ):
            local = case.cleared_at.astimezone(self.district_tz(conn, district_id))
            note = (
                f"自动销号：车辆 {case.truck_name} 于 {local:%H:%M} 清运收集点 {case.point_id}"
                + (f"（停留 {case.dwell_s:.0f} 秒）" if case.dwell_s else "")
            )
            t = cases.transition(
                CaseState(case.state), CaseAction.AUTO_CLOSE, actor=cases.SYSTEM_ACTOR, note=note
            )
            repo.apply_transition(conn, case.case_id, t, at=now)
            closed += 1
        min_dwell = {v.point_id: v.due.min_dwell_s for v in verdicts}
        open_trucks = repo.open_truck_cases(
            conn, district_id=district_id, service_date=service_date, kind="not_unloaded"
        )
        if open_trucks:
            still = {
                a.truck_id
                for a in rules.not_unloaded(
                    trucks.values(), min_dwell, station_dwell, now, self.config.rules
                )
            }
            for truck_case in open_trucks:
                day = trucks.get(truck_case.truck_id)
                if day is None or truck_case.truck_id in still:
                    continue
                unload = next(
                    (v for v in reversed(day.visits) if ledger.is_unload(v, station_dwell)), None
                )
                if unload is None:
                    continue
                t = cases.transition(
                    CaseState(truck_case.state), CaseAction.AUTO_CLOSE, actor=cases.SYSTEM_ACTOR,
                    note=f"自动销号：车辆 {day.name} 已在中转站 {unload.site_id} 卸载",
                )  # fmt: skip
                repo.apply_transition(conn, truck_case.case_id, t, at=now)
                closed += 1
        return closed

    # -- step 4: escalation
    def escalate(
        self, conn: psycopg.Connection, *, now: datetime, district_id: str | None = None
    ) -> int:
        c = self.config
        n = 0
        for row in repo.overdue_cases(
            conn, now=now, repeat_s=c.escalation_repeat_h * 3600, district_id=district_id
        ):
            level = row["escalation_level"] + 1
            t = cases.transition(
                CaseState(row["state"]), CaseAction.ESCALATE, actor=cases.SYSTEM_ACTOR,
                note=f"逾期未结案，升级至第 {level} 级",
            )  # fmt: skip
            repo.apply_transition(conn, row["case_id"], t, at=now)
            repo.enqueue_webhook(
                conn, urls=c.webhook_urls, event="case.escalated",
                payload=notify.case_payload(row, level=level, at=now),
            )  # fmt: skip
            n += 1
        return n

    # -- whole steps
    def current_dates(self, conn: psycopg.Connection, now: datetime) -> set[date]:
        out: set[date] = set()
        for tz in set(repo.district_timezones(conn).values()):
            local = now.astimezone(ZoneInfo(tz))
            out.add(local.date())
            if local.hour < 6:  # windows that end at midnight, plus grace
                out.add(local.date() - timedelta(days=1))
        return out

    def process(
        self,
        conn: psycopg.Connection,
        *,
        now: datetime,
        changes: Iterable[tuple[str, date, datetime | None, datetime | None]],
        extra_dates: Iterable[date] = (),
        district_id: str | None = None,
    ) -> TickStats:
        """Steps 2-4 for the changed truck-days given, and every current or touched
        day of `district_id` (None: of every district)."""
        stats = TickStats()
        dates = set(extra_dates) | self.current_dates(conn, now)
        changes = list(changes)
        self._read_heard(conn, {c[0] for c in changes})
        heard = {}
        for truck_id, service_date, earliest, received in changes:
            if received is not None:
                seen = self._heard.get(truck_id)
                if seen is None or received > seen[0]:
                    heard[truck_id] = (received, now)
                    self._heard.put(truck_id, heard[truck_id])
            self.redetect(conn, truck_id=truck_id, service_date=service_date, earliest_new=earliest)
            stats.truck_days += 1
            dates.add(service_date)
        repo.save_heard(conn, heard)
        for d_id, service_date in repo.active_district_dates(conn, dates=dates):
            if district_id is None or d_id == district_id:
                stats.add(self.evaluate(conn, district_id=d_id, service_date=service_date, now=now))
        stats.cases_escalated = self.escalate(conn, now=now, district_id=district_id)
        return stats


class DataSignal:
    """Wakes the worker when fixes or events are committed (the ingestor's NOTIFY on
    ``positions_repo.TRACK_CHANNEL``), so a tick follows new data at once; the worker's
    interval stays as the safety poll (time-driven alerts, a lost notification, a writer
    that announces nothing). Without a connection it only waits out the poll."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.url, autocommit=True)
            positions_repo.listen_for_track_data(self._conn)
        return self._conn

    def listen(self) -> None:
        """Start listening now (before the first tick), if the database is there."""
        try:
            self._connection()
        except (psycopg.Error, db.DatabaseUnavailable) as exc:
            log.warning("listening for new data failed, polling: %s", str(exc).strip())
            self.close()

    def wait(self, timeout_s: float, stop: threading.Event) -> bool:
        """Until data is announced (True), `timeout_s` passes or `stop` is set (False).
        Announcements that came meanwhile are consumed too: one tick reads them all."""
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                conn = self._connection()
                # In slices, so that a stop is seen within one.
                if any(True for _ in conn.notifies(timeout=min(left, STOP_CHECK_S), stop_after=1)):
                    for _ in conn.notifies(timeout=0.0):
                        pass
                    return True
            except (psycopg.Error, db.DatabaseUnavailable) as exc:
                log.warning("listening for new data failed, polling: %s", str(exc).strip())
                self.close()
                stop.wait(max(0.0, deadline - time.monotonic()))
                return False
        return False

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class Worker:
    """A continuous worker (`clearday alerts run`): ticks until stopped. Several share
    the districts: each tick renews this worker's leases (repo.take_leases) and
    evaluates the districts it holds, each in its own transaction under the district's
    advisory lock, from the district's own watermark. A district whose worker stops
    (or dies: its lease is not renewed) is taken over from that watermark by another
    within `lease_s`, so nothing is missed; the alert keys make raising idempotent,
    so nothing is raised twice."""

    def __init__(
        self,
        url: str,
        config: AlertConfig,
        *,
        clock: Clock = wall_clock,
        interval_s: float = 2.0,
        name: str | None = None,
        overlap_s: float = OVERLAP_S,
        lease_s: float = 30.0,
        full_every_s: float = FULL_EVERY_S,
    ) -> None:
        self.url = url
        self.pipeline = Pipeline(config)
        self.full_every_s = full_every_s
        self._full_at = time.monotonic()
        self.clock = clock
        self.interval_s = interval_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.overlap_s = overlap_s
        self.lease_s = lease_s
        self.held: list[str] = []
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.url, autocommit=True)
        return self._conn

    def close(self) -> None:
        """Stop: give the districts back (another worker takes them on its next tick)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                repo.release_leases(self._conn, holder=self.name)
            self._conn.close()
            self._conn = None
        self.held = []

    def tick(self) -> TickStats:
        started = time.monotonic()
        if started - self._full_at >= self.full_every_s:
            self.pipeline.reset()
            self._full_at = started
        conn = self._connection()
        stats = TickStats()
        try:
            held = repo.take_leases(conn, holder=self.name, lease_s=self.lease_s)
            if set(held) - set(self.held):
                # Another worker may have raised alerts there meanwhile: forget what
                # this one remembers.
                self.pipeline.reset()
            self.held = held
            for district_id in held:
                done = self._tick_district(conn, district_id)
                if done is None:
                    stats.skipped = True
                else:
                    stats.add(done)
        except Exception:
            self.pipeline.reset()
            if conn.closed or conn.broken:
                self._conn = None
            raise
        stats.duration_s = time.monotonic() - started
        return stats

    def _tick_district(self, conn: psycopg.Connection, district_id: str) -> TickStats | None:
        """One district's step, in one transaction; None if another holds its lock."""
        with conn.transaction():
            if not repo.try_lock_district(conn, district_id):
                return None
            now = self.clock()
            name = f"district:{district_id}"
            mark = repo.get_watermark(conn, name)
            if mark is None:
                mark = repo.database_now(conn) - timedelta(seconds=FIRST_RUN_BACK_S)
            since = mark - timedelta(seconds=self.overlap_s)
            # Ingest refuses fixes older than its accepted past, so nothing received
            # after `since` is older than this bound. A clock behind the watermark
            # (tests and simulations feeding past days) looks back from its own now.
            recorded_since = policies.recorded_since(
                min(since, now), max_past_s=self.pipeline.config.ingest_max_past_s
            )
            changed, latest = repo.changed_truck_days(
                conn, since=since, recorded_since=recorded_since, district_id=district_id
            )
            stats = self.pipeline.process(conn, now=now, changes=changed, district_id=district_id)
            repo.set_watermark(conn, name, latest or mark)
        return stats

    def run(self, stop: threading.Event) -> None:
        """Tick whenever new data is committed, and at least every `interval_s`, until
        `stop` is set; errors are logged, never fatal."""
        failures = 0
        signal = DataSignal(self.url)
        signal.listen()
        while not stop.is_set():
            started = time.monotonic()
            try:
                stats = self.tick()
                failures = 0
                if stats.alerts_raised or stats.cases_auto_closed or stats.cases_escalated:
                    log.info(
                        "alerts: %d raised, %d cases opened, %d auto-closed, %d escalated (%.0f ms)",
                        stats.alerts_raised, stats.cases_opened, stats.cases_auto_closed,
                        stats.cases_escalated, stats.duration_s * 1000,
                    )  # fmt: skip
            except (psycopg.Error, db.DatabaseUnavailable) as exc:
                failures += 1
                log.warning("alert tick failed (%d in a row): %s", failures, str(exc).strip())
            wait = self.interval_s - (time.monotonic() - started)
            if failures:
                wait = max(wait, min(30.0, self.interval_s * 2**failures))
                stop.wait(max(0.0, wait))  # a failing database: back off, do not wake
            else:
                signal.wait(max(0.0, wait), stop)
        signal.close()
        self.close()


def replay(
    conn: psycopg.Connection,
    config: AlertConfig,
    *,
    service_date: date,
    district_id: str | None = None,
    now: datetime | None = None,
) -> TickStats:
    """Recompute one service day from scratch: every truck's visits, the ledger, the
    alerts not raised yet, auto-closures. Idempotent; waits for a running tick."""
    pipeline = Pipeline(config)
    with conn.transaction():
        districts = [district_id] if district_id else list(repo.district_timezones(conn))
        for d_id in sorted(districts):  # in order: two replays never deadlock
            repo.lock_district(conn, d_id)
        now = now or wall_clock()
        truck_ids = repo.trucks_with_data(conn, service_date=service_date, district_id=district_id)
        stats = TickStats()
        for truck_id in truck_ids:
            pipeline.redetect(conn, truck_id=truck_id, service_date=service_date, earliest_new=None)
            stats.truck_days += 1
        for d_id, d in repo.active_district_dates(conn, dates=[service_date]):
            if district_id is None or d_id == district_id:
                stats.add(pipeline.evaluate(conn, district_id=d_id, service_date=d, now=now))
        stats.cases_escalated = pipeline.escalate(conn, now=now)
    return stats


def run_forever(settings: Settings, stop: threading.Event, *, clock: Clock = wall_clock) -> None:
    """The worker and the webhook sender, until `stop` is set (for `clearday serve` too)."""
    url = settings.storage.database_dsn()
    config = AlertConfig.from_settings(settings)
    worker = Worker(
        url, config, clock=clock, interval_s=settings.alerts.worker_interval_s,
        name=settings.planning.worker_name or None, lease_s=settings.alerts.lease_s,
    )  # fmt: skip
    sender = notify.Sender(
        url,
        timeout_s=settings.alerts.webhook_timeout_s,
        max_attempts=settings.alerts.webhook_max_attempts,
        secret=settings.alerts.webhook_secret.get_secret_value()
        if settings.alerts.webhook_secret
        else None,
    )
    thread = threading.Thread(
        target=sender.run, args=(stop,), name="clearday-webhooks", daemon=True
    )
    thread.start()
    try:
        worker.run(stop)
    finally:
        stop.set()
        thread.join(timeout=10)


def tick_stats_json(stats: TickStats) -> dict[str, Any]:
    return {
        "truck_days": stats.truck_days,
        "district_days": stats.district_days,
        "ledger_written": stats.ledger_written,
        "alerts_raised": stats.alerts_raised,
        "cases_opened": stats.cases_opened,
        "cases_auto_closed": stats.cases_auto_closed,
        "cases_escalated": stats.cases_escalated,
    }
