"""The unauthenticated metrics endpoint listens on loopback unless told otherwise."""

from __future__ import annotations

import psutil
from prometheus_client import CollectorRegistry

from fleet.config import Settings
from fleet.devservers import free_port
from ingest.metrics import IngestMetrics


def test_metrics_listen_on_loopback_by_default() -> None:
    port = free_port()
    IngestMetrics(CollectorRegistry()).serve(port, host=Settings().metrics_host)
    listening = [
        c.laddr
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
