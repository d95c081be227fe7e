"""Running the engine's workers: `clearday worker` on any machine that reaches the
database, or a thread of the API process (the single-machine default).

One process runs three Procrastinate workers on one event loop: the planning queue (as
many jobs at a time as `concurrency`), the pieces of decomposed districts (as many as
`piece_concurrency`, fleet/jobs/pieces.py) and the housekeeping queue, so that
putting a dead worker's jobs back never waits behind a long solve. All beat their
heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import procrastinate
from procrastinate.worker import Worker

from fleet.jobs import engine, pieces

log = logging.getLogger("clearday.jobs")

# A stop request waits this long for running jobs before aborting them; an aborted
# planning job is queued again for another worker.
SHUTDOWN_GRACE_S = 5.0
STOP_POLL_S = 0.2


def _workers(app: procrastinate.App, dsn: str, config: engine.WorkerConfig) -> list[Worker]:
    common = {
        "update_heartbeat_interval": config.heartbeat_s,
        "stalled_worker_timeout": config.stalled_after_s,
        "abort_job_polling_interval": config.abort_poll_s,
        "shutdown_graceful_timeout": SHUTDOWN_GRACE_S,
        "install_signal_handlers": False,
        "additional_context": {
            "dsn": dsn,
            "stalled_after_s": config.stalled_after_s,
            "plan_time_limit_s": config.scheduled_plan_time_limit_s,
            "keep_finished_hours": config.keep_finished_hours,
        },
    }
    piece_workers = [
        Worker(
            app, queues=[engine.QUEUE_PIECES], name=f"{config.name}/pieces",
            concurrency=config.piece_concurrency, **common,  # type: ignore[arg-type]
        )
    ] if config.piece_concurrency > 0 else []  # fmt: skip
    return [
        *piece_workers,
        Worker(
            app, queues=[engine.QUEUE_PLANNING], name=config.name,
            concurrency=config.concurrency, **common,  # type: ignore[arg-type]
        ),
        Worker(
            app, queues=[engine.QUEUE_MAINTENANCE], name=f"{config.name}/maintenance",
            concurrency=1, delete_jobs="successful", **common,  # type: ignore[arg-type]
        ),
    ]  # fmt: skip


async def run_async(
    app: procrastinate.App, dsn: str, config: engine.WorkerConfig, stop: threading.Event
) -> None:
    """Run the workers until `stop` is set (from any thread), then stop them gracefully."""
    async with app.open_async():
        workers = _workers(app, dsn, config)
        running = [asyncio.create_task(w.run(), name=w.worker_name) for w in workers]
        announcing = asyncio.create_task(pieces.announce(dsn, config), name="announce")
        log.info("worker %s: %d planning job(s) at a time", config.name, config.concurrency)
        while not stop.is_set() and not any(t.done() for t in running):
            await asyncio.sleep(STOP_POLL_S)
        announcing.cancel()
        for w in workers:
            w.stop()
        for t in asyncio.as_completed(running):
            try:
                await t
            except Exception:  # one worker failing must not keep the other running
                log.exception("a worker of %s stopped with an error", config.name)


def run(
    app: procrastinate.App, dsn: str, config: engine.WorkerConfig, stop: threading.Event
) -> None:
    asyncio.run(run_async(app, dsn, config, stop))


class InProcessWorker:
    """The workers in a thread of this process, for a single machine (`clearday serve`,
    the demo, the tests): nothing else to start."""

    def __init__(self, app: procrastinate.App, dsn: str, config: engine.WorkerConfig) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run, args=(app, dsn, config, self._stop), name="clearday-worker", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = SHUTDOWN_GRACE_S + 10) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)
