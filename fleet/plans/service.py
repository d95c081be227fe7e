"""Planning a district's day: read its inputs, solve with the routing library, store.

Keyword-only functions the CLI and the API call. `routing` stays a pure library: this
module is where database rows become a `routing.problem.Problem` and a `Plan` becomes
rows again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from fleet.plans import repo
from routing import graph as road_graph
from routing import problem as rp
from routing.plan import Plan

Progress = Callable[[float, str], None]


class PlanningError(ValueError):
    """The district cannot be planned as it stands; the message says why."""


def _noop(fraction: float, message: str) -> None:
    pass


def build_problem(conn: psycopg.Connection, *, district_id: str, service_date: date) -> rp.Problem:
    """The routing problem for a district's service date, from the database."""
    if not repo.district_exists(conn, district_id):
        raise PlanningError(f"district {district_id!r} does not exist")
    rows = repo.district_inputs(conn, district_id)
    for kind in ("depots", "points", "trucks"):
        if not rows[kind]:
            raise PlanningError(f"district {district_id!r} has no active {kind}: import them first")
    s = repo.seconds_of_day
    points = [
        rp.Point(
            point_id=r["point_id"], lat=r["lat"], lon=r["lon"], stream=r["stream"],
            amount_kg=r["daily_amount_kg"], service_time_s=float(r["service_time_s"]),
            window_start_s=s(r["window_start"]), window_end_s=s(r["window_end"]),
            access_class=r["access_class"],
        )
        for r in rows["points"]
        if r["schedule"] == "daily"
    ]  # fmt: skip
    stations = [
        rp.Station(
            station_id=r["station_id"], lat=r["lat"], lon=r["lon"], streams=frozenset(r["streams"]),
            opens_s=s(r["opens_at"]), closes_s=s(r["closes_at"]), tipping_time_s=float(r["tipping_time_s"]),
        )
        for r in rows["stations"]
    ]  # fmt: skip
    depots = [rp.Depot(depot_id=r["depot_id"], lat=r["lat"], lon=r["lon"]) for r in rows["depots"]]
    trucks = [
        rp.Truck(
            truck_id=r["truck_id"], capacity_kg=r["capacity_kg"], streams=frozenset(r["streams"]),
            start_depot_id=r["depot_id"], end_depot_id=r["depot_id"],
            shift_start_s=s(r["shift_start"]), shift_end_s=s(r["shift_end"]),
            max_route_duration_s=r["max_route_duration_s"], break_duration_s=float(r["break_duration_s"]),
            break_earliest_s=s(r["break_earliest"]), break_latest_s=s(r["break_latest"]),
            can_enter_narrow=r["can_enter_narrow"],
        )
        for r in rows["trucks"]
    ]  # fmt: skip
    graph = None
    if rows["roads"]:
        graph = road_graph.graph_from_edges(
            {
                "from_node": r["from_node"], "to_node": r["to_node"],
                "from_lat": r["coordinates"][0][1], "from_lon": r["coordinates"][0][0],
                "to_lat": r["coordinates"][-1][1], "to_lon": r["coordinates"][-1][0],
                "length_m": r["length_m"], "speed_kmh": r["speed_kmh"], "narrow": r["narrow"],
                "oneway": r["oneway"], "road_class": r["road_class"],
            }
            for r in rows["roads"]
        )  # fmt: skip
    try:
        return rp.build_problem(
            points=points, stations=stations, depots=depots, trucks=trucks, graph=graph,
            name=f"{district_id} {service_date.isoformat()}",
        )  # fmt: skip
    except ValueError as exc:
        raise PlanningError(f"district {district_id!r}: {exc}") from exc


def stop_rows(plan: Plan, *, service_date: date, tz: ZoneInfo) -> list[dict[str, Any]]:
    """The plan's stops as `plan_stop` rows with absolute times."""
    rows = []
    for route in plan.routes:
        for seq, stop in enumerate(route.stops):
            ref = {
                "point": "point_id",
                "station": "station_id",
                "start": "depot_id",
                "end": "depot_id",
            }
            row: dict[str, Any] = {
                "truck_id": route.truck_id, "seq": seq, "kind": stop.kind,
                "arrival_at": repo.at_seconds(service_date, stop.arrival_s, tz),
                "departure_at": repo.at_seconds(service_date, stop.departure_s, tz),
                "load_after_kg": stop.load_after_kg, "distance_from_prev_m": stop.distance_from_prev_m,
            }  # fmt: skip
            if stop.kind in ref:
                row[ref[stop.kind]] = stop.ref_id
            rows.append(row)
    return rows


