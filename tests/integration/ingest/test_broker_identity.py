"""Terminal identity at the shipped broker: deploy/mosquitto/mosquitto.conf with the
Dynamic Security file of `clearday mqtt-credentials --ingestors 2`, Mosquitto dropping
root for its own user as in production, two real ingestors on the shared subscription,
and clients the project did not write (plain paho, mosquitto_pub, mosquitto_sub) trying
to take over sessions, publish as another terminal and subscribe to others' topics and
to the ingestors' share — while well-behaved terminals publish and every one of their
fixes must be stored."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import wire
from tests.integration.ingest.support import (
    FixStream,
    IngestorProcess,
    assert_exactly_once,
    ingest_env,
    scalar,
    terminal,
    wait_for,
)
from tests.integration.ingest.test_broker_config import (
    BROKER_USER,
    ProductionBroker,
    accounts,
    run_cli,
)

INGEST_PASSWORD = "identity-test-ingest-secret"
GOOD = [0, 1, 2, 3]  # trucks whose terminals behave
ATTACKER = terminal(9)  # a terminal with valid credentials of its own
# Others trying to read what is not their own, one account each (a second connection
# under one account would take the first one's place).
SNOOP, SNOOP_311, SNOOP_V5 = terminal(8), terminal(7), terminal(6)
# Not a secret: the broker refuses a terminal's SUBSCRIBE to it.
SHARE_GROUP = "ingest"
FIXES_PER_TERMINAL = 150
RATE_PER_S = 25.0  # per good terminal: the attacks run while they publish
SPOOFED_SEQ = 1_000_001  # a fix GPS-T9 publishes on GPS-T1's topic
NOT_AUTHORISED = 0x87  # MQTT 5 reason code (CONNACK, SUBACK, PUBACK)
SNOOP_FILTERS = [
    f"{wire.TOPIC_ROOT}/#",
    f"$share/{SHARE_GROUP}/{wire.TOPIC_ROOT}/#",
    *wire.subscription_filters(SHARE_GROUP),  # exactly what the ingestors subscribe to
]


class Terminal:
    """A well-behaved terminal: plain paho, its own account, QoS 1, its own topic."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.user = user
        self.disconnects = 0
        self.connected = threading.Event()
        self.acked: list[int] = []
        self.refused: list[int] = []
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user, protocol=paho.MQTTv5)
        client.username_pw_set(user, password)
        client.max_inflight_messages_set(100)
        client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()
        assert self.connected.wait(10), f"{user} could not connect"
        self.client = client

    def _on_disconnect(self, client: paho.Client, *args: object) -> None:
        self.disconnects += 1

    def _on_publish(self, client: paho.Client, u: object, mid: int, rc: object, p: object) -> None:
        (self.refused if getattr(rc, "is_failure", False) else self.acked).append(mid)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Snoop:
    """A terminal (plain paho, MQTT 5, its own account) subscribing to ``filters``: the
    SUBACK's reason codes and every message it is sent."""

    def __init__(self, port: int, user: str, password: str, filters: list[str]) -> None:
        self.codes: list[int] = []
        self.received: list[str] = []
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user, protocol=paho.MQTTv5)
        client.username_pw_set(user, password)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in filters])
        client.on_subscribe = lambda c, u, mid, codes, p: self.codes.extend(x.value for x in codes)
        client.on_message = lambda c, u, msg: self.received.append(msg.topic)
        client.connect("127.0.0.1", port)
        client.loop_start()
        wait_for(lambda: len(self.codes) == len(filters), 10, f"SUBACK for {user}")
        self.client = client

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mosquitto_sub(port: int, user: str, password: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
         "-u", user, "-P", password, "-q", "1", "-v", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def connack_codes(port: int, user: str, password: str, client_id: str, seconds: float) -> set[int]:
    """Connect again and again under ``client_id`` (as the issue's terminal did for 20 s,
    taking over whoever held it); the CONNACK reason codes the broker answered."""
    answered: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        codes: list[int] = []
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        client.username_pw_set(user, password)
        client.on_connect = lambda c, u, f, rc, p, codes=codes: codes.append(rc.value)
        client.connect("127.0.0.1", port, clean_start=True)
        client.loop_start()
        wait_for(lambda codes=codes: bool(codes), 10, "CONNACK")
        answered.add(codes[0])
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    return answered


@pytest.fixture
def deployment(fleet_url: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    auth_dir = tmp_path / "auth"
    broker = ProductionBroker(tmp_path / "broker", auth_dir, bare_listener=True)
    env = {
        "CLEARDAY_DATABASE_URL": fleet_url,
        "CLEARDAY_MQTT_URL": broker.url("ingest", INGEST_PASSWORD),
    }
    done = run_cli("mqtt-credentials", "--out", str(auth_dir), "--ingestors", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "ingestor 'ingest-1', 'ingest-2'" in done.stdout
    broker.start()
    ingestors = []
    for name in ("ingest-1", "ingest-2"):
        ienv = ingest_env(
            fleet_url, broker.url(name, INGEST_PASSWORD), ingest_share_group=SHARE_GROUP
        )
        del ienv["CLEARDAY_INGEST_CLIENT_ID"]  # the account's name is the client id
        ingestors.append(IngestorProcess(ienv, tmp_path / f"{name}.log").start())
    try:
        for ingestor in ingestors:
            ingestor.wait_subscribed()
        yield {"broker": broker, "auth": auth_dir, "ingestors": ingestors, "url": fleet_url}
    finally:
        for ingestor in ingestors:
            ingestor.stop()
        broker.stop()


def test_files_are_readable_by_the_broker_after_it_drops_root_and_by_nobody_else(
    deployment: dict[str, object],
) -> None:
    """dynamic-security.json: 0640, group mosquitto; credentials.csv: 0600. The broker,
    running as mosquitto (not root), loaded it: it accepts a terminal's password."""
    auth_dir = deployment["auth"]
    broker = deployment["broker"]
    assert isinstance(auth_dir, Path) and isinstance(broker, ProductionBroker)
    st = (auth_dir / "dynamic-security.json").stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_gid == grp.getgrnam(BROKER_USER).gr_gid
    assert stat.S_IMODE((auth_dir / "credentials.csv").stat().st_mode) == 0o600
    if os.geteuid() != 0:
        pytest.skip("not root: Mosquitto cannot drop privileges here, the modes are checked")
    assert broker.process is not None
    user = subprocess.run(
        ["ps", "-o", "user=", "-p", str(broker.process.pid)], capture_output=True, text=True
    ).stdout.strip()
    assert user == BROKER_USER, f"the broker runs as {user!r}"
    password = accounts(auth_dir)[terminal(0)]["password"]
    t0 = Terminal(broker.port, terminal(0), password)
    t0.close()
    log = (broker.folder / "mosquitto.log").read_text()
    assert "Unable to open" not in log and "not readable" not in log, log


def test_no_terminal_can_pose_as_another_and_behaving_terminals_lose_nothing(
    deployment: dict[str, object],
) -> None:
    """While four terminals publish 600 fixes: subscriptions to every truck's topics and
    to the ingestors' real share group are refused at SUBACK (MQTT 5 and 3.1.1), logins
    under the ingestors' or another terminal's client id never take a session, a publish
    on another terminal's topic is refused (PUBACK 0x87) — and all 600 fixes are stored
    exactly once, nobody behaving is cut off."""
    broker = deployment["broker"]
    auth_dir = deployment["auth"]
    url = deployment["url"]
    ingestors = deployment["ingestors"]
    assert isinstance(broker, ProductionBroker) and isinstance(auth_dir, Path)
    assert isinstance(url, str) and isinstance(ingestors, list)
    assert broker.bare_port is not None
    creds = {u: a["password"] for u, a in accounts(auth_dir).items()}
    port, evil = broker.port, creds[ATTACKER]
    stream = FixStream()
    good = {i: Terminal(port, terminal(i), creds[terminal(i)]) for i in GOOD}
    seqs = [i + 10 * n for n in range(FIXES_PER_TERMINAL) for i in GOOD]

    def publish_all() -> None:
        start = time.monotonic()
        for k, seq in enumerate(seqs):
            delay = start + k / (RATE_PER_S * len(GOOD)) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            good[seq % 10].publish(*stream.message(seq))

    publisher = threading.Thread(target=publish_all)
    publisher.start()

    # Subscribing to others' topics: every truck's, and the ingestors' share group by
    # its real name (a member would take its turn and swallow a share of the fixes).
    # Plain paho (MQTT 5) stays connected while the terminals publish.
    snooper = Snoop(port, SNOOP, creds[SNOOP], SNOOP_FILTERS)
    # mosquitto_sub, MQTT 3.1.1, under the ingestor's client id with a persistent
    # session (`-c`), as in the issue; it gives up when every filter is refused.
    share_sub = mosquitto_sub(
        port, SNOOP_311, creds[SNOOP_311], "-V", "mqttv311", "-i", "ingest-1", "-c", "-W", "10",
        "-t", f"$share/{SHARE_GROUP}/{wire.TOPIC_ROOT}/+/positions",
    )  # fmt: skip
    wildcard_sub = mosquitto_sub(
        port, SNOOP_V5, creds[SNOOP_V5], "-V", "mqttv5", "-W", "10", "-t", f"{wire.TOPIC_ROOT}/#"
    )
    # Session takeover: the ingestors' and a behaving terminal's client ids, again and
    # again. On the shipped listener the session is filed under the caller's own user
    # name (use_username_as_clientid); on a listener without that line the plugin
    # refuses the login, since each account has a fixed client id.
    shipped = connack_codes(port, ATTACKER, evil, "ingest-2", 2.0)
    shipped |= connack_codes(port, ATTACKER, evil, terminal(0), 2.0)
    bare = connack_codes(broker.bare_port, ATTACKER, evil, "ingest-1", 2.0)
    bare |= connack_codes(broker.bare_port, ATTACKER, evil, terminal(1), 2.0)
    own_id_on_bare = connack_codes(broker.bare_port, ATTACKER, evil, ATTACKER, 0.1)
    # Publishing as another terminal: refused with MQTT 5 reason code 135.
    spoof = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1",
         "-u", ATTACKER, "-P", evil, "-i", terminal(1), "-t", wire.positions_topic(terminal(1)),
         "-m", wire.encode_fixes(stream.fix(SPOOFED_SEQ)).decode()],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    share_out, share_err = share_sub.communicate(timeout=30)
    wildcard_out, wildcard_err = wildcard_sub.communicate(timeout=30)
    publisher.join(60)
    assert not publisher.is_alive()

    assert snooper.codes == [NOT_AUTHORISED] * len(SNOOP_FILTERS), snooper.codes
    denied = "All subscription requests were denied"
    assert denied in share_err and share_out == "", share_err + share_out
    assert denied in wildcard_err and wildcard_out == "", wildcard_err + wildcard_out
    assert shipped == {0}, "the attacker's own login works, filed under its own name"
    assert bare == {NOT_AUTHORISED}, f"a login under another account's client id: {bare}"
    assert own_id_on_bare == {0}, "the bare listener takes the account's own client id"
    assert "Not authorized" in spoof.stderr, spoof.stderr + spoof.stdout

    wait_for(
        lambda: all(len(t.acked) == FIXES_PER_TERMINAL for t in good.values()),
        30,
        "every behaving terminal's fixes acknowledged",
    )
    wait_for(
        lambda: scalar(url, "SELECT count(*) FROM position") >= len(seqs), 30, "all fixes stored"
    )
    time.sleep(1)  # anything extra (the spoofed fix) would have arrived by now
    assert snooper.received == [], f"a terminal was sent others' fixes: {snooper.received[:5]}"
    snooper.close()
    assert_exactly_once(url, stream, seqs)
    assert scalar(url, "SELECT count(*) FROM position WHERE seq = %s", (SPOOFED_SEQ,)) == 0
    assert scalar(url, "SELECT count(*) FROM dead_letter") == 0
    for t in good.values():
        assert t.disconnects == 0, f"{t.user} was cut off {t.disconnects} time(s)"
        assert t.refused == []
        t.close()
    for ingestor in ingestors:
        assert isinstance(ingestor, IngestorProcess)
        log = ingestor.log()
        assert ingestor.running(), log[-2000:]
        assert log.count("connected to") == 1, f"an ingestor lost its session:\n{log[-2000:]}"
        assert "disconnected" not in log, log[-2000:]


def test_the_simulator_logs_each_terminal_in_as_itself(deployment: dict[str, object]) -> None:
    """`simulate day --credentials`: every simulated terminal connects at once under its
    own account and all their fixes are stored (one shared account would not work on
    this broker: its connections would take each other's place)."""
    from simulator.mqtt import MqttFleet
    from simulator.trucks import Emission

    broker, auth_dir, url = deployment["broker"], deployment["auth"], deployment["url"]
    assert isinstance(broker, ProductionBroker) and isinstance(auth_dir, Path)
    assert isinstance(url, str)
    passwords = {u: a["password"] for u, a in accounts(auth_dir).items() if a["role"] == "terminal"}
    stream = FixStream()
    seqs = range(200)
    fleet = MqttFleet(broker.url("nobody", "unused"), passwords=passwords)
    for i in range(10):
        fleet.send(Emission(0.0, terminal(i), "online"))
    for seq in seqs:
        fleet.send(Emission(0.0, terminal(seq % 10), "fixes", fixes=(stream.fix(seq),)))
    counts = fleet.close()
    assert (counts.connects, counts.acked) == (10, 200 + 10), counts  # + 10 retained statuses
    wait_for(lambda: scalar(url, "SELECT count(*) FROM position") >= 200, 30, "200 fixes")
    assert_exactly_once(url, stream, seqs)
