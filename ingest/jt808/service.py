"""The `clearday jt808` process: database pool, broker connection, TCP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import Callable

import uvloop
from psycopg_pool import AsyncConnectionPool

from fleet.config import MqttTarget, Settings
from ingest.jt808.broker import BrokerRefused, Publisher
from ingest.jt808.gateway import Gateway, GatewayConfig, Registry, serve
from ingest.jt808.metrics import serve_metrics

log = logging.getLogger("clearday.jt808")

BROKER_WAIT_S = 30.0
DB_POOL_MAX = 8


class GatewayUnavailable(RuntimeError):
    """Something the gateway needs is not configured or refuses it; the message says what."""


def raise_fd_limit() -> int:
    """Open files up to the hard limit: one per terminal connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def client_id_for(target: MqttTarget) -> str:
    """The account's user name (the shipped broker makes it the client id anyway)."""
    return target.username or f"clearday-jt808-{socket.gethostname()}"


async def run_async(
    settings: Settings,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: Callable[[int], None] | None = None,
) -> None:
    if settings.database_url is None:
        raise GatewayUnavailable("set CLEARDAY_DATABASE_URL (the truck table says who may connect)")
    if settings.mqtt_url is None:
        raise GatewayUnavailable(
            "set CLEARDAY_MQTT_URL to the gateway's own account (clearday mqtt-credentials --gateway-user)"
        )
    target = MqttTarget(settings.mqtt_dsn())
    config = GatewayConfig.from_settings(settings)
    publisher = Publisher(target, client_id_for(target), timeout_s=config.publish_timeout_s)
    publisher.start()
    try:
        if not await publisher.wait_connected(BROKER_WAIT_S):
            log.warning(
                "no broker at %s yet; terminals get no acknowledgement until it is up",
                target.redacted,
            )
    except BrokerRefused as exc:
        await publisher.close()
        raise GatewayUnavailable(str(exc)) from None
    pool = AsyncConnectionPool(
        settings.database_dsn(),
        min_size=1,
        max_size=DB_POOL_MAX,
        open=False,
        kwargs={"connect_timeout": 5},
    )
    await pool.open(wait=False)
    gateway = Gateway(config, Registry(pool), publisher)
    metrics = None
    if settings.jt808_metrics_port:
        try:
            metrics = serve_metrics(
                gateway, publisher, port=settings.jt808_metrics_port, host=settings.metrics_host
            )
            log.info(
                "metrics on http://%s:%d/metrics",
                settings.metrics_host,
                settings.jt808_metrics_port,
            )
        except OSError as exc:
            log.warning(
                "metrics endpoint not started on port %d (%s); set CLEARDAY_JT808_METRICS_PORT",
                settings.jt808_metrics_port,
                exc,
            )
    try:
        await serve(gateway, host=host, port=port, stop=stop, started=started)
    finally:
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        await publisher.close()
        await pool.close()


def run(settings: Settings, *, host: str, port: int) -> None:
    limit = raise_fd_limit()
    log.info("up to %d open files (connections)", limit)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_async(settings, host=host, port=port, stop=stop)

    with loop_runner() as runner:
        runner.run(main())


def loop_runner() -> asyncio.Runner:
    """The gateway's event loop: uvloop, whose reads and writes cost a fraction of the
    standard loop's, and they are most of the gateway's time per location."""
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
