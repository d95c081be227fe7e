"""A small district whose day is worked out by hand, loaded into a real database.

    y=+300  ......... T1's way home ..........................
    y=0     D1(-500)  P1(0)   P2(400)   P3(800)   P4(1200)   S1(1600)
    y=-300  ......... T2's lane ..............
    P5 at (0, 800): left unassigned by the plan (capacity).

T1 (plan: D1 → P1 → P2 → S1 → D1) serves both points, unloads, goes home.
T2 (plan: D1 → P3 → P4 → S1 → D1) serves P3, never goes to P4 and parks loaded.

Expected verdicts at 21:00: P1, P2 cleared and delivered; P3 cleared, not delivered;
P4 missed (not visited); P5 missed (unassigned). Alerts: missed P4 (10:15),
日清 deadline P4 and P5 (20:00), not_unloaded T2 (when it parks).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from tests.unit.alerts.tracks import DAY, Track, at, latlon

POINTS = {  # id: (x, y, stream)
    "P1": (0, 0, "other"),
    "P2": (400, 0, "other"),
    "P3": (800, 0, "recyclable"),
    "P4": (1200, 0, "recyclable"),
    "P5": (0, 800, "other"),
}
ROUTES = {
    "T1": [("start", "D1"), ("point", "P1"), ("point", "P2"), ("station", "S1"), ("end", "D1")],
    "T2": [("start", "D1"), ("point", "P3"), ("point", "P4"), ("station", "S1"), ("end", "D1")],
}


def load_domain(conn: psycopg.Connection, *, district: str = "d1") -> None:
    conn.execute(
        "INSERT INTO district (district_id, name, timezone) VALUES (%s, '包河区', 'Asia/Shanghai')",
        (district,),
    )
    lat, lon = latlon(-500, 0)
    conn.execute(
        "INSERT INTO depot (depot_id, district_id, name, lat, lon) VALUES ('D1', %s, '车场', %s, %s)",
        (district, lat, lon),
    )
    lat, lon = latlon(1600, 0)
    conn.execute(
        """INSERT INTO transfer_station (station_id, district_id, name, lat, lon, streams, tipping_time_s)
           VALUES ('S1', %s, '东部中转站', %s, %s, '{other,recyclable,kitchen}', 600)""",
        (district, lat, lon),
    )
    for pid, (x, y, stream) in POINTS.items():
        lat, lon = latlon(x, y)
        conn.execute(
            """INSERT INTO collection_point (point_id, district_id, name, lat, lon, stream, daily_amount_kg,
                   service_time_s, window_start, window_end, min_dwell_s, clearance_deadline)
               VALUES (%s, %s, %s, %s, %s, %s, 300, 240, '06:00', '10:00', 120, '20:00')""",
            (pid, district, f"{pid} 小区桶站", lat, lon, stream),
        )
    for tid in ("T1", "T2", "T3"):
        conn.execute(
            """INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg, streams, depot_id,
                   terminal_id, shift_start, shift_end)
               VALUES (%s, %s, %s, 'compactor', 8000, '{other,recyclable}', 'D1', %s, '05:00', '17:00')""",
            (tid, district, f"皖A0000{tid[-1]}", f"{tid}-GPS"),
        )


def load_plan(conn: psycopg.Connection, *, district: str = "d1") -> int:
    row = conn.execute(
        """INSERT INTO plan (district_id, service_date, status, document, published_at)
           VALUES (%s, %s, 'published', %s, now()) RETURNING plan_id""",
        (district, DAY, Jsonb({"routes": []})),
    ).fetchone()
    assert row is not None
    plan_id = int(row[0])
    for truck, stops in ROUTES.items():
        for seq, (kind, ref) in enumerate(stops):
            eta = at("06:00", 600 * seq)
            conn.execute(
                """INSERT INTO plan_stop (plan_id, truck_id, seq, kind, point_id, station_id, depot_id,
                                          arrival_at, departure_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    plan_id,
                    truck,
                    seq,
                    kind,
                    ref if kind == "point" else None,
                    ref if kind == "station" else None,
                    ref if kind in ("start", "end") else None,
                    eta,
                    eta,
                ),
            )
    conn.execute(
        "INSERT INTO plan_unassigned (plan_id, point_id, reason) VALUES (%s, 'P5', 'capacity')",
        (plan_id,),
    )
    return plan_id


def track_t1() -> Track:
    t = Track(at("06:00"), x=-500, noise_m=8, seed=21).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30).stay(300).drive(1600, 0, 30).stay(900)
    t.drive(1600, 300, 30).drive(-500, 300, 40).drive(-500, 0, 30).stay(600)
    return t


def track_t2() -> Track:
    t = Track(at("06:05"), x=-500, noise_m=8, seed=22).stay(120)
    t.drive(-500, -300, 30).drive(800, -300, 30).drive(800, 0, 30).stay(300)
    t.drive(800, -300, 30).drive(-500, -300, 40).drive(-500, 0, 30).stay(600)
    return t


def track_t3_serving_p4() -> Track:
    """A spare truck sent to P4 at 09:40 whose terminal was in a blind zone."""
    t = Track(at("09:35"), x=1200, y=-300, noise_m=8, seed=23)
    t.drive(1200, 0, 20).stay(300).drive(1600, 0, 30).stay(700)
    t.drive(1600, 300, 30).drive(-500, 300, 40).drive(-500, 0, 30).stay(600)
    return t


def insert_fixes(conn: psycopg.Connection, truck_id: str, fixes: Sequence[object]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY position (truck_id, recorded_at, lat, lon, speed_kmh, accuracy_m) FROM STDIN"
        ) as copy,
    ):
        for f in fixes:
            copy.write_row((truck_id, f.at, f.lat, f.lon, f.speed_kmh, f.accuracy_m))  # type: ignore[attr-defined]


def load_world(url: str) -> dict[str, Track]:
    tracks = {"T1": track_t1(), "T2": track_t2()}
    with psycopg.connect(url) as conn:
        load_domain(conn)
        load_plan(conn)
        for tid, t in tracks.items():
            insert_fixes(conn, tid, t.fixes)
    return tracks


def evening() -> datetime:
    return at("21:00")
