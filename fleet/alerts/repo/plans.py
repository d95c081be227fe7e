"""The day's plans as the alerts hold the day against them: which district-days are
active, the due points (the published plan and the plans it replaced) and each truck's
day (shift, break, first and last fix, silences, planned stops)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from fleet.alerts.ledger import DuePoint, PlannedStop, TruckDay
from fleet.alerts.visits import Gap


def active_district_dates(
    conn: psycopg.Connection, *, dates: Iterable[date]
) -> list[tuple[str, date]]:
    """District-days with a published plan or any truck reporting."""
    days = sorted(set(dates))
    if not days:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT district_id, service_date FROM plan
                WHERE status = 'published' AND service_date = ANY(%(d)s)
               UNION
               SELECT t.district_id, td.service_date FROM truck_day td JOIN truck t USING (truck_id)
                WHERE td.service_date = ANY(%(d)s)
               ORDER BY 2, 1""",
            {"d": days},
        ).fetchall()
    return [(r["district_id"], r["service_date"]) for r in rows]


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
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT plan_id FROM plan
                WHERE district_id = %s AND service_date = %s AND status = 'published'""",
            (district_id, service_date),
        ).fetchone()
    return int(row["plan_id"]) if row else None


def due_points(
    conn: psycopg.Connection, *, district_id: str, service_date: date, min_dwell_fraction: float
) -> list[DuePoint]:
    """Every point a plan of the day (the published plan and the plans it replaced)
    routed or left unassigned; without a plan, every active point (collected daily).

    The newest plan that mentions a point decides: its planned truck, stop and ETA, or
    the reason it was left unassigned. A point a broken-down truck collected before a
    re-plan stays due with that truck; one handed to another truck is due with that one."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""WITH RECURSIVE {_DAY_PLANS},
                    d AS (SELECT district_id, timezone FROM district
                           WHERE district_id = %(district)s),
                    latest AS (SELECT DISTINCT ON (point_id) * FROM plan_points
                                ORDER BY point_id, age, seq NULLS LAST)  -- newest; routed first
               SELECT p.point_id, p.district_id, p.lat, p.lon, p.geofence_radius_m AS radius_m,
                      coalesce(p.min_dwell_s, p.service_time_s * %(frac)s)::float8 AS min_dwell_s,
                      p.stream, p.has_bins,
                      (%(date)s::date + p.window_start) AT TIME ZONE d.timezone AS window_start_at,
                      (%(date)s::date + p.window_end) AT TIME ZONE d.timezone AS window_end_at,
                      (%(date)s::date + p.clearance_deadline) AT TIME ZONE d.timezone AS deadline_at,
                      latest.truck_id AS planned_truck_id, latest.plan_id,
                      latest.seq AS planned_seq, latest.arrival_at AS planned_arrival_at,
                      latest.reason AS unassigned_reason, d.timezone
                 FROM collection_point p JOIN d USING (district_id)
                 LEFT JOIN latest USING (point_id)
                WHERE CASE WHEN EXISTS (SELECT 1 FROM day_plans)
                           THEN latest.point_id IS NOT NULL
                           ELSE p.active AND p.schedule = 'daily' END
                ORDER BY p.point_id""",
            {"district": district_id, "date": service_date, "frac": min_dwell_fraction},
        ).fetchall()
    return [_due_point(r, service_date) for r in rows]


def _due_point(row: dict[str, Any], service_date: date) -> DuePoint:
    tz = ZoneInfo(row.pop("timezone"))
    local = ("window_start_at", "window_end_at", "deadline_at")
    return DuePoint(
        service_date=service_date, **{**row, **{name: row[name].astimezone(tz) for name in local}}
    )


def truck_days(
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    planned: Mapping[str, tuple[PlannedStop, ...]] | None = None,
) -> list[TruckDay]:
    """The district's trucks and any truck the day's plans use, with their day's data
    (no visits: the caller adds them), and their planned stops (`planned_stops`; or
    `planned`, as the caller read them for the day's plans as they stand).

    A truck's planned stops are its route in the newest of the day's plans that has
    one: a truck still working after a re-plan follows the new plan (its completed
    stops included). A truck taken out by a re-plan (broken down) keeps its route of
    the plan it was taken out of, less the points a newer plan took over (handed to
    another truck, or left unassigned): its planned points are exactly the due points
    it is still the planned truck of, so it is never held to points it no longer has."""
    params = {"district": district_id, "date": service_date}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""WITH RECURSIVE {_DAY_PLANS}
               SELECT t.truck_id, t.district_id, t.depot_id, t.plate, d.timezone,
                      (%(date)s::date + t.shift_start) AT TIME ZONE d.timezone AS shift_start_at,
                      (%(date)s::date + t.shift_end) AT TIME ZONE d.timezone AS shift_end_at,
                      (%(date)s::date + t.break_earliest) AT TIME ZONE d.timezone AS break_start_at,
                      (%(date)s::date + t.break_latest) AT TIME ZONE d.timezone
                          + make_interval(secs => t.break_duration_s) AS break_end_at,
                      t.break_duration_s,
                      td.first_fix_at, td.first_lat, td.first_lon,
                      td.last_fix_at, td.last_lat, td.last_lon
                 FROM truck t JOIN district d ON d.district_id = t.district_id
                 LEFT JOIN truck_day td
                   ON td.truck_id = t.truck_id AND td.service_date = %(date)s
                WHERE (t.district_id = %(district)s AND t.active)
                   OR t.truck_id IN (SELECT ps.truck_id FROM plan_stop ps
                                       JOIN day_plans USING (plan_id))
                ORDER BY t.truck_id""",
            params,
        ).fetchall()
        ids = [r["truck_id"] for r in rows]
        gaps: dict[str, list[Gap]] = defaultdict(list)
        for g in cur.execute(
            """SELECT truck_id, start_at, end_at, start_lat, start_lon, end_lat, end_lon, cadence_s
                 FROM track_gap
                WHERE service_date = %s AND truck_id = ANY(%s) ORDER BY truck_id, start_at""",
            (service_date, ids),
        ).fetchall():
            gaps[g.pop("truck_id")].append(Gap(**g))
    if planned is None:
        planned = planned_stops(conn, district_id=district_id, service_date=service_date)
    return [
        _truck_day(r, service_date, tuple(gaps[r["truck_id"]]), planned.get(r["truck_id"], ()))
        for r in rows
    ]


