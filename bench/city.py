"""A city in one evening: every district planned by `clearday worker` processes, and
the day's alerts evaluated by `clearday alerts run` processes sharing the districts.

A generated city of ``--districts`` districts × ``--points`` points (trucks: one per
25 points) is imported into a fresh database on a private PostgreSQL (or
CLEARDAY_DATABASE_URL, an admin URL). Then, for each worker count of ``--workers``:

- planning: that many worker processes (one job at a time each) are started, every
  district is queued at once (`queue_all_districts`, as `clearday plan --all-districts`
  does) with solves bounded by ``--solution-limit`` (the same work on any machine), and
  the wall time from queueing to the last plan stored is measured. Every plan is
  checked by routing/check.py and every point must be served.

Then, for each count of ``--alert-workers``: the same simulated day (the plans of the
last planning run, faults of every kind) is written into a copy of the database as an
ingestor would, paced at ``--speed`` × real time, while that many alert workers follow
it on a clock at the same pace. Alert lag is ``raised_at - condition_at`` of every
alert (the worker's clock minus the moment the rule's condition became true), in real
seconds (sim seconds / speed): what a supervisor waits.

With ``--large-points N``: one district of N points planned by one job, for each of
``--large-modes``: its pieces (territories, improvement neighbourhoods) in the job's
own machine's processes ("local"), or as engine jobs taken by 1, 2, … workers (each
one piece at a time, fleet/jobs/pieces.py); wall time, distance, plan checked.

With ``--handover-lease-s L``: two alert workers share the districts; the one that
holds some is killed (``kill -9``) and the seconds until the other holds every
district are measured, ``--handover-runs`` times; the bound is L plus a tick.
``--skip-city`` leaves out the city's planning and alerts.

The machine's cores bound what the worker counts can show: on 2 cores, 1 → 2 workers
shows the mechanism; docs/scaling.md says what it predicts for N machines.

    .venv/bin/python bench/city.py [--districts 8] [--points 300] [--workers 1,2]
                                   [--alert-workers 1,2] [--speed 240]
                                   [--large-points 1500 --large-modes local,1,2]
                                   [--handover-lease-s 5] [--skip-city]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from fleet import db, importer  # noqa: E402
from fleet.devservers import PrivatePostgres  # noqa: E402
from fleet.jobs import engine  # noqa: E402
from fleet.plans import jobs as plans_jobs  # noqa: E402
from fleet.plans import service as plans  # noqa: E402
from routing.check import check_plan  # noqa: E402
from routing.plan import Plan  # noqa: E402
from simulator.city import City, generate, generate_districts  # noqa: E402
from simulator.direct import DirectSink  # noqa: E402
from simulator.faults import FaultRates, random_faults  # noqa: E402
from simulator.trucks import DaySpec, Emission, SimDay, TerminalConfig  # noqa: E402

DAY = date(2026, 3, 3)
TZ = ZoneInfo("Asia/Shanghai")
FLUSH_S = 0.25  # the feeder writes what is due this often (an ingestor's batch age)
LARGE = "large"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def new_database(admin_url: str, template: str | None = None) -> str:
    name = f"city_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def clearday(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from fleet.cli import main; main()", *args],
        env={**os.environ, **env}, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------- planning


ENDED = ("done", "failed", "cancelled")


def start_workers(
    env: dict[str, str], count: int, logs: Path, label: str
) -> list[subprocess.Popen[bytes]]:
    """`count` planning workers w1, w2, … with `env`, each logging to logs/LABEL-wN.log."""
    return [
        clearday(["worker"], {**env, "CLEARDAY_WORKER_NAME": f"w{i + 1}"}, logs / f"{label}-w{i + 1}.log")
        for i in range(count)
    ]  # fmt: skip


def wait_ended(conn: psycopg.Connection, job_ids: list[int]) -> list[dict[str, Any] | None]:
    """The jobs' rows once every one has ended (a missing job never has)."""
    while True:
        rows = [plans.get_job(conn, job_id=j) for j in job_ids]
        if all(r is not None and r["state"] in ENDED for r in rows):
            return rows
        time.sleep(0.2)


