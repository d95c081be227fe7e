"""`clearday worker`: run planning jobs, the pieces of large districts and the engine's
housekeeping until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from fleet.config import Settings
from fleet.jobs import engine, worker
from fleet.plans import jobs as plans_jobs

log = logging.getLogger("clearday.jobs")


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker_(
        concurrency: Annotated[
            int,
            typer.Option(
                min=0, help="planning jobs at a time (default: CLEARDAY_WORKER_CONCURRENCY)"
            ),
        ] = 0,
        name: Annotated[
            str,
            typer.Option(help="shown beside its jobs (default: CLEARDAY_WORKER_NAME or host:pid)"),
        ] = "",
    ) -> None:
        """Run the jobs of the queue (plans, re-plans, tomorrow's plans at each district's
        plan hour) on this machine until interrupted; needs only CLEARDAY_DATABASE_URL.
        Start as many as there are machines (or cores to spare)."""
        settings = Settings()
        updates: dict[str, object] = {}
        if concurrency:
            updates["worker_concurrency"] = concurrency
        if name:
            updates["worker_name"] = name
        settings = settings.model_copy(
            update={"planning": settings.planning.model_copy(update=updates)}
        )
        dsn = settings.storage.database_dsn()
        config = engine.WorkerConfig.from_settings(settings)
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("stopping worker %s (signal %d)", config.name, signum)
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
        typer.echo(
            f"worker {config.name}: {config.concurrency} planning job(s) and "
            f"{config.piece_concurrency} piece(s) of large districts at a time, "
            f"heartbeat every {config.heartbeat_s:g} s"
        )
        worker.run(engine.make_app(dsn, [plans_jobs.register]), dsn, config, stop)
