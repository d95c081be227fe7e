"""The gateway's publisher against a real Mosquitto: a callback says True only for a
PUBACK with a success code, exactly once per message, whatever the broker does."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
import pytest

from fleet.config import MqttTarget
from fleet.devservers import PrivateMosquitto
from ingest import wire
from ingest.jt808.batching import FixBatcher
from ingest.jt808.broker import Publisher
from ingest.jt808.service import loop_runner
from tests.integration.ingest.support import wait_for

TOPIC = wire.positions_topic("GPS-T1")


@contextlib.contextmanager
def subscriber(
    broker: PrivateMosquitto, topic_filter: str, client_id: str, on_payload: Callable[[bytes], Any]
) -> Iterator[None]:
    """A QoS 1 subscriber to `topic_filter`, handing each payload to `on_payload`."""
    ready = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: on_payload(bytes(m.payload))
    target = MqttTarget(broker.url)
    client.connect(target.host, target.port)
    client.loop_start()
    assert ready.wait(10), "subscriber not ready"
    try:
        yield
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def subscribed(broker: PrivateMosquitto) -> Iterator[Counter[bytes]]:
    """A QoS 1 subscriber to every truck's positions; counts the payloads it gets."""
    got: Counter[bytes] = Counter()
    with subscriber(
        broker, wire.subscription_filters()[0], "test-subscriber", lambda p: got.update([p])
    ):
        yield got


def run(scenario: Callable[[Publisher], object], broker: PrivateMosquitto, **kw: float) -> object:
    async def main() -> object:
        publisher = Publisher(MqttTarget(broker.url), "test-gateway", **kw)  # type: ignore[arg-type]
        publisher.start()
        try:
            assert await publisher.wait_connected(10)
            result = scenario(publisher)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        finally:
            await publisher.close()

    def in_thread() -> object:
        with loop_runner() as runner:
            return runner.run(main())

    # On a thread of its own: the main thread may hold a running loop left by other
    # tests (Playwright's sync API keeps one).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(in_thread).result()


class Calls:
    """Records every callback of one message."""

    def __init__(self) -> None:
        self.results: list[bool] = []
        self.done = asyncio.Event()

    def __call__(self, ok: bool) -> None:
        self.results.append(ok)
        self.done.set()


def test_many_messages_each_resolved_once_and_received(
    broker: PrivateMosquitto, subscribed: Counter[bytes]
) -> None:
    """5,000 messages published at once (more than one write, more than one turn of
    the loop): every callback True exactly once, every payload received."""

    async def scenario(publisher: Publisher) -> list[Calls]:
        calls = [Calls() for _ in range(5000)]
        for i, call in enumerate(calls):
            publisher.publish(TOPIC, b"%d" % i, call)
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in calls)), 30)
        await asyncio.sleep(0.2)  # a second callback would have come by now
        return calls

    calls = run(scenario, broker)
    assert isinstance(calls, list)
    assert all(c.results == [True] for c in calls)
    wait_for(lambda: sum(subscribed.values()) >= 5000, 30, "the subscriber to get them all")
    assert sorted(int(p) for p in subscribed) == list(range(5000))


def test_a_message_nobody_subscribed_to_is_a_failure(broker: PrivateMosquitto) -> None:
    """PUBACK 0x10 "no matching subscribers": the broker dropped the message, so the
    terminal must not be told it is stored."""

    async def scenario(publisher: Publisher) -> bool:
        return await publisher.publish_wait(TOPIC, b"{}")

    assert run(scenario, broker) is False


def test_a_frozen_broker_times_out_then_late_pubacks_change_nothing(
    broker: PrivateMosquitto, subscribed: Counter[bytes]
) -> None:
    """The broker stops answering (SIGSTOP): the messages fail once their timeout
    passes. It resumes: its late PUBACKs resolve nothing a second time, and new
    messages are acknowledged again."""
    assert broker.process is not None
    pid = broker.process.pid

    async def scenario(publisher: Publisher) -> tuple[list[Calls], list[Calls]]:
        before = [Calls() for _ in range(20)]
        os.kill(pid, signal.SIGSTOP)
        try:
            for i, call in enumerate(before):
                publisher.publish(TOPIC, b"before %d" % i, call)
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in before)), 10)
        finally:
            os.kill(pid, signal.SIGCONT)
        after = [Calls() for _ in range(20)]
        for i, call in enumerate(after):
            publisher.publish(TOPIC, b"after %d" % i, call)
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in after)), 10)
        await asyncio.sleep(0.5)
        return before, after

    result = run(scenario, broker, timeout_s=0.5)
    assert isinstance(result, tuple)
    before, after = result
    assert all(c.results == [False] for c in before)
    assert all(c.results == [True] for c in after)


