"""SQL for fleet/alerts: reading tracks, plans and the domain; writing visits, the
ledger, alerts, cases and webhook deliveries. No decisions are made here."""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from fleet.alerts.cases import CaseAction, CaseNotFound, CaseState, Transition, transition
from fleet.alerts.ledger import DuePoint, PlannedStop, TruckDay, Verdict
from fleet.alerts.rules import AlertCandidate
from fleet.alerts.visits import DeviceEvent, Fix, Gap, Site, Visit

# ---------------------------------------------------------------------------- domain


@dataclass(frozen=True, slots=True)
class TruckRef:
    truck_id: str
    district_id: str
    timezone: str


def trucks(conn: psycopg.Connection) -> dict[str, TruckRef]:
    rows = conn.execute(
        """SELECT t.truck_id, t.district_id, d.timezone
             FROM truck t JOIN district d USING (district_id)"""
    ).fetchall()
    return {r[0]: TruckRef(r[0], r[1], r[2]) for r in rows}


def read_in_zone(conn: psycopg.Connection, timezone: str) -> None:
    """Times read on `conn` from now on come in `timezone` (the session's TimeZone), so
    the visits, evidence and alert details computed from them are in that district's
    local time, as a person reads them."""
    conn.execute("SELECT set_config('TimeZone', %s, false)", (timezone,))


