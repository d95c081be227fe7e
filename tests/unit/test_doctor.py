"""`clearday doctor`'s decisions, with TimescaleDB's job rows and the broker's answers as
data (the SQL behind them needs a TimescaleDB server; see tests/integration)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from fleet.config import MqttTarget
from fleet.db import JobStatus
from fleet.doctor import broker_finding, jobs_finding

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HEALTHY = JobStatus(
    job_id=1002,
    proc_name="policy_compression",
    relation="position",
    scheduled=True,
    schedule_interval_s=12 * 3600,
    last_run_status="Success",
    last_run_started_at=NOW - timedelta(hours=2),
    last_successful_finish=NOW - timedelta(hours=2),
    next_start=NOW + timedelta(hours=10),
    total_runs=40,
    total_failures=0,
    last_error=None,
    checked_at=NOW,
)


def test_healthy_jobs_are_ok() -> None:
    refresh = replace(HEALTHY, job_id=1003, proc_name="policy_refresh_continuous_aggregate",
                      relation="truck_daily_distance", schedule_interval_s=900)  # fmt: skip
    finding = jobs_finding([HEALTHY, refresh])
    assert finding.ok and "2 TimescaleDB background jobs, none failing" in finding.detail


def test_a_failed_last_run_is_reported_with_its_error() -> None:
    failed = replace(HEALTHY, last_run_status="Failed", total_failures=3,
                     last_error="could not serialize access due to concurrent update")  # fmt: skip
    finding = jobs_finding([failed])
    assert not finding.ok
    assert "compression job 1002 of position failed its last run" in finding.detail
    assert "3 of 40 runs failed" in finding.detail
    assert "could not serialize access" in finding.detail


def test_a_job_that_failed_before_but_succeeds_now_is_ok() -> None:
    assert jobs_finding([replace(HEALTHY, total_failures=5)]).ok


def test_a_paused_job_is_reported() -> None:
    finding = jobs_finding([replace(HEALTHY, scheduled=False)])
    assert not finding.ok and "is paused" in finding.detail


def test_a_job_long_overdue_means_no_scheduler() -> None:
    """Next start 14 h ago on a 12 h schedule: nothing runs the jobs."""
    stale = replace(HEALTHY, next_start=NOW - timedelta(hours=14))
    finding = jobs_finding([stale])
    assert not finding.ok and "timescaledb.max_background_workers" in finding.detail
    # Slightly late is normal (a busy scheduler).
    assert jobs_finding([replace(HEALTHY, next_start=NOW - timedelta(minutes=30))]).ok


def test_a_job_that_never_ran_yet_is_ok() -> None:
    fresh = replace(HEALTHY, last_run_status=None, last_run_started_at=None, total_runs=0,
                    last_successful_finish=None, next_start=NOW + timedelta(minutes=5))  # fmt: skip
    assert jobs_finding([fresh]).ok


def test_no_jobs_on_a_timescale_database_is_a_failure() -> None:
    finding = jobs_finding([])
    assert not finding.ok and "clearday migrate" in finding.detail


def _code(name: str) -> ReasonCode:
    return ReasonCode(PacketTypes.CONNACK, name)


def test_broker_that_requires_a_login_is_ok_when_the_url_has_one() -> None:
    with_user = MqttTarget("mqtt://ingest-1:pw@broker:1883")
    finding = broker_finding(with_user, _code("Not authorized"))
    assert finding.ok and "requires a login" in finding.detail and "pw" not in finding.detail
    without = broker_finding(MqttTarget("mqtt://broker:1883"), _code("Not authorized"))
    assert not without.ok and "CLEARDAY_MQTT_URL" in without.detail


def test_anonymous_broker_and_other_refusals() -> None:
    assert broker_finding(MqttTarget("mqtt://broker"), _code("Success")).ok
    banned = broker_finding(MqttTarget("mqtt://u:p@broker"), _code("Banned"))
    assert not banned.ok and "Banned" in banned.detail