def planned_stops(
    conn: psycopg.Connection, *, district_id: str, service_date: date
) -> dict[str, tuple[PlannedStop, ...]]:
    """Each truck's planned stops of the day, by seq (see `truck_days`)."""
    params = {"district": district_id, "date": service_date}
    planned: dict[str, list[PlannedStop]] = defaultdict(list)
    with conn.cursor(row_factory=dict_row) as cur:
        for s in cur.execute(
            f"""WITH RECURSIVE {_DAY_PLANS},
                    truck_plan AS (SELECT DISTINCT ON (ps.truck_id) ps.truck_id, ps.plan_id, dp.age
                                     FROM plan_stop ps JOIN day_plans dp USING (plan_id)
                                    ORDER BY ps.truck_id, dp.age)
               SELECT ps.truck_id, ps.seq, ps.kind,
                      coalesce(ps.point_id, ps.station_id, ps.depot_id) AS site_id, ps.arrival_at,
                      coalesce(cp.lat, ts.lat, dp.lat) AS lat, coalesce(cp.lon, ts.lon, dp.lon) AS lon,
                      coalesce(cp.geofence_radius_m, 0)::float8 AS radius_m
                 FROM plan_stop ps JOIN truck_plan tp USING (truck_id, plan_id)
                 LEFT JOIN collection_point cp ON cp.point_id = ps.point_id
                 LEFT JOIN transfer_station ts ON ts.station_id = ps.station_id
                 LEFT JOIN depot dp ON dp.depot_id = ps.depot_id
                WHERE ps.point_id IS NULL
                   OR NOT EXISTS (SELECT 1 FROM plan_points newer
                                   WHERE newer.point_id = ps.point_id AND newer.age < tp.age)
                ORDER BY ps.truck_id, ps.seq""",
            params,
        ).fetchall():
            planned[s.pop("truck_id")].append(PlannedStop(**s))
    return {truck_id: tuple(stops) for truck_id, stops in planned.items()}


def _truck_day(
    row: dict[str, Any], service_date: date, gaps: tuple[Gap, ...], planned: tuple[PlannedStop, ...]
) -> TruckDay:
    tz = ZoneInfo(row.pop("timezone"))
    local = ("shift_start_at", "shift_end_at", "break_start_at", "break_end_at")
    return TruckDay(
        service_date=service_date,
        gaps=gaps,
        planned=planned,
        **{**row, **{name: row[name].astimezone(tz) for name in local}},
    )
