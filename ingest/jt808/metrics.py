"""Prometheus metrics of one `clearday jt808` process (served on
CLEARDAY_JT808_METRICS_PORT).

The gateway keeps plain counters (:class:`gateway.Counts`, the publisher's totals);
this collector reads them when the endpoint is scraped, so the hot path never takes
a lock or touches a metric object. The PUBACK delay is the one per-message
observation: a bucket count in :class:`LatencyHistogram`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ingest.jt808.broker import Publisher
from ingest.jt808.gateway import Gateway

PUBLISH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LatencyHistogram:
    """Counts per bucket (upper bounds in seconds) and their sum; no lock: it is
    written on the event loop only, and a scrape reading it mid-update is off by one."""

    def __init__(self, buckets: tuple[float, ...] = PUBLISH_SECONDS_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum_s += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway, publisher: Publisher, latency: LatencyHistogram) -> None:
        self.gateway = gateway
        self.publisher = publisher
        self.latency = latency

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        gw, pub, counts = self.gateway, self.publisher, self.gateway.counts
        p = "clearday_jt808_"
        yield GaugeMetricFamily(p + "connections", "open terminal connections", len(gw.sessions))
        yield GaugeMetricFamily(
            p + "terminals_authenticated",
            "terminals with an authenticated connection",
            len(gw.current),
        )
        yield CounterMetricFamily(
            p + "connections_accepted", "terminal connections accepted", counts.connections
        )
        yield CounterMetricFamily(p + "frames", "well-formed frames received", counts.frames)
        bad = CounterMetricFamily(
            p + "bad_frames", "frames refused (each a dead letter), by reason", labels=["reason"]
        )
        for reason, n in sorted(counts.bad_by_reason.items()):
            bad.add_metric([reason], n)
        yield bad
        yield CounterMetricFamily(
            p + "locations_acked",
            "locations acknowledged to terminals after the broker's PUBACK",
            counts.locations_acked,
        )
        yield GaugeMetricFamily(
            p + "acks_pending",
            "location messages sent to the broker and awaiting its PUBACK",
            counts.locations_pending,
        )
        yield GaugeMetricFamily(
            p + "publish_pending", "MQTT messages awaiting a PUBACK or a free slot", pub.pending
        )
        yield CounterMetricFamily(
            p + "published", "MQTT messages the broker acknowledged", pub.published
        )
        yield CounterMetricFamily(
            p + "publish_failed",
            "MQTT messages not acknowledged (refused, timed out, connection lost, no broker)",
            pub.failed,
        )
        batcher = gw.batcher
        yield CounterMetricFamily(
            p + "batches",
            "messages of many terminals' fixes published on the gateway's topic",
            batcher.batches if batcher is not None else 0,
        )
        yield CounterMetricFamily(
            p + "batched_fixes",
            "fixes those messages carried",
            batcher.fixes if batcher is not None else 0,
        )
        yield GaugeMetricFamily(
            p + "mqtt_connected", "1 while connected to the broker", int(pub.connected)
        )
        yield HistogramMetricFamily(
            p + "publish_seconds",
            "from PUBLISH written to PUBACK received",
            buckets=self.latency.cumulative(),
            sum_value=self.latency.sum_s,
        )
        yield GaugeMetricFamily(
            p + "dead_letters_queued",
            "dead letters waiting to be written",
            gw.registry.dead_letters_queued,
        )
        yield CounterMetricFamily(
            p + "dead_letters_lost",
            "dead letters dropped because the queue was full (the database was down)",
            counts.dead_letters_lost,
        )


def registry_for(gateway: Gateway, publisher: Publisher) -> CollectorRegistry:
    """A registry reading the gateway's counters; PUBACK delays start being observed."""
    latency = LatencyHistogram()
    publisher.latency_observer = latency.observe
    registry = CollectorRegistry()
    registry.register(GatewayCollector(gateway, publisher, latency))
    return registry


def serve_metrics(gateway: Gateway, publisher: Publisher, *, port: int, host: str) -> WSGIServer:
    """Expose /metrics (no authentication: loopback unless a scraper elsewhere needs
    it, see CLEARDAY_METRICS_HOST) until the returned server is shut down."""
    server, _ = start_http_server(port, addr=host, registry=registry_for(gateway, publisher))
    return server
