"""SQL for plans: reading a district's planning inputs, storing and reading plans."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from fleet.refusal import Refused


def seconds_of_day(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def at_seconds(service_date: date, seconds: float, tz: ZoneInfo) -> datetime:
    """Local midnight of the service date plus `seconds` (may run past midnight)."""
    midnight = datetime.combine(service_date, time(0, 0), tzinfo=tz)
    return midnight + timedelta(seconds=seconds)


def district_inputs(
    conn: psycopg.Connection,
    district_id: str,
    *,
    point_ids: Sequence[str] | None = None,
    also_truck_ids: Sequence[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Active depots, stations, points, trucks and all roads of a district, as rows.

    With `point_ids`, exactly those points of the district (active or not: a plan
    being re-planned may hold a point deactivated since); `also_truck_ids` adds those
    trucks even if inactive."""
    args: dict[str, Any] = {
        "d": district_id,
        "by_id": point_ids is not None,
        "p": list(point_ids or ()),
        "t": list(also_truck_ids),
    }
    queries = {
        "depots": "SELECT depot_id, name, lat, lon FROM depot WHERE district_id = %(d)s AND active ORDER BY depot_id",
        "stations": """SELECT station_id, name, lat, lon, streams::text[] AS streams, opens_at, closes_at,
                              tipping_time_s, daily_capacity_kg
                       FROM transfer_station WHERE district_id = %(d)s AND active ORDER BY station_id""",
        "points": """SELECT point_id, name, lat, lon, stream::text AS stream, daily_amount_kg, service_time_s,
                            window_start, window_end, access_class, schedule
                     FROM collection_point WHERE district_id = %(d)s
                       AND CASE WHEN %(by_id)s THEN point_id = ANY(%(p)s::text[]) ELSE active END
                     ORDER BY point_id""",
        "trucks": """SELECT truck_id, plate, truck_type, capacity_kg, streams::text[] AS streams, depot_id,
                            shift_start, shift_end, max_route_duration_s, break_duration_s,
                            break_earliest, break_latest, can_enter_narrow
                     FROM truck WHERE district_id = %(d)s AND (active OR truck_id = ANY(%(t)s::text[]))
                     ORDER BY truck_id""",
        "roads": """SELECT road_id, from_node, to_node, road_class, speed_kmh, oneway, narrow, length_m,
                           coordinates
                    FROM road WHERE district_id = %(d)s ORDER BY road_id""",
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return {kind: cur.execute(sql, args).fetchall() for kind, sql in queries.items()}


def district_timezone(conn: psycopg.Connection, district_id: str) -> str | None:
    row = conn.execute(
        "SELECT timezone FROM district WHERE district_id = %s", (district_id,)
    ).fetchone()
    return str(row[0]) if row else None


def ids_in_district(
    conn: psycopg.Connection, district_id: str, *, table: str, ids: Sequence[str]
) -> dict[str, bool]:
    """Which of `ids` are trucks / collection points of the district: id -> active."""
    column = {"truck": "truck_id", "collection_point": "point_id"}[table]
    rows = conn.execute(
        f"SELECT {column}, active FROM {table} WHERE district_id = %s AND {column} = ANY(%s::text[])",
        (district_id, list(ids)),
    ).fetchall()
    return {str(r[0]): bool(r[1]) for r in rows}


def latest_positions(
    conn: psycopg.Connection,
    district_id: str,
    *,
    also_truck_ids: Sequence[str] = (),
    since: datetime,
    until: datetime,
) -> dict[str, tuple[datetime, float, float]]:
    """The latest fix in [since, until] of each active truck of the district (and of
    `also_truck_ids`): (recorded_at, lat, lon); trucks with no fix there are absent."""
    rows = conn.execute(
        """SELECT t.truck_id, p.recorded_at, p.lat, p.lon
             FROM truck t
             CROSS JOIN LATERAL (
                 SELECT recorded_at, lat, lon FROM position
                  WHERE truck_id = t.truck_id AND recorded_at >= %(since)s AND recorded_at <= %(until)s
                  ORDER BY recorded_at DESC LIMIT 1) p
            WHERE t.district_id = %(d)s AND (t.active OR t.truck_id = ANY(%(t)s::text[]))""",
        {"d": district_id, "t": list(also_truck_ids), "since": since, "until": until},
    ).fetchall()
    return {str(r[0]): (r[1], float(r[2]), float(r[3])) for r in rows}


def published_plan_id(conn: psycopg.Connection, district_id: str, service_date: date) -> int | None:
    row = conn.execute(
        """SELECT plan_id FROM plan
            WHERE district_id = %s AND service_date = %s AND status = 'published'""",
        (district_id, service_date),
    ).fetchone()
    return int(row[0]) if row else None


def insert_plan(
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    document: dict[str, Any],
    stats: dict[str, Any],
    stops: list[dict[str, Any]],
    unassigned: list[tuple[str, str]],
    seed: int,
    time_limit_s: float | None,
    created_by: str | None,
    replaces_plan_id: int | None = None,
    plan_job_id: int | None = None,
) -> int:
    """Store a plan with its stop rows in one transaction; returns its id. A job stores
    one plan: if `plan_job_id` stored one already, that plan's id is returned."""
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO plan (district_id, service_date, replaces_plan_id, seed, time_limit_s,
                                 stats, document, created_by, plan_job_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (plan_job_id) DO NOTHING RETURNING plan_id""",
            (district_id, service_date, replaces_plan_id, seed, time_limit_s, Jsonb(stats),
             Jsonb(document), created_by, plan_job_id),
        ).fetchone()  # fmt: skip
        if row is None:
            stored = plan_of_job(conn, plan_job_id) if plan_job_id is not None else None
            assert stored is not None
            return stored
        plan_id = int(row[0])
        with conn.cursor() as cur:
            with cur.copy(
                """COPY plan_stop (plan_id, truck_id, seq, kind, point_id, station_id, depot_id,
                                   arrival_at, departure_at, load_after_kg, distance_from_prev_m)
                   FROM STDIN"""
            ) as copy:
                for stop in stops:
                    copy.write_row(
                        (plan_id, stop["truck_id"], stop["seq"], stop["kind"], stop.get("point_id"),
                         stop.get("station_id"), stop.get("depot_id"), stop["arrival_at"],
                         stop["departure_at"], stop["load_after_kg"], stop["distance_from_prev_m"])
                    )  # fmt: skip
            if unassigned:
                cur.executemany(
                    "INSERT INTO plan_unassigned (plan_id, point_id, reason) VALUES (%s, %s, %s)",
                    [(plan_id, point_id, reason) for point_id, reason in unassigned],
                )
    return plan_id


def get_plan(conn: psycopg.Connection, plan_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT plan_id, district_id, service_date, status, replaces_plan_id, seed, time_limit_s,
                      stats, document, created_by, created_at, published_at
               FROM plan WHERE plan_id = %s""",
            (plan_id,),
        ).fetchone()


# What the plans API shows: a plan's summary (counts of trucks, points, left out) and its
# stops with the names and places of what they visit.
_SUMMARY = """
SELECT p.plan_id, p.district_id, p.service_date, p.status, p.replaces_plan_id, p.seed,
       p.time_limit_s, p.stats, p.created_by, p.created_at, p.published_at,
       (SELECT count(DISTINCT truck_id) FROM plan_stop s WHERE s.plan_id = p.plan_id) AS trucks,
       (SELECT count(*) FROM plan_stop s WHERE s.plan_id = p.plan_id AND s.kind = 'point') AS points,
       (SELECT count(*) FROM plan_unassigned u WHERE u.plan_id = p.plan_id) AS unassigned
FROM plan p
"""

_STOPS = """
SELECT s.truck_id, s.seq, s.kind, coalesce(s.point_id, s.station_id, s.depot_id) AS ref_id,
       coalesce(cp.name, ts.name, d.name) AS name,
       coalesce(cp.lat, ts.lat, d.lat) AS lat, coalesce(cp.lon, ts.lon, d.lon) AS lon,
       s.arrival_at, s.departure_at, s.load_after_kg, s.distance_from_prev_m
FROM plan_stop s
LEFT JOIN collection_point cp ON cp.point_id = s.point_id
LEFT JOIN transfer_station ts ON ts.station_id = s.station_id
LEFT JOIN depot d ON d.depot_id = s.depot_id
WHERE s.plan_id = %(plan_id)s AND (%(truck_id)s::text IS NULL OR s.truck_id = %(truck_id)s)
ORDER BY s.truck_id, s.seq
"""


def plan_summary(conn: psycopg.Connection, plan_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SUMMARY + " WHERE p.plan_id = %s", (plan_id,)).fetchone()


def plan_summaries(
    conn: psycopg.Connection,
    *,
    district_ids: Sequence[str] | None,
    service_date: date | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Newest first; ``None`` filters nothing (``district_ids`` None: every district)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _SUMMARY
            + """ WHERE (%(ds)s::text[] IS NULL OR p.district_id = ANY(%(ds)s))
                   AND (%(d)s::date IS NULL OR p.service_date = %(d)s)
                   AND (%(st)s::text IS NULL OR p.status = %(st)s)
                 ORDER BY p.service_date DESC, p.created_at DESC, p.plan_id DESC
                 LIMIT %(lim)s OFFSET %(off)s""",
            {"ds": district_ids, "d": service_date, "st": status, "lim": limit, "off": offset},
        ).fetchall()


def plan_stops(
    conn: psycopg.Connection, plan_id: int, truck_id: str | None = None
) -> list[dict[str, Any]]:
    """Every stop of the plan (or of one truck) in route order, with names and places."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_STOPS, {"plan_id": plan_id, "truck_id": truck_id}).fetchall()


def plan_unassigned(conn: psycopg.Connection, plan_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT u.point_id, p.name, u.reason FROM plan_unassigned u
               LEFT JOIN collection_point p USING (point_id)
               WHERE u.plan_id = %s ORDER BY u.point_id""",
            (plan_id,),
        ).fetchall()


