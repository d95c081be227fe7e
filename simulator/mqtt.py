"""Publishing the simulated fleet over MQTT: one connection per terminal, like the
real fleet, so each has its own retained status and last will.

Messages go out with QoS 1 through paho-mqtt 2 (MQTT 5). A `drop` emission ends the
connection with reason code 0x04 ("disconnect with will message") so the broker
publishes the terminal's last will exactly as if the link had died; `online`
reconnects. `close()` waits (bounded) until the broker has acknowledged everything.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from fleet.config import MqttTarget
from ingest import wire
from simulator.trucks import Emission, encode

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 30.0
KEEPALIVE_S = 30
MAX_UNACKED_MESSAGES = 5_000  # across the fleet; publishing waits beyond this


class BrokerUnavailable(RuntimeError):
    pass


@dataclass(slots=True)
class PublishCounts:
    published: int = 0
    acked: int = 0
    connects: int = 0
    drops: int = 0


class _Terminal:
    def __init__(self, fleet: MqttFleet, terminal_id: str) -> None:
        self.fleet = fleet
        self.terminal_id = terminal_id
        self.connected = threading.Event()
        self.refused: str | None = None
        self.active = False
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"{fleet.client_prefix}-{terminal_id}",
            protocol=paho.MQTTv5,
        )
        target = fleet.target
        if fleet.passwords is not None:
            client.username_pw_set(terminal_id, fleet.passwords.get(terminal_id))
        elif target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.will_set(
            wire.status_topic(terminal_id), wire.encode_status("offline"), qos=1, retain=True
        )
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self.client = client
        self.last: paho.MQTTMessageInfo | None = None

    # callbacks run on paho's thread: they must never raise
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if getattr(rc, "is_failure", False):
            self.refused = str(rc)
        else:
            self.connected.set()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        self.fleet._acked()

    def connect(self) -> None:
        if self.active:
            return
        target = self.fleet.target
        self.connected.clear()
        self.refused = None
        try:
            self.client.connect(target.host, target.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            raise BrokerUnavailable(
                f"cannot reach the MQTT broker at {target.redacted}: {exc}"
            ) from exc
        self.client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self.connected.wait(0.05):
            if self.refused is not None:
                self.client.loop_stop()
                raise BrokerUnavailable(
                    f"broker {target.redacted} refused {self.terminal_id}: {self.refused}"
                )
            if time.monotonic() > deadline:
                self.client.loop_stop()
                raise BrokerUnavailable(
                    f"no CONNACK from {target.redacted} within {CONNECT_TIMEOUT_S:.0f} s"
                )
        self.active = True
        self.fleet.counts.connects += 1

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if not self.active:
            self.connect()
        self.last = self.client.publish(topic, payload, qos=self.fleet.qos, retain=retain)
        self.fleet._published()

    def wait_sent(self, timeout_s: float) -> bool:
        if self.last is None:
            return True
        try:
            self.last.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return self.last.is_published()

    def disconnect(self, *, with_will: bool) -> None:
        if not self.active:
            return
        if not self.wait_sent(ACK_TIMEOUT_S):
            log.warning("%s: messages unacknowledged at disconnect", self.terminal_id)
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=4 if with_will else 0)
        self.client.disconnect(reasoncode=reason)
        self.client.loop_stop()
        self.active = False


@dataclass
class MqttFleet:
    """A `Sink` that publishes each emission as its terminal would."""

    url: str
    qos: int = 1
    # Client ids are f"{client_prefix}-{terminal_id}"; the default carries a run id so
    # that two simulations on one broker never take over each other's sessions.
    client_prefix: str = field(default_factory=lambda: f"clearday-sim-{uuid.uuid4().hex[:6]}")
    counts: PublishCounts = field(default_factory=PublishCounts)
    # terminal id -> password: each terminal logs in under its own account, as the
    # shipped broker requires (it makes the user name the client id, so one shared
    # account would hold one connection at a time). None: the URL's account for all.
    passwords: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.target = MqttTarget(self.url)
        self._terminals: dict[str, _Terminal] = {}
        self._lock = threading.Lock()
        self._unacked = 0

    def _published(self) -> None:
        with self._lock:
            self.counts.published += 1
            self._unacked += 1

    def _acked(self) -> None:
        with self._lock:
            self.counts.acked += 1
            self._unacked -= 1

    def terminal(self, terminal_id: str) -> _Terminal:
        term = self._terminals.get(terminal_id)
        if term is None:
            term = self._terminals[terminal_id] = _Terminal(self, terminal_id)
        return term

    def send(self, em: Emission) -> None:
        term = self.terminal(em.terminal_id)
        if em.kind == "drop":
            term.disconnect(with_will=True)
            self.counts.drops += 1
            return
        if em.kind == "online":
            term.connect()
        message = encode(em)
        if message is not None:
            term.publish(*message)
        if em.kind == "offline":
            term.disconnect(with_will=False)
        if self._unacked > MAX_UNACKED_MESSAGES:
            deadline = time.monotonic() + ACK_TIMEOUT_S
            while self._unacked > MAX_UNACKED_MESSAGES // 2 and time.monotonic() < deadline:
                time.sleep(0.002)

    def close(self, timeout_s: float = ACK_TIMEOUT_S) -> PublishCounts:
        """Wait until every message is acknowledged (bounded), then disconnect all."""
        deadline = time.monotonic() + timeout_s
        while self._unacked > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._unacked > 0:
            log.warning("%d messages not acknowledged after %.0f s", self._unacked, timeout_s)
        for term in self._terminals.values():
            term.disconnect(with_will=False)
        return self.counts

    def __enter__(self) -> MqttFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
