"""SQL for the jobs: the engine's own tables (for `clearday doctor`), and the pieces
of a decomposed district (`plan_piece`, `plan_piece_worker`; fleet/jobs/pieces.py)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row

from fleet.plans import repo as plans_repo

# Where a piece's end is announced (the payload: its id), for the process waiting for
# it (fleet/jobs/pieces.py) to read its row at once.
PIECE_CHANNEL = "plan_piece_ended"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    workers_beating: int  # worker loops with a fresh heartbeat (a process runs two)
    queued: int
    running: int
    alert_workers: int
    leased_districts: int
    districts: int


def status(conn: psycopg.Connection, *, stalled_after_s: float, lease_s: float) -> EngineStatus:
    row = conn.execute(
        """SELECT (SELECT count(*) FROM procrastinate_workers
                    WHERE last_heartbeat > now() - make_interval(secs => %(stalled)s)),
                  (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'
                    AND queue_name = 'planning'),
                  (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'
                    AND queue_name = 'planning'),
                  (SELECT count(*) FROM alert_worker
                    WHERE seen_at > now() - make_interval(secs => %(lease)s)),
                  (SELECT count(*) FROM alert_lease WHERE expires_at > now()),
                  (SELECT count(*) FROM district)""",
        {"stalled": stalled_after_s, "lease": lease_s},
    ).fetchone()
    assert row is not None
    return EngineStatus(*(int(v) for v in row))


def prune_finished(conn: psycopg.Connection, *, keep_hours: int) -> int:
    """Before the engine deletes its finished jobs: settle ClearDay's records of them
    (fleet/plans/repo.py), and delete pieces ended more than `keep_hours` ago.
    Returns the pieces deleted."""
    plans_repo.settle_engine_states(conn)
    cur = conn.execute(
        """DELETE FROM plan_piece
            WHERE state NOT IN ('queued', 'running')
              AND coalesce(finished_at, created_at) < now() - make_interval(hours => %s)""",
        (keep_hours,),
    )
    return cur.rowcount


# ------------------------------------------------------------------ the waiting side


def listen_for_piece_ends(conn: psycopg.Connection) -> None:
    conn.execute(f"LISTEN {PIECE_CHANNEL}")


def wake_piece_listeners(conn: psycopg.Connection) -> None:
    """An empty announcement on the pieces' channel: every listener polls at once."""
    conn.execute("SELECT pg_notify(%s, '')", (PIECE_CHANNEL,))


@dataclass(frozen=True, slots=True)
class _EngineJob:
    id: int
    attempts: int


def parent_engine_job(conn: psycopg.Connection, *, plan_job_id: int) -> tuple[int, int] | None:
    """The engine job (and its attempt) of a planning job, if it has one."""
    with conn.cursor(row_factory=class_row(_EngineJob)) as cur:
        row = cur.execute(
            """SELECT e.id, e.attempts FROM plan_job j
                 JOIN procrastinate_jobs e ON e.id = j.engine_job_id WHERE j.job_id = %s""",
            (plan_job_id,),
        ).fetchone()
    return (row.id, row.attempts) if row else None


def cancel_earlier_attempts(
    conn: psycopg.Connection, *, plan_job_id: int | None, parent_attempt: int
) -> None:
    """Cancel the pieces of a planning job's earlier attempts (their worker died)."""
    conn.execute(
        """UPDATE plan_piece SET state = 'cancelled', finished_at = now(),
                  message = 'its job was started again', sub_solve = NULL, result = NULL
            WHERE plan_job_id = %s AND parent_attempt < %s AND state IN ('queued', 'running')""",
        (plan_job_id, parent_attempt),
    )