def truck_columns(conn: psycopg.Connection, truck_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Plate, type and narrow-lane access of these trucks, by id."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT truck_id, plate, truck_type, can_enter_narrow FROM truck
               WHERE truck_id = ANY(%s)""",
            (list(truck_ids),),
        ).fetchall()
    return {r["truck_id"]: r for r in rows}


def latest_plan_id(conn: psycopg.Connection, district_id: str, service_date: date) -> int | None:
    """The published plan of the day, else the newest draft."""
    row = conn.execute(
        """SELECT plan_id FROM plan WHERE district_id = %s AND service_date = %s AND status <> 'superseded'
           ORDER BY (status = 'published') DESC, created_at DESC LIMIT 1""",
        (district_id, service_date),
    ).fetchone()
    return int(row[0]) if row else None


def publish(conn: psycopg.Connection, plan_id: int) -> None:
    """Make this plan the day's published plan; the previous one becomes superseded."""
    with conn.transaction():
        row = conn.execute(
            "SELECT district_id, service_date FROM plan WHERE plan_id = %s FOR UPDATE", (plan_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"plan {plan_id} does not exist")
        conn.execute(
            """UPDATE plan SET status = 'superseded'
               WHERE district_id = %s AND service_date = %s AND status = 'published' AND plan_id <> %s""",
            (row[0], row[1], plan_id),
        )
        conn.execute(
            "UPDATE plan SET status = 'published', published_at = now() WHERE plan_id = %s",
            (plan_id,),
        )


def create_job(
    conn: psycopg.Connection,
    *,
    kind: str,
    district_id: str,
    service_date: date,
    request: dict[str, Any],
    requested_by: str | None,
) -> int:
    row = conn.execute(
        """INSERT INTO plan_job (kind, district_id, service_date, request, requested_by)
           VALUES (%s, %s, %s, %s, %s) RETURNING job_id""",
        (kind, district_id, service_date, Jsonb(request), requested_by),
    ).fetchone()
    assert row is not None
    return int(row[0])


def set_engine_job(conn: psycopg.Connection, job_id: int, engine_job_id: int) -> None:
    conn.execute(
        "UPDATE plan_job SET engine_job_id = %s WHERE job_id = %s", (engine_job_id, job_id)
    )


def delete_job(conn: psycopg.Connection, job_id: int) -> None:
    """Forget a job the engine refused to queue (nothing ran)."""
    conn.execute("DELETE FROM plan_job WHERE job_id = %s", (job_id,))


def start_job(conn: psycopg.Connection, job_id: int, *, worker: str) -> None:
    conn.execute(
        """UPDATE plan_job SET state = 'running', worker = %s, started_at = now(),
                               progress = 0, message = 'starting'
           WHERE job_id = %s""",
        (worker, job_id),
    )


def update_job(
    conn: psycopg.Connection,
    job_id: int,
    *,
    state: str,
    progress: float,
    message: str | None = None,
    plan_id: int | None = None,
    error: Refused | None = None,
) -> None:
    conn.execute(
        """UPDATE plan_job SET state = %s, progress = %s, message = coalesce(%s, message),
                               plan_id = coalesce(%s, plan_id),
                               error_code = %s, error_params = %s,
                               finished_at = CASE WHEN %s IN ('done', 'failed', 'cancelled') THEN now() END
           WHERE job_id = %s""",
        (
            state, progress, message, plan_id,
            error.code if error else None, Jsonb(dict(error.params)) if error else None,
            state, job_id,
        ),
    )  # fmt: skip


def plan_of_job(conn: psycopg.Connection, job_id: int) -> int | None:
    """The plan a job stored (a retried job finds what an earlier attempt stored)."""
    row = conn.execute("SELECT plan_id FROM plan WHERE plan_job_id = %s", (job_id,)).fetchone()
    return int(row[0]) if row else None


# A job's state: the engine's while it has the job (it knows when a worker died),
# ClearDay's own record otherwise. The message of a job failed by the engine (its
# worker died too often) says so.
_JOB = """
SELECT j.job_id, j.kind, j.district_id, j.service_date,
       CASE WHEN e.id IS NULL AND j.engine_job_id IS NULL AND j.state = 'queued'
                 AND j.created_at < now() - interval '1 minute' THEN 'failed'
            WHEN e.id IS NULL THEN j.state
            WHEN e.status = 'doing' AND e.abort_requested THEN 'cancelling'
            WHEN e.status = 'todo' THEN 'queued'
            WHEN e.status = 'doing' THEN 'running'
            WHEN e.status = 'succeeded' THEN 'done'
            WHEN e.status = 'failed' THEN 'failed'
            ELSE 'cancelled' END AS state,
       j.progress,
       CASE WHEN e.id IS NULL AND j.engine_job_id IS NULL AND j.state = 'queued'
                 AND j.created_at < now() - interval '1 minute'
            THEN 'failed: never queued (the process queueing it stopped)'
            WHEN e.status = 'failed' AND j.state <> 'failed'
            THEN format('failed: the worker running it stopped (%%s attempts)', e.attempts + 1)
            WHEN e.status IN ('cancelled', 'aborted') AND j.state <> 'cancelled'
            THEN 'cancelled' ELSE j.message END AS message,
       CASE WHEN e.id IS NULL AND j.engine_job_id IS NULL AND j.state = 'queued'
                 AND j.created_at < now() - interval '1 minute' THEN 'plan_never_queued'
            WHEN e.status = 'failed' AND j.state <> 'failed' THEN 'plan_worker_died'
            ELSE j.error_code END AS error_code,
       CASE WHEN e.status = 'failed' AND j.state <> 'failed'
            THEN jsonb_build_object('attempts', e.attempts + 1)
            ELSE j.error_params END AS error_params,
       j.plan_id, j.requested_by, j.worker, e.priority,
       -- the engine counts an attempt when it ends
       CASE WHEN e.status IN ('todo', 'doing') THEN e.attempts + 1
            ELSE greatest(coalesce(e.attempts, 1), 1) END AS attempt,
       j.created_at, j.started_at, j.finished_at, j.engine_job_id, j.request
FROM plan_job j LEFT JOIN procrastinate_jobs e ON e.id = j.engine_job_id
"""


def settle_engine_states(conn: psycopg.Connection) -> int:
    """Copy the final state the engine knows (and ClearDay's record does not: a job
    cancelled while queued, failed after its worker died too often) into `plan_job`,
    so the record stays right once the engine's row is deleted. Returns the count."""
    cur = conn.execute(
        """UPDATE plan_job p
              SET state = v.state, message = v.message, error_code = v.error_code,
                  error_params = v.error_params, finished_at = coalesce(p.finished_at, now())
             FROM ("""
        + _JOB
        + """) v
            WHERE v.job_id = p.job_id AND v.state IN ('done', 'failed', 'cancelled')
              AND p.state NOT IN ('done', 'failed', 'cancelled')""",
        (),  # with parameters, so the view's %% reads as one %
    )
    return cur.rowcount


def get_job(conn: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_JOB + " WHERE j.job_id = %s", (job_id,)).fetchone()


def list_jobs(
    conn: psycopg.Connection,
    *,
    district_ids: Sequence[str] | None,
    service_date: date | None,
    active_only: bool,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM (" + _JOB + """) q
              WHERE (%(ds)s::text[] IS NULL OR district_id = ANY(%(ds)s))
                AND (%(d)s::date IS NULL OR service_date = %(d)s)
                AND (NOT %(active)s OR state IN ('queued', 'running', 'cancelling'))
              ORDER BY job_id DESC LIMIT %(lim)s OFFSET %(off)s""",
            {"ds": district_ids, "d": service_date, "active": active_only,
             "lim": limit, "off": offset},
        ).fetchall()  # fmt: skip


def active_job_id(conn: psycopg.Connection, district_id: str, service_date: date) -> int | None:
    """A job queued or running for the district and date, if any."""
    row = conn.execute(
        "SELECT job_id FROM ("
        + _JOB
        + """) q
          WHERE district_id = %s AND service_date = %s
            AND state IN ('queued', 'running', 'cancelling') LIMIT 1""",
        (district_id, service_date),
    ).fetchone()
    return int(row[0]) if row else None


def district_ids(conn: psycopg.Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT district_id FROM district ORDER BY 1")]


def districts_planning_at(conn: psycopg.Connection, at: datetime) -> list[tuple[str, date]]:
    """Districts whose plan hour (local) is the hour of `at`, with their tomorrow."""
    rows = conn.execute(
        """SELECT district_id, ((%(at)s AT TIME ZONE timezone)::date + 1)
             FROM district
            WHERE plan_at_hour = extract(hour FROM %(at)s AT TIME ZONE timezone)
            ORDER BY district_id""",
        {"at": at},
    ).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


async def finish_job(
    conn: psycopg.AsyncConnection, *, job_id: int, state: str, message: str
) -> None:
    """Record how a planning job ended, unless it already has."""
    await conn.execute(
        """UPDATE plan_job SET state = %s, message = %s, finished_at = now()
           WHERE job_id = %s AND state NOT IN ('done', 'failed')""",
        (state, message, job_id),
    )
