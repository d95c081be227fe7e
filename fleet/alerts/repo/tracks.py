"""A truck's track and what was detected on it: fixes, device events, visits, silences
and the truck-day summary (first and last fix)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from fleet.alerts.visits import DeviceEvent, Fix, Gap, Visit


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
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """WITH fresh AS (
                   SELECT truck_id, recorded_at, received_at FROM position
                    WHERE received_at > %(since)s AND recorded_at >= %(recorded_since)s
                   UNION ALL
                   SELECT truck_id, recorded_at, received_at FROM device_event
                    WHERE received_at > %(since)s AND recorded_at >= %(recorded_since)s)
               SELECT f.truck_id, (f.recorded_at AT TIME ZONE d.timezone)::date AS service_date,
                      min(f.recorded_at) AS earliest, max(f.received_at) AS received
                 FROM fresh f JOIN truck t USING (truck_id)
                 JOIN district d ON d.district_id = t.district_id
                WHERE %(district)s::text IS NULL OR t.district_id = %(district)s
                GROUP BY 1, 2""",
            {"since": since, "recorded_since": recorded_since, "district": district_id},
        ).fetchall()
    latest = max((r["received"] for r in rows), default=None)
    return [(r["truck_id"], r["service_date"], r["earliest"], r["received"]) for r in rows], latest


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
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """WITH w AS (
                   SELECT greatest(%(day)s, least(%(ws0)s, coalesce(
                              (SELECT min(arrived_at) FROM visit
                                WHERE truck_id = %(t)s AND service_date = %(d)s AND kind = 'stay'
                                  AND departed_at >= %(ws0)s - interval '5 minutes'),
                              %(ws0)s))) AS ws)
               SELECT w.ws AS replace_from,
                      (SELECT max(recorded_at) FROM position
                        WHERE truck_id = %(t)s AND recorded_at < w.ws
                          AND recorded_at >= %(day)s) AS context_from
                 FROM w""",
            {"day": day_start, "ws0": ws0, "t": truck_id, "d": service_date},
        ).fetchone()
    assert row is not None
    ws = row["replace_from"]
    return ws, row["context_from"] if row["context_from"] is not None else ws


def fixes(conn: psycopg.Connection, *, truck_id: str, start: datetime, end: datetime) -> list[Fix]:
    with conn.cursor(row_factory=class_row(Fix)) as cur:
        return cur.execute(
            """SELECT recorded_at AS at, lat, lon, speed_kmh, accuracy_m FROM position
                WHERE truck_id = %s AND recorded_at >= %s AND recorded_at < %s
                ORDER BY recorded_at""",
            (truck_id, start, end),
        ).fetchall()


def events(
    conn: psycopg.Connection, *, truck_id: str, start: datetime, end: datetime
) -> list[DeviceEvent]:
    with conn.cursor(row_factory=class_row(DeviceEvent)) as cur:
        return cur.execute(
            """SELECT recorded_at AS at, kind, point_id, station_id, rfid_tag, weight_kg
                 FROM device_event
                WHERE truck_id = %s AND recorded_at >= %s AND recorded_at < %s
                ORDER BY recorded_at""",
            (truck_id, start, end),
        ).fetchall()


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
    _insert_visits(
        conn, truck_id, service_date, [v for v in visits if v.arrived_at >= replace_from]
    )
    _insert_gaps(conn, truck_id, service_date, [g for g in gaps if g.start_at >= gaps_from])


def _insert_visits(
    conn: psycopg.Connection, truck_id: str, service_date: date, visits: Sequence[Visit]
) -> None:
    if visits:
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
                    for v in visits
                ],
            )


def _insert_gaps(
    conn: psycopg.Connection, truck_id: str, service_date: date, gaps: Sequence[Gap]
) -> None:
    if gaps:
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
                    for g in gaps
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


def trucks_with_data(
    conn: psycopg.Connection, *, service_date: date, district_id: str | None
) -> list[str]:
    """The trucks (of `district_id`, or all) with fixes, events or visits on a service date."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT t.truck_id FROM truck t JOIN district d USING (district_id)
                WHERE (%(district)s::text IS NULL OR t.district_id = %(district)s)
                  AND (EXISTS (SELECT 1 FROM position p WHERE p.truck_id = t.truck_id
                                 AND p.recorded_at >= (%(date)s::date)::timestamp AT TIME ZONE d.timezone
                                 AND p.recorded_at < (%(date)s::date + 1)::timestamp AT TIME ZONE d.timezone)
                       OR EXISTS (SELECT 1 FROM device_event e WHERE e.truck_id = t.truck_id
                                 AND e.recorded_at >= (%(date)s::date)::timestamp AT TIME ZONE d.timezone
                                 AND e.recorded_at < (%(date)s::date + 1)::timestamp AT TIME ZONE d.timezone)
                       OR EXISTS (SELECT 1 FROM visit v WHERE v.truck_id = t.truck_id
                                 AND v.service_date = %(date)s))
                ORDER BY t.truck_id""",
            {"district": district_id, "date": service_date},
        ).fetchall()
    return [r["truck_id"] for r in rows]


_VISIT_COLS = """truck_id, kind, nullif(site_kind, 'none') AS site_kind,
                 nullif(site_id, '') AS site_id, arrived_at, departed_at, dwell_s, is_open,
                 fixes, distance_m, speed_kmh, evidence, end_seen, confidence, lat, lon"""


def _visit(row: dict[str, Any]) -> Visit:
    evidence = tuple(
        DeviceEvent(
            at=datetime.fromisoformat(e["at"]),
            kind=e["kind"],
            point_id=e.get("point_id"),
            station_id=e.get("station_id"),
            rfid_tag=e.get("rfid_tag"),
            weight_kg=e.get("weight_kg"),
        )
        for e in (row["evidence"] or [])
    )
    return Visit(**{**row, "evidence": evidence})


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
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT {_VISIT_COLS} FROM visit
                 WHERE service_date = %(d)s
                   AND (truck_id = ANY(%(t)s)
                        OR (site_kind = 'point' AND site_id = ANY(%(p)s)
                            AND NOT truck_id = ANY(%(x)s)))
                 ORDER BY arrived_at, truck_id""",
            {"d": service_date, "t": list(truck_ids), "p": list(point_ids),
             "x": list(exclude_trucks)},
        ).fetchall()  # fmt: skip
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