def district_timezones(conn: psycopg.Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT district_id, timezone FROM district")}


def sites(
    conn: psycopg.Connection,
    *,
    district_id: str,
    min_dwell_fraction: float,
    station_min_dwell_fraction: float,
    station_radius_m: float,
    depot_radius_m: float,
) -> list[Site]:
    """The district's points, and every station and depot (trucks may cross lines)."""
    out = [
        Site("point", r[0], r[1], r[2], r[3], r[4])
        for r in conn.execute(
            """SELECT point_id, lat, lon, geofence_radius_m,
                      coalesce(min_dwell_s, service_time_s * %s)::float8
                 FROM collection_point WHERE district_id = %s AND active""",
            (min_dwell_fraction, district_id),
        )
    ]
    out += [
        Site("station", r[0], r[1], r[2], station_radius_m, r[3])
        for r in conn.execute(
            "SELECT station_id, lat, lon, tipping_time_s * %s::float8 FROM transfer_station WHERE active",
            (station_min_dwell_fraction,),
        )
    ]
    out += [
        Site("depot", r[0], r[1], r[2], depot_radius_m, 0.0)
        for r in conn.execute("SELECT depot_id, lat, lon FROM depot WHERE active")
    ]
    return out


def roads(conn: psycopg.Connection, *, district_id: str) -> list[dict[str, Any]]:
    """The district's road geometry, for judging which road a truck drove past a point."""
    cur = conn.execute(
        "SELECT from_node, to_node, oneway, coordinates FROM road WHERE district_id = %s",
        (district_id,),
    )
    return [{"from_node": r[0], "to_node": r[1], "oneway": r[2], "coordinates": r[3]} for r in cur]


def station_min_dwell(conn: psycopg.Connection, *, fraction: float) -> dict[str, float]:
    return {
        r[0]: float(r[1])
        for r in conn.execute(
            "SELECT station_id, tipping_time_s * %s::float8 FROM transfer_station", (fraction,)
        )
    }


# ---------------------------------------------------------------------------- tracks


def changed_truck_days(
    conn: psycopg.Connection,
    *,
    since: datetime,
    recorded_since: datetime,
    district_id: str | None = None,
) -> tuple[list[tuple[str, date, datetime, datetime]], datetime | None]:
    """(truck, local service date, earliest device time, latest arrival) of data received
    after `since` (from the trucks of `district_id`, or all), and the latest arrival
    time seen.

    `recorded_since` bounds the device time of anything received after `since`
    (fleet/positions/policies.py): it changes no result, and lets TimescaleDB skip every
    chunk older than it instead of probing each one's received_at index.
    """
    rows = conn.execute(
        """WITH fresh AS (
               SELECT truck_id, recorded_at, received_at FROM position
                WHERE received_at > %(since)s AND recorded_at >= %(recorded_since)s
               UNION ALL
               SELECT truck_id, recorded_at, received_at FROM device_event
                WHERE received_at > %(since)s AND recorded_at >= %(recorded_since)s)
           SELECT f.truck_id, (f.recorded_at AT TIME ZONE d.timezone)::date,
                  min(f.recorded_at), max(f.received_at)
             FROM fresh f JOIN truck t USING (truck_id) JOIN district d ON d.district_id = t.district_id
            WHERE %(district)s::text IS NULL OR t.district_id = %(district)s
            GROUP BY 1, 2""",
        {"since": since, "recorded_since": recorded_since, "district": district_id},
    ).fetchall()
    latest = max((r[3] for r in rows), default=None)
    return [(r[0], r[1], r[2], r[3]) for r in rows], latest


def day_bounds(service_date: date, timezone: str) -> tuple[datetime, datetime]:
    tz = ZoneInfo(timezone)
    start = datetime.combine(service_date, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(service_date + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start, end


def window_start(
    conn: psycopg.Connection,
    *,
    truck_id: str,
    service_date: date,
    earliest_new: datetime,
    lookback_s: float,
    day_start: datetime,
) -> tuple[datetime, datetime]:
    """(replace_from, context_from) for re-detecting a truck's day from `earliest_new`.

    Visits that arrived at or after `replace_from` are recomputed; no stored stay
    spans it. `context_from` is the last fix before it, which the detector needs
    to estimate the first arrival (and where a recomputed silence may begin).
    """
    ws0 = max(day_start, earliest_new - timedelta(seconds=lookback_s))
    row = conn.execute(
        """WITH w AS (
               SELECT greatest(%(day)s, least(%(ws0)s, coalesce(
                          (SELECT min(arrived_at) FROM visit
                            WHERE truck_id = %(t)s AND service_date = %(d)s AND kind = 'stay'
                              AND departed_at >= %(ws0)s - interval '5 minutes'),
                          %(ws0)s))) AS ws)
           SELECT w.ws, (SELECT max(recorded_at) FROM position
                          WHERE truck_id = %(t)s AND recorded_at < w.ws AND recorded_at >= %(day)s)
             FROM w""",
        {"day": day_start, "ws0": ws0, "t": truck_id, "d": service_date},
    ).fetchone()
    assert row is not None
    ws = row[0]
    return ws, row[1] if row[1] is not None else ws


def fixes(conn: psycopg.Connection, *, truck_id: str, start: datetime, end: datetime) -> list[Fix]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT recorded_at, lat, lon, speed_kmh, accuracy_m FROM position
                WHERE truck_id = %s AND recorded_at >= %s AND recorded_at < %s
                ORDER BY recorded_at""",
            (truck_id, start, end),
        )
        return [Fix(r[0], r[1], r[2], r[3], r[4]) for r in cur]


def events(
    conn: psycopg.Connection, *, truck_id: str, start: datetime, end: datetime
) -> list[DeviceEvent]:
    rows = conn.execute(
        """SELECT recorded_at, kind, point_id, station_id, rfid_tag, weight_kg FROM device_event
            WHERE truck_id = %s AND recorded_at >= %s AND recorded_at < %s
            ORDER BY recorded_at""",
        (truck_id, start, end),
    ).fetchall()
    return [DeviceEvent(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def replace_detection(
    conn: psycopg.Connection,
    *,
    truck_id: str,
    service_date: date,
    replace_from: datetime,
    gaps_from: datetime,
    visits: Sequence[Visit],
    gaps: Sequence[Gap],
) -> None:
    conn.execute(
        "DELETE FROM visit WHERE truck_id = %s AND service_date = %s AND arrived_at >= %s",
        (truck_id, service_date, replace_from),
    )
    conn.execute(
        "DELETE FROM track_gap WHERE truck_id = %s AND service_date = %s AND start_at >= %s",
        (truck_id, service_date, gaps_from),
    )
    keep = [v for v in visits if v.arrived_at >= replace_from]
    if keep:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO visit (truck_id, service_date, kind, site_kind, site_id, arrived_at,
                                      departed_at, dwell_s, is_open, fixes, distance_m, speed_kmh,
                                      evidence, end_seen, confidence, lat, lon)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (truck_id, arrived_at, kind, site_kind, site_id) DO UPDATE SET
                       departed_at = excluded.departed_at, dwell_s = excluded.dwell_s,
                       is_open = excluded.is_open, fixes = excluded.fixes,
                       distance_m = excluded.distance_m, speed_kmh = excluded.speed_kmh,
                       evidence = excluded.evidence, service_date = excluded.service_date,
                       end_seen = excluded.end_seen, confidence = excluded.confidence,
                       lat = excluded.lat, lon = excluded.lon""",
                [
                    (
                        truck_id,
                        service_date,
                        v.kind,
                        v.site_kind or "none",
                        v.site_id or "",
                        v.arrived_at,
                        v.departed_at,
                        max(0.0, v.dwell_s),
                        v.is_open,
                        v.fixes,
                        v.distance_m,
                        v.speed_kmh,
                        Jsonb([e.as_json() for e in v.evidence]),
                        v.end_seen,
                        v.confidence,
                        v.lat,
                        v.lon,
                    )
                    for v in keep
                ],
            )
    keep_gaps = [g for g in gaps if g.start_at >= gaps_from]
    if keep_gaps:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO track_gap (truck_id, service_date, start_at, end_at,
                                          start_lat, start_lon, end_lat, end_lon, cadence_s)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (truck_id, start_at) DO UPDATE SET end_at = excluded.end_at,
                       end_lat = excluded.end_lat, end_lon = excluded.end_lon,
                       cadence_s = excluded.cadence_s""",
                [
                    (
                        truck_id,
                        service_date,
                        g.start_at,
                        g.end_at,
                        g.start_lat,
                        g.start_lon,
                        g.end_lat,
                        g.end_lon,
                        g.cadence_s,
                    )
                    for g in keep_gaps
                ],
            )


def refresh_truck_day(
    conn: psycopg.Connection, *, truck_id: str, service_date: date, start: datetime, end: datetime
) -> None:
    conn.execute(
        """WITH f AS (SELECT recorded_at, lat, lon FROM position
                       WHERE truck_id = %(t)s AND recorded_at >= %(s)s AND recorded_at < %(e)s
                       ORDER BY recorded_at LIMIT 1),
                l AS (SELECT recorded_at, lat, lon FROM position
                       WHERE truck_id = %(t)s AND recorded_at >= %(s)s AND recorded_at < %(e)s
                       ORDER BY recorded_at DESC LIMIT 1)
           INSERT INTO truck_day (truck_id, service_date, first_fix_at, first_lat, first_lon,
                                  last_fix_at, last_lat, last_lon)
           SELECT %(t)s, %(d)s, f.recorded_at, f.lat, f.lon, l.recorded_at, l.lat, l.lon FROM f, l
           ON CONFLICT (truck_id, service_date) DO UPDATE SET
               first_fix_at = excluded.first_fix_at, first_lat = excluded.first_lat,
               first_lon = excluded.first_lon, last_fix_at = excluded.last_fix_at,
               last_lat = excluded.last_lat, last_lon = excluded.last_lon""",
        {"t": truck_id, "d": service_date, "s": start, "e": end},
    )


# ---------------------------------------------------------------------------- a day


def active_district_dates(
    conn: psycopg.Connection, *, dates: Iterable[date]
) -> list[tuple[str, date]]:
    """District-days with a published plan or any truck reporting."""
    days = sorted(set(dates))
    if not days:
        return []
    rows = conn.execute(
        """SELECT district_id, service_date FROM plan
            WHERE status = 'published' AND service_date = ANY(%(d)s)
           UNION
           SELECT t.district_id, td.service_date FROM truck_day td JOIN truck t USING (truck_id)
            WHERE td.service_date = ANY(%(d)s)
           ORDER BY 2, 1""",
        {"d": days},
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


# The plans of a district's day, as CTEs for `WITH RECURSIVE` (parameters district
# and date). Everything planned at any time of the day is held against the day, so
# `day_plans` is the published plan (age 0) and the chain of plans it replaced (a
# re-plan made mid-day points at the plan it replaces: age 1, and so on); a plan only
# replaces an older one (ids grow), which also keeps the recursion finite.
# `plan_points` is what each of them says about a point: a stop of a truck's route
# (seq, ETA), or left unassigned (reason).
_DAY_PLANS = """day_plans (plan_id, replaces_plan_id, age) AS (
            SELECT plan_id, replaces_plan_id, 0 FROM plan
             WHERE district_id = %(district)s AND service_date = %(date)s AND status = 'published'
            UNION ALL
            SELECT p.plan_id, p.replaces_plan_id, newer.age + 1
              FROM plan p JOIN day_plans newer ON p.plan_id = newer.replaces_plan_id
             WHERE p.district_id = %(district)s AND p.service_date = %(date)s
               AND p.plan_id < newer.plan_id),
        plan_points AS (
            SELECT dp.age, ps.plan_id, ps.point_id, ps.truck_id, ps.seq, ps.arrival_at, NULL AS reason
              FROM plan_stop ps JOIN day_plans dp USING (plan_id)
             WHERE ps.kind = 'point' AND ps.point_id IS NOT NULL
            UNION ALL
            SELECT dp.age, NULL, pu.point_id, NULL, NULL, NULL, pu.reason
              FROM plan_unassigned pu JOIN day_plans dp USING (plan_id))"""


def published_plan_id(
    conn: psycopg.Connection, *, district_id: str, service_date: date
) -> int | None:
    row = conn.execute(
        """SELECT plan_id FROM plan
            WHERE district_id = %s AND service_date = %s AND status = 'published'""",
        (district_id, service_date),
    ).fetchone()
    return int(row[0]) if row else None


def due_points(
    conn: psycopg.Connection, *, district_id: str, service_date: date, min_dwell_fraction: float
) -> list[DuePoint]:
    """Every point a plan of the day (the published plan and the plans it replaced)
    routed or left unassigned; without a plan, every active point (collected daily).

    The newest plan that mentions a point decides: its planned truck, stop and ETA, or
    the reason it was left unassigned. A point a broken-down truck collected before a
    re-plan stays due with that truck; one handed to another truck is due with that one."""
    rows = conn.execute(
        f"""WITH RECURSIVE {_DAY_PLANS},
                d AS (SELECT district_id, timezone FROM district WHERE district_id = %(district)s),
                latest AS (SELECT DISTINCT ON (point_id) * FROM plan_points
                            ORDER BY point_id, age, seq NULLS LAST)  -- newest; routed first
           SELECT p.point_id, p.district_id, p.lat, p.lon, p.geofence_radius_m,
                  coalesce(p.min_dwell_s, p.service_time_s * %(frac)s)::float8, p.stream,
                  (%(date)s::date + p.window_start) AT TIME ZONE d.timezone,
                  (%(date)s::date + p.window_end) AT TIME ZONE d.timezone,
                  (%(date)s::date + p.clearance_deadline) AT TIME ZONE d.timezone,
                  latest.truck_id, latest.plan_id, latest.seq, latest.arrival_at, latest.reason,
                  d.timezone
             FROM collection_point p JOIN d USING (district_id)
             LEFT JOIN latest USING (point_id)
            WHERE CASE WHEN EXISTS (SELECT 1 FROM day_plans)
                       THEN latest.point_id IS NOT NULL
                       ELSE p.active AND p.schedule = 'daily' END
            ORDER BY p.point_id""",
        {"district": district_id, "date": service_date, "frac": min_dwell_fraction},
    ).fetchall()
    tz = ZoneInfo(rows[0][15]) if rows else UTC
    return [
        DuePoint(
            point_id=r[0],
            district_id=r[1],
            service_date=service_date,
            lat=r[2],
            lon=r[3],
            radius_m=r[4],
            min_dwell_s=r[5],
            stream=r[6],
            window_start_at=r[7].astimezone(tz),
            window_end_at=r[8].astimezone(tz),
            deadline_at=r[9].astimezone(tz),
            planned_truck_id=r[10],
            plan_id=r[11],
            planned_seq=r[12],
            planned_arrival_at=r[13],
            unassigned_reason=r[14],
        )
        for r in rows
    ]


def _visit(row: Sequence[Any]) -> Visit:
    (
        truck_id,
        kind,
        site_kind,
        site_id,
        arrived,
        departed,
        dwell,
        is_open,
        n,
        dist,
        speed,
        ev,
        seen,
        confidence,
        lat,
        lon,
    ) = row
    evidence = tuple(
        DeviceEvent(
            at=datetime.fromisoformat(e["at"]),
            kind=e["kind"],
            point_id=e.get("point_id"),
            station_id=e.get("station_id"),
            rfid_tag=e.get("rfid_tag"),
            weight_kg=e.get("weight_kg"),
        )
        for e in (ev or [])
    )
    return Visit(
        truck_id=truck_id,
        kind=kind,
        site_kind=None if site_kind == "none" else site_kind,
        site_id=site_id or None,
        arrived_at=arrived,
        departed_at=departed,
        dwell_s=dwell,
        fixes=n,
        distance_m=dist,
        speed_kmh=speed,
        is_open=is_open,
        evidence=evidence,
        end_seen=seen,
        confidence=confidence,
        lat=lat,
        lon=lon,
    )


_VISIT_COLS = """truck_id, kind, site_kind, site_id, arrived_at, departed_at, dwell_s, is_open,
                 fixes, distance_m, speed_kmh, evidence, end_seen, confidence, lat, lon"""


def day_visits(
    conn: psycopg.Connection,
    *,
    service_date: date,
    truck_ids: Sequence[str],
    point_ids: Sequence[str],
    exclude_trucks: Sequence[str] = (),
) -> list[Visit]:
    """The day's visits of `truck_ids`, and by any other truck (but `exclude_trucks`)
    at `point_ids`."""
    rows = conn.execute(
        f"""SELECT {_VISIT_COLS} FROM visit
             WHERE service_date = %(d)s
               AND (truck_id = ANY(%(t)s)
                    OR (site_kind = 'point' AND site_id = ANY(%(p)s) AND NOT truck_id = ANY(%(x)s)))
             ORDER BY arrived_at, truck_id""",
        {"d": service_date, "t": list(truck_ids), "p": list(point_ids), "x": list(exclude_trucks)},
    ).fetchall()
    return [_visit(r) for r in rows]


def stays(conn: psycopg.Connection, *, truck_id: str, service_date: date) -> list[dict[str, Any]]:
    """A truck's stays of a service date with the sites they were matched to, by arrival."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT t.district_id, v.arrived_at, v.departed_at, v.dwell_s, v.is_open,
                      v.end_seen, v.fixes, nullif(v.site_kind, 'none') AS site_kind,
                      nullif(v.site_id, '') AS site_id,
                      coalesce(p.name, s.name, d.name) AS site_name, v.distance_m, v.confidence
                 FROM visit v JOIN truck t USING (truck_id)
                 LEFT JOIN collection_point p ON v.site_kind = 'point' AND p.point_id = v.site_id
                 LEFT JOIN transfer_station s ON v.site_kind = 'station' AND s.station_id = v.site_id
                 LEFT JOIN depot d ON v.site_kind = 'depot' AND d.depot_id = v.site_id
                WHERE v.truck_id = %s AND v.service_date = %s AND v.kind = 'stay'
                ORDER BY v.arrived_at""",
            (truck_id, service_date),
        ).fetchall()


def truck_days(
    conn: psycopg.Connection, *, district_id: str, service_date: date, visits: Sequence[Visit]
) -> list[TruckDay]:
    """The district's trucks and any truck the day's plans use, with their day's data.

    A truck's planned stops are its route in the newest of the day's plans that has
    one: a truck still working after a re-plan follows the new plan (its completed
    stops included). A truck taken out by a re-plan (broken down) keeps its route of
    the plan it was taken out of, less the points a newer plan took over (handed to
    another truck, or left unassigned): its planned points are exactly the due points
    it is still the planned truck of, so it is never held to points it no longer has."""
    rows = conn.execute(
        f"""WITH RECURSIVE {_DAY_PLANS}
           SELECT t.truck_id, t.district_id, t.depot_id,
                  (%(date)s::date + t.shift_start) AT TIME ZONE d.timezone,
                  (%(date)s::date + t.shift_end) AT TIME ZONE d.timezone,
                  (%(date)s::date + t.break_earliest) AT TIME ZONE d.timezone,
                  (%(date)s::date + t.break_latest) AT TIME ZONE d.timezone
                      + make_interval(secs => t.break_duration_s),
                  t.break_duration_s,
                  td.first_fix_at, td.first_lat, td.first_lon, td.last_fix_at, td.last_lat, td.last_lon,
                  d.timezone, t.plate
             FROM truck t JOIN district d ON d.district_id = t.district_id
             LEFT JOIN truck_day td ON td.truck_id = t.truck_id AND td.service_date = %(date)s
            WHERE (t.district_id = %(district)s AND t.active)
               OR t.truck_id IN (SELECT ps.truck_id FROM plan_stop ps JOIN day_plans USING (plan_id))
            ORDER BY t.truck_id""",
        {"district": district_id, "date": service_date},
    ).fetchall()
    ids = [r[0] for r in rows]
    gaps: dict[str, list[Gap]] = defaultdict(list)
    for g in conn.execute(
        """SELECT truck_id, start_at, end_at, start_lat, start_lon, end_lat, end_lon, cadence_s
             FROM track_gap
            WHERE service_date = %s AND truck_id = ANY(%s) ORDER BY truck_id, start_at""",
        (service_date, ids),
    ):
        gaps[g[0]].append(Gap(*g[1:]))
    planned: dict[str, list[PlannedStop]] = defaultdict(list)
    for s in conn.execute(
        f"""WITH RECURSIVE {_DAY_PLANS},
                truck_plan AS (SELECT DISTINCT ON (ps.truck_id) ps.truck_id, ps.plan_id, dp.age
                                 FROM plan_stop ps JOIN day_plans dp USING (plan_id)
                                ORDER BY ps.truck_id, dp.age)
           SELECT ps.truck_id, ps.seq, ps.kind, coalesce(ps.point_id, ps.station_id, ps.depot_id),
                  ps.arrival_at, coalesce(cp.lat, ts.lat, dp.lat), coalesce(cp.lon, ts.lon, dp.lon),
                  coalesce(cp.geofence_radius_m, 0)::float8
             FROM plan_stop ps JOIN truck_plan tp USING (truck_id, plan_id)
             LEFT JOIN collection_point cp ON cp.point_id = ps.point_id
             LEFT JOIN transfer_station ts ON ts.station_id = ps.station_id
             LEFT JOIN depot dp ON dp.depot_id = ps.depot_id
            WHERE ps.point_id IS NULL
               OR NOT EXISTS (SELECT 1 FROM plan_points newer
                               WHERE newer.point_id = ps.point_id AND newer.age < tp.age)
            ORDER BY ps.truck_id, ps.seq""",
        {"district": district_id, "date": service_date},
    ):
        planned[s[0]].append(PlannedStop(*s[1:]))
    by_truck: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        by_truck[v.truck_id].append(v)

    def local(at: datetime, tz: str) -> datetime:
        return at.astimezone(ZoneInfo(tz))

    return [
        TruckDay(
            truck_id=r[0],
            district_id=r[1],
            service_date=service_date,
            depot_id=r[2],
            shift_start_at=local(r[3], r[14]),
            shift_end_at=local(r[4], r[14]),
            break_start_at=local(r[5], r[14]),
            break_end_at=local(r[6], r[14]),
            break_duration_s=r[7],
            first_fix_at=r[8],
            first_lat=r[9],
            first_lon=r[10],
            last_fix_at=r[11],
            last_lat=r[12],
            last_lon=r[13],
            gaps=tuple(gaps[r[0]]),
            visits=tuple(by_truck[r[0]]),
            planned=tuple(planned[r[0]]),
            plate=r[15],
        )
        for r in rows
    ]


# ---------------------------------------------------------------------------- ledger

LedgerRow = tuple[Any, ...]


def ledger_row(v: Verdict) -> LedgerRow:
    d = v.due
    return (
        d.service_date, d.point_id, d.district_id, d.stream, d.plan_id, d.planned_truck_id,
        d.planned_seq, d.planned_arrival_at, d.window_start_at, d.window_end_at, d.deadline_at,
        v.status, v.reason, v.cleared_at, v.cleared_by_truck_id,
        None if v.dwell_s is None else round(v.dwell_s, 3), v.delivery, v.delivered_at,
        v.delivered_station_id, json.dumps(v.evidence, sort_keys=True, ensure_ascii=False),
        v.confidence,
    )  # fmt: skip


def write_ledger(conn: psycopg.Connection, rows: Sequence[LedgerRow], *, now: datetime) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ledger_entry (service_date, point_id, district_id, stream, plan_id,
                   planned_truck_id, planned_seq, planned_arrival_at, window_start_at, window_end_at,
                   deadline_at, status, reason, cleared_at, cleared_by_truck_id, dwell_s, delivery,
                   delivered_at, delivered_station_id, evidence, confidence, status_since,
                   computed_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       %s::jsonb, %s, %s, %s)
               ON CONFLICT (service_date, point_id) DO UPDATE SET
                   district_id = excluded.district_id, stream = excluded.stream,
                   plan_id = excluded.plan_id, planned_truck_id = excluded.planned_truck_id,
                   planned_seq = excluded.planned_seq, planned_arrival_at = excluded.planned_arrival_at,
                   window_start_at = excluded.window_start_at, window_end_at = excluded.window_end_at,
                   deadline_at = excluded.deadline_at, status = excluded.status,
                   reason = excluded.reason, cleared_at = excluded.cleared_at,
                   cleared_by_truck_id = excluded.cleared_by_truck_id, dwell_s = excluded.dwell_s,
                   delivery = excluded.delivery, delivered_at = excluded.delivered_at,
                   delivered_station_id = excluded.delivered_station_id, evidence = excluded.evidence,
                   confidence = excluded.confidence,
                   status_since = CASE WHEN ledger_entry.status = excluded.status
                                       THEN ledger_entry.status_since ELSE excluded.status_since END,
                   computed_at = excluded.computed_at""",
            [(*r, now, now) for r in rows],
        )


def drop_ledger_except(
    conn: psycopg.Connection, *, district_id: str, service_date: date, keep: Sequence[str]
) -> None:
    """Points no longer due (the plan changed) leave the ledger."""
    conn.execute(
        """DELETE FROM ledger_entry WHERE district_id = %s AND service_date = %s
                                      AND NOT (point_id = ANY(%s))""",
        (district_id, service_date, list(keep)),
    )


# ---------------------------------------------------------------------------- alerts


def known_alert_keys(
    conn: psycopg.Connection, *, dates: Sequence[date]
) -> dict[str, frozenset[str]]:
    """The alerts raised on these dates: dedupe key -> the stages it has reached."""
    rows = conn.execute(
        """SELECT dedupe_key, kind,
                  (SELECT array_agg(s ->> 'kind') FROM jsonb_array_elements(
                       CASE WHEN jsonb_typeof(details -> 'stages') = 'array'
                            THEN details -> 'stages' END) AS s)
             FROM alert WHERE service_date = ANY(%s)""",
        (list(dates),),
    ).fetchall()
    return {key: frozenset(stages or [kind]) for key, kind, stages in rows}


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    alert_id: int
    candidate: AlertCandidate
    raised_at: datetime


def insert_alert(
    conn: psycopg.Connection, candidate: AlertCandidate, *, now: datetime
) -> RaisedAlert | None:
    """Insert the alert unless its crossing was raised before; None if it was."""
    c = _stages_raised(candidate, {}, now)
    row = conn.execute(
        """INSERT INTO alert (dedupe_key, kind, severity, district_id, service_date, subject,
                              point_id, truck_id, condition_at, raised_at, message, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING alert_id""",
        (
            c.key,
            c.kind,
            c.severity,
            c.district_id,
            c.service_date,
            c.subject,
            c.point_id,
            c.truck_id,
            c.condition_at,
            now,
            c.message,
            Jsonb(c.details),
        ),
    ).fetchone()
    return RaisedAlert(row[0], c, now) if row else None


def escalate_alert(
    conn: psycopg.Connection, candidate: AlertCandidate, *, now: datetime
) -> RaisedAlert | None:
    """Move an incident's alert (same key) on to the candidate's later stage in place:
    kind, severity, message and the stages of its evidence. None if it is not there."""
    row = conn.execute(
        "SELECT alert_id, details FROM alert WHERE dedupe_key = %s FOR UPDATE", (candidate.key,)
    ).fetchone()
    if row is None:
        return None
    alert_id, old = row
    raised_at = {s["kind"]: s["raised_at"] for s in old.get("stages", []) if "raised_at" in s}
    c = _stages_raised(candidate, raised_at, now)
    conn.execute(
        """UPDATE alert SET kind = %s, severity = %s, message = %s, details = %s
            WHERE alert_id = %s""",
        (c.kind, c.severity, c.message, Jsonb(c.details), alert_id),
    )
    return RaisedAlert(alert_id, c, now)


def _stages_raised(c: AlertCandidate, raised_at: dict[str, str], now: datetime) -> AlertCandidate:
    """The candidate with each stage stamped with when it was first raised."""
    stages = c.details.get("stages")
    if not stages:
        return c
    stamped = [{**s, "raised_at": raised_at.get(s["kind"], now.isoformat())} for s in stages]
    return replace(c, details={**c.details, "stages": stamped})


def open_case_for(
    conn: psycopg.Connection,
    raised: RaisedAlert,
    *,
    due_at: datetime,
    now: datetime,
) -> tuple[int, bool]:
    """Attach the alert to the open case of its subject and day, or open one.
    Returns (case_id, opened)."""
    c = raised.candidate
    row = conn.execute(
        """SELECT case_id, state, severity FROM alert_case
            WHERE district_id = %s AND service_date = %s AND subject = %s AND state <> 'closed'
            FOR UPDATE""",
        (c.district_id, c.service_date, c.subject),
    ).fetchone()
    if row:
        case_id, state, severity = row
        if c.severity == "high" and severity != "high":
            conn.execute(
                "UPDATE alert_case SET severity = 'high', due_at = least(due_at, %s), updated_at = %s WHERE case_id = %s",
                (due_at, now, case_id),
            )
        t = transition(CaseState(state), CaseAction.ATTACH, actor="system", note=c.message)
        add_case_event(conn, case_id, t, at=now, alert_id=raised.alert_id)
        opened = False
    else:
        case_id = conn.execute(
            """INSERT INTO alert_case (district_id, service_date, subject, point_id, truck_id,
                                       severity, title, opened_at, due_at, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING case_id""",
            (
                c.district_id,
                c.service_date,
                c.subject,
                c.point_id,
                c.truck_id,
                c.severity,
                c.message,
                now,
                due_at,
                now,
            ),
        ).fetchone()[0]  # type: ignore[index]
        t = transition(CaseState.OPEN, CaseAction.OPEN, actor="system", note=c.message)
        add_case_event(conn, case_id, t, at=now, alert_id=raised.alert_id)
        opened = True
    conn.execute("UPDATE alert SET case_id = %s WHERE alert_id = %s", (case_id, raised.alert_id))
    return case_id, opened


def add_case_event(
    conn: psycopg.Connection,
    case_id: int,
    t: Transition,
    *,
    at: datetime,
    alert_id: int | None = None,
) -> None:
    conn.execute(
        """INSERT INTO case_event (case_id, at, actor, action, from_state, to_state, assignee, note, alert_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            case_id,
            at,
            t.actor,
            t.action.value,
            t.from_state.value,
            t.to_state.value,
            t.assignee,
            t.note,
            alert_id,
        ),
    )


def lock_case(conn: psycopg.Connection, case_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM alert_case WHERE case_id = %s FOR UPDATE", (case_id,)
        ).fetchone()
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return row


def apply_transition(
    conn: psycopg.Connection, case_id: int, t: Transition, *, at: datetime
) -> None:
    """Write a transition already checked by cases.transition (row locked by caller)."""
    sets = ["state = %(to)s", "updated_at = %(at)s"]
    if t.action.value == "assign":
        sets.append("assignee = %(assignee)s")
    if t.to_state == CaseState.CLOSED:
        sets += ["closed_at = %(at)s", "closed_by = %(actor)s", "close_note = %(note)s"]
        if t.action == CaseAction.AUTO_CLOSE:
            sets.append("auto_closed = true")
    if t.action == CaseAction.ESCALATE:
        sets += ["escalation_level = escalation_level + 1", "escalated_at = %(at)s"]
    conn.execute(
        f"UPDATE alert_case SET {', '.join(sets)} WHERE case_id = %(id)s",
        {
            "to": t.to_state.value,
            "at": at,
            "assignee": t.assignee,
            "actor": t.actor,
            "note": t.note,
            "id": case_id,
        },
    )
    add_case_event(conn, case_id, t, at=at)
    if t.to_state == CaseState.CLOSED:
        conn.execute(
            """UPDATE alert SET resolved_at = coalesce(resolved_at, %s),
                                resolution = coalesce(resolution, %s)
                WHERE case_id = %s""",
            (
                at,
                ("auto: " if t.action == CaseAction.AUTO_CLOSE else "closed: ") + (t.note or ""),
                case_id,
            ),
        )


def open_point_cases_now_cleared(
    conn: psycopg.Connection, *, district_id: str, service_date: date
) -> list[tuple[int, str, str, datetime, str | None, float | None]]:
    """Open cases about a point that the ledger now says is cleared, with the truck that
    cleared it as a person reads it (its plate)."""
    rows = conn.execute(
        """SELECT c.case_id, c.state, l.point_id, l.cleared_at,
                  coalesce(nullif(t.plate, ''), l.cleared_by_truck_id), l.dwell_s
             FROM alert_case c JOIN ledger_entry l
               ON l.service_date = c.service_date AND l.point_id = c.point_id
             LEFT JOIN truck t ON t.truck_id = l.cleared_by_truck_id
            WHERE c.district_id = %s AND c.service_date = %s AND c.state <> 'closed'
              AND c.subject LIKE 'point:%%' AND l.status = 'cleared'
            ORDER BY c.case_id""",
        (district_id, service_date),
    ).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def open_truck_cases(
    conn: psycopg.Connection, *, district_id: str, service_date: date, kind: str
) -> list[tuple[int, str, str]]:
    """(case_id, state, truck_id) of open truck cases holding an alert of `kind`."""
    rows = conn.execute(
        """SELECT DISTINCT c.case_id, c.state, c.truck_id FROM alert_case c
             JOIN alert a ON a.case_id = c.case_id
            WHERE c.district_id = %s AND c.service_date = %s AND c.state <> 'closed'
              AND a.kind = %s AND c.truck_id IS NOT NULL""",
        (district_id, service_date, kind),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def overdue_cases(
    conn: psycopg.Connection, *, now: datetime, repeat_s: float, district_id: str | None = None
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT * FROM alert_case
                WHERE state <> 'closed' AND escalation_level < 3
                  AND due_at + make_interval(secs => %s * escalation_level) <= %s
                  AND (%s::text IS NULL OR district_id = %s)
                ORDER BY case_id FOR UPDATE SKIP LOCKED""",
            (repeat_s, now, district_id, district_id),
        ).fetchall()


# ---------------------------------------------------------------------------- webhooks


def enqueue_webhook(
    conn: psycopg.Connection, *, urls: Sequence[str], event: str, payload: dict[str, Any]
) -> None:
    if not urls:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO webhook_delivery (url, event, payload) VALUES (%s, %s, %s)",
            [(url, event, Jsonb(payload)) for url in urls],
        )


