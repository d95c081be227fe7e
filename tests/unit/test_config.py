"""Settings: validation at the edge, secrets kept out of messages."""

from __future__ import annotations

import pydantic
import pytest

from fleet.alerts.rules import RuleParams
from fleet.alerts.visits import VisitParams
from fleet.alerts.worker import AlertConfig
from fleet.config import (
    MqttTarget,
    NotConfigured,
    Settings,
    StorageSettings,
    redact,
    refusals,
    variables,
)
from fleet.jobs.engine import WorkerConfig


@pytest.mark.parametrize("zone", ["Mars/Base", "A" * 300, "../etc/passwd"])
def test_unknown_or_hostile_time_zones_are_refused_with_a_message(zone: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown time zone"):
        Settings(timezone=zone)


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("mqtt://broker:1883") == "mqtt://broker:1883"


def test_missing_database_url_names_the_variable() -> None:
    with pytest.raises(NotConfigured, match="CLEARDAY_DATABASE_URL is not set"):
        Settings(storage=StorageSettings(database_url=None)).storage.database_dsn()


def test_mqtt_target_parses_tls_credentials_and_default_ports() -> None:
    plain = MqttTarget("mqtt://ingest:s3cret@broker")
    assert (plain.host, plain.port, plain.username, plain.password, plain.tls) == (
        "broker", 1883, "ingest", "s3cret", False,
    )  # fmt: skip
    assert MqttTarget("mqtts://broker").port == 8883
    assert "s3cret" not in repr(plain)
    with pytest.raises(ValueError, match="must start with mqtt://"):
        MqttTarget("http://broker")


def test_a_database_url_broken_by_its_password_is_refused_with_the_fix() -> None:
    """`openssl rand -base64` can put a "/" in the password; hex cannot."""
    with pytest.raises(pydantic.ValidationError, match="openssl rand -hex 24"):
        StorageSettings(database_url="postgresql://clearday:ab/cd+ef@db:5432/clearday")
    with pytest.raises(pydantic.ValidationError, match="percent-encode"):
        StorageSettings(database_url="postgresql://clearday:12/x@db:5432/clearday")
    good = "postgresql://clearday:9f86d081884c7d659a2feaa0c55ad015@db:5432/clearday"
    assert StorageSettings(database_url=good).database_dsn() == good
    encoded = "postgresql://clearday:ab%2Fcd@db:5432/clearday"
    assert StorageSettings(database_url=encoded).database_dsn() == encoded
    assert StorageSettings(database_url="host=db dbname=clearday").database_dsn()


def test_the_flat_variables_set_the_grouped_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments set CLEARDAY_* names; each reaches its group, aliases included."""
    env = {
        "CLEARDAY_DATABASE_URL": "postgresql://u@db:5432/x",
        "CLEARDAY_DATA_DIR": "/srv/state",
        "CLEARDAY_MQTT_URL": "mqtt://broker:1883",
        "CLEARDAY_METRICS_PORT": "0",
        "CLEARDAY_METRICS_HOST": "0.0.0.0",
        "CLEARDAY_TIMEZONE": "Asia/Urumqi",
        "CLEARDAY_INGEST_BATCH_MAX_ROWS": "123",
        "CLEARDAY_JT808_PORT": "7808",
        "CLEARDAY_JT808_METRICS_PORT": "0",
        "CLEARDAY_HTTP_PORT": "8080",
        "CLEARDAY_LOGIN_WINDOW_S": "60",
        "CLEARDAY_WORKER_CONCURRENCY": "3",
        "CLEARDAY_PLAN_PIECES": "engine",
        "CLEARDAY_ALERT_MISSED_GRACE_S": "120",
        "CLEARDAY_ALERT_WEBHOOK_URLS": "https://a.example/h, https://b.example/h",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.storage.database_dsn() == env["CLEARDAY_DATABASE_URL"]
    assert str(s.storage.data_dir) == "/srv/state"
    assert s.ingest.mqtt_dsn() == "mqtt://broker:1883"
    assert (s.ingest.metrics_port, s.metrics_host, s.timezone) == (0, "0.0.0.0", "Asia/Urumqi")
    assert s.ingest.batch_max_rows == 123
    assert (s.jt808.port, s.jt808.metrics_port) == (7808, 0)
    assert (s.web.http_port, s.web.login_window_s) == (8080, 60)
    assert (s.planning.worker_concurrency, s.planning.plan_pieces) == (3, "engine")
    assert s.alerts.missed_grace_s == 120
    assert s.alerts.webhook_url_list == ["https://a.example/h", "https://b.example/h"]
    assert AlertConfig.from_settings(s).rules.missed_grace_s == 120


def test_a_bad_value_is_refused_with_its_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARDAY_ALERT_STOP_SPEED_KMH", "99")
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    assert refusals(caught.value) == [
        "CLEARDAY_ALERT_STOP_SPEED_KMH: Input should be less than or equal to 30"
    ]
    monkeypatch.delenv("CLEARDAY_ALERT_STOP_SPEED_KMH")
    monkeypatch.setenv("CLEARDAY_METRICS_PORT", "many")
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    assert refusals(caught.value)[0].startswith("CLEARDAY_METRICS_PORT: ")


def test_the_pipeline_and_the_workers_take_the_settings_defaults() -> None:
    """One default per threshold: what the settings say unset is what runs unset."""
    defaults = variables()
    assert AlertConfig().station_radius_m == defaults["CLEARDAY_ALERT_STATION_RADIUS_M"]
    assert AlertConfig().ingest_max_past_s == defaults["CLEARDAY_INGEST_MAX_PAST_S"]
    assert RuleParams().missed_grace_s == defaults["CLEARDAY_ALERT_MISSED_GRACE_S"]
    assert VisitParams().stop_speed_kmh == defaults["CLEARDAY_ALERT_STOP_SPEED_KMH"]
    worker = WorkerConfig(name="w")
    assert worker.keep_finished_hours == defaults["CLEARDAY_ENGINE_KEEP_FINISHED_HOURS"]
    assert worker.stalled_after_s == defaults["CLEARDAY_WORKER_STALLED_AFTER_S"]
