"""The pieces of a decomposed district as engine jobs, so that every `clearday worker`
(any machine) helps solve one large district.

The planning job's solving process (fleet/plans/solve_job.py) plans the district with
an :class:`EnginePieceRunner` (routing.pieces.PieceRunner): each piece — a territory's
first plan, an improvement neighbourhood with its warm start — is written to
`plan_piece` (the sub-problem pickled) and queued on the `pieces` queue with a priority
above every plan. Every worker serves that queue beside its planning jobs
(`CLEARDAY_PLAN_PIECE_CONCURRENCY` at a time) and solves a piece in a child process
(`python -m fleet.jobs.piece_solve`, which dies with its worker), writing the plan
back to the row (announcing it on `repo.PIECE_CHANNEL`). The waiting process
hands each plan to the decomposition. It reads its pieces' rows when an end is
announced (LISTEN), and every SAFETY_POLL_S besides: the rules below that depend on
time need a look now and then, and an announcement lost with a connection is found
that way.

What can go wrong, and what happens:

- a piece's worker dies (it stops beating for `CLEARDAY_WORKER_STALLED_AFTER_S`), no
  worker takes pieces any more, a piece fails, it is not back within its time limit
  × 1.05 + 2 s plus HANDOVER_S of starting, or no worker took it within the turns of
  the pieces queued before it: the waiting process solves it itself, in a process of
  its own, with what is left of the piece's time, and marks the row `replaced` so
  that nobody else solves it;
- the planning job is cancelled or its worker dies: its pieces are cancelled (by the
  worker that ran the job, fleet/plans/jobs.py; failing that, each piece's worker
  sees within a second that the job waiting for it is no longer running that attempt
  on a worker that beats, and stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import procrastinate
import psycopg

from fleet.jobs import engine, repo
from routing.budget import OVERRUN_S, OVERRUN_SHARE
from routing.pieces import SubSolve, solve_sub
from routing.processes import die_with

if TYPE_CHECKING:
    from routing.plan import Plan

log = logging.getLogger("clearday.jobs")

PIECE_TASK = "clearday.plan_piece"
# The waiting process reads its pieces' rows this often without an announcement.
SAFETY_POLL_S = 1.0
# A piece's worker looks at its solving process this often.
POLL_S = 0.25
# A piece's worker checks this often that the piece is still wanted.
CHECK_S = 1.0
# Beyond a piece's own overrun allowance: queueing, starting its solving process
# (imports, about a second), reading and writing the rows.
HANDOVER_S = 10.0
# A piece solved by the waiting process gets at least this long.
MIN_LOCAL_S = 1.0


# ------------------------------------------------------------------ the waiting side


@dataclass(slots=True)
class _Waiting:
    job: SubSolve
    future: Future[Plan]
    submitted_at: float
    # Pieces of this solve before it in the queue, when it was submitted: it may wait
    # for their turns (the decomposition plans its waves the same way).
    ahead: int
    engine_job_id: int | None = None


class EnginePieceRunner:
    """Runs a decomposed solve's pieces as engine jobs (see the module's docstring).
    Use as a context manager: leaving it cancels every piece not yet back."""

    def __init__(
        self,
        dsn: str,
        *,
        plan_job_id: int | None,
        parallelism: int,
        stalled_after_s: float,
        clock: Any = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._plan_job_id = plan_job_id
        self._parallelism = max(1, parallelism)
        self._stalled_after_s = stalled_after_s
        self._clock = clock
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._listen = _listener(dsn)
        self._app = engine.make_app(dsn, [register]).open()
        self._parent_id, self._parent_attempt = _parent(self._conn, plan_job_id)
        # Pieces of an earlier attempt whose worker died: none is wanted any more.
        repo.cancel_earlier_attempts(
            self._conn, plan_job_id=plan_job_id, parent_attempt=self._parent_attempt
        )
        self._waiting: dict[int, _Waiting] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local: ProcessPoolExecutor | None = None
        self.replaced = 0  # pieces this process solved itself
        self._poller = threading.Thread(target=self._poll, name="piece-poller", daemon=True)
        self._poller.start()

    @property
    def parallelism(self) -> int:
        return self._parallelism

    def submit(self, job: SubSolve) -> Future[Plan]:
        future: Future[Plan] = Future()
        with self._lock:
            piece_id = repo.insert_piece(
                self._conn,
                plan_job_id=self._plan_job_id,
                parent_engine_job_id=self._parent_id,
                parent_attempt=self._parent_attempt,
                sub_solve=pickle.dumps(job),
            )
            waiting = _Waiting(job, future, self._clock(), ahead=len(self._waiting))
            self._waiting[piece_id] = waiting
        engine_id = self._app.configure_task(
            PIECE_TASK, queue=engine.QUEUE_PIECES, priority=engine.PRIORITY_PIECE
        ).defer(piece_id=piece_id)
        with self._lock:
            waiting.engine_job_id = engine_id
            repo.set_piece_engine_job(self._conn, piece_id=piece_id, engine_job_id=engine_id)
        return future

    def __enter__(self) -> EnginePieceRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the pieces not back yet; stop polling; end the local solves."""
        self._stop.set()
        # Wakes the poller (and, harmlessly, every other); a broken connection's
        # poller wakes on its own.
        with self._lock, contextlib.suppress(psycopg.Error):
            repo.wake_piece_listeners(self._conn)
        self._poller.join()
        with self._lock:
            left = list(self._waiting)
            if left:
                repo.cancel_pieces(self._conn, piece_ids=left)
            for w in self._waiting.values():
                w.future.cancel()
            self._waiting.clear()
        if self._local is not None:
            self._local.shutdown(wait=False, cancel_futures=True)
        self._app.close()
        self._conn.close()
        self._listen.close()

    # -------------------------------------------------------------- polling

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                # Until a piece ends (anywhere) or the safety poll is due.
                for _ in self._listen.notifies(timeout=SAFETY_POLL_S, stop_after=1):
                    pass
                if not self._stop.is_set():
                    self._poll_once()
            except Exception:  # a lost connection: the next poll tries again
                log.exception("reading the pieces failed")
                self._stop.wait(SAFETY_POLL_S)
                with contextlib.suppress(Exception), self._lock:
                    self._listen.close()
                    self._listen = _listener(self._dsn)
                    self._conn.close()
                    self._conn = psycopg.connect(self._dsn, autocommit=True)

    def _poll_once(self) -> None:
        with self._lock:
            ids = [i for i, w in self._waiting.items() if w.engine_job_id is not None]
            if not ids:
                return
            rows = repo.piece_states(
                self._conn, piece_ids=ids, stalled_after_s=self._stalled_after_s
            )
        now = self._clock()
        for p in rows:
            w = self._waiting[p.piece_id]
            if p.state == "done":
                self._deliver(p.piece_id)
            elif p.state == "failed":
                self._replace(p.piece_id, f"it failed: {p.message}")
            elif p.state in ("cancelled", "replaced"):
                self._replace(p.piece_id, f"it was {p.state} elsewhere")
            elif p.worker_dead:
                self._replace(p.piece_id, "its worker stopped beating", p.running_s or 0.0)
            elif p.status == "todo" and p.state == "queued" and p.piece_workers == 0:
                self._replace(p.piece_id, "no worker takes pieces")
            elif p.running_s is not None and p.running_s > self._solve_s(w):
                self._replace(p.piece_id, "it was not back in time", p.running_s)
            elif p.running_s is None and now - w.submitted_at > self._queued_s(w):
                self._replace(p.piece_id, "no worker took it in time")

    def _solve_s(self, w: _Waiting) -> float:
        """How long a piece may run: its limit and overrun, and the hand-over."""
        return w.job.time_limit_s * (1.0 + OVERRUN_SHARE) + OVERRUN_S + HANDOVER_S

    def _queued_s(self, w: _Waiting) -> float:
        """How long a piece may wait for a worker: the turns of the pieces before it."""
        turns = w.ahead // self._parallelism
        return turns * (w.job.time_limit_s * (1.0 + OVERRUN_SHARE) + OVERRUN_S) + HANDOVER_S

    def _deliver(self, piece_id: int) -> None:
        with self._lock:
            result = repo.take_piece_result(self._conn, piece_id=piece_id)
            w = self._waiting.pop(piece_id)
        try:
            assert result is not None
            plan = pickle.loads(result)
        except Exception as exc:
            self._waiting[piece_id] = w
            self._replace(piece_id, f"its result could not be read: {exc!r}")
            return
        w.future.set_result(plan)

    def _replace(self, piece_id: int, why: str, ran_s: float = 0.0) -> None:
        """Solve the piece in this process's own pool, with what is left of its time
        (its limit less what it ran elsewhere)."""
        with self._lock:
            repo.mark_piece_replaced(
                self._conn, piece_id=piece_id, message=f"solved by the waiting job: {why}"
            )
            w = self._waiting.pop(piece_id)
            if w.engine_job_id is not None:
                # Still queued: out of the queue (a running one sees its row and stops).
                with contextlib.suppress(Exception):
                    self._app.job_manager.cancel_job_by_id(w.engine_job_id)
        self.replaced += 1
        left_s = w.job.time_limit_s - ran_s
        job = SubSolve(
            w.job.problem, max(MIN_LOCAL_S, left_s), w.job.seed, w.job.options, w.job.initial
        )
        log.warning("piece %d solved here (%.1f s): %s", piece_id, job.time_limit_s, why)
        if self._local is None:
            # spawn: this process has threads (this poller, the connections) not to fork
            self._local = ProcessPoolExecutor(
                max_workers=self._parallelism,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with,
                initargs=(os.getpid(),),
            )
        local = self._local.submit(solve_sub, job)
        local.add_done_callback(lambda f: _copy(f, w.future))


