"""The gateway's SQL: which truck a phone number belongs to, registrations and their
auth codes, and dead letters (async psycopg; the gateway is an asyncio server)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest.jt808.codec import Register


@dataclass(frozen=True, slots=True)
class Terminal:
    """A JT/T 808 terminal the platform knows: its phone key and the truck carrying it."""

    phone: str
    truck_id: str
    terminal_id: str  # the truck's terminal id: the MQTT topic level it publishes under


async def terminal_by_phone(conn: psycopg.AsyncConnection, phone: str) -> Terminal | None:
    """The active truck whose ``jt808_phone`` is ``phone`` (a phone key)."""
    cur = await conn.execute(
        "SELECT truck_id, terminal_id FROM truck WHERE jt808_phone = %s AND active", (phone,)
    )
    row = await cur.fetchone()
    return Terminal(phone, row[0], row[1]) if row else None


async def registered(conn: psycopg.AsyncConnection, phone: str) -> tuple[Terminal, str] | None:
    """The terminal and its auth code, if it is registered to an active truck that
    still carries this phone number (a truck given another terminal de-registers it)."""
    cur = await conn.execute(
        """SELECT t.truck_id, t.terminal_id, r.auth_code
             FROM jt808_registration r
             JOIN truck t ON t.truck_id = r.truck_id AND t.jt808_phone = r.jt808_phone
            WHERE r.jt808_phone = %s AND t.active""",
        (phone,),
    )
    row = await cur.fetchone()
    return (Terminal(phone, row[0], row[1]), row[2]) if row else None


async def register(
    conn: psycopg.AsyncConnection, terminal: Terminal, auth_code: str, info: Register
) -> None:
    """Record a registration; a terminal that registers again gets a new auth code."""
    await conn.execute(
        """INSERT INTO jt808_registration
                  (jt808_phone, truck_id, auth_code, manufacturer, model, device_id, plate)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (jt808_phone) DO UPDATE
              SET truck_id = EXCLUDED.truck_id, auth_code = EXCLUDED.auth_code,
                  manufacturer = EXCLUDED.manufacturer, model = EXCLUDED.model,
                  device_id = EXCLUDED.device_id, plate = EXCLUDED.plate,
                  registered_at = now()""",
        (
            terminal.phone,
            terminal.truck_id,
            auth_code,
            _clean(info.manufacturer),
            _clean(info.model),
            _clean(info.device_id),
            _clean(info.plate),
        ),
    )


async def deregister(conn: psycopg.AsyncConnection, phone: str) -> None:
    await conn.execute("DELETE FROM jt808_registration WHERE jt808_phone = %s", (phone,))


# NOTIFY channel of queued commands; the payload is the terminal's phone key.
COMMAND_CHANNEL = "jt808_command"


@dataclass(frozen=True, slots=True)
class Command:
    """A platform command waiting to go to a connected terminal."""

    command_id: int
    phone: str
    msg_id: int
    body: bytes


async def open_commands(
    conn: psycopg.AsyncConnection, connected: list[tuple[str, bool]]
) -> list[Command]:
    """Commands to send to the connected terminals, (phone key, new connection) each:
    those queued, and for a new connection also those sent on an earlier one and never
    answered, oldest first."""
    if not connected:
        return []
    cur = await conn.execute(
        """SELECT k.command_id, k.jt808_phone, k.msg_id, k.body
             FROM unnest(%s::text[], %s::boolean[]) AS c(phone, fresh)
             JOIN jt808_command k ON k.jt808_phone = c.phone AND k.state <> 'answered'
            WHERE k.state = 'queued' OR c.fresh
            ORDER BY k.command_id""",
        ([p for p, _ in connected], [fresh for _, fresh in connected]),
    )
    return [Command(r[0], r[1], r[2], bytes(r[3])) for r in await cur.fetchall()]


async def queued_phones(conn: psycopg.AsyncConnection) -> list[str]:
    """Phone keys with a command waiting to be sent (the gateway's safety poll: one
    short query whatever the number of connected terminals)."""
    cur = await conn.execute(
        "SELECT DISTINCT jt808_phone FROM jt808_command WHERE state = 'queued'"
    )
    return [r[0] for r in await cur.fetchall()]


async def listen_commands(conn: psycopg.AsyncConnection) -> None:
    """Subscribe ``conn`` (autocommit) to the notifications of :func:`queue_command`."""
    await conn.execute(f"LISTEN {COMMAND_CHANNEL}")


async def command_sent(conn: psycopg.AsyncConnection, command_id: int, serial: int) -> None:
    await conn.execute(
        "UPDATE jt808_command SET state = 'sent', sent_at = now(), serial = %s"
        " WHERE command_id = %s AND state <> 'answered'",
        (serial, command_id),
    )


async def command_answered(
    conn: psycopg.AsyncConnection, phone: str, msg_id: int, serial: int, result: int, reply: bytes
) -> int | None:
    """Record a terminal's answer to the command it names (phone, command id, the
    serial of the frame that carried it); the command's id, or None if it names none."""
    cur = await conn.execute(
        """UPDATE jt808_command SET state = 'answered', answered_at = now(),
                  result = %s, reply = %s
            WHERE command_id = (SELECT command_id FROM jt808_command
                                 WHERE jt808_phone = %s AND msg_id = %s AND serial = %s
                                   AND state = 'sent'
                                 ORDER BY sent_at DESC LIMIT 1)
        RETURNING command_id""",
        (result, reply, phone, msg_id, serial),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


def queue_command(conn: psycopg.Connection, phone: str, msg_id: int, body: bytes) -> int | None:
    """Queue a command for the terminal with this phone key, and notify the gateways
    (on ``COMMAND_CHANNEL``, with the phone key, at commit); None when no truck
    carries that phone number."""
    row = conn.execute(
        """WITH queued AS (
               INSERT INTO jt808_command (jt808_phone, msg_id, body)
               SELECT jt808_phone, %s, %s FROM truck WHERE jt808_phone = %s
               RETURNING command_id, jt808_phone)
           SELECT command_id, pg_notify(%s, jt808_phone) FROM queued""",
        (msg_id, body, phone, COMMAND_CHANNEL),
    ).fetchone()
    return int(row[0]) if row else None


DeadLetter = tuple[datetime, str, str, str, bytes]  # received_at, topic, reason, detail, raw


async def insert_dead_letters(conn: psycopg.AsyncConnection, rows: list[DeadLetter]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO dead_letter (received_at, topic, reason, detail, payload) "
            "VALUES (%s, %s, %s, %s, %s)",
            [
                (at, _clean(topic), reason, _clean(detail), raw)
                for at, topic, reason, detail, raw in rows
            ],
        )


def _clean(text: str, limit: int = 500) -> str:
    """Text PostgreSQL accepts (no NUL), bounded."""
    return text[:limit].replace("\x00", "")
