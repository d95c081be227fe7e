"""Which broker account and client id each gateway process uses, and its batches' topic."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket

import pytest

from fleet.config import MqttTarget
from ingest.jt808.service import GatewayUnavailable, Instance, broker_identity, run_async
from tests.settings import flat_settings


def test_one_process_keeps_the_account_and_uses_it_as_client_id() -> None:
    """A single process logs in as the configured account, client id = user name."""
    target = MqttTarget("mqtt://jt808:secret@broker:1883")
    own, client_id = broker_identity(target, Instance())
    assert (own.username, own.password, client_id) == ("jt808", "secret", "jt808")


def test_each_of_several_processes_logs_in_as_its_own_numbered_account() -> None:
    """Process n of N is <user>-n with the one password (the broker makes the user name
    the client id: two processes on one account would take each other's connection)."""
    target = MqttTarget("mqtt://jt808:secret@broker:1883")
    got = [broker_identity(target, Instance(n, 3)) for n in (1, 2, 3)]
    assert [(t.username, t.password, c) for t, c in got] == [
        ("jt808-1", "secret", "jt808-1"),
        ("jt808-2", "secret", "jt808-2"),
        ("jt808-3", "secret", "jt808-3"),
    ]
    assert target.username == "jt808", "the configured target is left as it was"


def test_anonymous_processes_get_distinct_client_ids() -> None:
    """Without an account the client ids still differ per process."""
    target = MqttTarget("mqtt://127.0.0.1:1883")
    ids = {broker_identity(target, Instance(n, 2))[1] for n in (1, 2)}
    host = socket.gethostname()
    assert ids == {f"clearday-jt808-{host}-1", f"clearday-jt808-{host}-2"}
    assert all(broker_identity(target, Instance(n, 2))[0].username is None for n in (1, 2))


def test_a_gateway_whose_id_cannot_name_its_batch_topic_refuses_to_start() -> None:
    """An account name that is no topic level stops the gateway with a message naming
    the fix, before it connects anywhere."""
    settings = flat_settings(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        mqtt_url="mqtt://gw%2F1:secret@127.0.0.1:1",
    )
    start = run_async(settings, host="127.0.0.1", port=0, stop=asyncio.Event())
    # On a thread of its own: the main thread may hold a running loop left by other
    # tests (Playwright's sync API keeps one).
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        pytest.raises(GatewayUnavailable, match="CLEARDAY_JT808_BATCH_FIXES=false"),
    ):
        pool.submit(asyncio.run, start).result()
