"""`clearday doctor`: is the database reachable, migrated, with or without TimescaleDB;
do TimescaleDB's background jobs succeed; is the broker reachable. Each finding is one
line a sysadmin can act on."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from fleet import db
from fleet.config import MqttTarget, NotConfigured, Settings, redact
from fleet.jobs import repo as jobs_repo
from fleet.positions import policies
from fleet.positions import repo as positions_repo

BROKER_TIMEOUT_S = 5.0
LOGIN_REQUIRED_CODES = {134, 135}  # bad user name or password / not authorised


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.check:<12} {'ok  ' if self.ok else 'FAIL'}  {self.detail}"


def check_workers(conn: psycopg.Connection, settings: Settings) -> Finding:
    """Planning workers beating and the queue; alert workers and their leases."""
    st = jobs_repo.status(
        conn,
        stalled_after_s=settings.planning.worker_stalled_after_s,
        lease_s=settings.alerts.lease_s,
    )
    text = (
        f"{st.workers_beating // 2} planning worker(s) beating, {st.queued} job(s) queued, "
        f"{st.running} running; {st.alert_workers} alert worker(s) holding "
        f"{st.leased_districts} of {st.districts} district(s)"
    )
    if st.queued and not st.workers_beating:
        return Finding("workers", False, f"{text} — start `clearday worker` (or `clearday serve`)")
    return Finding("workers", True, text)


def check_database(
    url: str, *, max_past_s: float, settings: Settings | None = None
) -> list[Finding]:
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
        migrations = _check_migrations(conn)
        findings.append(migrations)
        if migrations.ok and settings is not None:
            findings.append(check_workers(conn, settings))
        if installed and db.storage_mode(conn) == "timescale":
            findings.append(check_policies(conn, max_past_s=max_past_s))
            findings.append(check_timescale_jobs(conn))
    return findings


def check_policies(conn: psycopg.Connection, *, max_past_s: float) -> Finding:
    """The compression and refresh policies against the ingest's accepted past."""
    found = positions_repo.storage_policies(conn)
    problems = policies.policy_problems(found, max_past_s=max_past_s)
    if problems:
        return Finding("policies", False, "; ".join(problems))
    compress = (
        f"compression after {found.compress_after_s / 86_400:g} days"
        if found.compress_after_s is not None
        else "no compression"
    )
    return Finding(
        "policies",
        True,
        f"{compress}; fixes accepted up to {max_past_s / 86_400:g} days late "
        "(CLEARDAY_INGEST_MAX_PAST_S)",
    )


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
    """Is the broker there, and does it want a login the URL has?

    The probe connects without the URL's account on purpose: a broker that binds client
    ids to user names (the shipped Mosquitto) would hand a login under that account the
    session of the process using it, cutting off a running ingestor and discarding its
    queue. The account itself is checked by `clearday ingest`, which stops at once,
    saying so, when the broker refuses it.
    """
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
        return broker_finding(target, outcome["reason"])
    finally:
        client.disconnect()
        client.loop_stop()


def broker_finding(target: MqttTarget, anonymous: ReasonCode) -> Finding:
    where = f"MQTT 5 broker at {target.redacted}"
    if not anonymous.is_failure:
        return Finding("broker", True, f"{where} (accepts anonymous clients)")
    if anonymous.value not in LOGIN_REQUIRED_CODES:
        return Finding("broker", False, f"the broker at {target.redacted} refused: {anonymous}")
    if not target.username:
        return Finding(
            "broker",
            False,
            f"the broker at {target.redacted} requires a login: put the ingestor's user and "
            "password in CLEARDAY_MQTT_URL (mqtt://user:password@host:port)",
        )
    return Finding(
        "broker",
        True,
        f"{where} (requires a login; the account is checked by `clearday ingest` at start)",
    )


def check_timescale_jobs(conn: psycopg.Connection) -> Finding:
    """TimescaleDB's background jobs (compression, retention, aggregate refresh)."""
    return jobs_finding(db.timescale_jobs(conn))


def jobs_finding(jobs: list[db.JobStatus]) -> Finding:
    """One line on the background jobs: ok, or which fail and why."""
    if not jobs:
        return Finding(
            "jobs", False, "no TimescaleDB policies on this database: run `clearday migrate`"
        )
    problems = [p for p in (j.problem() for j in jobs) if p]
    if not problems:
        return Finding("jobs", True, f"{len(jobs)} TimescaleDB background jobs, none failing")
    return Finding(
        "jobs",
        False,
        "; ".join(problems) + " (details: timescaledb_information.job_errors)",
    )


def run(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    try:
        findings += check_database(
            settings.storage.database_dsn(),
            max_past_s=settings.ingest.max_past_s,
            settings=settings,
        )
    except NotConfigured as exc:
        findings.append(Finding("database", False, str(exc)))
    try:
        findings.append(check_broker(settings.ingest.mqtt_dsn()))
    except NotConfigured as exc:
        findings.append(Finding("broker", False, str(exc)))
    return findings
