"""Settings: validation at the edge, secrets kept out of messages."""

from __future__ import annotations

import pydantic
import pytest

from fleet.config import MqttTarget, NotConfigured, Settings, redact


@pytest.mark.parametrize("zone", ["Mars/Base", "A" * 300, "../etc/passwd"])
def test_unknown_or_hostile_time_zones_are_refused_with_a_message(zone: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown time zone"):
        Settings(timezone=zone)


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact("mqtt://broker:1883") == "mqtt://broker:1883"


def test_missing_database_url_names_the_variable() -> None:
    with pytest.raises(NotConfigured, match="CLEARDAY_DATABASE_URL is not set"):
        Settings(database_url=None).database_dsn()


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
        Settings(database_url="postgresql://clearday:ab/cd+ef@db:5432/clearday")
    with pytest.raises(pydantic.ValidationError, match="percent-encode"):
        Settings(database_url="postgresql://clearday:12/x@db:5432/clearday")
    good = "postgresql://clearday:9f86d081884c7d659a2feaa0c55ad015@db:5432/clearday"
    assert Settings(database_url=good).database_dsn() == good
    encoded = "postgresql://clearday:ab%2Fcd@db:5432/clearday"
    assert Settings(database_url=encoded).database_dsn() == encoded
    assert Settings(database_url="host=db dbname=clearday").database_dsn()
