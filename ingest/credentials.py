"""The broker's accounts, generated from the truck table, as the configuration file of
Mosquitto's Dynamic Security plugin (``dynamic-security.json``).

Every active truck's terminal gets a client named after its terminal id that may
publish only its own topics ``clearday/v1/trucks/{its id}/{positions,events,status}``
and may neither subscribe nor receive. Each ingestor instance gets a client of its own
that may subscribe to (a share of) ``clearday/v1/trucks/#`` and
``clearday/v1/gateways/#`` and receive them; an optional gateway client (a JT/T 808
bridge) may publish for every truck, and its batches of many trucks' fixes on
``clearday/v1/gateways/+/positions``, which no terminal may. Everything else is
denied by default: a SUBSCRIBE no role allows is refused in the SUBACK, a publish no
role allows is refused (MQTT 5 PUBACK 0x87). Each client has a fixed client id, its
user name: the plugin refuses a login under any other id, so nobody can take over
another account's session.

Passwords are kept in ``credentials.csv`` (mode 0600, never read by the broker) and
reused on the next run, so regenerating after adding trucks does not change existing
terminals' passwords. ``dynamic-security.json`` is mode 0640 with the broker's group:
Mosquitto reads it after it has dropped root for its own user, and never writes it
(no account may use the plugin's ``$CONTROL`` topics: this file is the only source).
"""

from __future__ import annotations

import base64
import csv
import grp
import hashlib
import io
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ingest import wire

# The plugin hashes with PBKDF2-HMAC-SHA512 (64-byte digest) and a 12-byte salt; it
# stores both base64-encoded with the iteration count. Every login pays the iterations.
PBKDF2_ITERATIONS = 1000
SALT_BYTES = 12
PASSWORD_BYTES = 18  # 24 URL-safe characters

ROLE_TERMINAL = "terminal"
ROLE_INGESTOR = "ingestor"
ROLE_GATEWAY = "gateway"

CONFIG_NAME = "dynamic-security.json"
PRIVATE_MODE = 0o600  # credentials.csv: plain-text passwords, for the operator only
BROKER_READABLE_MODE = 0o640  # dynamic-security.json: owner writes, the broker's group reads


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    password: str
    truck_id: str = ""


def dynsec_password(password: str, *, salt: bytes | None = None) -> dict[str, object]:
    """A client's password fields as the Dynamic Security plugin reads them."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


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


def _acl(acltype: str, topic: str) -> dict[str, object]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def _role_name(account: Account) -> str:
    # Mosquitto 2.0's plugin has no %u in topics: each terminal has a role of its own.
    return f"terminal-{account.username}" if account.role == ROLE_TERMINAL else account.role


def _role_acls(account: Account) -> list[dict[str, object]]:
    trucks = f"{wire.TOPIC_ROOT}/#"
    if account.role == ROLE_INGESTOR:
        # A plain subscription or any share group of it (subscribe ACLs see the
        # whole filter, `$share/<group>/` included).
        return [
            acl
            for root in (wire.TOPIC_ROOT, wire.GATEWAY_TOPIC_ROOT)
            for acl in (
                _acl("subscribePattern", f"{root}/#"),
                _acl("subscribePattern", f"$share/+/{root}/#"),
                _acl("publishClientReceive", f"{root}/#"),
            )
        ]
    if account.role == ROLE_GATEWAY:
        return [
            _acl("publishClientSend", trucks),
            _acl("publishClientSend", f"{wire.GATEWAY_TOPIC_ROOT}/+/{wire.Channel.POSITIONS}"),
        ]
    return [_acl("publishClientSend", wire.topic(c, account.username)) for c in wire.Channel]


def dynsec_config(accounts: list[Account]) -> dict[str, object]:
    """The plugin's whole configuration: what no role allows is denied."""
    roles: dict[str, list[dict[str, object]]] = {}
    clients = []
    for account in accounts:
        role = _role_name(account)
        roles.setdefault(role, _role_acls(account))
        clients.append(
            {
                "username": account.username,
                # The plugin refuses a login under any other client id, on every listener.
                "clientid": account.username,
                **dynsec_password(account.password),
                "textname": f"truck {account.truck_id}" if account.truck_id else account.role,
                "roles": [{"rolename": role}],
            }
        )
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": [{"rolename": name, "acls": acls} for name, acls in roles.items()],
    }


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
    """credentials.csv private to the caller; dynamic-security.json also readable by
    the group ``broker_gid`` (None: private too, for a broker running as the caller)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"config": out_dir / CONFIG_NAME, "credentials": out_dir / "credentials.csv"}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["username", "role", "password", "truck_id"])
    for a in accounts:
        writer.writerow([a.username, a.role, a.password, a.truck_id])
    _write(paths["credentials"], buf.getvalue(), mode=PRIVATE_MODE)
    broker_mode = PRIVATE_MODE if broker_gid is None else BROKER_READABLE_MODE
    config = json.dumps(dynsec_config(accounts), indent=1, ensure_ascii=False) + "\n"
    _write(paths["config"], config, mode=broker_mode, gid=broker_gid)
    return paths