def solve(
    problem: rp.Problem, *, time_limit_s: float, seed: int, progress: Progress = _noop
) -> Plan:
    """Solve with the routing library, reporting progress as the time budget runs."""
    from routing import solver  # imports OR-Tools: only when planning

    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            share = min((time.monotonic() - started) / max(time_limit_s, 0.1), 1.0)
            progress(0.2 + 0.7 * share, "searching for better routes")

    ticker = threading.Thread(target=tick, name="plan-progress", daemon=True)
    ticker.start()
    try:
        return solver.solve(problem, time_limit_s=time_limit_s, seed=seed)
    finally:
        done.set()
        ticker.join()


def plan_day(
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    tz: ZoneInfo,
    time_limit_s: float = 30.0,
    seed: int = 0,
    created_by: str | None = None,
    publish: bool = False,
    progress: Progress = _noop,
) -> int:
    """Plan the day and store it (as a draft unless `publish`); returns the plan id."""
    progress(0.02, "reading the district")
    problem = build_problem(conn, district_id=district_id, service_date=service_date)
    progress(0.2, f"planning {len(problem.points)} points with {len(problem.trucks)} trucks")
    plan = solve(problem, time_limit_s=time_limit_s, seed=seed, progress=progress)
    progress(0.95, "storing the plan")
    plan_id = repo.insert_plan(
        conn,
        district_id=district_id,
        service_date=service_date,
        document=plan.to_dict(),
        stats=plan.to_dict()["stats"],
        stops=stop_rows(plan, service_date=service_date, tz=tz),
        unassigned=[(u.point_id, u.reason) for u in plan.unassigned],
        seed=seed,
        time_limit_s=time_limit_s,
        created_by=created_by,
    )
    if publish:
        repo.publish(conn, plan_id)
    progress(1.0, f"plan {plan_id} stored")
    return plan_id


def get_plan(conn: psycopg.Connection, *, plan_id: int) -> dict[str, Any] | None:
    return repo.get_plan(conn, plan_id)


def publish_plan(conn: psycopg.Connection, *, plan_id: int) -> None:
    repo.publish(conn, plan_id)


def start_job(
    pool_connect: Callable[[], psycopg.Connection],
    *,
    district_id: str,
    service_date: date,
    tz: ZoneInfo,
    time_limit_s: float,
    seed: int = 0,
    requested_by: str | None = None,
) -> int:
    """Start planning in a background thread; poll `plan_job` (get_job) for progress."""
    with pool_connect() as conn:
        conn.autocommit = True
        job_id = repo.create_job(
            conn, district_id=district_id, service_date=service_date, requested_by=requested_by
        )

    def run() -> None:
        with pool_connect() as conn:
            conn.autocommit = True
            last = [0.0]

            def report(fraction: float, message: str) -> None:
                # Throttle: a progress row per 2 % is plenty for a progress bar.
                if fraction - last[0] >= 0.02 or fraction >= 1.0:
                    last[0] = fraction
                    repo.update_job(
                        conn, job_id, state="running", progress=fraction, message=message
                    )

            try:
                plan_id = plan_day(
                    conn, district_id=district_id, service_date=service_date, tz=tz,
                    time_limit_s=time_limit_s, seed=seed, created_by=requested_by, progress=report,
                )  # fmt: skip
            except Exception as exc:  # a failed job must say why, whatever happened
                repo.update_job(conn, job_id, state="failed", progress=last[0], message=str(exc))
                return
            repo.update_job(
                conn, job_id, state="done", progress=1.0, message="done", plan_id=plan_id
            )

    threading.Thread(target=run, name=f"plan-job-{job_id}", daemon=True).start()
    return job_id


def get_job(conn: psycopg.Connection, *, job_id: int) -> dict[str, Any] | None:
    return repo.get_job(conn, job_id)
