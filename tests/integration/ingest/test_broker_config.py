"""The shipped Mosquitto configuration with the Dynamic Security file from `clearday
mqtt-credentials`: terminals publish only under their own id, the ingestor reads
everything, bad credentials stop the ingestor, and a long queue for a stopped ingestor
is kept."""

from __future__ import annotations

import csv
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from fleet.devservers import free_port, mosquitto_binary, open_path_for_others, wait_for_port
from ingest import wire
from tests.integration.ingest.support import (
    ROOT,
    FixStream,
    IngestorProcess,
    Publisher,
    assert_exactly_once,
    ingest_env,
    rows,
    scalar,
    wait_for,
)

CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
BROKER_USER = "mosquitto"  # the user (and group) Mosquitto drops root for
INGEST_PASSWORD = "ingest-secret-for-tests"
IMAGE_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"  # its path in eclipse-mosquitto
PLUGIN_PATHS = ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", IMAGE_PLUGIN)


def dynsec_plugin() -> str:
    """This machine's copy of the plugin (Debian's path, or the image's)."""
    found = next((p for p in PLUGIN_PATHS if Path(p).exists()), None)
    assert found, f"Mosquitto's Dynamic Security plugin is not at any of {PLUGIN_PATHS}"
    return found


class ProductionBroker:
    """deploy/mosquitto/mosquitto.conf with its paths and port pointed at a temp folder.

    ``drop_root``: started as root, Mosquitto drops to its own user before it reads the
    Dynamic Security file, as the shipped broker does (otherwise it stays root here).
    ``bare_listener``: a second listener without ``use_username_as_clientid`` on
    ``bare_port``, as when an operator adds one and forgets that line.
    """

    def __init__(
        self, folder: Path, auth_dir: Path, *, drop_root: bool = True, bare_listener: bool = False
    ) -> None:
        self.port = free_port()
        self.bare_port = free_port() if bare_listener else None
        self.folder = folder
        data = folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        text = CONF.read_text()
        assert "listener 1883\n" in text and "/mosquitto/auth/" in text
        assert f"plugin {IMAGE_PLUGIN}\n" in text
        text = text.replace("listener 1883\n", f"listener {self.port} 127.0.0.1\n")
        text = text.replace(IMAGE_PLUGIN, dynsec_plugin())
        text = text.replace("/mosquitto/auth/", f"{auth_dir}/").replace(
            "/mosquitto/data/", f"{data}/"
        )
        if os.geteuid() == 0 and drop_root:
            user = pwd.getpwnam(BROKER_USER)
            os.chown(data, user.pw_uid, user.pw_gid)
            open_path_for_others(folder)  # the broker's user reaches auth/ and data/
        elif os.geteuid() == 0:
            text += "user root\n"
        if self.bare_port is not None:
            text += f"listener {self.bare_port} 127.0.0.1\n"
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, user: str, password: str) -> str:
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"

    def start(self) -> ProductionBroker:
        log = (self.folder / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=log
        )
        assert wait_for_port(self.port, 10), (self.folder / "mosquitto.log").read_text()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120, cwd=ROOT,
    )  # fmt: skip


def accounts(auth_dir: Path) -> dict[str, dict[str, str]]:
    with (auth_dir / "credentials.csv").open(newline="") as fh:
        return {row["username"]: row for row in csv.DictReader(fh)}


