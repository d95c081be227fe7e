"""Settings for every ClearDay process, read once per entry point from CLEARDAY_* variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleet.alerts.ledger import LedgerParams
from fleet.alerts.rules import RuleParams
from fleet.alerts.visits import VisitParams
from fleet.fields import DEFAULT_TIMEZONE

_RULES = RuleParams()
_LEDGER = LedgerParams()
_VISITS = VisitParams()


def _group(env_prefix: str) -> SettingsConfigDict:
    """One concern's settings: read from CLEARDAY_* variables like the whole, and
    settable by field name in code (a field whose variable lies outside the prefix
    names it with ``validation_alias``)."""
    return SettingsConfigDict(
        env_prefix=env_prefix, env_file=None, extra="ignore", validate_by_name=True
    )


class StorageSettings(BaseSettings):
    """Where the data lives. Unset means "start private servers" for the demo and
    tests; other commands then refuse with a message saying which variable to set."""

    model_config = _group("CLEARDAY_")

    database_url: SecretStr | None = None
    # State of the private servers the demo starts.
    data_dir: Path = Path(".clearday")

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

    def database_dsn(self) -> str:
        if self.database_url is None:
            raise NotConfigured("CLEARDAY_DATABASE_URL", "postgresql://user@host:5432/clearday")
        return self.database_url.get_secret_value()


class IngestSettings(BaseSettings):
    """The broker and the ingestor (ingest/, docs/ingest.md); each constant carries its unit."""

    model_config = _group("CLEARDAY_INGEST_")

    # The broker every publisher (terminals, simulator, JT/T 808 gateway) and the
    # ingestor reach.
    mqtt_url: SecretStr | None = Field(None, validation_alias="CLEARDAY_MQTT_URL")
    batch_max_rows: int = Field(5000, ge=1)
    batch_max_age_s: float = Field(0.5, gt=0, le=1.0)
    # Flush a batch early once no message is waiting and it is at least this old:
    # low latency at light load, full batches (up to the size / age limits) under load.
    batch_linger_s: float = Field(0.05, ge=0, le=1.0)
    # MQTT 5 shared-subscription group for N ingestors; "" = a plain subscription.
    # Mosquitto 2.0 does not restore $share subscriptions from persistence, so after
    # a broker restart messages arriving before the ingestors re-subscribe are
    # dropped; a plain persistent subscription is restored and loses nothing. Use a
    # group with a broker that persists shared subscriptions (EMQX, HiveMQ).
    share_group: str = ""
    client_id: str | None = None
    max_payload_bytes: int = Field(262_144, ge=256)
    max_future_s: int = Field(300, ge=0)
    max_past_s: int = Field(7 * 24 * 3600, ge=0)
    # MQTT 5 Receive Maximum: unacked messages the broker may have in flight to one
    # ingestor. Keep it >= 2 x batch_max_rows so one batch fills while the previous
    # one commits (the broker default window of 20 stalls batching).
    receive_maximum: int = Field(20_000, ge=1, le=65_535)
    # How long the broker keeps a stopped ingestor's session (and queues for it).
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    keepalive_s: int = Field(30, ge=5)
    # Database connections committing batches in parallel.
    writers: int = Field(2, ge=1, le=16)
    # A redelivered message that was in hand this many times when the ingestor
    # stopped is quarantined (dead letter `quarantined`, raw bytes kept) undecoded.
    max_attempts: int = Field(3, ge=1, le=100)
    # The ingestor's Prometheus endpoint (on metrics_host); 0 disables it.
    metrics_port: int = Field(9464, validation_alias="CLEARDAY_METRICS_PORT")

    def mqtt_dsn(self) -> str:
        if self.mqtt_url is None:
            raise NotConfigured("CLEARDAY_MQTT_URL", "mqtt://user:password@host:1883")
        return self.mqtt_url.get_secret_value()


class Jt808Settings(BaseSettings):
    """The JT/T 808 gateway (ingest/jt808, docs/jt808.md)."""

    model_config = _group("CLEARDAY_JT808_")

    host: str = "0.0.0.0"  # terminals reach it over the mobile network / APN
    port: int = Field(6808, ge=1, le=65_535)
    # Gateway processes sharing the port (SO_REUSEPORT), each on a core of its own.
    processes: int = Field(1, ge=1, le=64)
    # A connection that sends nothing (not even a heartbeat) for this long is closed.
    idle_timeout_s: float = Field(180.0, gt=0, le=3600)
    # Zone of the terminals' BCD times: the standard's GMT+8 unless a fleet differs.
    device_utc_offset_min: int = Field(480, ge=-720, le=840)
    # How long a location waits for the broker's PUBACK; without it the terminal gets
    # no acknowledgement and sends the location again later.
    publish_timeout_s: float = Field(10.0, gt=0, le=120)
    # Bad frames in a row after which a connection counts as unsynchronisable.
    max_bad_frames: int = Field(16, ge=1, le=10_000)
    max_connections: int = Field(20_000, ge=1)
    # A sub-packaged message still incomplete this long after its first packet: the
    # missing packets are asked for again (0x8003); it is dropped after 60 s.
    resend_after_s: float = Field(10.0, gt=0, le=60)
    # Queued commands (0x8103, 0x8201) reach the gateway by notification; this is how
    # often it also looks for them, in case a notification was missed.
    command_poll_s: float = Field(30.0, gt=0, le=3600)
    # The gateway's Prometheus endpoint (on metrics_host); 0 disables it.
    metrics_port: int = Field(9465, ge=0, le=65_535)
    # The fixes that arrive in one event-loop turn, from any number of terminals, go
    # to the broker as one message on clearday/v1/gateways/{gateway id}/positions
    # (its account must allow it: clearday mqtt-credentials); false: one message per
    # report on the truck's own topic.
    batch_fixes: bool = True


class WebSettings(BaseSettings):
    """The HTTP API, access control and dashboard (fleet/web, fleet/auth, docs/api.md)."""

    model_config = _group("CLEARDAY_")

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    auth_token_ttl_s: int = Field(12 * 3600, ge=60, le=90 * 24 * 3600)
    http_db_pool_size: int = Field(20, ge=2, le=200)
    # Largest request body per route, refused with 413 before authentication runs.
    http_max_body_bytes: int = Field(1_048_576, ge=1024)  # every JSON route not below
    http_max_login_body_bytes: int = Field(8192, ge=1024)
    http_max_import_body_bytes: int = Field(64 * 1_048_576, ge=1024)
    # Failed logins per (user name, address) and per address within the window; past
    # either, that pair or that address waits for the window to pass (429).
    login_max_failures: int = Field(10, ge=1, le=1000)
    login_max_failures_per_address: int = Field(50, ge=1, le=100_000)
    login_window_s: int = Field(900, ge=10, le=86_400)
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


class PlanningSettings(BaseSettings):
    """Planning jobs and the workers that run them (fleet/jobs, docs/scaling.md)."""

    model_config = _group("CLEARDAY_")

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
    # Solver budget of the plans queued at each district's plan hour (plan_at_hour);
    # unset, a day's plan's default, which grows with the district's size.
    scheduled_plan_time_limit_s: float | None = Field(None, ge=1, le=3600)
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

    @property
    def worker_name_or_default(self) -> str:
        return self.worker_name or f"{socket.gethostname()}:{os.getpid()}"


class AlertSettings(BaseSettings):
    """Alerts, the clearance ledger and cases (fleet/alerts). What each threshold
    means: docs/alerts.md. The thresholds the pure cores also use take their defaults
    from the cores' parameters (``RuleParams``, ``LedgerParams``, ``VisitParams``)."""

    model_config = _group("CLEARDAY_ALERT_")

    missed_grace_s: float = Field(_RULES.missed_grace_s, ge=0)  # after a window end
    deadline_grace_s: float = Field(_RULES.deadline_grace_s, ge=0)  # after the deadline (日清)
    offline_after_s: float = Field(_RULES.offline_after_s, ge=60)  # silent during a shift
    stationary_after_s: float = Field(_RULES.stationary_after_s, ge=60)  # at no known site
    # After shift end, still loaded.
    not_unloaded_grace_s: float = Field(_RULES.not_unloaded_grace_s, ge=0)
    min_dwell_fraction: float = Field(0.5, gt=0, le=1)  # of service time, if no min_dwell_s
    station_min_dwell_fraction: float = Field(0.3, gt=0, le=1)  # of tipping time
    stop_speed_kmh: float = Field(_VISITS.stop_speed_kmh, gt=0, le=30)
    station_radius_m: float = Field(50.0, gt=0)
    depot_radius_m: float = Field(60.0, gt=0)
    hidden_visit_speed_kmh: float = Field(_LEDGER.hidden_visit_speed_kmh, gt=0)
    case_due_h_high: float = Field(4.0, gt=0)  # 按期结案: time to close a case
    case_due_h_normal: float = Field(24.0, gt=0)
    escalation_repeat_h: float = Field(24.0, gt=0)
    worker_interval_s: float = Field(2.0, gt=0, le=60)
    # Alert evaluation is shared by district: a worker's leases last this long unless
    # renewed (every tick), so a stopped worker's districts move on within about it.
    lease_s: float = Field(30.0, ge=1, le=3600)
    # Comma-separated http(s) URLs that receive new and escalated alerts as JSON.
    webhook_urls: str = ""
    webhook_secret: SecretStr | None = None  # signs each body (X-ClearDay-Signature)
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(8, ge=1, le=50)

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls(cls, value: str) -> str:
        for url in value.replace(",", " ").split():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {redact(url)!r}")
        return value

    @property
    def webhook_url_list(self) -> list[str]:
        return self.webhook_urls.replace(",", " ").split()