def webhook_secret(conn: psycopg.Connection, *, url: str) -> str:
    """The secret that signs webhooks to `url`, generated and stored on first use."""
    row = conn.execute(
        """INSERT INTO webhook_endpoint (url, secret) VALUES (%s, %s)
           ON CONFLICT (url) DO UPDATE SET url = EXCLUDED.url
           RETURNING secret""",
        (url, secrets.token_hex(32)),
    ).fetchone()
    assert row is not None
    return str(row[0])


# ---------------------------------------------------------------------------- worker state


def get_watermark(conn: psycopg.Connection, name: str) -> datetime | None:
    row = conn.execute(
        "SELECT watermark FROM alert_worker_state WHERE name = %s", (name,)
    ).fetchone()
    return row[0] if row else None


def set_watermark(conn: psycopg.Connection, name: str, watermark: datetime) -> None:
    conn.execute(
        """INSERT INTO alert_worker_state (name, watermark) VALUES (%s, %s)
           ON CONFLICT (name) DO UPDATE SET watermark = greatest(alert_worker_state.watermark, excluded.watermark),
                                            updated_at = now()""",
        (name, watermark),
    )


# ------------------------------------------------------------------ district leases


def take_leases(conn: psycopg.Connection, *, holder: str, lease_s: float) -> list[str]:
    """Renew `holder`'s leases and even out the districts among the live workers:
    take free or expired ones up to its share, give back what is beyond it. Returns
    the districts it holds now, for `lease_s` seconds."""
    lease = {"h": holder, "s": lease_s}
    with conn.transaction():
        conn.execute(
            """INSERT INTO alert_worker (name, seen_at) VALUES (%(h)s, now())
               ON CONFLICT (name) DO UPDATE SET seen_at = now()""",
            lease,
        )
        # Workers gone for a day (killed, never back under that name) are forgotten.
        conn.execute("DELETE FROM alert_worker WHERE seen_at < now() - interval '1 day'")
        row = conn.execute(
            """SELECT ceil((SELECT count(*) FROM district)::numeric
                           / greatest(1, (SELECT count(*) FROM alert_worker
                                           WHERE seen_at > now() - make_interval(secs => %(s)s))))""",
            lease,
        ).fetchone()
        share = int(row[0]) if row and row[0] is not None else 0
        mine = [
            str(r[0])
            for r in conn.execute(
                """UPDATE alert_lease SET expires_at = now() + make_interval(secs => %(s)s)
                    WHERE holder = %(h)s RETURNING district_id""",
                lease,
            )
        ]
        mine.sort()
        if len(mine) > share:
            conn.execute(
                "DELETE FROM alert_lease WHERE holder = %s AND district_id = ANY(%s)",
                (holder, mine[share:]),
            )
            mine = mine[:share]
        elif len(mine) < share:
            taken = conn.execute(
                """INSERT INTO alert_lease (district_id, holder, expires_at)
                   SELECT d.district_id, %(h)s, now() + make_interval(secs => %(s)s)
                     FROM district d LEFT JOIN alert_lease l USING (district_id)
                    WHERE l.district_id IS NULL OR l.expires_at < now()
                    ORDER BY d.district_id LIMIT %(n)s
                   ON CONFLICT (district_id) DO UPDATE
                      SET holder = excluded.holder, expires_at = excluded.expires_at
                    WHERE alert_lease.expires_at < now()
                   RETURNING district_id""",
                {**lease, "n": share - len(mine)},
            ).fetchall()
            mine = sorted(mine + [str(r[0]) for r in taken])
    return mine