def plan_city(
    url: str, cities: list[City], workers: int, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    env = {"CLEARDAY_DATABASE_URL": url, "CLEARDAY_WORKER_CONCURRENCY": "1"}
    procs = start_workers(env, workers, logs, f"plan{workers}")
    app = engine.make_app(url, [plans_jobs.register]).open()
    try:
        with db.connect(url, autocommit=True) as conn:
            started = time.monotonic()
            queued, refused = plans_jobs.queue_all_districts(
                app, conn, district_ids=None, service_date=DAY, time_limit_s=args.time_limit,
                seed=args.seed, solution_limit=args.solution_limit, publish=True,
                requested_by="bench",
            )  # fmt: skip
            assert not refused, refused
            rows = wait_ended(conn, list(queued.values()))
            states = [r["state"] for r in rows if r is not None]
            wall_s = time.monotonic() - started
    finally:
        app.close()
        stop(procs)
    checked = check_plans(url, cities)
    by_worker: dict[str, int] = {}
    for r in rows:
        assert r is not None
        by_worker[str(r["worker"])] = by_worker.get(str(r["worker"]), 0) + 1
    log(f"  {workers} worker(s): {wall_s:.1f} s for {len(cities)} districts; {by_worker}")
    return {"wall_s": round(wall_s, 1), "states": states, "jobs_by_worker": by_worker, **checked}


def check_plans(url: str, cities: list[City]) -> dict[str, Any]:
    """Every district's stored plan through the independent checker; points served."""
    violations = 0
    unassigned = 0
    points = 0
    with db.connect(url) as conn:
        for city in cities:
            district = str(city.district)
            row = conn.execute(
                """SELECT document FROM plan WHERE district_id = %s AND service_date = %s
                    AND status = 'published'""",
                (district, DAY),
            ).fetchone()
            if row is None:
                violations += 1
                continue
            plan = Plan.from_dict(row[0])
            problem = plans.build_problem(conn, district_id=district, service_date=DAY)
            violations += len(check_plan(problem, plan))
            unassigned += len(plan.unassigned)
            points += len(problem.points)
    return {
        "plans_checked": len(cities),
        "violations": violations,
        "points": points,
        "points_unassigned": unassigned,
        "every_point_served": unassigned == 0,
    }


# ---------------------------------------------------------------- one large district


def plan_large(url: str, mode: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Plan the one large district of `url` by one job: its pieces in the job's own
    machine ("local", a pool of its cores) or as engine jobs taken by `mode` workers
    (each one piece at a time, the job's own worker among them)."""
    workers = 1 if mode == "local" else int(mode)
    env = {
        "CLEARDAY_DATABASE_URL": url, "CLEARDAY_WORKER_CONCURRENCY": "1",
        "CLEARDAY_PLAN_PIECES": "local" if mode == "local" else "engine",
        "CLEARDAY_PLAN_PIECE_CONCURRENCY": "0" if mode == "local" else "1",
    }  # fmt: skip
    procs = start_workers(env, workers, logs, f"large{mode}")
    app = engine.make_app(url, [plans_jobs.register]).open()
    try:
        with db.connect(url, autocommit=True) as conn:
            while mode != "local":  # every worker ready to take pieces
                row = conn.execute("SELECT count(*) FROM plan_piece_worker").fetchone()
                if row and row[0] >= workers:
                    break
                time.sleep(0.2)
            started = time.monotonic()
            job_id = plans_jobs.queue_plan(
                app, conn, district_id=LARGE, service_date=DAY, time_limit_s=args.large_time_limit,
                seed=args.seed, solution_limit=args.large_solution_limit or None, publish=True,
                requested_by="bench",
            )  # fmt: skip
            (job,) = wait_ended(conn, [job_id])
            assert job is not None
            wall_s = time.monotonic() - started
            pieces = conn.execute(
                """SELECT coalesce(worker, '-'), state, count(*) FROM plan_piece
                    WHERE plan_job_id = %s GROUP BY 1, 2 ORDER BY 1, 2""",
                (job_id,),
            ).fetchall()
            row = conn.execute(
                "SELECT document FROM plan WHERE plan_job_id = %s", (job_id,)
            ).fetchone()
            assert row is not None, job
            plan = Plan.from_dict(row[0])
            problem = plans.build_problem(conn, district_id=LARGE, service_date=DAY)
    finally:
        app.close()
        stop(procs)
    result = {
        "wall_s": round(wall_s, 1),
        "state": job["state"],
        "distance_km": round(plan.stats.distance_m / 1000.0, 1),
        "routes": len(plan.routes),
        "points": len(problem.points),
        "points_unassigned": len(plan.unassigned),
        "violations": len(check_plan(problem, plan)),
        "pieces_by_worker_state": {f"{w}:{st}": int(n) for w, st, n in pieces},
        "notes": list(plan.stats.notes),
    }
    log(f"  large district, {mode}: {result}")
    return result


# ---------------------------------------------------------------------------- hand-over


def lease_handover(url: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Two alert workers share the districts; the one holding some is killed (`kill
    -9`): seconds until the other holds every district. Bounded by the lease
    (CLEARDAY_ALERT_LEASE_S) plus one tick."""
    env = {
        "CLEARDAY_DATABASE_URL": url, "CLEARDAY_METRICS_PORT": "0",
        "CLEARDAY_ALERT_LEASE_S": str(args.handover_lease_s),
    }  # fmt: skip
    interval = ["alerts", "run", "--interval", str(args.handover_interval)]

    def holders() -> dict[str, str]:
        with db.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT district_id, holder FROM alert_lease WHERE expires_at > now()"
            ).fetchall()
        return {str(d): str(h) for d, h in rows}

    with db.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM district").fetchone()
    districts = int(row[0]) if row else 0
    stayer = clearday(
        interval, {**env, "CLEARDAY_WORKER_NAME": "keeps"}, logs / "handover-keeps.log"
    )
    times: list[float] = []
    try:
        for run in range(args.handover_runs):
            name = f"dies{run + 1}"
            victim = clearday(
                interval, {**env, "CLEARDAY_WORKER_NAME": name}, logs / f"handover-{name}.log"
            )
            while True:  # both hold districts, every district held
                held = holders()
                if len(held) == districts and set(held.values()) == {"keeps", name}:
                    break
                time.sleep(0.05)
            victim.kill()
            killed = time.monotonic()
            victim.wait()
            while set(holders().values()) != {"keeps"} or len(holders()) != districts:
                time.sleep(0.05)
            times.append(round(time.monotonic() - killed, 2))
            log(f"  hand-over {run + 1}: {times[-1]} s")
    finally:
        stop([stayer])
    return {
        "lease_s": args.handover_lease_s,
        "tick_s": args.handover_interval,
        "bound_s": args.handover_lease_s + args.handover_interval,
        "handover_s": times,
        "handover_max_s": max(times) if times else None,
    }


# ---------------------------------------------------------------------------- alerts


def city_day(url: str, cities: list[City], seed: int) -> list[tuple[City, Emission]]:
    """The simulated day of every district (its published plan, faults of every kind),
    in sending order."""
    items: list[tuple[City, Emission]] = []
    with db.connect(url) as conn:
        for k, city in enumerate(cities):
            row = conn.execute(
                """SELECT document FROM plan WHERE district_id = %s AND service_date = %s
                    AND status = 'published'""",
                (city.district, DAY),
            ).fetchone()
            assert row is not None
            plan = Plan.from_dict(row[0])
            faults = random_faults(plan, city, FaultRates.scaled(1.0), seed=seed * 100 + k)
            spec = DaySpec(
                city=city, plan=plan, service_date=DAY, seed=seed * 100 + k, faults=tuple(faults),
                # No blind zones: the lag measured is the platform's, not the data's.
                terminal=TerminalConfig(fix_interval_s=10.0, noise_m=10.0, dropout_prob=0.02,
                                        signal_losses_per_day=0),
            )  # fmt: skip
            items += [(city, em) for em in SimDay(spec).emissions()]
    items.sort(key=lambda item: item[1].at_s)
    return items


def midnight() -> datetime:
    return datetime.combine(DAY, datetime.min.time(), tzinfo=TZ)


def run_alerts(
    url: str, day: list[tuple[City, Emission]], workers: int, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    first_s, last_s = day[0][1].at_s, day[-1][1].at_s
    sim_start = midnight() + timedelta(seconds=first_s)
    env = {"CLEARDAY_DATABASE_URL": url, "CLEARDAY_METRICS_PORT": "0"}
    # One clock for the feeder and every worker: sim_start at `anchor` (a little ahead,
    # so the workers are up when the day begins).
    anchor = time.time() + 3.0
    t0 = time.monotonic() + 3.0
    procs = [
        clearday(
            ["alerts", "run", "--interval", str(args.alert_interval),
             "--sim-start", sim_start.isoformat(), "--speed", str(args.speed),
             "--sim-anchor", repr(anchor)],
            {**env, "CLEARDAY_WORKER_NAME": f"a{i + 1}"}, logs / f"alerts{workers}-a{i + 1}.log",
        )
        for i in range(workers)
    ]  # fmt: skip
    sinks = {str(c.district): DirectSink(url, c) for c in {id(c): c for c, _ in day}.values()}
    try:
        i = 0
        time.sleep(max(0.0, t0 - time.monotonic()))
        while i < len(day):
            now_s = first_s + (time.monotonic() - t0) * args.speed
            while i < len(day) and day[i][1].at_s <= now_s:
                city, em = day[i]
                sinks[str(city.district)].send(em)
                i += 1
            for sink in sinks.values():
                sink.flush()
            time.sleep(FLUSH_S)
        # Let the clocks pass the last window (and its grace) before stopping.
        settle_sim_s = args.settle_sim_s
        end = t0 + (last_s - first_s + settle_sim_s) / args.speed
        while time.monotonic() < end:
            time.sleep(0.5)
    finally:
        for sink in sinks.values():
            sink.close()
        stop(procs)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT kind, extract(epoch FROM raised_at - condition_at) FROM alert"
        ).fetchall()
        duplicates = conn.execute(
            "SELECT count(*) - count(DISTINCT dedupe_key) FROM alert"
        ).fetchone()
    lags = [float(r[1]) / args.speed for r in rows]
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[str(r[0])] = kinds.get(str(r[0]), 0) + 1
    result = {
        "alerts": len(rows),
        "alerts_by_kind": dict(sorted(kinds.items())),
        "duplicate_alerts": int(duplicates[0]) if duplicates else None,
        "lag_p50_s": quantile(lags, 0.5),
        "lag_p99_s": quantile(lags, 0.99),
        "lag_max_s": quantile(lags, 1.0),
    }
    log(f"  {workers} alert worker(s): {result}")
    return result


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--districts", type=int, default=8)
    parser.add_argument("--points", type=int, default=300, help="per district")
    parser.add_argument("--trucks", type=int, default=0, help="per district (0: points / 25)")
    parser.add_argument("--workers", default="1,2", help="planning worker counts to measure")
    parser.add_argument("--alert-workers", default="1,2", help="alert worker counts to measure")
    parser.add_argument("--solution-limit", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=900.0, help="safety cap per solve")
    parser.add_argument("--speed", type=float, default=240.0, help="simulated s per real s")
    parser.add_argument("--alert-interval", type=float, default=1.0, help="alert tick, real s")
    parser.add_argument("--settle-sim-s", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--large-points", type=int, default=0, help="also one district this large (0: none)"
    )
    parser.add_argument(
        "--large-modes",
        default="local,1,2",
        help="its pieces: 'local' (the job's cores) or N workers taking them",
    )
    parser.add_argument(
        "--large-solution-limit",
        type=int,
        default=300,
        help="per piece; 0: bounded by --large-time-limit instead",
    )
    parser.add_argument("--large-time-limit", type=float, default=900.0)
    parser.add_argument(
        "--handover-lease-s",
        type=float,
        default=0.0,
        help="measure the alert lease hand-over with this lease (0: skip)",
    )
    parser.add_argument("--handover-interval", type=float, default=1.0)
    parser.add_argument("--handover-runs", type=int, default=3)
    parser.add_argument(
        "--skip-city", action="store_true", help="only the large district and the hand-over"
    )
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x]
    alert_counts = [int(x) for x in args.alert_workers.split(",") if x]
    trucks = args.trucks or max(2, args.points // 25)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clearday-city-") as tmp_name:
        tmp = Path(tmp_name)
        logs = tmp / "logs"
        logs.mkdir()
        admin_url = os.environ.get("CLEARDAY_DATABASE_URL")
        private = None
        if not admin_url:
            private = PrivatePostgres(tmp / "pg", durable=False).start()
            admin_url = private.admin_url
        try:
            cities = generate_districts(
                args.districts, n_points=args.points, n_trucks=trucks, seed=args.seed
            )
            template = new_database(admin_url)
            db.migrate(template)
            with db.connect(template) as conn:
                for city in cities:
                    folder = city.write(tmp / str(city.district))
                    importer.load(conn, importer.parse_files(importer.read_paths([folder])))
            template_name = template.rsplit("/", 1)[-1]
            planning: dict[str, Any] = {}
            alerts: dict[str, Any] = {}
            if not args.skip_city:
                planned_url = template
                for n in counts:
                    planned_url = new_database(admin_url, template_name)
                    planning[str(n)] = plan_city(planned_url, cities, n, args, logs)
                day = city_day(planned_url, cities, args.seed)
                log(f"  simulated day: {len(day)} messages")
                # Each alert run starts from the planned database as it was.
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                        (planned_url.rsplit("/", 1)[-1],),
                    )
                for n in alert_counts:
                    url = new_database(admin_url, planned_url.rsplit("/", 1)[-1])
                    alerts[str(n)] = run_alerts(url, day, n, args, logs)
            handover = None
            if args.handover_lease_s > 0:
                handover = lease_handover(new_database(admin_url, template_name), args, logs)
            large: dict[str, Any] = {}
            if args.large_points:
                large_template = new_database(admin_url)
                db.migrate(large_template)
                big = generate(
                    n_points=args.large_points, seed=args.seed, district=LARGE,
                    n_trucks=max(2, args.large_points // 25),
                )  # fmt: skip
                with db.connect(large_template) as conn:
                    folder = big.write(tmp / LARGE)
                    importer.load(conn, importer.parse_files(importer.read_paths([folder])))
                for mode in [m for m in args.large_modes.split(",") if m]:
                    url = new_database(admin_url, large_template.rsplit("/", 1)[-1])
                    large[mode] = plan_large(url, mode, args, logs)
        finally:
            if private is not None:
                private.stop()
    walls = {n: planning[str(n)]["wall_s"] for n in counts if str(n) in planning}
    result: dict[str, Any] = {
        "districts": args.districts,
        "points_per_district": args.points,
        "trucks_per_district": trucks,
        "solution_limit": args.solution_limit,
        "cpu_count": os.cpu_count(),
        "planning": planning,
        "plan_wall_s": walls,
        "alerts": alerts,
        "alert_lease_handover": handover,
        "large_district": {
            "points": args.large_points,
            "solution_limit": args.large_solution_limit,
            "by_mode": large,
        }
        if large
        else None,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "speed": args.speed,
        "alert_interval_s": args.alert_interval,
        "bench_wall_s": round(time.monotonic() - started, 1),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if large.get("1") and large.get("2") and large["2"]["wall_s"]:
        result["large_speedup_1_to_2"] = round(large["1"]["wall_s"] / large["2"]["wall_s"], 2)
    if 1 in walls and 2 in walls and walls[2]:
        result["plan_speedup_1_to_2"] = round(walls[1] / walls[2], 2)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
