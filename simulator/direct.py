"""Emissions written straight into `position` and `device_event`, without a broker or
an ingestor: for benchmarks and tests that need a simulated day in the database fast
(the live path is simulator/mqtt.py → `clearday ingest`)."""

from __future__ import annotations

from typing import Any

import psycopg

from simulator.city import City
from simulator.trucks import Emission


class DirectSink:
    """Writes emissions straight into position / device_event (no broker, no ingestor)."""

    def __init__(self, url: str, city: City) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.truck_of = {t.terminal_id: t.id for t in city.trucks}
        self.fixes: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []

    def send(self, em: Emission) -> None:
        truck = self.truck_of[em.terminal_id]
        for f in em.fixes:
            self.fixes.append((truck, f.recorded_at, f.lat, f.lon, f.speed_kmh, f.heading_deg,
                               f.accuracy_m, f.odometer_km, f.ignition, f.load_state, f.seq))  # fmt: skip
        for e in em.events:
            self.events.append(
                (truck, e.recorded_at, e.kind, e.point_id, e.station_id, e.rfid_tag, e.weight_kg)
            )

    def flush(self) -> None:
        with self.conn.transaction():
            if self.fixes:
                self.conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS fix_in (LIKE position INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                with (
                    self.conn.cursor() as cur,
                    cur.copy(
                        """COPY fix_in (truck_id, recorded_at, lat, lon, speed_kmh, heading_deg, accuracy_m,
                                    odometer_km, ignition, load_state, seq) FROM STDIN"""
                    ) as copy,
                ):
                    for row in self.fixes:
                        copy.write_row(row)
                self.conn.execute(
                    "INSERT INTO position SELECT * FROM fix_in ON CONFLICT DO NOTHING"
                )
            if self.events:
                with self.conn.cursor() as cur:
                    cur.executemany(
                        """INSERT INTO device_event (truck_id, recorded_at, kind, point_id, station_id,
                                                     rfid_tag, weight_kg)
                           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                        self.events,
                    )
        self.fixes, self.events = [], []

    def close(self) -> None:
        self.conn.close()