def connect_code(port: int, user: str | None, password: str | None) -> int:
    """The CONNACK reason code for these credentials (0 = accepted)."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=paho.MQTTv5
    )
    if user is not None:
        client.username_pw_set(user, password)
    codes: list[int] = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(rc.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(lambda: bool(codes), 10, "CONNACK")
    client.disconnect()
    client.loop_stop()
    return codes[0]


@pytest.fixture
def secured(fleet_url: str, tmp_path: Path) -> Iterator[tuple[ProductionBroker, Path]]:
    auth_dir = tmp_path / "auth"
    broker = ProductionBroker(tmp_path / "broker", auth_dir)
    env = {
        "CLEARDAY_DATABASE_URL": fleet_url,
        "CLEARDAY_MQTT_URL": broker.url("ingest", INGEST_PASSWORD),
    }
    done = run_cli("mqtt-credentials", "--out", str(auth_dir), "--gateway-user", "gateway", env=env)
    assert done.returncode == 0, done.stderr
    assert "10 terminal account(s)" in done.stdout
    broker.start()
    yield broker, auth_dir
    broker.stop()


def test_generated_files_let_each_terminal_publish_only_as_itself(
    fleet_url: str, secured: tuple[ProductionBroker, Path], tmp_path: Path
) -> None:
    """Anonymous and wrong passwords are refused; GPS-T1 is stored under its own topic
    and ignored under GPS-T2's; the ingestor reads with the account from its URL."""
    broker, auth_dir = secured
    creds = accounts(auth_dir)
    assert creds["ingest"]["password"] == INGEST_PASSWORD
    assert {a["role"] for a in creds.values()} == {"terminal", "ingestor", "gateway"}
    assert (auth_dir / "credentials.csv").stat().st_mode & 0o077 == 0, "secrets are private"
    config = auth_dir / "dynamic-security.json"
    assert config.stat().st_mode & 0o007 == 0, "hashes are not world-readable"
    assert connect_code(broker.port, None, None) != 0
    assert connect_code(broker.port, "GPS-T1", "wrong") != 0
    assert connect_code(broker.port, "GPS-T1", creds["GPS-T1"]["password"]) == 0

    ingestor = IngestorProcess(
        ingest_env(fleet_url, broker.url("ingest", INGEST_PASSWORD)), tmp_path / "ingest.log"
    ).start()
    ingestor.wait_subscribed()
    stream = FixStream()
    t1 = Publisher(broker.url("GPS-T1", creds["GPS-T1"]["password"]), client_id="GPS-T1")
    for seq in range(1, 40, 10):  # seq % 10 == 1: truck T1's own topic
        t1.publish(*stream.message(seq))
    spoofed = stream.fix(2)
    t1.publish(wire.positions_topic("GPS-T2"), wire.encode_fixes(spoofed))
    t1.wait_all_acked()
    gateway = Publisher(broker.url("gateway", creds["gateway"]["password"]), client_id="gw")
    gateway.publish(*stream.message(5))
    gateway.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") >= 5, 15, "5 fixes")
    # The spoofed fix was published before the gateway's, which has been stored.
    assert sorted(r[0] for r in rows(fleet_url, "SELECT seq FROM position")) == [1, 5, 11, 21, 31]
    assert ingestor.stop() == 0
    t1.close()
    gateway.close()


NOT_AUTHORISED = 0x87  # MQTT 5 PUBACK reason code


def puback_code(port: int, user: str, password: str, topic: str, payload: bytes) -> int:
    """The PUBACK reason code the broker answers this account's QoS 1 publish with."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user, protocol=paho.MQTTv5)
    client.username_pw_set(user, password)
    codes: list[int] = []
    client.on_publish = lambda c, u, mid, rc, p: codes.append(rc.value)
    connected: list[int] = []
    client.on_connect = lambda c, u, f, rc, p: connected.append(rc.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(lambda: bool(connected), 10, f"CONNACK for {user}")
    assert connected == [0], connected
    client.publish(topic, payload, qos=1)
    wait_for(lambda: bool(codes), 10, f"PUBACK for {user}")
    client.disconnect()
    client.loop_stop()
    return codes[0]


def test_only_a_gateway_account_may_publish_a_batch_of_many_trucks(
    fleet_url: str, secured: tuple[ProductionBroker, Path], tmp_path: Path
) -> None:
    """A terminal's batch on a gateway topic (the gateway's name or its own) is refused
    with PUBACK 0x87 and stores nothing; the gateway account's batch of two trucks'
    fixes is stored under each truck, and the ingestor's account reads it."""
    broker, auth_dir = secured
    creds = accounts(auth_dir)
    ingestor = IngestorProcess(
        ingest_env(fleet_url, broker.url("ingest", INGEST_PASSWORD)), tmp_path / "ingest.log"
    ).start()
    ingestor.wait_subscribed()
    stream = FixStream()

    def batch(*seqs: int) -> bytes:
        return wire.encode_gateway_batch(
            [
                wire.encode_gateway_fix(wire.gateway_item_prefix(f"GPS-T{s % 10}"), stream.fix(s))
                for s in seqs
            ]
        )

    t1 = ("GPS-T1", creds["GPS-T1"]["password"])
    for topic in (wire.gateway_positions_topic("gateway"), wire.gateway_positions_topic("GPS-T1")):
        assert puback_code(broker.port, *t1, topic, batch(11, 12)) == NOT_AUTHORISED
    gateway = ("gateway", creds["gateway"]["password"])
    assert (
        puback_code(broker.port, *gateway, wire.gateway_positions_topic("gateway"), batch(1, 2))
        == 0
    )
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") >= 2, 15, "2 fixes")
    time.sleep(1.0)  # a refused batch, had it got through, would be stored by now
    stored = rows(fleet_url, "SELECT truck_id, seq FROM position ORDER BY seq")
    assert stored == [("T1", 1), ("T2", 2)]
    assert scalar(fleet_url, "SELECT count(*) FROM dead_letter") == 0
    assert ingestor.stop() == 0


