"""Slow down password guessing without letting a stranger lock a user out.

Attempts are counted in the database (table `login_attempt`), shared by every API
process, under two keys:

- the user name together with the source address: a guesser wears out only their own
  pair, so the real user, coming from another address, still logs in;
- the source address alone, with a higher limit: spraying one password across many
  user names from one address is slowed as well.

An attempt is claimed *before* the password is checked, by an upsert that locks the
row, so of N concurrent guesses exactly the limit are checked. A successful login
clears its pair and gives its attempt back to the address. Each window is fixed: it
starts at the first attempt and its count ends with it. Rows of passed windows are
deleted by later logins, so the table holds only keys seen within one window; counters
are never evicted early, so an attacker cannot flush them with fresh names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from fleet.auth import repo
from fleet.config import Settings

# Expired rows deleted per failed login: more than the (at most two) rows one login adds.
PURGE_BATCH_ROWS = 100


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int  # per (user name, address)
    max_failures_per_address: int
    window_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            max_failures=settings.web.login_max_failures,
            max_failures_per_address=settings.web.login_max_failures_per_address,
            window_s=settings.web.login_window_s,
        )


def address_key(address: str | None) -> str:
    """The address a limit applies to: an IPv6 client is held to its /64, since one
    host usually has the whole /64 to choose from."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _keys(username: str, address: str | None) -> tuple[str, str]:
    where = address_key(address)
    return f"user:{username.strip().lower()}|{where}", f"address:{where}"


def claim(
    conn: psycopg.Connection,
    *,
    username: str,
    address: str | None,
    now: datetime,
    policy: ThrottlePolicy,
) -> float:
    """Claim one login attempt: 0 when the password may be checked, else the seconds
    to wait (the attempt is then refused unchecked)."""
    pair, by_address = _keys(username, address)
    limits = {pair: policy.max_failures, by_address: policy.max_failures_per_address}
    with conn.transaction():
        claimed = repo.claim_login_attempts(
            conn, keys=list(limits), now=now, window_s=policy.window_s
        )
    wait_s = 0.0
    for key, attempts, started_at in claimed:
        if attempts > limits[key]:
            ends_at = started_at + timedelta(seconds=policy.window_s)
            wait_s = max(wait_s, (ends_at - now).total_seconds(), 1.0)
    return wait_s


def forget_expired(conn: psycopg.Connection, *, now: datetime, policy: ThrottlePolicy) -> None:
    """Delete a batch of rows whose window has passed. Called on every refused login
    (the attempt itself stays counted), so the table never outgrows one window."""
    repo.purge_login_attempts(conn, now=now, window_s=policy.window_s, limit=PURGE_BATCH_ROWS)


def succeeded(conn: psycopg.Connection, *, username: str, address: str | None) -> None:
    pair, by_address = _keys(username, address)
    with conn.transaction():
        repo.forget_login_attempt(conn, key=pair)
        repo.release_login_attempt(conn, key=by_address)
