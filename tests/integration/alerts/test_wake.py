"""The alert worker wakes when the ingestor commits new fixes (NOTIFY), not at its next
poll: a batch written by the ingestor's writer wakes a waiting worker, a batch that
adds nothing (a redelivery) does not, and a running worker with an hour-long poll
detects a track as soon as it is written."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg

from fleet.alerts import repo, worker
from fleet.config import Settings
from ingest import wire
from ingest.metrics import IngestMetrics
from ingest.writer import Batch, BatchWriter, Db, position_row
from tests.unit.alerts.tracks import at, latlon

from .world import load_domain

# Far longer than any test waits for a wake: a wake within it came from the announcement.
HOUR_S = 3600.0
WAKE_BOUND_S = 60.0


def _batch(minutes: range) -> Batch:
    batch = Batch()
    for k, minute in enumerate(minutes):
        lat, lon = latlon(0.0, 0.0)
        fix = wire.Fix(
            recorded_at=at(f"06:{minute:02d}"), lat=lat, lon=lon, speed_kmh=0.0, accuracy_m=5.0
        )
        batch.messages.append(("t", b"{}"))
        batch.positions.append(position_row("T1", fix))
        batch.positions_src.append(k)
    return batch


def _writer(url: str) -> BatchWriter:
    return BatchWriter(
        Db(url, metrics=IngestMetrics(), stop=threading.Event()), now=lambda: datetime.now(UTC)
    )


def test_a_committed_batch_wakes_the_waiting_worker_and_a_redelivery_does_not(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_domain(conn)
    signal = worker.DataSignal(database_url)
    signal.listen()
    stop = threading.Event()
    writer = _writer(database_url)
    try:
        assert signal.wait(0.2, stop) is False  # nothing written: the poll runs out
        assert writer.write(_batch(range(10, 15))).positions_inserted == 5
        assert signal.wait(WAKE_BOUND_S, stop) is True
        # The same fixes again (a redelivery): nothing new, nothing announced.
        assert writer.write(_batch(range(10, 15))).positions_inserted == 0
        assert signal.wait(0.2, stop) is False
        # Two batches before the worker waits again: it wakes at once.
        writer.write(_batch(range(20, 22)))
        writer.write(_batch(range(22, 24)))
        assert signal.wait(WAKE_BOUND_S, stop) is True
    finally:
        writer.close()
        signal.close()


def test_a_stop_ends_the_wait(database_url: str) -> None:
    signal = worker.DataSignal(database_url)
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert signal.wait(HOUR_S, stop) is False
    assert time.monotonic() - started < WAKE_BOUND_S
    signal.close()


def test_a_running_worker_detects_a_track_when_it_is_written(database_url: str) -> None:
    """Interval an hour: the stay can only be found this soon because the write woke it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_domain(conn)
    w = worker.Worker(
        database_url,
        worker.AlertConfig.from_settings(Settings()),
        clock=lambda: at("06:30"),
        interval_s=HOUR_S,
    )
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()
    writer = _writer(database_url)
    try:
        deadline = time.monotonic() + WAKE_BOUND_S
        with psycopg.connect(database_url, autocommit=True) as conn:
            # The worker's first tick (nothing yet) has set the district's watermark:
            # from here on only a wake (or an hour) brings another tick.
            while repo.get_watermark(conn, "district:d1") is None:
                assert time.monotonic() < deadline, "the worker's first tick never came"
                time.sleep(0.05)
            writer.write(_batch(range(10, 16)))
            stays = 0
            while stays == 0 and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM visit WHERE truck_id = 'T1' AND kind = 'stay'"
                ).fetchone()
                stays = int(row[0]) if row else 0
                time.sleep(0.1)
        assert stays == 1
    finally:
        stop.set()
        thread.join(WAKE_BOUND_S)
        writer.close()
    assert not thread.is_alive()