def test_a_stopped_broker_fails_at_once_and_the_publisher_comes_back(
    broker: PrivateMosquitto, subscribed: Counter[bytes]
) -> None:
    """Without a broker a message fails at once (nothing is queued: the terminal keeps
    it); once the broker is back the publisher reconnects by itself."""

    async def scenario(publisher: Publisher) -> tuple[bool, bool, bool]:
        first = await publisher.publish_wait(TOPIC, b"1")
        broker.stop()
        while publisher.connected:
            await asyncio.sleep(0.05)
        down = await asyncio.wait_for(publisher.publish_wait(TOPIC, b"2"), 1)
        broker.start()
        assert await publisher.wait_connected(30)
        # until the subscriber is back too, the broker answers "no matching subscribers"
        for _ in range(100):
            if await publisher.publish_wait(TOPIC, b"3"):
                return first, down, True
            await asyncio.sleep(0.1)
        return first, down, False

    assert run(scenario, broker) == (True, False, True)
    assert subscribed[b"2"] == 0


GATEWAY_TOPIC = wire.gateway_positions_topic("test-gateway")


@pytest.fixture
def batches(broker: PrivateMosquitto) -> Iterator[list[bytes]]:
    """A QoS 1 subscriber to every gateway's batches; keeps the payloads in order."""
    got: list[bytes] = []
    with subscriber(broker, wire.subscription_filters()[-1], "test-batch-subscriber", got.append):
        yield got


def gateway_items(terminal: int, count: int) -> list[bytes]:
    """``count`` encoded fixes of terminal ``GPS-<terminal>``, told apart by ``seq``."""
    at = datetime.now(UTC)
    prefix = wire.gateway_item_prefix(f"GPS-{terminal}")
    return [
        wire.encode_gateway_fix(prefix, wire.Fix(recorded_at=at, lat=31.8, lon=117.2, seq=k))
        for k in range(count)
    ]


def test_the_fixes_of_one_loop_turn_go_out_in_full_batches_each_answered_once(
    broker: PrivateMosquitto, batches: list[bytes]
) -> None:
    """300 terminals with one fix each and one with 700 (a blind-zone upload), handed
    over in one turn: batches of at most 500 fixes and 64 KiB, every fix in exactly one
    of them, every contribution's callback True exactly once after its PUBACK."""

    async def scenario(publisher: Publisher) -> tuple[list[Calls], FixBatcher]:
        batcher = FixBatcher(publisher, GATEWAY_TOPIC, max_fixes=500, max_bytes=64 * 1024)
        calls = [Calls() for _ in range(301)]
        for t in range(300):
            batcher.add(gateway_items(t, 1), calls[t])
        batcher.add(gateway_items(300, 700), calls[300])
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in calls)), 30)
        await asyncio.sleep(0.2)  # a second callback would have come by now
        return calls, batcher

    result = run(scenario, broker)
    assert isinstance(result, tuple)
    calls, batcher = result
    assert all(c.results == [True] for c in calls)
    wait_for(lambda: len(batches) >= batcher.batches, 30, "the subscriber to get every batch")
    assert batcher.fixes == 1000 and batcher.batches == len(batches) >= 2
    received = []
    for payload in batches:
        assert len(payload) <= 64 * 1024
        parsed = wire.parse_gateway_fixes(GATEWAY_TOPIC, payload)
        assert parsed.rejections == [] and len(parsed.items) <= 500
        received += [(i.terminal_id, i.fix.seq) for i in parsed.items]
    expected = [(f"GPS-{t}", 0) for t in range(300)] + [("GPS-300", k) for k in range(700)]
    assert sorted(received) == sorted(expected)


def test_a_batch_nobody_reads_fails_every_contribution(broker: PrivateMosquitto) -> None:
    """No subscriber: PUBACK 0x10, and none of the terminals is told its fix is stored."""

    async def scenario(publisher: Publisher) -> list[Calls]:
        batcher = FixBatcher(publisher, GATEWAY_TOPIC)
        calls = [Calls() for _ in range(20)]
        for t, call in enumerate(calls):
            batcher.add(gateway_items(t, 1), call)
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in calls)), 30)
        return calls

    calls = run(scenario, broker)
    assert isinstance(calls, list)
    assert all(c.results == [False] for c in calls)
