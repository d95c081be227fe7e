"""The `clearday jt808` process: database pool, broker connection, TCP server; with
``processes`` > 1, that many such processes sharing the port (SO_REUSEPORT: the kernel
spreads new connections over them) under a supervisor that restarts one that dies."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import multiprocessing
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import uvloop
from psycopg_pool import AsyncConnectionPool

from fleet.config import MqttTarget, Settings
from ingest import wire
from ingest.credentials import instance_names
from ingest.jt808.broker import BrokerRefused, Publisher
from ingest.jt808.gateway import Gateway, GatewayConfig, Registry, serve
from ingest.jt808.metrics import serve_metrics
from routing.processes import die_with

log = logging.getLogger("clearday.jt808")

BROKER_WAIT_S = 30.0
DB_POOL_MAX = 8
RESTART_DELAY_S = 1.0  # before a process that died is started again
STOP_WAIT_S = 30.0  # for the processes to finish after SIGTERM
EXIT_UNAVAILABLE = 2  # a process that cannot run as configured: restarting cannot help


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


@dataclass(frozen=True, slots=True)
class Instance:
    """Which of the gateway's ``of`` processes this is (``number`` 1…``of``)."""

    number: int = 1
    of: int = 1


def broker_identity(target: MqttTarget, instance: Instance) -> tuple[MqttTarget, str]:
    """The broker account and client id of one process. The shipped broker makes the
    user name the client id, so each of several processes logs in as its own
    account, ``<user>-<n>`` (the accounts `clearday mqtt-credentials --gateway-user
    <user> --gateways N` makes, all with one password)."""
    base = target.username or f"clearday-jt808-{socket.gethostname()}"
    if instance.of == 1:
        return target, base
    name = instance_names(base, instance.of)[instance.number - 1]
    if target.username is None:
        return target, name
    own = copy.copy(target)
    own.username = name
    return own, name


async def run_async(
    settings: Settings,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: Callable[[int], None] | None = None,
    instance: Instance = Instance(),
) -> None:
    if settings.storage.database_url is None:
        raise GatewayUnavailable("set CLEARDAY_DATABASE_URL (the truck table says who may connect)")
    if settings.ingest.mqtt_url is None:
        raise GatewayUnavailable(
            "set CLEARDAY_MQTT_URL to the gateway's own account (clearday mqtt-credentials --gateway-user)"
        )
    target, client_id = broker_identity(MqttTarget(settings.ingest.mqtt_dsn()), instance)
    config = GatewayConfig.from_settings(settings)
    if config.batch_fixes and not wire.is_valid_terminal_id(client_id):
        raise GatewayUnavailable(
            f"the gateway's id {client_id!r} names its batches' topic and must match "
            f"{wire.TERMINAL_ID_PATTERN}: put a user name in CLEARDAY_MQTT_URL, or set "
            "CLEARDAY_JT808_BATCH_FIXES=false"
        )
    publisher = Publisher(target, client_id, timeout_s=config.publish_timeout_s)
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
    dsn = settings.storage.database_dsn()
    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=DB_POOL_MAX,
        open=False,
        kwargs={"connect_timeout": 5},
    )
    await pool.open(wait=False)
    gateway = Gateway(config, Registry(pool, dsn), publisher)
    metrics = None
    metrics_port = settings.jt808.metrics_port + instance.number - 1  # one port per process
    if settings.jt808.metrics_port:
        try:
            metrics = serve_metrics(
                gateway, publisher, port=metrics_port, host=settings.metrics_host
            )
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_port)
        except OSError as exc:
            log.warning(
                "metrics endpoint not started on port %d (%s); set CLEARDAY_JT808_METRICS_PORT",
                metrics_port,
                exc,
            )
    try:
        await serve(
            gateway,
            host=host,
            port=port,
            stop=stop,
            started=started,
            reuse_port=instance.of > 1,
        )
    finally:
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        await publisher.close()
        await pool.close()


def run(settings: Settings, *, host: str, port: int, processes: int = 1) -> None:
    if processes > 1:
        supervise(settings, host=host, port=port, processes=processes)
    else:
        run_instance(settings, host=host, port=port)


def run_instance(
    settings: Settings, *, host: str, port: int, instance: Instance = Instance()
) -> None:
    limit = raise_fd_limit()
    log.info("up to %d open files (connections)", limit)
    freeze_imports()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_async(settings, host=host, port=port, stop=stop, instance=instance)

    with loop_runner() as runner:
        runner.run(main())


def _instance_main(
    settings: Settings, host: str, port: int, instance: Instance, parent: int, log_level: int
) -> None:
    """One of several gateway processes (started by :func:`supervise`)."""
    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[{instance.number}]: %(message)s",
    )
    try:
        run_instance(settings, host=host, port=port, instance=instance)
    except GatewayUnavailable as exc:
        log.error("%s", exc)
        raise SystemExit(EXIT_UNAVAILABLE) from None


def supervise(settings: Settings, *, host: str, port: int, processes: int) -> None:
    """Run ``processes`` gateway processes on one port until SIGTERM / SIGINT; one that
    dies is started again (its terminals reconnect meanwhile, to the others)."""
    if port == 0:
        raise GatewayUnavailable("several processes share one port: give a port, not 0")
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop
    level = logging.getLogger().getEffectiveLevel()

    def start(number: int) -> BaseProcess:
        proc = ctx.Process(
            target=_instance_main,
            args=(settings, host, port, Instance(number, processes), os.getpid(), level),
            name=f"jt808-{number}",
        )
        proc.start()
        return proc

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    running = {n: start(n) for n in range(1, processes + 1)}
    log.info("%d gateway processes on port %d", processes, port)
    try:
        while not stopping:
            time.sleep(0.2)
            for number, proc in list(running.items()):
                if proc.is_alive() or stopping:
                    continue
                if proc.exitcode == EXIT_UNAVAILABLE:
                    raise GatewayUnavailable(f"gateway process {number} cannot run; see its log")
                log.error(
                    "gateway process %d exited (%s); starting it again", number, proc.exitcode
                )
                time.sleep(RESTART_DELAY_S)
                running[number] = start(number)
    finally:
        for proc in running.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for proc in running.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def freeze_imports() -> None:
    """Leave every object that exists now (the imported modules' hundreds of
    thousands) out of all later garbage collections. The gateway creates several
    objects per location,
    some of which live until the PUBACK and so reach the oldest generation, whose
    collection would otherwise go through the modules' objects too (gc.freeze: about
    15 % of the gateway's Python work per location)."""
    gc.collect()
    gc.freeze()


def loop_runner() -> asyncio.Runner:
    """The gateway's event loop: uvloop, whose reads and writes cost a fraction of the
    standard loop's, and they are most of the gateway's time per location."""
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