def insert_piece(
    conn: psycopg.Connection,
    *,
    plan_job_id: int | None,
    parent_engine_job_id: int | None,
    parent_attempt: int,
    sub_solve: bytes,
) -> int:
    """A queued piece; returns its id."""
    row = conn.execute(
        """INSERT INTO plan_piece (plan_job_id, parent_engine_job_id, parent_attempt,
                                   sub_solve)
           VALUES (%s, %s, %s, %s) RETURNING piece_id""",
        (plan_job_id, parent_engine_job_id, parent_attempt, sub_solve),
    ).fetchone()
    assert row is not None
    return int(row[0])


def set_piece_engine_job(conn: psycopg.Connection, *, piece_id: int, engine_job_id: int) -> None:
    conn.execute(
        "UPDATE plan_piece SET engine_job_id = %s WHERE piece_id = %s",
        (engine_job_id, piece_id),
    )


def cancel_pieces(conn: psycopg.Connection, *, piece_ids: list[int]) -> None:
    """Cancel those of the pieces not ended yet."""
    conn.execute(
        """UPDATE plan_piece SET state = 'cancelled', finished_at = now(),
                  sub_solve = NULL, result = NULL
            WHERE piece_id = ANY(%s) AND state IN ('queued', 'running')""",
        (piece_ids,),
    )


@dataclass(frozen=True, slots=True)
class PieceState:
    piece_id: int
    state: str
    message: str | None
    status: str | None  # the engine job's
    # taken, but the engine's job no longer runs it, or its worker is gone or silent
    worker_dead: bool
    piece_workers: int  # workers taking pieces that beat
    running_s: float | None


def piece_states(
    conn: psycopg.Connection, *, piece_ids: list[int], stalled_after_s: float
) -> list[PieceState]:
    with conn.cursor(row_factory=class_row(PieceState)) as cur:
        return cur.execute(
            """SELECT p.piece_id, p.state, p.message, e.status::text AS status,
                      -- taken, but the engine's job no longer runs it, or its worker
                      -- is gone (deleted once stalled) or silent
                      p.state = 'running' AND (e.status IS DISTINCT FROM 'doing'
                          OR w.id IS NULL OR w.last_heartbeat
                             < now() - make_interval(secs => %(stalled)s)) AS worker_dead,
                      (SELECT count(*) FROM plan_piece_worker
                        WHERE seen_at > now() - make_interval(secs => %(stalled)s))
                        AS piece_workers,
                      extract(epoch FROM now() - p.started_at)::float8 AS running_s
                 FROM plan_piece p
                 LEFT JOIN procrastinate_jobs e ON e.id = p.engine_job_id
                 LEFT JOIN procrastinate_workers w ON w.id = e.worker_id
                WHERE p.piece_id = ANY(%(ids)s)""",
            {"ids": piece_ids, "stalled": stalled_after_s},
        ).fetchall()


def take_piece_result(conn: psycopg.Connection, *, piece_id: int) -> bytes | None:
    """A piece's result (pickled), cleared from its row."""
    row = conn.execute("SELECT result FROM plan_piece WHERE piece_id = %s", (piece_id,)).fetchone()
    conn.execute(
        "UPDATE plan_piece SET sub_solve = NULL, result = NULL WHERE piece_id = %s",
        (piece_id,),
    )
    return None if row is None else row[0]


def mark_piece_replaced(conn: psycopg.Connection, *, piece_id: int, message: str) -> None:
    conn.execute(
        """UPDATE plan_piece SET state = 'replaced', finished_at = now(),
                  message = %s, sub_solve = NULL, result = NULL
            WHERE piece_id = %s AND state NOT IN ('done', 'replaced')""",
        (message, piece_id),
    )


def piece_parallelism(conn: psycopg.Connection, *, stalled_after_s: float) -> int:
    """Pieces the live workers take at once (0: none takes pieces)."""
    row = conn.execute(
        """SELECT coalesce(sum(concurrency), 0) FROM plan_piece_worker
            WHERE seen_at > now() - make_interval(secs => %s)""",
        (stalled_after_s,),
    ).fetchone()
    return int(row[0]) if row else 0


