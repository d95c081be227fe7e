"""Prometheus metrics of one ingestor process (served on CLEARDAY_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_ROW_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
COMMIT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LAG_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60)


class IngestMetrics:
    """Counters are bumped once per batch, never per message (the hot path stays lean)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "clearday_ingest_messages_received", "MQTT messages taken into a batch", registry=r
        )
        self.acked = Counter(
            "clearday_ingest_messages_acked", "MQTT messages acknowledged after commit", registry=r
        )
        self.rows_written = Counter(
            "clearday_ingest_rows_written",
            "rows inserted, by table (duplicates excluded)",
            ["table"],
            registry=r,
        )
        self.duplicates = Counter(
            "clearday_ingest_duplicates",
            "rows already stored (redelivered messages), by table",
            ["table"],
            registry=r,
        )
        self.dead_letters = Counter(
            "clearday_ingest_dead_letters", "rows written to dead_letter, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.db_errors = Counter(
            "clearday_ingest_db_errors", "failed database attempts (retried)", registry=r
        )
        self.batch_rows = Histogram(
            "clearday_ingest_batch_rows", "rows per committed batch", buckets=BATCH_ROW_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "clearday_ingest_commit_seconds",
            "time to write and commit one batch",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=r,
        )
        self.lag_seconds = Histogram(
            "clearday_ingest_lag_seconds",
            "consumer lag: from receipt of a batch's oldest message to its commit",
            buckets=LAG_SECONDS_BUCKETS,
            registry=r,
        )
        self.inbox = Gauge(
            "clearday_ingest_inbox_messages",
            "messages received but not yet in a batch (bounded by the Receive Maximum)",
            registry=r,
        )
        self.last_commit = Gauge(
            "clearday_ingest_last_commit_timestamp_seconds", "time of the last commit",
            registry=r,
        )  # fmt: skip
        self.connected = Gauge(
            "clearday_ingest_mqtt_connected", "1 while connected to the broker", registry=r
        )

    def serve(self, port: int, *, host: str) -> None:
        """Expose /metrics (no authentication: bind to loopback unless a scraper
        elsewhere must reach it, see CLEARDAY_METRICS_HOST)."""
        start_http_server(port, addr=host, registry=self.registry)
