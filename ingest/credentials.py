"""Mosquitto password and ACL files generated from the truck table.

Every active truck's terminal gets an account named after its terminal id that may
publish only under ``clearday/v1/trucks/{its id}/…``. Each ingestor instance gets an
account of its own with read access to all trucks; an optional gateway account (a
JT/T 808 bridge) may publish for every truck. The shipped broker binds every client id
to its account's user name (``use_username_as_clientid``), so an account is one
identity: nobody can take over another account's session.

Passwords are kept in ``credentials.csv`` (mode 0600, never read by the broker) and
reused on the next run, so regenerating after adding trucks does not change existing
terminals' passwords. ``passwd`` and ``acl`` are mode 0640 with the broker's group:
Mosquitto reads them after it has dropped root for its own user.
"""

from __future__ import annotations

import base64
import csv
import grp
import hashlib
import io
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ingest import wire

PBKDF2_ITERATIONS = 1000
SALT_BYTES = 12
PASSWORD_BYTES = 18  # 24 URL-safe characters

ROLE_TERMINAL = "terminal"
ROLE_INGESTOR = "ingestor"
ROLE_GATEWAY = "gateway"

PRIVATE_MODE = 0o600  # credentials.csv: plain-text passwords, for the operator only
BROKER_READABLE_MODE = 0o640  # passwd, acl: owner writes, the broker's group reads


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    password: str
    truck_id: str = ""


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash: PBKDF2-HMAC-SHA512, ``$7$iterations$salt$hash``."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def read_existing(path: Path) -> dict[str, Account]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {
            row["username"]: Account(
                row["username"], row["role"], row["password"], row.get("truck_id") or ""
            )
            for row in csv.DictReader(fh)
        }


def instance_names(base: str, count: int) -> list[str]:
    """One account per instance of a service (ingestor, gateway): ``base`` alone, or
    ``base-1`` … ``base-N``."""
    if count < 1:
        raise ValueError("at least one account is needed")
    return [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]


def plan_accounts(
    trucks: Iterable[tuple[str, str]],
    existing: dict[str, Account],
    *,
    ingestor: tuple[str, str | None] | None,
    gateway: str | None,
    ingestors: int = 1,
    gateways: int = 1,
) -> tuple[list[Account], list[str]]:
    """Accounts to write (existing passwords kept) and problems found.

    ``trucks`` are (truck_id, terminal_id) of the active trucks; ``ingestor`` is
    (base user name, password or None to generate/keep). With ``ingestors`` > 1 each
    instance gets its own account (its own identity and session at the broker), all
    with that one password: they are one service, the name tells the instances apart.
    ``gateway`` names the JT/T 808 gateway account(s) the same way (``gateways``).
    """
    accounts: list[Account] = []
    problems: list[str] = []
    seen: set[str] = set()

    def keep_or_new(username: str, role: str) -> str:
        old = existing.get(username)
        return old.password if old is not None and old.role == role else new_password()

    ingestor_users = instance_names(ingestor[0], ingestors) if ingestor else []
    gateway_users = instance_names(gateway, gateways) if gateway else []
    service_names = {*ingestor_users, *gateway_users}
    for truck_id, terminal_id in sorted(trucks, key=lambda t: t[1]):
        if not wire.is_valid_terminal_id(terminal_id):
            problems.append(
                f"truck {truck_id}: terminal id {terminal_id!r} cannot be an MQTT user name "
                f"(must match {wire.TERMINAL_ID_PATTERN}); it gets no account"
            )
            continue
        if terminal_id in service_names:
            problems.append(
                f"truck {truck_id}: terminal id {terminal_id!r} clashes with a service account"
            )
            continue
        seen.add(terminal_id)
        accounts.append(
            Account(terminal_id, ROLE_TERMINAL, keep_or_new(terminal_id, ROLE_TERMINAL), truck_id)
        )
    if ingestor is not None:
        password = ingestor[1] or keep_or_new(ingestor_users[0], ROLE_INGESTOR)
        accounts += [Account(name, ROLE_INGESTOR, password) for name in ingestor_users]
    if gateway_users:
        password = keep_or_new(gateway_users[0], ROLE_GATEWAY)
        accounts += [Account(name, ROLE_GATEWAY, password) for name in gateway_users]
    return accounts, problems


def acl_text(accounts: list[Account]) -> str:
    lines = [
        "# Generated by `clearday mqtt-credentials`; do not edit (regenerate instead).",
        "# Terminals may publish only under their own id (the user name):",
        "",
    ]
    for account in accounts:
        if account.role == ROLE_INGESTOR:
            lines += [f"user {account.username}", f"topic read {wire.TOPIC_ROOT}/#", ""]
        elif account.role == ROLE_GATEWAY:
            lines += [f"user {account.username}", f"topic write {wire.TOPIC_ROOT}/#", ""]
    # `pattern` lines apply to every user; %u is the user name.
    for channel in wire.Channel:
        lines.append(f"pattern write {wire.TOPIC_ROOT}/%u/{channel.value}")
    return "\n".join(lines) + "\n"


def passwd_text(accounts: list[Account]) -> str:
    return "".join(f"{a.username}:{mosquitto_hash(a.password)}\n" for a in accounts)


class CannotShareWithBroker(RuntimeError):
    """The files cannot be given to the broker's group; the message says what to do."""


def broker_group_id(group: str) -> int:
    """The group id of ``group`` (a name on this machine, or a number)."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise CannotShareWithBroker(
            f"there is no group {group!r} on this machine: pass --broker-group with the group "
            "Mosquitto runs as (its name or number; 1883 in the eclipse-mosquitto image)"
        ) from None


def _write(path: Path, text: str, *, mode: int, gid: int | None = None) -> None:
    """Write atomically: the broker (reloading on SIGHUP) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    if gid is not None:
        try:
            os.chown(tmp, -1, gid)
        except PermissionError:
            tmp.unlink()
            raise CannotShareWithBroker(
                f"cannot give group {gid} read access to {path.name}: run as root or as a "
                "member of the broker's group (see --broker-group)"
            ) from None
    os.chmod(tmp, mode)
    tmp.replace(path)


def write_files(
    out_dir: Path, accounts: list[Account], *, broker_gid: int | None = None
) -> dict[str, Path]:
    """credentials.csv private to the caller; passwd and acl also readable by the
    group ``broker_gid`` (None: private too, for a broker running as the caller)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "passwd": out_dir / "passwd",
        "acl": out_dir / "acl",
        "credentials": out_dir / "credentials.csv",
    }
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["username", "role", "password", "truck_id"])
    for a in accounts:
        writer.writerow([a.username, a.role, a.password, a.truck_id])
    _write(paths["credentials"], buf.getvalue(), mode=PRIVATE_MODE)
    broker_mode = PRIVATE_MODE if broker_gid is None else BROKER_READABLE_MODE
    _write(paths["passwd"], passwd_text(accounts), mode=broker_mode, gid=broker_gid)
    _write(paths["acl"], acl_text(accounts), mode=broker_mode, gid=broker_gid)
    return paths