async def cancel_pieces_of_job(
    conn: psycopg.AsyncConnection, *, plan_job_id: int
) -> list[int | None]:
    """Cancel a planning job's pieces not ended yet; returns their engine jobs' ids."""
    cur = await conn.execute(
        """UPDATE plan_piece SET state = 'cancelled', finished_at = now(),
                  sub_solve = NULL, result = NULL
            WHERE plan_job_id = %s AND state IN ('queued', 'running')
        RETURNING engine_job_id""",
        (plan_job_id,),
    )
    return [engine_id for (engine_id,) in await cur.fetchall()]


# ------------------------------------------------------------------ the worker side


async def announce_piece_worker(
    conn: psycopg.AsyncConnection, *, name: str, concurrency: int
) -> None:
    await conn.execute(
        """INSERT INTO plan_piece_worker (name, concurrency, seen_at)
           VALUES (%s, %s, now())
           ON CONFLICT (name) DO UPDATE
              SET concurrency = excluded.concurrency, seen_at = now()""",
        (name, concurrency),
    )


async def forget_piece_worker(conn: psycopg.AsyncConnection, *, name: str) -> None:
    await conn.execute("DELETE FROM plan_piece_worker WHERE name = %s", (name,))


async def take_piece(conn: psycopg.AsyncConnection, *, piece_id: int, worker: str) -> bool:
    """Mark a queued piece running on `worker`; False when it is no longer queued."""
    cur = await conn.execute(
        """UPDATE plan_piece SET state = 'running', worker = %s, started_at = now()
            WHERE piece_id = %s AND state = 'queued' RETURNING piece_id""",
        (worker, piece_id),
    )
    return await cur.fetchone() is not None


async def piece_still_wanted(
    conn: psycopg.AsyncConnection, *, piece_id: int, stalled_after_s: float
) -> bool:
    """The piece is still this worker's, and the job waiting for it still runs the same
    attempt on a worker that beats."""
    cur = await conn.execute(
        """SELECT p.state = 'running'
                  AND (p.parent_engine_job_id IS NULL
                       OR coalesce(e.status = 'doing' AND NOT e.abort_requested
                                   AND e.attempts = p.parent_attempt
                                   AND w.last_heartbeat > now() - make_interval(secs => %s),
                                   false))
             FROM plan_piece p
             LEFT JOIN procrastinate_jobs e ON e.id = p.parent_engine_job_id
             LEFT JOIN procrastinate_workers w ON w.id = e.worker_id
            WHERE p.piece_id = %s""",
        (stalled_after_s, piece_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def end_piece(
    conn: psycopg.AsyncConnection, *, piece_id: int, state: str, message: str
) -> None:
    """End a running piece and announce it on PIECE_CHANNEL."""
    await conn.execute(
        """WITH ended AS (
               UPDATE plan_piece SET state = %s, message = %s, finished_at = now()
                WHERE piece_id = %s AND state = 'running' RETURNING piece_id)
           SELECT pg_notify(%s, piece_id::text) FROM ended""",
        (state, message, piece_id, PIECE_CHANNEL),
    )


# ------------------------------------------------------------------ the solving process


def running_sub_solve(conn: psycopg.Connection, *, piece_id: int) -> bytes | None:
    """A running piece's sub-problem (pickled); None when it is no longer wanted."""
    row = conn.execute(
        "SELECT sub_solve FROM plan_piece WHERE piece_id = %s AND state = 'running'",
        (piece_id,),
    ).fetchone()
    return None if row is None else row[0]


def finish_piece(conn: psycopg.Connection, *, piece_id: int, result: bytes) -> None:
    """Store a piece's result (pickled) while it is still running, and announce it on
    PIECE_CHANNEL."""
    conn.execute(
        """WITH done AS (
               UPDATE plan_piece SET result = %s, state = 'done', finished_at = now()
                WHERE piece_id = %s AND state = 'running' RETURNING piece_id)
           SELECT pg_notify(%s, piece_id::text) FROM done""",
        (result, piece_id, PIECE_CHANNEL),
    )
