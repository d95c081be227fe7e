"""Finished engine jobs are deleted after the retention (Procrastinate's own
delete_old_jobs, run by a periodic job), and ClearDay's records of them stay right."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from fleet import db, importer
from fleet.jobs import engine
from fleet.plans import jobs as plans_jobs
from fleet.plans import service
from simulator.city import generate

DAY = date(2026, 3, 3)


def test_finished_jobs_older_than_the_retention_are_pruned(
    database_url: str, tmp_path: Path
) -> None:
    for number, district in enumerate(("a", "b", "c", "d")):
        folder = tmp_path / district
        generate(n_points=10, n_trucks=1, seed=number + 1, district=district).with_prefix(
            f"{district}-", number
        ).write(folder)
        with db.connect(database_url) as conn:
            importer.load(conn, importer.parse_files(importer.read_paths([folder])))
    app = engine.make_app(database_url, [plans_jobs.register]).open()
    try:
        assert ("clearday.prune_finished", "prune_finished") in (
            app.periodic_registry.periodic_tasks
        )
        with db.connect(database_url, autocommit=True) as conn:
            ids = {
                d: plans_jobs.queue_plan(
                    app, conn, district_id=d, service_date=DAY, time_limit_s=10
                )
                for d in ("a", "b", "c", "d")
            }
            engine_id = {
                d: service.get_job(conn, job_id=j)["engine_job_id"] for d, j in ids.items()
            }  # type: ignore[index]
            # a: cancelled while queued, long ago; b: failed by the engine (its workers
            # died), long ago; c: cancelled a minute ago; d: still queued.
            for d in ("a", "c"):
                assert plans_jobs.cancel(app, conn, job_id=ids[d])
            conn.execute(
                "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (engine_id["b"],)
            )
            conn.execute(
                "UPDATE procrastinate_jobs SET status = 'failed', attempts = 2 WHERE id = %s",
                (engine_id["b"],),
            )
            conn.execute(
                """UPDATE procrastinate_events SET at = now() - interval '3 days'
                    WHERE job_id = ANY(%s)""",
                ([engine_id["a"], engine_id["b"], engine_id["d"]],),
            )
            conn.execute(
                """INSERT INTO plan_piece (plan_job_id, state, finished_at) VALUES
                   (%(a)s, 'done', now() - interval '3 days'), (%(c)s, 'done', now())""",
                {"a": ids["a"], "c": ids["c"]},
            )
            before = {d: service.get_job(conn, job_id=j) for d, j in ids.items()}
    finally:
        app.close()

    async def prune() -> None:
        async with engine.make_app(database_url).open_async() as running:
            await engine.prune(running.job_manager, database_url, keep_hours=24)

    # In a thread of its own: an earlier test of the session may leave an event loop
    # running in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, prune()).result()
    with db.connect(database_url, autocommit=True) as conn:
        left = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM procrastinate_jobs WHERE id = ANY(%s)", (list(engine_id.values()),)
            )
        }
        # Old finished jobs gone; the recent one and the queued one (however old) stay.
        assert left == {engine_id["c"], engine_id["d"]}
        after = {d: service.get_job(conn, job_id=j) for d, j in ids.items()}
        pieces = conn.execute("SELECT plan_job_id FROM plan_piece").fetchall()
    assert pieces == [(ids["c"],)]
    # Each job reads as it did before its engine row went.
    for d in ("a", "b", "c", "d"):
        a, b = before[d], after[d]
        assert a is not None and b is not None
        assert (b["state"], b["message"], b["error_code"]) == (
            a["state"], a["message"], a["error_code"]
        ), d  # fmt: skip
    assert [after[d]["state"] for d in ("a", "b", "c", "d")] == [  # type: ignore[index]
        "cancelled", "failed", "cancelled", "queued",
    ]  # fmt: skip
    assert "the worker running it stopped (3 attempts)" in after["b"]["message"]  # type: ignore[index]
