"""The workers' own state: watermarks, district leases, when each truck was last heard."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg.rows import dict_row


def get_watermark(conn: psycopg.Connection, name: str) -> datetime | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT watermark FROM alert_worker_state WHERE name = %s", (name,)
        ).fetchone()
    return row["watermark"] if row else None


def set_watermark(conn: psycopg.Connection, name: str, watermark: datetime) -> None:
    conn.execute(
        """INSERT INTO alert_worker_state (name, watermark) VALUES (%s, %s)
           ON CONFLICT (name) DO UPDATE SET watermark = greatest(alert_worker_state.watermark, excluded.watermark),
                                            updated_at = now()""",
        (name, watermark),
    )


# ------------------------------------------------------------------ district leases


def take_leases(conn: psycopg.Connection, *, holder: str, lease_s: float) -> list[str]:
    """Renew `holder`'s leases and even out the districts among the live workers:
    take free or expired ones up to its share, give back what is beyond it. Returns
    the districts it holds now, for `lease_s` seconds."""
    lease = {"h": holder, "s": lease_s}
    with conn.transaction():
        conn.execute(
            """INSERT INTO alert_worker (name, seen_at) VALUES (%(h)s, now())
               ON CONFLICT (name) DO UPDATE SET seen_at = now()""",
            lease,
        )
        # Workers gone for a day (killed, never back under that name) are forgotten.
        conn.execute("DELETE FROM alert_worker WHERE seen_at < now() - interval '1 day'")
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """SELECT ceil((SELECT count(*) FROM district)::numeric
                               / greatest(1, (SELECT count(*) FROM alert_worker
                                               WHERE seen_at > now() - make_interval(secs => %(s)s))))
                          AS share""",
                lease,
            ).fetchone()
            share = int(row["share"]) if row and row["share"] is not None else 0
            mine = [
                str(r["district_id"])
                for r in cur.execute(
                    """UPDATE alert_lease SET expires_at = now() + make_interval(secs => %(s)s)
                        WHERE holder = %(h)s RETURNING district_id""",
                    lease,
                ).fetchall()
            ]
        mine.sort()
        if len(mine) > share:
            conn.execute(
                "DELETE FROM alert_lease WHERE holder = %s AND district_id = ANY(%s)",
                (holder, mine[share:]),
            )
            mine = mine[:share]
        elif len(mine) < share:
            with conn.cursor(row_factory=dict_row) as cur:
                taken = cur.execute(
                    """INSERT INTO alert_lease (district_id, holder, expires_at)
                   SELECT d.district_id, %(h)s, now() + make_interval(secs => %(s)s)
                     FROM district d LEFT JOIN alert_lease l USING (district_id)
                    WHERE l.district_id IS NULL OR l.expires_at < now()
                    ORDER BY d.district_id LIMIT %(n)s
                   ON CONFLICT (district_id) DO UPDATE
                      SET holder = excluded.holder, expires_at = excluded.expires_at
                    WHERE alert_lease.expires_at < now()
                   RETURNING district_id""",
                    {**lease, "n": share - len(mine)},
                ).fetchall()
            mine = sorted(mine + [str(r["district_id"]) for r in taken])
    return mine


def release_leases(conn: psycopg.Connection, *, holder: str) -> None:
    """A worker stopping: its districts are free at once."""
    with conn.transaction():
        conn.execute("DELETE FROM alert_lease WHERE holder = %s", (holder,))
        conn.execute("DELETE FROM alert_worker WHERE name = %s", (holder,))


def lease_holders(conn: psycopg.Connection) -> dict[str, str]:
    """district -> the worker holding its lease (unexpired)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT district_id, holder FROM alert_lease WHERE expires_at > now() ORDER BY 1"
        ).fetchall()
    return {str(r["district_id"]): str(r["holder"]) for r in rows}


def heard(
    conn: psycopg.Connection, truck_ids: Sequence[str]
) -> dict[str, tuple[datetime, datetime]]:
    """truck -> (latest arrival seen, worker time it was first seen)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT truck_id, received_at, heard_at FROM alert_heard WHERE truck_id = ANY(%s)",
            (list(truck_ids),),
        ).fetchall()
    return {str(r["truck_id"]): (r["received_at"], r["heard_at"]) for r in rows}


def save_heard(conn: psycopg.Connection, heard: dict[str, tuple[datetime, datetime]]) -> None:
    if heard:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO alert_heard (truck_id, received_at, heard_at) VALUES (%s, %s, %s)
                   ON CONFLICT (truck_id) DO UPDATE
                      SET received_at = excluded.received_at, heard_at = excluded.heard_at
                    WHERE alert_heard.received_at < excluded.received_at""",
                [(t, r, h) for t, (r, h) in heard.items()],
            )


# ------------------------------------------------------------------ locks and clocks

_ADVISORY_LOCK = 7_247_606  # with a district: one worker (or replay) at a time there


def try_lock_district(conn: psycopg.Connection, district_id: str) -> bool:
    """Take the district's advisory lock for this transaction, unless another holds it."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS got",
            (_ADVISORY_LOCK, district_id),
        ).fetchone()
    return bool(row and row["got"])


def lock_district(conn: psycopg.Connection, district_id: str) -> None:
    """Wait for the district's advisory lock, held until this transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_ADVISORY_LOCK, district_id))


def database_now(conn: psycopg.Connection) -> datetime:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT now() AS now").fetchone()
    assert row is not None
    return row["now"]
