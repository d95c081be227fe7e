"""`clearday doctor`: is the database reachable, migrated, with or without TimescaleDB;
is the broker reachable. Each finding is one line a sysadmin can act on."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from fleet import db
from fleet.config import MqttTarget, NotConfigured, Settings, redact

BROKER_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.check:<12} {'ok  ' if self.ok else 'FAIL'}  {self.detail}"


def check_database(url: str) -> list[Finding]:
    try:
        conn = db.connect(url, autocommit=True)
    except db.DatabaseUnavailable as exc:
        text = str(exc)
        if "does not exist" in text:
            hint = "create it (createdb) or fix CLEARDAY_DATABASE_URL"
        elif "password" in text or "authentication" in text:
            hint = "check the user name and password in CLEARDAY_DATABASE_URL"
        else:
            hint = "is the server running and listening on that host and port?"
        return [Finding("database", False, f"{text} — {hint}")]
    with conn:
        version = conn.execute("SHOW server_version").fetchone()
        findings = [
            Finding(
                "database", True, f"PostgreSQL {version[0] if version else '?'} at {redact(url)}"
            )
        ]
        installed = db.timescale_installed(conn)
        if installed:
            findings.append(Finding("timescaledb", True, f"present ({installed})"))
        elif db.timescale_available(conn):
            findings.append(
                Finding("timescaledb", True, "absent (plain PostgreSQL mode); the server has the "
                        "extension: add timescaledb to shared_preload_libraries and migrate a new database to use it")
            )  # fmt: skip
        else:
            findings.append(Finding("timescaledb", True, "absent (plain PostgreSQL mode)"))
        findings.append(_check_migrations(conn))
    return findings


def _check_migrations(conn: psycopg.Connection) -> Finding:
    mode = db.storage_mode(conn)
    if mode is None:
        return Finding("migrations", False, "none applied: run `clearday migrate`")
    pending = db.pending_migrations(conn, mode)
    applied = len(db.applied_migrations(conn))
    if pending:
        names = ", ".join(m.filename for m in pending)
        return Finding(
            "migrations", False, f"{len(pending)} pending ({names}): run `clearday migrate`"
        )
    return Finding("migrations", True, f"up to date ({applied} applied, {mode} storage)")


def check_broker(url: str) -> Finding:
    try:
        target = MqttTarget(url)
    except ValueError as exc:
        return Finding("broker", False, str(exc))
    answered = threading.Event()
    outcome: dict[str, ReasonCode] = {}

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        outcome["reason"] = reason
        answered.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set()
    try:
        client.connect(target.host, target.port, keepalive=10)
    except OSError as exc:
        return Finding(
            "broker",
            False,
            f"cannot reach the MQTT broker at {target.redacted}: {exc}. Is it running?",
        )
    client.loop_start()
    try:
        if not answered.wait(BROKER_TIMEOUT_S):
            return Finding(
                "broker",
                False,
                f"the broker at {target.redacted} did not answer within {BROKER_TIMEOUT_S:.0f} s",
            )
        reason = outcome["reason"]
        if reason.is_failure:
            hint = " (check the user name and password)" if reason.value in (134, 135) else ""
            return Finding(
                "broker",
                False,
                f"the broker at {target.redacted} refused the connection: {reason}{hint}",
            )
        return Finding("broker", True, f"MQTT 5 broker at {target.redacted}")
    finally:
        client.disconnect()
        client.loop_stop()


def run(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    try:
        findings += check_database(settings.database_dsn())
    except NotConfigured as exc:
        findings.append(Finding("database", False, str(exc)))
    try:
        findings.append(check_broker(settings.mqtt_dsn()))
    except NotConfigured as exc:
        findings.append(Finding("broker", False, str(exc)))
    return findings
