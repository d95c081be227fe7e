"""SQL for users, district limits and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

_USER_COLUMNS = """u.user_id, u.username, u.display_name, u.role, u.active, u.created_at,
    u.password_hash,
    coalesce((SELECT array_agg(d.district_id ORDER BY d.district_id)
              FROM user_district d WHERE d.user_id = u.user_id), '{}') AS districts"""


def insert_user(
    conn: psycopg.Connection,
    *,
    username: str,
    display_name: str,
    role: str,
    password_hash: str,
) -> int:
    row = conn.execute(
        """INSERT INTO app_user (username, display_name, role, password_hash)
           VALUES (%s, %s, %s, %s) RETURNING user_id""",
        (username, display_name, role, password_hash),
    ).fetchone()
    assert row is not None
    return int(row[0])


def set_districts(conn: psycopg.Connection, *, user_id: int, districts: list[str]) -> None:
    conn.execute("DELETE FROM user_district WHERE user_id = %s", (user_id,))
    if districts:
        conn.execute(
            """INSERT INTO user_district (user_id, district_id)
               SELECT %s, unnest(%s::text[])""",
            (user_id, districts),
        )


def known_districts(conn: psycopg.Connection, districts: list[str]) -> set[str]:
    rows = conn.execute(
        "SELECT district_id FROM district WHERE district_id = ANY(%s)", (districts,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def get_user(
    conn: psycopg.Connection, *, user_id: int | None = None, username: str | None = None
) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        if user_id is not None:
            cur.execute(f"SELECT {_USER_COLUMNS} FROM app_user u WHERE u.user_id = %s", (user_id,))
        else:
            cur.execute(
                f"SELECT {_USER_COLUMNS} FROM app_user u WHERE lower(u.username) = lower(%s)",
                (username,),
            )
        return cur.fetchone()


def list_users(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_USER_COLUMNS} FROM app_user u ORDER BY u.user_id")
        return cur.fetchall()


def update_user(conn: psycopg.Connection, *, user_id: int, changes: dict[str, Any]) -> None:
    if not changes:
        return
    assignments = ", ".join(f"{column} = %({column})s" for column in changes)
    conn.execute(
        f"UPDATE app_user SET {assignments}, updated_at = now() WHERE user_id = %(user_id)s",
        {**changes, "user_id": user_id},
    )


def insert_token(
    conn: psycopg.Connection,
    *,
    token_hash: bytes,
    user_id: int,
    expires_at: datetime,
    user_agent: str | None,
) -> None:
    conn.execute(
        """INSERT INTO auth_token (token_hash, user_id, expires_at, user_agent)
           VALUES (%s, %s, %s, %s)""",
        (token_hash, user_id, expires_at, user_agent),
    )


def principal_for_token(
    conn: psycopg.Connection, *, token_hash: bytes, now: datetime
) -> tuple[Any, ...] | None:
    """(user_id, username, role, districts[] or NULL when unlimited) of a live token."""
    return conn.execute(
        """SELECT u.user_id, u.username, u.role,
                  (SELECT array_agg(d.district_id) FROM user_district d
                    WHERE d.user_id = u.user_id) AS districts
           FROM auth_token t JOIN app_user u USING (user_id)
           WHERE t.token_hash = %s AND t.revoked_at IS NULL AND t.expires_at > %s
             AND u.active""",
        (token_hash, now),
    ).fetchone()


def revoke_token(conn: psycopg.Connection, *, token_hash: bytes, now: datetime) -> bool:
    cur = conn.execute(
        "UPDATE auth_token SET revoked_at = %s WHERE token_hash = %s AND revoked_at IS NULL",
        (now, token_hash),
    )
    return cur.rowcount > 0


def revoke_user_tokens(conn: psycopg.Connection, *, user_id: int, now: datetime) -> int:
    cur = conn.execute(
        "UPDATE auth_token SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL",
        (now, user_id),
    )
    return cur.rowcount


def delete_expired_tokens(conn: psycopg.Connection, *, before: datetime) -> int:
    cur = conn.execute("DELETE FROM auth_token WHERE expires_at < %s", (before,))
    return cur.rowcount


def claim_login_attempts(
    conn: psycopg.Connection, *, keys: list[str], now: datetime, window_s: int
) -> list[tuple[str, int, datetime]]:
    """Count one more attempt under each key (a key whose window has passed starts a
    new one) and return (key, attempts, window start). The upsert locks each row, so
    concurrent attempts see distinct counts. Keys are taken in sorted order so that two
    logins never lock each other's rows in opposite orders."""
    rows = []
    for key in sorted(keys):
        row = conn.execute(
            """INSERT INTO login_attempt AS a (throttle_key, attempts, window_started_at)
               VALUES (%(key)s, 1, %(now)s)
               ON CONFLICT (throttle_key) DO UPDATE SET
                   attempts = CASE WHEN a.window_started_at
                                        <= %(now)s - make_interval(secs => %(window_s)s)
                                   THEN 1 ELSE a.attempts + 1 END,
                   window_started_at = CASE WHEN a.window_started_at
                                        <= %(now)s - make_interval(secs => %(window_s)s)
                                   THEN %(now)s ELSE a.window_started_at END
               RETURNING attempts, window_started_at""",
            {"key": key, "now": now, "window_s": window_s},
        ).fetchone()
        assert row is not None
        rows.append((key, int(row[0]), row[1]))
    return rows


def forget_login_attempt(conn: psycopg.Connection, *, key: str) -> None:
    conn.execute("DELETE FROM login_attempt WHERE throttle_key = %s", (key,))


def release_login_attempt(conn: psycopg.Connection, *, key: str) -> None:
    """Take back one attempt under `key` (it succeeded, so it was no failure)."""
    conn.execute(
        """UPDATE login_attempt SET attempts = attempts - 1
            WHERE throttle_key = %s AND attempts > 0""",
        (key,),
    )


def purge_login_attempts(
    conn: psycopg.Connection, *, now: datetime, window_s: int, limit: int
) -> int:
    """Delete up to `limit` rows whose window has passed."""
    cur = conn.execute(
        """DELETE FROM login_attempt WHERE throttle_key IN (
               SELECT throttle_key FROM login_attempt
                WHERE window_started_at <= %s - make_interval(secs => %s)
                ORDER BY window_started_at LIMIT %s
                  FOR UPDATE SKIP LOCKED)""",
        (now, window_s, limit),
    )
    return cur.rowcount


def assignees(conn: psycopg.Connection, *, districts: list[str] | None) -> list[dict[str, Any]]:
    """Active users who work cases (admin, supervisor, dispatcher) and may see one of
    `districts` (None: any): users without a district limit, or limited to one of them."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT u.username, u.display_name, u.role FROM app_user u
                WHERE u.active AND u.role IN ('admin', 'supervisor', 'dispatcher')
                  AND (%(d)s::text[] IS NULL
                       OR NOT EXISTS (SELECT 1 FROM user_district x WHERE x.user_id = u.user_id)
                       OR EXISTS (SELECT 1 FROM user_district x
                                   WHERE x.user_id = u.user_id AND x.district_id = ANY(%(d)s)))
                ORDER BY u.role, u.username""",
            {"d": districts},
        )
        return cur.fetchall()