def test_ingestor_with_bad_credentials_stops_with_a_clear_message(
    fleet_url: str, secured: tuple[ProductionBroker, Path], tmp_path: Path
) -> None:
    """No endless retrying: exit code 2 and a message naming the problem."""
    broker, _ = secured
    ingestor = IngestorProcess(
        ingest_env(fleet_url, broker.url("ingest", "not-the-password")), tmp_path / "ingest.log"
    ).start()
    assert ingestor.wait_exit(30) == 2
    log = ingestor.log()
    assert "refused to connect: not authorised" in log and "fix CLEARDAY_MQTT_URL" in log
    assert "not-the-password" not in log, "secrets are never logged"


def test_regenerating_keeps_existing_passwords_and_drops_inactive_trucks(
    fleet_url: str, secured: tuple[ProductionBroker, Path]
) -> None:
    """Adding trucks later does not change the passwords terminals already have."""
    broker, auth_dir = secured
    before = accounts(auth_dir)
    rows(fleet_url, "UPDATE truck SET active = false WHERE truck_id = 'T9' RETURNING truck_id")
    env = {
        "CLEARDAY_DATABASE_URL": fleet_url,
        "CLEARDAY_MQTT_URL": broker.url("ingest", INGEST_PASSWORD),
    }
    done = run_cli("mqtt-credentials", "--out", str(auth_dir), "--gateway-user", "gateway", env=env)
    assert done.returncode == 0, done.stderr
    after = accounts(auth_dir)
    assert "GPS-T9" not in after
    assert all(after[u]["password"] == before[u]["password"] for u in after)


def test_queue_for_a_stopped_ingestor_holds_more_than_mosquittos_default_1000(
    fleet_url: str, secured: tuple[ProductionBroker, Path], tmp_path: Path
) -> None:
    """5,000 messages queued while the ingestor is stopped all arrive (the default
    max_queued_messages of 1000 would drop 4,000 of them)."""
    broker, auth_dir = secured
    creds = accounts(auth_dir)
    env = ingest_env(fleet_url, broker.url("ingest", INGEST_PASSWORD))
    ingestor = IngestorProcess(env, tmp_path / "ingest.log").start()
    ingestor.wait_subscribed()
    assert ingestor.stop() == 0
    stream, n = FixStream(), 5000
    gateway = Publisher(broker.url("gateway", creds["gateway"]["password"]), client_id="gw")
    gateway.publish_many(stream.message(s) for s in range(n))
    gateway.wait_all_acked()
    ingestor.start()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") >= n, 60, f"{n} rows")
    assert_exactly_once(fleet_url, stream, range(n))
    assert ingestor.stop() == 0
    gateway.close()


def test_doctor_finds_the_shipped_broker_asking_for_a_login(
    secured: tuple[ProductionBroker, Path],
) -> None:
    """`clearday doctor` probes anonymously (never under the ingestor's account, whose
    session it would take): the plugin refuses it, which the doctor reads as 'login
    required', fine when the URL has an account, an error when it has none."""
    from fleet.doctor import check_broker

    broker, _ = secured
    with_account = check_broker(broker.url("ingest", INGEST_PASSWORD))
    assert with_account.ok and "requires a login" in with_account.detail, with_account
    without = check_broker(f"mqtt://127.0.0.1:{broker.port}")
    assert not without.ok and "CLEARDAY_MQTT_URL" in without.detail, without