def release_leases(conn: psycopg.Connection, *, holder: str) -> None:
    """A worker stopping: its districts are free at once."""
    with conn.transaction():
        conn.execute("DELETE FROM alert_lease WHERE holder = %s", (holder,))
        conn.execute("DELETE FROM alert_worker WHERE name = %s", (holder,))


def lease_holders(conn: psycopg.Connection) -> dict[str, str]:
    """district -> the worker holding its lease (unexpired)."""
    rows = conn.execute(
        "SELECT district_id, holder FROM alert_lease WHERE expires_at > now() ORDER BY 1"
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def heard(
    conn: psycopg.Connection, truck_ids: Sequence[str]
) -> dict[str, tuple[datetime, datetime]]:
    """truck -> (latest arrival seen, worker time it was first seen)."""
    rows = conn.execute(
        "SELECT truck_id, received_at, heard_at FROM alert_heard WHERE truck_id = ANY(%s)",
        (list(truck_ids),),
    ).fetchall()
    return {str(r[0]): (r[1], r[2]) for r in rows}


def save_heard(conn: psycopg.Connection, heard: dict[str, tuple[datetime, datetime]]) -> None:
    if heard:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO alert_heard (truck_id, received_at, heard_at) VALUES (%s, %s, %s)
                   ON CONFLICT (truck_id) DO UPDATE
                      SET received_at = excluded.received_at, heard_at = excluded.heard_at
                    WHERE alert_heard.received_at < excluded.received_at""",
                [(t, r, h) for t, (r, h) in heard.items()],
            )
