"""Settings for every ClearDay process, read once per entry point from CLEARDAY_* variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Built by each entry point and passed down; services never read the environment."""

    model_config = SettingsConfigDict(env_prefix="CLEARDAY_", env_file=None, extra="ignore")

    # Where the data lives. Unset means "start private servers" for the demo and tests;
    # other commands then refuse with a message saying which variable to set.
    database_url: SecretStr | None = None
    mqtt_url: SecretStr | None = None
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path(".clearday")
    log_level: str = "INFO"

    # HTTP API / dashboard
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    # --- API, access control and dashboard (issue 7; fleet/web, fleet/auth) ---
    auth_token_ttl_s: int = Field(12 * 3600, ge=60, le=90 * 24 * 3600)
    http_db_pool_size: int = Field(20, ge=2, le=200)
    # A truck whose latest fix is older than this shows as offline on the live map.
    live_offline_after_s: int = Field(300, ge=10)
    live_poll_interval_s: float = Field(1.0, gt=0, le=60)
    # Latest positions are read at most this often per API process and shared by every
    # request (0: read the database on every request).
    live_snapshot_max_age_s: float = Field(1.0, ge=0, le=60)
    # Optional raster tiles drawn under the district's own roads, e.g.
    # https://tile.openstreetmap.org/{z}/{x}/{y}.png; unset = roads only (offline).
    map_tile_url: str | None = None
    map_tile_attribution: str = ""
    # Coordinate system of those tiles: AMap/Tencent tiles are GCJ-02, so the
    # dashboard shifts WGS-84 data for display when this is "gcj02".
    map_tile_crs: Literal["wgs84", "gcj02"] = "wgs84"
    # --- end issue 7 ---

    # --- hostile clients (issue 14): body limits, login throttle, metrics, docs ---
    # Largest request body per route, refused with 413 before authentication runs.
    http_max_body_bytes: int = Field(1_048_576, ge=1024)  # every JSON route not below
    http_max_login_body_bytes: int = Field(8192, ge=1024)
    http_max_import_body_bytes: int = Field(64 * 1_048_576, ge=1024)
    # Failed logins per (user name, address) and per address within the window; past
    # either, that pair or that address waits for the window to pass (429).
    login_max_failures: int = Field(10, ge=1, le=1000)
    login_max_failures_per_address: int = Field(50, ge=1, le=100_000)
    login_window_s: int = Field(900, ge=10, le=86_400)
    # --- end issue 14 block ---

    # Ingest tuning (issue 3); each constant carries its unit.
    ingest_batch_max_rows: int = Field(5000, ge=1)
    ingest_batch_max_age_s: float = Field(0.5, gt=0, le=1.0)
    # MQTT 5 shared-subscription group for N ingestors; "" = a plain subscription.
    # Default "" (ingest owner): Mosquitto 2.0 does not restore $share subscriptions
    # from persistence, so after a broker restart messages arriving before the
    # ingestors re-subscribe are dropped; a plain persistent subscription is restored
    # and loses nothing. Use a group with a broker that persists shared subscriptions
    # (EMQX, HiveMQ) - see docs/ingest.md.
    ingest_share_group: str = ""
    ingest_client_id: str | None = None
    ingest_max_payload_bytes: int = Field(262_144, ge=256)
    ingest_max_future_s: int = Field(300, ge=0)
    ingest_max_past_s: int = Field(7 * 24 * 3600, ge=0)
    # --- ingest (issue 3), added by the ingest owner --------------------------------
    # MQTT 5 Receive Maximum: unacked messages the broker may have in flight to one
    # ingestor. Keep it >= 2 x ingest_batch_max_rows so one batch fills while the
    # previous one commits (the broker default window of 20 stalls batching).
    ingest_receive_maximum: int = Field(20_000, ge=1, le=65_535)
    # How long the broker keeps a stopped ingestor's session (and queues for it).
    ingest_session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    ingest_keepalive_s: int = Field(30, ge=5)
    # Flush a batch early once no message is waiting and it is at least this old:
    # low latency at light load, full batches (up to the size / age limits) under load.
    ingest_batch_linger_s: float = Field(0.05, ge=0, le=1.0)
    # Database connections committing batches in parallel.
    ingest_writers: int = Field(2, ge=1, le=16)
    # A redelivered message that was in hand this many times when the ingestor
    # stopped is quarantined (dead letter `quarantined`, raw bytes kept) undecoded.
    ingest_max_attempts: int = Field(3, ge=1, le=100)
    # --- end ingest block ------------------------------------------------------------
    # --- JT/T 808 gateway (issue 18; ingest/jt808, docs/jt808.md) ---------------------
    jt808_host: str = "0.0.0.0"  # terminals reach it over the mobile network / APN
    jt808_port: int = Field(6808, ge=1, le=65_535)
    # Gateway processes sharing the port (SO_REUSEPORT), each on a core of its own.
    jt808_processes: int = Field(1, ge=1, le=64)
    # A connection that sends nothing (not even a heartbeat) for this long is closed.
    jt808_idle_timeout_s: float = Field(180.0, gt=0, le=3600)
    # Zone of the terminals' BCD times: the standard's GMT+8 unless a fleet differs.
    jt808_device_utc_offset_min: int = Field(480, ge=-720, le=840)
    # How long a location waits for the broker's PUBACK; without it the terminal gets
    # no acknowledgement and sends the location again later.
    jt808_publish_timeout_s: float = Field(10.0, gt=0, le=120)
    # Bad frames in a row after which a connection counts as unsynchronisable.
    jt808_max_bad_frames: int = Field(16, ge=1, le=10_000)
    jt808_max_connections: int = Field(20_000, ge=1)
    # A sub-packaged message still incomplete this long after its first packet: the
    # missing packets are asked for again (0x8003); it is dropped after 60 s.
    jt808_resend_after_s: float = Field(10.0, gt=0, le=60)
    # Queued commands (0x8103, 0x8201) reach the gateway by notification; this is how
    # often it also looks for them, in case a notification was missed.
    jt808_command_poll_s: float = Field(30.0, gt=0, le=3600)
    # The gateway's Prometheus endpoint (on metrics_host); 0 disables it.
    jt808_metrics_port: int = Field(9465, ge=0, le=65_535)
    # --- end JT/T 808 block -----------------------------------------------------------
    # --- job engine and workers (issue 17; fleet/jobs, docs/scaling.md) ----------------
    # Shown beside each job it runs; default host:pid.
    worker_name: str = ""
    # Planning jobs one `clearday worker` runs at a time (each solve takes a core).
    worker_concurrency: int = Field(1, ge=1, le=64)
    # A worker beats every heartbeat_s; one silent for stalled_after_s is taken for
    # dead and its jobs are queued again (heartbeat several times within it).
    worker_heartbeat_s: float = Field(10.0, gt=0, le=300)
    worker_stalled_after_s: float = Field(30.0, gt=0, le=3600)
    # Planning jobs the API process runs itself (single machine); 0 = none, jobs wait
    # for `clearday worker` processes.
    api_worker_concurrency: int = Field(1, ge=0, le=64)
    # Solver budget of the plans queued at each district's plan hour (plan_at_hour).
    scheduled_plan_time_limit_s: float = Field(300.0, ge=1, le=3600)
    # Alert evaluation is shared by district: a worker's leases last this long unless
    # renewed (every tick), so a stopped worker's districts move on within about it.
    alert_lease_s: float = Field(30.0, ge=1, le=3600)
    # Where the pieces of a decomposed district (routing.decompose) run: "local", in
    # the planning job's own machine's processes; "engine", as jobs any worker takes
    # (fleet/jobs/pieces.py), each worker solving plan_piece_concurrency at a time.
    plan_pieces: Literal["local", "engine"] = "local"
    plan_piece_concurrency: int = Field(1, ge=0, le=64)
    # A district above this many points is decomposed; unset, the planner's own rule
    # (routing.options.SolverOptions.points_per_solve).
    plan_max_points_per_solve: int | None = Field(None, ge=10, le=100_000)
    # Finished engine jobs (and pieces) are deleted after this many hours.
    engine_keep_finished_hours: int = Field(168, ge=0, le=24 * 366)
    # --- end job engine block ----------------------------------------------------------
    metrics_port: int = 9464  # 0 disables the Prometheus endpoint
    # The endpoint has no authentication: loopback unless a scraper elsewhere needs it.
    metrics_host: str = "127.0.0.1"
    # --- alerts, clearance ledger and cases (issue 6; owned by fleet/alerts) ---------
    # What each threshold means: docs/alerts.md.
    alert_missed_grace_s: int = Field(900, ge=0)  # after a point's window end
    alert_deadline_grace_s: int = Field(0, ge=0)  # after the clearance deadline (日清)
    alert_offline_after_s: int = Field(600, ge=60)  # terminal silent during a shift
    alert_stationary_after_s: int = Field(1200, ge=60)  # stopped at no known site
    alert_not_unloaded_grace_s: int = Field(3600, ge=0)  # after shift end, still loaded
    alert_min_dwell_fraction: float = Field(0.5, gt=0, le=1)  # of service time, if no min_dwell_s
    alert_station_min_dwell_fraction: float = Field(0.3, gt=0, le=1)  # of tipping time
    alert_stop_speed_kmh: float = Field(3.0, gt=0, le=30)
    alert_station_radius_m: float = Field(50.0, gt=0)
    alert_depot_radius_m: float = Field(60.0, gt=0)
    alert_hidden_visit_speed_kmh: float = Field(60.0, gt=0)
    alert_case_due_h_high: float = Field(4.0, gt=0)  # 按期结案: time to close a case
    alert_case_due_h_normal: float = Field(24.0, gt=0)
    alert_escalation_repeat_h: float = Field(24.0, gt=0)
    alert_worker_interval_s: float = Field(2.0, gt=0, le=60)
    # Comma-separated http(s) URLs that receive new and escalated alerts as JSON.
    alert_webhook_urls: str = ""
    alert_webhook_secret: SecretStr | None = None  # signs each body (X-ClearDay-Signature)
    alert_webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    alert_webhook_max_attempts: int = Field(8, ge=1, le=50)

    @field_validator("alert_webhook_urls")
    @classmethod
    def _webhook_urls(cls, value: str) -> str:
        for url in value.replace(",", " ").split():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {redact(url)!r}")
        return value

    @property
    def alert_webhook_url_list(self) -> list[str]:
        return self.alert_webhook_urls.replace(",", " ").split()

    # --- end alerts block -----------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _parseable_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        """A password with `/`, `?`, `#` or `@` (e.g. from `openssl rand -base64`) breaks
        a postgresql:// URL in ways psycopg reports obscurely: say so here."""
        if value is None:
            return value
        url = value.get_secret_value()
        if url.startswith(("postgresql://", "postgres://")):
            parts = urlsplit(url)
            try:
                _ = parts.port  # what follows a ":" in a password cut short is no port
                cut = "@" in url and "@" not in parts.netloc  # the "@" went to the path
            except ValueError:
                cut = True
            if cut:
                raise ValueError(
                    "CLEARDAY_DATABASE_URL cannot be parsed: percent-encode / ? # @ : in the "
                    "password, or generate one without them (openssl rand -hex 24)"
                )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def database_dsn(self) -> str:
        if self.database_url is None:
            raise NotConfigured("CLEARDAY_DATABASE_URL", "postgresql://user@host:5432/clearday")
        return self.database_url.get_secret_value()

    @property
    def worker_name_or_default(self) -> str:
        return self.worker_name or f"{socket.gethostname()}:{os.getpid()}"

    def mqtt_dsn(self) -> str:
        if self.mqtt_url is None:
            raise NotConfigured("CLEARDAY_MQTT_URL", "mqtt://user:password@host:1883")
        return self.mqtt_url.get_secret_value()


class NotConfigured(RuntimeError):
    def __init__(self, variable: str, example: str) -> None:
        super().__init__(f"{variable} is not set; set it to e.g. {example}")


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class MqttTarget:
    """Where and how to reach the broker, parsed from mqtt://user:pass@host:port or mqtts://."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {redact(url)!r}")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {redact(url)!r}")
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host = parts.hostname
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = parts.username
        self.password = parts.password
        self.redacted = redact(url)

    def __repr__(self) -> str:
        return f"MqttTarget({self.redacted})"