def _listener(dsn: str) -> psycopg.Connection:
    """A connection that hears the pieces' ends."""
    conn = psycopg.connect(dsn, autocommit=True)
    repo.listen_for_piece_ends(conn)
    return conn


def _copy(source: Future[Plan], target: Future[Plan]) -> None:
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _parent(conn: psycopg.Connection, plan_job_id: int | None) -> tuple[int | None, int]:
    """The engine job (and its attempt) of the planning job that waits for the pieces."""
    if plan_job_id is None:
        return None, 0
    return repo.parent_engine_job(conn, plan_job_id=plan_job_id) or (None, 0)


async def cancel_pieces_of(dsn: str, app: procrastinate.App, plan_job_id: int) -> int:
    """Cancel the pieces of a planning job that stopped (cancelled, or its solving
    process died): out of the queue, or stopped by their workers; returns how many."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        engine_ids = await repo.cancel_pieces_of_job(conn, plan_job_id=plan_job_id)
    for engine_id in engine_ids:
        if engine_id is not None:
            with contextlib.suppress(Exception):
                await app.job_manager.cancel_job_by_id_async(engine_id)
    return len(engine_ids)


# ------------------------------------------------------------------ the worker side


async def announce(dsn: str, config: engine.WorkerConfig) -> None:
    """While the worker runs: say how many pieces it takes at once (every heartbeat);
    gone when it stops."""
    if config.piece_concurrency <= 0:
        return
    try:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    while True:
                        await repo.announce_piece_worker(
                            conn, name=config.name, concurrency=config.piece_concurrency
                        )
                        await asyncio.sleep(config.heartbeat_s)
            except (psycopg.Error, OSError):
                log.exception("announcing the pieces worker failed; trying again")
                await asyncio.sleep(config.heartbeat_s)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await repo.forget_piece_worker(conn, name=config.name)
        raise


async def run_piece(context: procrastinate.JobContext, piece_id: int) -> str:
    """The engine's task: solve one piece in a child process, while it is wanted."""
    dsn = str(context.additional_context["dsn"])
    worker = context.worker_name or f"pid {os.getpid()}"
    stalled_s = float(context.additional_context.get("stalled_after_s", 30.0))
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if not await repo.take_piece(conn, piece_id=piece_id, worker=worker):
            return "no longer wanted"

        async def wanted() -> bool:
            return await repo.piece_still_wanted(conn, piece_id=piece_id, stalled_after_s=stalled_s)

        async def end(state: str, message: str) -> None:
            await repo.end_piece(conn, piece_id=piece_id, state=state, message=message)

        if not await wanted():
            await end("cancelled", "the job waiting for it stopped")
            return "cancelled"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleet.jobs.piece_solve", str(piece_id), str(os.getpid()),
            env={**os.environ, "CLEARDAY_DATABASE_URL": dsn},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        talk = asyncio.ensure_future(child.communicate())
        checked = time.monotonic()
        try:
            while not talk.done():
                await asyncio.wait({talk}, timeout=POLL_S)
                if talk.done():
                    break
                stop = context.abort_reason() is not None
                if not stop and time.monotonic() - checked >= CHECK_S:
                    checked = time.monotonic()
                    stop = not await wanted()
                if stop:
                    child.kill()
                    await talk
                    await end("cancelled", "stopped: no longer wanted, or the worker stopped")
                    return "stopped"
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            with contextlib.suppress(BaseException):
                await talk
            raise
        _out, err = talk.result()
        if child.returncode != 0:
            last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            # Not retried: the waiting job solves it itself at once (see the module).
            await end("failed", f"status {child.returncode}: {last}")
            return "failed"
    return "done"


def register(app: procrastinate.App) -> None:
    """The piece task, on `app`."""
    app.task(name=PIECE_TASK, queue=engine.QUEUE_PIECES, pass_context=True)(run_piece)
