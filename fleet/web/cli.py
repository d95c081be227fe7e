"""`clearday serve` (API + dashboard) and `clearday user` (accounts), added to the
`clearday` command by fleet/cli.py through `register(app)`."""

from __future__ import annotations

import getpass
import sys
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer

from fleet import db
from fleet.alerts.worker import run_forever
from fleet.auth import service as auth_service
from fleet.auth.models import Role
from fleet.config import Settings

user_app = typer.Typer(help="Create and manage dashboard/API users.", no_args_is_help=True)

AUTH_MIGRATION = "0006_auth.sql"


def _settings() -> Settings:
    return Settings()


def _check_schema(url: str) -> None:
    with db.connect(url) as conn:
        if AUTH_MIGRATION not in db.applied_migrations(conn):
            raise db.DatabaseUnavailable(
                "the database schema is not up to date (no users table): run `clearday migrate`"
            )


def _read_password(from_stdin: bool, *, confirm: bool = True) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise typer.BadParameter("no password on standard input", param_hint="--password-stdin")
        return password
    if not sys.stdin.isatty():
        raise typer.BadParameter(
            "no terminal to prompt on: pipe the password with --password-stdin",
            param_hint="--password-stdin",
        )
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise typer.BadParameter("the two passwords differ")
    return password


@user_app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="login name (letters, digits, _ . @ -)")],
    role: Annotated[Role, typer.Option(help="admin, dispatcher, supervisor or viewer")],
    district: Annotated[
        list[str] | None,
        typer.Option("--district", "-d", help="limit the user to this district (repeatable)"),
    ] = None,
    name: Annotated[str, typer.Option(help="display name, e.g. 王丽")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create a user (the first admin too). The password is prompted for, or read from
    standard input with --password-stdin; there is no default password."""
    url = _settings().storage.database_dsn()
    _check_schema(url)
    password = _read_password(password_stdin)
    try:
        with db.connect(url, autocommit=True) as conn:
            user = auth_service.create_user(
                conn,
                username=username,
                password=password,
                role=role,
                districts=district or [],
                display_name=name,
            )
    except auth_service.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    scope = ", ".join(user.districts) if user.districts else "all districts"
    typer.echo(f"created user {user.username} (id {user.user_id}, {user.role.value}, {scope})")


@user_app.command("list")
def list_() -> None:
    """List users."""
    url = _settings().storage.database_dsn()
    _check_schema(url)
    with db.connect(url, autocommit=True) as conn:
        users = auth_service.list_users(conn)
    for user in users:
        scope = ",".join(user.districts) or "*"
        state = "active" if user.active else "inactive"
        typer.echo(
            f"{user.user_id:>5}  {user.username:<24} {user.role.value:<11} {state:<9} {scope}"
        )


def _find(conn: object, username: str) -> int:
    user = auth_service.find_user(conn, username=username)  # type: ignore[arg-type]
    if user is None:
        typer.echo(f"error: no user {username!r}", err=True)
        raise typer.Exit(2)
    return user.user_id


@user_app.command("password")
def password(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Set a user's password (and log them out everywhere)."""
    url = _settings().storage.database_dsn()
    _check_schema(url)
    new_password = _read_password(password_stdin)
    with db.connect(url, autocommit=True) as conn:
        try:
            auth_service.update_user(
                conn, user_id=_find(conn, username), now=datetime.now(UTC), password=new_password
            )
        except auth_service.AuthError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"password of {username} changed; their tokens are revoked")


@user_app.command("deactivate")
def deactivate(username: str) -> None:
    """Deactivate a user and revoke their tokens."""
    url = _settings().storage.database_dsn()
    _check_schema(url)
    with db.connect(url, autocommit=True) as conn:
        auth_service.update_user(
            conn, user_id=_find(conn, username), now=datetime.now(UTC), active=False
        )
    typer.echo(f"deactivated {username}; their tokens are revoked")


@user_app.command("revoke-tokens")
def revoke_tokens(username: str) -> None:
    """Log a user out everywhere."""
    url = _settings().storage.database_dsn()
    _check_schema(url)
    with db.connect(url, autocommit=True) as conn:
        count = auth_service.revoke_user_tokens(
            conn, user_id=_find(conn, username), now=datetime.now(UTC)
        )
    typer.echo(f"revoked {count} token(s) of {username}")


def serve(
    host: Annotated[str | None, typer.Option(help="default: CLEARDAY_HTTP_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: CLEARDAY_HTTP_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    alerts: Annotated[
        bool,
        typer.Option(
            "--alerts/--no-alerts",
            help="also run the alert worker and webhook sender in this process "
            "(use --no-alerts when `clearday alerts run` runs elsewhere)",
        ),
    ] = True,
) -> None:
    """Serve the API (/api/v1) and the dashboard (/)."""

    import uvicorn

    settings = _settings()
    url = settings.storage.database_dsn()
    _check_schema(url)
    bind_host = host or settings.web.http_host
    bind_port = port or settings.web.http_port
    typer.echo(f"ClearDay API and dashboard on http://{bind_host}:{bind_port}/")
    config = dict(
        host=bind_host,
        port=bind_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
        # Longer than uvicorn's 5 s so that clients and proxies reuse connections
        # rather than race the server closing them.
        timeout_keep_alive=30,
        proxy_headers=True,
    )
    stop = threading.Event()
    worker: threading.Thread | None = None
    if alerts:
        worker = threading.Thread(
            target=run_forever, args=(settings, stop), name="clearday-alerts", daemon=True
        )
        worker.start()
        typer.echo("alert worker running in this process (--no-alerts to leave it out)")
    try:
        if workers > 1:
            # Each worker builds its app from the environment, as this process did.
            uvicorn.run("fleet.web.app:app_from_env", factory=True, workers=workers, **config)  # type: ignore[arg-type]
        else:
            from fleet.web.app import create_app

            uvicorn.run(create_app(settings), **config)  # type: ignore[arg-type]
    finally:
        stop.set()
        if worker:
            worker.join(15)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(user_app, name="user")
