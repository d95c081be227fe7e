"""Fixtures for the ingest tests: a district with trucks, a private broker per test
(so no test sees another's sessions or shared-subscription groups), and an
in-process ingestor for the functional tests (the fault tests use real processes)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.devservers import PrivateMosquitto
from ingest.metrics import IngestMetrics
from ingest.service import Ingestor
from tests.integration.ingest.support import add_fleet
from tests.settings import flat_settings


@pytest.fixture
def fleet_url(database_url: str) -> str:
    """A migrated database with district baohe and trucks T0..T9 (GPS-T0..GPS-T9)."""
    add_fleet(database_url)
    return database_url


@pytest.fixture
def broker(mosquitto_factory: Callable[[], PrivateMosquitto]) -> PrivateMosquitto:
    return mosquitto_factory()


class RunningIngestor:
    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.ingestor.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> RunningIngestor:
        self.thread.start()
        assert self.ingestor.consumer.wait_connected(15), self.ingestor.consumer.fatal
        return self

    def stop(self) -> None:
        self.ingestor.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "ingestor did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def start_ingestor(
    fleet_url: str, broker: PrivateMosquitto, tmp_path: Path
) -> Iterator[Callable[..., RunningIngestor]]:
    started: list[RunningIngestor] = []

    def start(**overrides: object) -> RunningIngestor:
        values: dict[str, object] = {
            "database_url": fleet_url,
            "mqtt_url": broker.url,
            "metrics_port": 0,
            "ingest_client_id": f"test-ingest-{len(started)}",
            "ingest_batch_max_age_s": 0.2,
            "data_dir": tmp_path / "state",
        }
        values.update(overrides)
        running = RunningIngestor(Ingestor(flat_settings(**values), metrics=IngestMetrics()))  # type: ignore[arg-type]
        started.append(running)
        return running.start()

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
