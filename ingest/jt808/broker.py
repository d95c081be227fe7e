"""The gateway's MQTT side: QoS 1 publishing whose PUBACK an asyncio task can await.

paho-mqtt runs its network loop on its own thread and reconnects by itself. PUBACKs
are handed to the event loop in bursts (one wake-up for all PUBACKs that arrived
meanwhile), and a publish resolves to True only for a PUBACK with a success reason
code: 0x10 "no matching subscribers" means the broker dropped the message, so it is
a failure here, and so is a timeout. While disconnected, publish fails at once
rather than queueing without bound: the terminal keeps what was not acknowledged and
sends it again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from typing import Any

import paho.mqtt.client as paho

from fleet.config import MqttTarget
from ingest.mqtt import FATAL_CONNECT_CODES

log = logging.getLogger("clearday.jt808.broker")

KEEPALIVE_S = 30
MAX_INFLIGHT_MESSAGES = 10_000
NO_MATCHING_SUBSCRIBERS = 0x10


class BrokerRefused(RuntimeError):
    """The broker refused the gateway's account: retrying cannot help."""


class Publisher:
    def __init__(self, target: MqttTarget, client_id: str) -> None:
        self.target = target
        self.client_id = client_id
        self.refused: str | None = None
        self._connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[bool]] = {}
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()
        self._wake_scheduled = False
        self._lock = threading.Lock()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.max_inflight_messages_set(MAX_INFLIGHT_MESSAGES)
        client.max_queued_messages_set(MAX_INFLIGHT_MESSAGES)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.client.connect_async(self.target.host, self.target.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    async def wait_connected(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._connected.is_set():
            if self.refused is not None:
                raise BrokerRefused(self.refused)
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def publish(
        self, topic: str, payload: bytes, *, timeout_s: float, retain: bool = False
    ) -> bool:
        """True once the broker acknowledged the message (PUBACK, success)."""
        if not self._connected.is_set():
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        self._pending[info.mid] = future
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return False
        finally:
            if self._pending.get(info.mid) is future:
                del self._pending[info.mid]

    # --- paho's thread: never raise, never block
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if getattr(rc, "is_failure", False):
            code = getattr(rc, "value", 0)
            if code in FATAL_CONNECT_CODES:
                self.refused = f"{self.target.redacted}: {FATAL_CONNECT_CODES[code]}"
                client.disconnect()
            log.error("broker refused the connection: %s", rc)
            return
        log.info("connected to %s as %s", self.target.redacted, self.client_id)
        self._connected.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if self._connected.is_set():
            log.warning("lost the broker (%s); locations are not acknowledged until it is back", rc)
        self._connected.clear()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        code = getattr(rc, "value", 0)
        ok = code < 0x80 and code != NO_MATCHING_SUBSCRIBERS
        with self._lock:
            self._acks.append((mid, ok))
            if self._wake_scheduled or self._loop is None:
                return
            self._wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: the gateway is stopping
            self._loop.call_soon_threadsafe(self._resolve)

    # --- the event loop
    def _resolve(self) -> None:
        with self._lock:
            self._wake_scheduled = False
            acks = list(self._acks)
            self._acks.clear()
        for mid, ok in acks:
            future = self._pending.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(ok)