class Settings(BaseSettings):
    """Built by each entry point and passed down; services never read the environment.
    Each concern's settings are a group of their own, read from the same flat
    CLEARDAY_* variables (``variables()`` lists them)."""

    model_config = SettingsConfigDict(env_prefix="CLEARDAY_", env_file=None, extra="ignore")

    timezone: str = DEFAULT_TIMEZONE
    log_level: str = "INFO"
    # Where the Prometheus endpoints listen. They have no authentication: loopback
    # unless a scraper elsewhere needs them.
    metrics_host: str = "127.0.0.1"

    storage: StorageSettings = Field(default_factory=StorageSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    jt808: Jt808Settings = Field(default_factory=Jt808Settings)
    web: WebSettings = Field(default_factory=WebSettings)
    planning: PlanningSettings = Field(default_factory=PlanningSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

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


def _group_models() -> dict[str | None, type[BaseSettings]]:
    """Settings' own fields (key None) and each group's model by its attribute."""
    groups: dict[str | None, type[BaseSettings]] = {None: Settings}
    for name, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings):
            groups[name] = info.annotation
    return groups


GROUPS = _group_models()


def variable(model: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``model``."""
    alias = model.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias.upper()
    return (str(model.model_config.get("env_prefix", "")) + field).upper()


def fields_by_variable() -> dict[str, tuple[str | None, str]]:
    """Every CLEARDAY_* variable → (its group's attribute on Settings, or None for
    Settings' own fields; the field's name)."""
    return {
        variable(model, name): (group, name)
        for group, model in GROUPS.items()
        for name in model.model_fields
        if name not in GROUPS
    }


def variables() -> dict[str, object]:
    """Every CLEARDAY_* variable with its default."""
    return {
        name: GROUPS[group].model_fields[field].get_default(call_default_factory=False)
        for name, (group, field) in fields_by_variable().items()
    }


def refusals(exc: ValidationError) -> list[str]:
    """A settings error as lines that name the variable to fix."""
    model = next((m for m in GROUPS.values() if m.__name__ == exc.title), Settings)
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        where = variable(model, name) if name in model.model_fields else name.upper()
        lines.append(f"{where}: {error['msg']}")
    return lines


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
