"""The production stack of deploy/compose.yaml, as far as this machine allows: no
Docker engine runs here, so the compose file is checked as data and the same
processes it would start run directly — migrate, the shipped Mosquitto config with
generated terminal accounts, two ingestors on the shared subscription, the alert
worker and the API — and their health endpoints answer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.devservers import free_port
from ingest import wire
from tests.integration.ingest.support import FixStream, Publisher, add_fleet, scalar, wait_for
from tests.integration.ingest.test_broker_config import ProductionBroker, accounts

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
INGEST_PASSWORD = "stack-test-ingest-secret"
SHARE_GROUP = "ingest"


def compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_compose_runs_every_role_with_health_checks_and_persistent_volumes() -> None:
    services = compose()["services"]
    assert {
        "db",
        "broker",
        "migrate",
        "ingest-1",
        "ingest-2",
        "jt808",
        "alerts",
        "worker",
        "api",
    } <= services.keys()
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    for name in ("db", "broker", "ingest-1", "ingest-2", "jt808", "api"):
        assert "test" in services[name]["healthcheck"], name
    assert "db-data:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert any("/mosquitto/data" in v for v in services["broker"]["volumes"])
    assert set(compose()["volumes"]) == {"db-data", "broker-data"}
    # The workers scale with --scale: no fixed name, no published port; the API leaves
    # planning to them.
    for name in ("worker", "alerts"):
        assert "container_name" not in services[name] and "ports" not in services[name]
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["environment"]["CLEARDAY_API_WORKER_CONCURRENCY"] == "0"
    # Every role depends on the schema being migrated first.
    for name in ("ingest-1", "ingest-2", "jt808", "alerts", "worker", "api"):
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
    # Two ingestors on one shared subscription, each under an account of its own (each
    # account's client id is its user name).
    ingestors = [services[f"ingest-{i}"]["environment"] for i in (1, 2)]
    assert {e["CLEARDAY_INGEST_SHARE_GROUP"] for e in ingestors} == {
        "${MQTT_INGEST_SHARE_GROUP:-ingest}"
    }
    # The broker only reads its accounts: the folder is mounted read-only.
    assert "./mosquitto/auth:/mosquitto/auth:ro" in services["broker"]["volumes"]
    for i, e in enumerate(ingestors, 1):
        assert e["CLEARDAY_MQTT_URL"].startswith(f"mqtt://${{MQTT_INGEST_USER:-ingest}}-{i}:")
    assert not any("CLEARDAY_INGEST_CLIENT_ID" in e for e in ingestors)


def test_every_variable_is_documented_and_no_secret_has_a_default() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    documented = env_example()
    assert used <= documented.keys(), used - documented.keys()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert {"POSTGRES_PASSWORD", "MQTT_INGEST_PASSWORD", "MQTT_JT808_PASSWORD"} <= required
    for secret in required:
        assert documented[secret] == "", f"{secret} must have no usable default"


def test_every_clearday_setting_is_listed_in_the_env_example() -> None:
    """An operator finds every setting of fleet/config.py in .env.example, and the app
    containers read that file."""
    from fleet.config import variables

    text = (DEPLOY / ".env.example").read_text()
    missing = [name for name in variables() if name not in text]
    assert missing == [], f"settings missing from deploy/.env.example: {missing}"
    assert compose()["x-app"]["env_file"] == ".env"


def test_the_image_installs_the_package_and_runs_clearday() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["clearday"]' in dockerfile
    for package in ("fleet", "routing", "ingest", "simulator"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "USER clearday" in dockerfile


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", *args],
            env={**os.environ, **env}, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def stack(pg: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = pg.new_database(migrated=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[Process] = []
    auth_dir = tmp_path / "auth"
    broker = ProductionBroker(tmp_path / "broker", auth_dir)
    try:
        migrate = subprocess.run(
            [sys.executable, "-c", "from fleet.cli import main; main()", "migrate"],
            env={**os.environ, "CLEARDAY_DATABASE_URL": url}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr
        terminals = add_fleet(url, trucks=4)
        mqtt_url = broker.url("ingest", INGEST_PASSWORD)
        base = {"CLEARDAY_DATABASE_URL": url, "CLEARDAY_MQTT_URL": mqtt_url}
        creds = subprocess.run(
            [sys.executable, "-c", "from fleet.cli import main; main()", "mqtt-credentials", "--out", str(auth_dir),
             "--ingestors", "2"],
            env={**os.environ, **base}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert creds.returncode == 0, creds.stderr
        broker.start()
        metrics = [free_port(), free_port()]
        http_port = free_port()
        for i, port in enumerate(metrics):
            env = {**base, "CLEARDAY_METRICS_PORT": str(port), "CLEARDAY_INGEST_SHARE_GROUP": SHARE_GROUP,
                   "CLEARDAY_MQTT_URL": broker.url(f"ingest-{i + 1}", INGEST_PASSWORD)}  # fmt: skip
            processes.append(Process(f"ingest{i}", ["ingest"], env, logs))
        processes.append(Process("alerts", ["alerts", "run"], base, logs))
        processes.append(
            Process(
                "api",
                ["serve", "--host", "127.0.0.1", "--port", str(http_port), "--no-alerts"],
                base,
                logs,
            )
        )
        yield {"url": url, "broker": broker, "auth": auth_dir, "metrics": metrics, "http_port": http_port,
               "processes": processes, "terminals": terminals}  # fmt: skip
    finally:
        for process in processes:
            process.stop()
        broker.stop()


def test_the_stack_starts_answers_its_health_checks_and_stores_a_terminals_fixes(
    stack: dict[str, Any],
) -> None:
    api = f"http://127.0.0.1:{stack['http_port']}"
    wait_for(lambda: http_ok(f"{api}/healthz"), 60, "the API to answer /healthz")
    assert http_ok(f"{api}/readyz")
    for port in stack["metrics"]:
        wait_for(
            lambda port=port: http_ok(f"http://127.0.0.1:{port}/metrics"), 60, "ingestor metrics"
        )
    for process in stack["processes"]:
        assert process.proc.poll() is None, f"{process.name} exited:\n{process.log()[-2000:]}"
    wait_for(
        lambda: all("subscribed to" in p.log() for p in stack["processes"][:2]), 60, "subscriptions"
    )

    # A terminal publishes with its own generated account, as a truck would.
    terminal_id = next(iter(stack["terminals"]))
    password = accounts(stack["auth"])[terminal_id]["password"]
    publisher = Publisher(stack["broker"].url(terminal_id, password), client_id=terminal_id)
    stream = FixStream(trucks=1)
    for seq in range(50):
        publisher.publish(wire.positions_topic(terminal_id), wire.encode_fixes(stream.fix(seq)))
    publisher.wait_all_acked()
    publisher.close()
    wait_for(
        lambda: scalar(stack["url"], "SELECT count(*) FROM position") == 50, 60, "50 fixes stored"
    )
    assert scalar(stack["url"], "SELECT count(*) FROM dead_letter") == 0
    # Stopping is clean: every process finishes its work and exits on SIGTERM (uvicorn
    # re-raises the signal after its graceful shutdown, hence -SIGTERM for the API).
    for process in stack["processes"]:
        code = process.stop()
        assert code in (0, -signal.SIGTERM), f"{process.name}:\n{process.log()[-2000:]}"
    assert "Application shutdown complete" in stack["processes"][-1].log()
