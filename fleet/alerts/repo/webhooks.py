"""The webhook outbox and the secrets that sign deliveries."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
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
