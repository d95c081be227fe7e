"""`clearday ingest`, `clearday jt808` and `clearday mqtt-credentials` (plugged in via
`clearday.commands`)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from fleet.config import MqttTarget, Settings
from fleet.db import connect
from fleet.trucks import repo as trucks_repo
from fleet.trucks.terminals import parse_jt808_phone
from ingest import credentials

log = logging.getLogger("clearday.ingest")
GC_GEN0_THRESHOLD = 100_000


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("mqtt-credentials")(mqtt_credentials)
    app.command("jt808")(jt808)
    app.command("jt808-command")(jt808_command)


def ingest(
    client_id: Annotated[
        str | None,
        typer.Option(help="MQTT client id; keep it stable per instance (default: from host name)"),
    ] = None,
    share_group: Annotated[
        str | None,
        typer.Option(help="shared-subscription group; '' subscribes without sharing"),
    ] = None,
) -> None:
    """Run the ingestor: MQTT positions/events/status into the database (Ctrl-C stops)."""
    from ingest.mqtt import FatalMqttError
    from ingest.service import Ingestor

    settings = Settings()
    ingestor = Ingestor(settings, client_id=client_id, share_group=share_group)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch and stopping", signum)
        ingestor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.ingest.metrics_port:
        try:
            ingestor.metrics.serve(settings.ingest.metrics_port, host=settings.metrics_host)
            log.info(
                "metrics on http://%s:%d/metrics",
                settings.metrics_host,
                settings.ingest.metrics_port,
            )
        except OSError as exc:
            log.warning(
                "metrics endpoint not started on port %d (%s); set CLEARDAY_METRICS_PORT",
                settings.ingest.metrics_port,
                exc,
            )
    # Up to Receive Maximum messages (and a batch of rows) are alive at once; with the
    # default thresholds the cyclic GC rescans them thousands of times a second, which
    # measurably slowed the MQTT thread. Nothing in the hot path makes cycles.
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)
    try:
        ingestor.run()
    except FatalMqttError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def jt808(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default: CLEARDAY_JT808_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default: CLEARDAY_JT808_PORT, 6808)")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="gateway processes sharing the port (default: CLEARDAY_JT808_PROCESSES, 1)",
            min=1,
        ),
    ] = None,
) -> None:
    """Run the JT/T 808 gateway: terminals over TCP into the MQTT wire format (Ctrl-C stops)."""
    from ingest.jt808 import __main__ as gateway_main

    settings = Settings()  # refused settings are reported here, before the exec
    # The gateway runs in this process, re-executed as its lean entry point: it does
    # not keep this command's imports of every command group (see ingest/jt808/__main__.py).
    argv = gateway_main.command(
        host or settings.jt808.host,
        port or settings.jt808.port,
        processes or settings.jt808.processes,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def jt808_command(
    phone: Annotated[str, typer.Argument(help="the terminal's phone number (jt808_phone)")],
    query_location: Annotated[
        bool, typer.Option("--query-location", help="0x8201: ask for its position now")
    ] = False,
    set_parameter: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="0x8103: ID[:TYPE]=VALUE, e.g. 0x0029=30 (report interval, s) or "
            "0x0013=gw.example.com; TYPE byte, word, dword or string (repeatable: one message)",
        ),
    ] = None,
) -> None:
    """Queue a command for a JT/T 808 terminal; the gateway sends it once the terminal is
    connected and records its answer (table jt808_command)."""
    from ingest.jt808 import codec, repo

    commands: list[tuple[int, bytes]] = []
    try:
        key = parse_jt808_phone(phone)
        if set_parameter:
            items = [codec.parse_parameter(text) for text in set_parameter]
            commands.append((codec.MsgId.SET_PARAMETERS, codec.encode_parameters(items)))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if query_location:
        commands.append((codec.MsgId.QUERY_LOCATION, b""))
    if not commands:
        typer.echo("error: nothing to send: give --query-location and/or --set", err=True)
        raise typer.Exit(2)
    settings = Settings()
    with connect(settings.storage.database_dsn()) as conn:
        ids = [repo.queue_command(conn, key, msg_id, body) for msg_id, body in commands]
        if None in ids:
            conn.rollback()
            typer.echo(f"error: no truck has jt808_phone {key}", err=True)
            raise typer.Exit(1)
    for (msg_id, _), command_id in zip(commands, ids, strict=True):
        typer.echo(f"queued command {command_id} (0x{msg_id:04X}) for {key}")


def _ingestor_account(settings: Settings, user: str | None) -> tuple[str, str | None]:
    """The ingestor's account: --ingestor-user, else the user in CLEARDAY_MQTT_URL, else
    clearday-ingest; its password is kept from the URL when the user is the same."""
    ingestor: tuple[str, str | None] | None = None
    if settings.ingest.mqtt_url is not None:
        target = MqttTarget(settings.ingest.mqtt_dsn())
        if target.username:
            ingestor = (target.username, target.password)
    if user:
        keep_password = ingestor[1] if ingestor and ingestor[0] == user else None
        ingestor = (user, keep_password)
    return ingestor or ("clearday-ingest", None)


def mqtt_credentials(
    out: Annotated[
        Path, typer.Option(help="folder for dynamic-security.json and credentials.csv")
    ] = Path("mosquitto-auth"),
    ingestor_user: Annotated[
        str | None,
        typer.Option(help="ingestor account (default: the user in CLEARDAY_MQTT_URL)"),
    ] = None,
    ingestors: Annotated[
        int,
        typer.Option(
            min=1, help="ingestor instances: N > 1 makes one account each, <user>-1 … <user>-N"
        ),
    ] = 1,
    gateway_user: Annotated[
        str | None,
        typer.Option(
            help="also create a JT/T 808 gateway account that may publish for every truck"
        ),
    ] = None,
    gateways: Annotated[
        int,
        typer.Option(
            min=1, help="gateway instances: N > 1 makes one account each, <user>-1 … <user>-N"
        ),
    ] = 1,
    broker_group: Annotated[
        str,
        typer.Option(
            help="group Mosquitto runs as (name or number; 1883 in the eclipse-mosquitto "
            "image): dynamic-security.json becomes readable by it (mode 0640); '' keeps it 0600"
        ),
    ] = "mosquitto",
) -> None:
    """Write the broker's accounts (Mosquitto Dynamic Security): one per active truck's terminal."""

    settings = Settings()
    ingestor = _ingestor_account(settings, ingestor_user)
    try:
        gid = credentials.broker_group_id(broker_group) if broker_group else None
    except credentials.CannotShareWithBroker as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    with connect(settings.storage.database_dsn()) as conn:
        trucks = trucks_repo.active_terminals(conn)
    existing = credentials.read_existing(out / "credentials.csv")
    accounts, problems = credentials.plan_accounts(
        trucks,
        existing,
        ingestor=ingestor,
        gateway=gateway_user,
        ingestors=ingestors,
        gateways=gateways,
    )
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)
    try:
        paths = credentials.write_files(out, accounts, broker_gid=gid)
    except credentials.CannotShareWithBroker as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    terminals = sum(1 for a in accounts if a.role == credentials.ROLE_TERMINAL)
    ingestor_accounts = [a.username for a in accounts if a.role == credentials.ROLE_INGESTOR]
    gateway_accounts = [a.username for a in accounts if a.role == credentials.ROLE_GATEWAY]
    typer.echo(
        f"{terminals} terminal account(s), ingestor {', '.join(map(repr, ingestor_accounts))}"
        + (f", gateway {', '.join(map(repr, gateway_accounts))}" if gateway_accounts else "")
    )
    readable = f"group {broker_group} may read it" if gid is not None else "0600"
    typer.echo(f"wrote {paths['config']} ({readable}) and {paths['credentials']} (secret)")
    typer.echo("restart mosquitto to load it (the plugin does not re-read it on SIGHUP)")
