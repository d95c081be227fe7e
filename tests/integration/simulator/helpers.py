"""A subscriber that records what the simulated terminals send."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho

from fleet.config import MqttTarget


class Recorder:
    """Subscribes to every ClearDay truck topic; keeps live (not retained) messages."""

    def __init__(self, url: str, topic: str = "clearday/v1/trucks/#") -> None:
        target = MqttTarget(url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"test-recorder-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        if target.username is not None:
            self.client.username_pw_set(target.username, target.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect(target.host, target.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert self._ready.wait(10), "no SUBACK from the broker"

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.retain:  # a retained status left by an earlier run
            return
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond the expected count would show up now
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
