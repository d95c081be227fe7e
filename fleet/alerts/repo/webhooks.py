"""The webhook outbox and the secrets that sign deliveries."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb


def enqueue_webhook(
    conn: psycopg.Connection, *, urls: Sequence[str], event: str, payload: dict[str, Any]
) -> None:
    if not urls:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO webhook_delivery (url, event, payload) VALUES (%s, %s, %s)",
            [(url, event, Jsonb(payload)) for url in urls],
        )


def webhook_secret(conn: psycopg.Connection, *, url: str) -> str:
    """The secret that signs webhooks to `url`, generated and stored on first use."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """INSERT INTO webhook_endpoint (url, secret) VALUES (%s, %s)
               ON CONFLICT (url) DO UPDATE SET url = EXCLUDED.url
               RETURNING secret""",
            (url, secrets.token_hex(32)),
        ).fetchone()
    assert row is not None
    return str(row["secret"])


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: int
    url: str
    event: str
    payload: dict[str, Any]
    attempts: int


def next_due_delivery(conn: psycopg.Connection) -> Delivery | None:
    """The pending delivery due first, locked for this transaction (others skip it)."""
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(
            """SELECT delivery_id, url, event, payload, attempts FROM webhook_delivery
                WHERE state = 'pending' AND next_attempt_at <= now()
                ORDER BY next_attempt_at, delivery_id LIMIT 1 FOR UPDATE SKIP LOCKED"""
        ).fetchone()


def record_attempt(
    conn: psycopg.Connection,
    *,
    delivery_id: int,
    state: str,
    attempts: int,
    status: int | None,
    error: str | None,
    delivered: bool,
    retry_in_s: float,
) -> None:
    conn.execute(
        """UPDATE webhook_delivery SET state = %(state)s, attempts = %(attempts)s,
               last_status = %(status)s, last_error = %(error)s,
               delivered_at = CASE WHEN %(delivered)s THEN now() END,
               next_attempt_at = now() + make_interval(secs => %(retry)s)
            WHERE delivery_id = %(id)s""",
        {"state": state, "attempts": attempts, "status": status, "error": error,
         "delivered": delivered, "retry": retry_in_s, "id": delivery_id},
    )  # fmt: skip
