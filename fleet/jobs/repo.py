"""SQL over the engine's own tables, for `clearday doctor`."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from fleet.plans import repo as plans_repo


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
