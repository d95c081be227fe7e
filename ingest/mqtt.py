"""The ingestor's MQTT side: a paho-mqtt 2.x consumer with manual acknowledgement.

- MQTT 5, persistent session (clean start off, a session expiry), so messages
  published while the ingestor is down wait for it at the broker.
- Receive Maximum raised so the broker keeps several batches in flight.
- Subscribes in ``on_connect``, i.e. again on every reconnect; reconnects with
  exponential backoff; gives up at once on bad credentials or a refused
  subscription, with a message saying what to fix.
- Received messages only go into an inbox (callbacks never raise and never block),
  most of them through :class:`LeanClient`'s fast path, which skips the objects stock
  paho builds per message.
- :meth:`MqttConsumer.ack` acknowledges messages *after* the caller committed them.
  Acks are scoped to the connection that delivered the message: after a reconnect the
  broker redelivers every unacknowledged message under possibly re-used packet ids,
  so acking an id from an earlier connection could acknowledge the wrong message.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet.config import MqttTarget

log = logging.getLogger("clearday.ingest.mqtt")

RECONNECT_MIN_DELAY_S = 1
RECONNECT_MAX_DELAY_S = 10
# CONNACK / SUBACK reason codes after which retrying cannot help.
FATAL_CONNECT_CODES = {
    133: "the broker refused the client id",
    134: "bad user name or password",
    135: "not authorised (Mosquitto's answer to a wrong user name or password, too)",
    138: "banned by the broker",
    140: "bad authentication method",
}
_PUBACK = struct.Struct("!BBH")
_PUBACK_BYTE = 0x40

READ_CHUNK_BYTES = 65536
READ_BURST_PACKETS = 1000  # packets parsed per select() before acks get written


class Delivery(NamedTuple):
    """One received message, as the ingestor needs it."""

    gen: int  # the connection it arrived on: acks are scoped to it
    mid: int
    qos: int
    topic: bytes  # raw: a topic that is not UTF-8 is a dead letter, not a crash
    payload: bytes
    received_at: float  # time.monotonic()
    # MQTT DUP flag: the broker sent it before (it was in hand at a stop or a disconnect)
    dup: bool = False


class LeanClient(paho.Client):
    """paho's client with a lean receive path for the ingestor's hot loop.

    Measured with py-spy while the ingestor drained a queue (docs/ingest.md), stock
    paho spent about half of its per-message time building what the ingestor never
    uses: an ``MQTTMessage`` with its own ``Condition``, a ``Properties`` object even
    for a PUBLISH without properties, a topic-filter match; and a ``select()`` plus
    three ``recv()`` calls per packet. This client reads the socket in 64 KiB chunks,
    parses every packet already read before it returns to ``select()``, and hands a
    QoS 0/1 PUBLISH without properties straight to ``deliver``. Anything else (QoS 2,
    properties such as a topic alias, every other packet) takes stock paho's path.
    """

    def __init__(
        self, *args: Any, deliver: Callable[[int, int, bytes, bytes, bool], None], **kw: Any
    ):
        super().__init__(*args, **kw)
        self._deliver = deliver
        self._rdata = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos < len(self._rdata):
            chunk = self._rdata[self._rpos : self._rpos + bufsize]
            self._rpos += len(chunk)
            return chunk
        data = super()._sock_recv(max(bufsize, READ_CHUNK_BYTES))
        if len(data) <= bufsize:
            return data
        self._rdata, self._rpos = data, bufsize
        return data[:bufsize]

    def _sock_close(self) -> None:
        self._rdata, self._rpos = b"", 0  # never parse an old connection's bytes
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        if self._sock is None:
            return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
        n = 0
        # Past the burst, go on only while bytes wait in our buffer: select() cannot
        # see them, so leaving them there would stall until the next packet arrives.
        while n < READ_BURST_PACKETS or self._rpos < len(self._rdata):
            if self._sock is None:
                return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == paho.MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            n += 1
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> paho.MQTTErrorCode:
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        size = len(packet)
        dup = bool(header & 0x08)
        if qos < 2 and size >= 2 and self._protocol == paho.MQTTv5:
            pos = 2 + ((packet[0] << 8) | packet[1])  # past the topic
            mid = 0
            if qos:
                mid = (packet[pos] << 8) | packet[pos + 1] if pos + 2 <= size else 0
                pos += 2
            # A zero property length: no alias, nothing but topic and payload.
            if pos > 2 and pos < size and packet[pos] == 0 and (mid or not qos):
                self._deliver(
                    mid, qos, bytes(packet[2 : pos - 2 * qos]), bytes(packet[pos + 1 :]), dup
                )
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_publish()


# The private parts of paho that LeanClient relies on; with another paho, stock it is.
_LEAN_OK = all(
    hasattr(paho.Client, name)
    for name in ("_sock_recv", "_sock_close", "_packet_read", "_loop_rc_handle", "_handle_publish")
)


class FatalMqttError(RuntimeError):
    """Retrying cannot help (bad credentials, refused subscription)."""


class MqttConsumer:
    """Receives messages into ``inbox`` and acknowledges them on request."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        client_id: str,
        filters: list[str],
        receive_maximum: int,
        session_expiry_s: int,
        keepalive_s: int = 30,
    ) -> None:
        self.target = target
        self.client_id = client_id
        self.filters = filters
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.inbox: collections.deque[Delivery] = collections.deque()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.fatal: str | None = None
        self.connects = 0
        self.sessions_lost = 0
        self._gen = 0
        self._is_connected = False
        self._lock = threading.Lock()
        self._client = self._make_client()
        self._batched_acks = hasattr(self._client, "_packet_queue")

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self) -> paho.Client:
        options: dict[str, Any] = dict(
            client_id=self.client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        client = (
            LeanClient(paho.CallbackAPIVersion.VERSION2, deliver=self._deliver, **options)
            if _LEAN_OK
            else paho.Client(paho.CallbackAPIVersion.VERSION2, **options)
        )
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set()
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.suppress_exceptions = True  # a bug in a callback must not kill the loop
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def start(self) -> None:
        self._client.connect_async(
            self.target.host,
            self.target.port,
            keepalive=self.keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session and its queue stay at the broker)."""
        try:
            self._client.disconnect()
        except Exception:  # stopping must not fail
            log.debug("disconnect failed", exc_info=True)
        self._client.loop_stop()

    # ------------------------------------------------------------------ callbacks

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                code = reason_code.value
                if code in FATAL_CONNECT_CODES:
                    self._fail(
                        f"the broker at {self.target.redacted} refused to connect: "
                        f"{FATAL_CONNECT_CODES[code]} ({reason_code}); fix CLEARDAY_MQTT_URL "
                        "or the broker's password file, then restart"
                    )
                else:
                    log.warning("broker refused the connection: %s; retrying", reason_code)
                return
            with self._lock:
                self._gen += 1
                self._is_connected = True
            self.connects += 1
            if self.connects > 1 and not flags.session_present:
                self.sessions_lost += 1
                log.warning(
                    "the broker had no session for %s: messages queued while disconnected "
                    "may be lost (is broker persistence on?)",
                    self.client_id,
                )
            log.info(
                "connected to %s as %s (session %s)",
                self.target.redacted,
                self.client_id,
                "resumed" if flags.session_present else "new",
            )
            options = SubscribeOptions(qos=1)
            client.subscribe([(f, options) for f in self.filters])
            self.connected.set()
        except Exception:  # callbacks never raise
            log.exception("on_connect failed")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.warning("cannot reach the broker at %s; retrying", self.target.redacted)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            with self._lock:
                self._gen += 1
                self._is_connected = False
            self.connected.clear()
            self.subscribed.clear()
            if reason_code.is_failure and self.fatal is None:
                log.warning("disconnected from the broker (%s); reconnecting", reason_code)
        except Exception:
            log.exception("on_disconnect failed")

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            refused = [
                (f, rc) for f, rc in zip(self.filters, reason_codes, strict=False) if rc.is_failure
            ]
            if refused:
                what = ", ".join(f"{f} ({rc})" for f, rc in refused)
                self._fail(
                    f"the broker refused the subscription to {what}; check the ingestor "
                    "user's ACL (it needs read on clearday/v1/trucks/# and "
                    "clearday/v1/gateways/#: regenerate the broker's accounts with "
                    "`clearday mqtt-credentials`) and that shared subscriptions are allowed"
                )
                return
            self.subscribed.set()
            log.info("subscribed to %s", ", ".join(self.filters))
        except Exception:
            log.exception("on_subscribe failed")

    def _deliver(self, mid: int, qos: int, topic: bytes, payload: bytes, dup: bool) -> None:
        # The hot path: one append. Everything else happens in the ingestor's threads.
        self.inbox.append(Delivery(self._gen, mid, qos, topic, payload, time.monotonic(), dup))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # What LeanClient's fast path does not take (QoS 2, properties) arrives here.
        self.inbox.append(
            Delivery(
                self._gen,
                message.mid,
                message.qos,
                message._topic,
                bytes(message.payload),
                message.timestamp,
                bool(message.dup),
            )
        )

    def _fail(self, message: str) -> None:
        self.fatal = message
        log.error("%s", message)
        self._client.disconnect()  # loop_forever stops instead of reconnecting

    # ------------------------------------------------------------------ acks

    def ack(self, deliveries: Iterable[Delivery]) -> int:
        """Acknowledge committed messages; returns how many acks were sent.

        Messages from an earlier connection are skipped: the broker redelivers them
        on the current connection, where they will be stored (idempotently) and acked.
        """
        with self._lock:
            if not self._is_connected:
                return 0
            gen = self._gen
            mids = [d.mid for d in deliveries if d.gen == gen and d.qos > 0]
            if not mids:
                return 0
            if self._batched_acks:
                # All PUBACKs in one write instead of one send() each: on loopback the
                # per-packet send costs as much as paho's whole receive path.
                data = b"".join([_PUBACK.pack(_PUBACK_BYTE, 2, mid) for mid in mids])
                self._client._packet_queue(_PUBACK_BYTE, data, 0, 0)
            else:
                for mid in mids:
                    self._client.ack(mid, 1)
        return len(mids)

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait for the first connection; False on timeout or a fatal refusal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.fatal is not None:
                return False
            if self.subscribed.wait(0.1):
                return True
        return False
