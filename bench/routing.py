"""Route-planning benchmark: ClearDay's planner against best-known values and PyVRP.

    bench/routing.py [--budget SECONDS] [--seed N] [--no-pyvrp] PATH...
    bench/routing.py --district 3000x100 [--budget 600]
    bench/routing.py --district 1000x33 --budgets 60,200,600   # one plan per budget
    bench/routing.py --demo-loaded [--competitors 2] [--budget 15]
    bench/routing.py --scale 300,1000,3000 [--budget 60]
    bench/routing.py --district-db CODE --date YYYY-MM-DD [--budget 600]
    bench/routing.py --merge LOG...     # one summary of earlier runs' output

Each PATH is an instance file or a folder of them: CVRPLIB ``.vrp`` (+ ``.sol``),
Solomon / Gehring–Homberger ``.txt`` (+ ``.sol`` or ``bks.csv``), Kim et al.
``*_stop.txt``. Every instance is solved by ClearDay's planner and, in the same run
at the same budget, by PyVRP (the anchor, a benchmark-only dependency); both plans
go through ``routing.check``. ``--district PxT`` generates a P-point, T-truck
district (``routing.instances.synthetic_district``) and reports whether a checked,
feasible plan serving every point came back within the budget; with ``--budgets`` it
is planned once per budget, and the summary's ``budget_study`` gives each plan's
length against the longest budget's (what a shorter default budget costs a
dispatcher). ``--demo-loaded`` plans
the demo district (``simulator.city.generate``: 300 points, 12 trucks, seed 1) while
``--competitors`` CPU-bound processes (started here) compete for the cores, and reports
the points left out. ``--scale`` generates districts of the given sizes (one truck per
30 points) and solves each with both planners; ``--district-db`` reads an imported
district's day from the database (``CLEARDAY_DATABASE_URL``) and solves it with both.
Every row says whether the solve returned within the budget × 1.05 + 2 s
(``within_budget``).

One line of JSON per instance, then one JSON object on the last line:
``{"budget_s": 60, "sets": {"cvrp": {"instances": 6, "mean_gap_pct": 1.8,
"mean_ratio_vs_pyvrp": 1.015, "infeasible": 0}, ...}}``. The set is the folder under
the bench-data root (``cvrp``, ``vrptw``, ``wcvrptw``); gaps only where a
distance-convention best-known exists (Kim et al.'s totals are reported as
``mean_ratio_vs_published`` instead, they are not best-known values). The ratio to
PyVRP is averaged over the instances where both plans are feasible; the others are
counted in ``pyvrp_infeasible``.

PyVRP is given the waste instances as far as it can express them: streams and
narrow lanes as one routing profile per kind of truck (points a truck may not serve
out of its reach, the way home through a station that takes its streams), reloads
at the stations that take the truck's streams, and the lunch break folded into its
time windows as ClearDay's model folds it (``routing.fold_break``: time runs behind
by the break from its earliest start; shift and route duration shortened by it). The
daily load cap becomes a reload limit (exact when it is a whole number of loads).
Its routes are then timed exactly by ClearDay's scheduler and finished as ClearDay's
own search results are (a route that does not hold is repaired, points left out
re-inserted; ``pyvrp_routes_repaired`` counts what needed it, by reason), and checked
like ours. That finishing runs after PyVRP's budget, on top of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from routing import (  # noqa: E402
    Plan,
    Problem,
    SolverOptions,
    Unassigned,
    Visit,
    check_plan,
    depot_key,
    finish_plan,
    fold_break,
    make_plan,
    normalise,
    point_key,
    schedule_route,
    solve,
    station_key,
)
from routing.instances import Instance, read_instance, synthetic_district  # noqa: E402

INSTANCE_SUFFIXES = (".vrp", ".txt")
# A solve must return within budget × WALL_FACTOR + WALL_SLACK_S, whatever the size.
WALL_FACTOR = 1.05
WALL_SLACK_S = 2.0
SCALE = 10  # PyVRP works in integers: decimetres and deciseconds, like ClearDay


def find_instances(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix in INSTANCE_SUFFIXES and not f.name.lower().startswith(("readme",)):
                    if f.suffix == ".txt" and f.with_suffix(".vrp").exists():
                        continue
                    out.append(f)
        elif p.exists():
            out.append(p)
        else:
            raise SystemExit(f"{raw}: no such file or folder")
    return out


def set_name(path: Path) -> str:
    """The folder right under the bench-data root (the folder holding bks.csv)."""
    for parent in path.parents:
        if (parent / "bks.csv").exists() or (parent / "SOURCES.md").exists():
            rel = path.relative_to(parent)
            return rel.parts[0] if len(rel.parts) > 1 else parent.name
    return path.parent.name


# --------------------------------------------------------------------------- PyVRP


def solve_pyvrp(problem: Problem, budget_s: float, seed: int) -> tuple[Plan, dict[str, Any]]:
    """Solve with PyVRP and turn its routes into a ClearDay plan, timed exactly and
    finished as ClearDay's own search results are (see below); the checker then has
    the last word."""
    import pyvrp
    from pyvrp.stop import MaxRuntime

    t0 = time.monotonic()
    station_mode = bool(problem.stations)
    trucks = list(problem.trucks)
    depot_ids = sorted({t.start_depot_id for t in trucks} | {t.end_depot_id for t in trucks})
    # Location order: depots, stations, a virtual "unload and go home" end per depot,
    # points.
    keys: list[str] = [depot_key(d) for d in depot_ids]
    keys += [station_key(s.station_id) for s in problem.stations]
    n_real_depots = len(keys)
    end_virtual = {}
    if station_mode:
        for d in depot_ids:
            end_virtual[d] = len(keys)
            keys.append(f"virtual-end/{d}")
    point_offset = len(keys)
    keys += [point_key(p.point_id) for p in problem.points]

    # One routing profile per kind of truck (streams, narrow lanes): its own matrix
    # (without narrow lanes if it may not enter them), points it may not serve out of
    # reach, and the way home through a station that takes its streams.
    profile_of: dict[tuple[Any, ...], int] = {}
    profile_trucks: list[Any] = []
    for t in trucks:
        if _profile_key(t) not in profile_of:
            profile_of[_profile_key(t)] = len(profile_trucks)
            profile_trucks.append(t)
    matrices = [_pyvrp_matrix(problem, keys, end_virtual, point_offset, t) for t in profile_trucks]
    dist_i = [m[0] for m in matrices]
    dur_i = [m[1] for m in matrices]

    load_scale = 1000
    fold = _break_fold(trucks)

    def window(lo_s: float, hi_s: float) -> tuple[int, int]:
        """A window in PyVRP's time: deciseconds, the common break folded in."""
        lo, hi = math.ceil(lo_s * SCALE - 1e-6), math.floor(hi_s * SCALE + 1e-6)
        folded = fold_break(lo, hi, fold) if fold else None
        return folded or (lo, hi)

    locations = [pyvrp.Location(0.0, 0.0) for _ in keys]
    lat_lon = {}
    for d in problem.depots:
        lat_lon[depot_key(d.depot_id)] = (d.lat, d.lon)
    for s in problem.stations:
        lat_lon[station_key(s.station_id)] = (s.lat, s.lon)
    for p in problem.points:
        lat_lon[point_key(p.point_id)] = (p.lat, p.lon)
    for i, k in enumerate(keys):
        if k in lat_lon:
            locations[i] = pyvrp.Location(lat_lon[k][1] * 1e4, lat_lon[k][0] * 1e4)
    depots = []
    for i, k in enumerate(keys[:n_real_depots]):
        if k.startswith("station/"):
            s = problem.station(k.split("/", 1)[1])
            tw_early, tw_late = window(s.opens_s, s.closes_s - s.tipping_time_s)
            depots.append(
                pyvrp.Depot(
                    i,
                    tw_early=tw_early,
                    tw_late=tw_late,
                    service_duration=math.ceil(s.tipping_time_s * SCALE),
                )
            )
        else:
            depots.append(pyvrp.Depot(i))
    for _d, ve in end_virtual.items():
        depots.append(pyvrp.Depot(ve))
    depot_pos = {i: j for j, i in enumerate([*range(n_real_depots), *end_virtual.values()])}
    station_depots = [depot_pos[keys.index(station_key(s.station_id))] for s in problem.stations]
    clients = [
        pyvrp.Client(
            point_offset + k,
            pickup=[round(p.amount_kg * load_scale)],
            service_duration=math.ceil(p.service_time_s * SCALE),
            tw_early=window(p.window_start_s, p.window_end_s)[0],
            tw_late=window(p.window_start_s, p.window_end_s)[1],
        )
        for k, p in enumerate(problem.points)
    ]
    groups: Counter[tuple[Any, ...]] = Counter(_vehicle_group(t) for t in trucks)
    vehicle_types = []
    group_keys = list(groups)
    for g in group_keys:
        cap, sdep, edep, s0, s1, maxdur, day_cap, profile_key = g
        profile = profile_of[profile_key]
        allowed = {s.station_id for s in problem.stations_for(profile_trucks[profile])}
        reload = [
            d
            for d, s in zip(station_depots, problem.stations, strict=True)
            if s.station_id in allowed
        ]
        # The daily load cap as a trip limit: exact when it is a multiple of the
        # capacity, a relaxation otherwise (the checker then has the last word).
        max_reloads = max(0, math.ceil(day_cap / cap - 1e-9) - 1) if day_cap is not None else 2**30
        start_d = depot_pos[keys.index(depot_key(sdep))]
        end_d = (
            depot_pos[end_virtual[edep]] if station_mode else depot_pos[keys.index(depot_key(edep))]
        )
        vehicle_types.append(
            pyvrp.VehicleType(
                groups[g],
                capacity=[round(cap * load_scale)],
                start_depot=start_d,
                end_depot=end_d,
                tw_early=math.ceil(s0 * SCALE),
                tw_late=math.floor(s1 * SCALE),
                shift_duration=math.floor(maxdur * SCALE) if math.isfinite(maxdur) else 2**40,
                profile=profile,
                reload_depots=reload if station_mode else [],
                max_reloads=max_reloads if station_mode else 0,
            )
        )
    data = pyvrp.ProblemData(locations, clients, depots, vehicle_types, dist_i, dur_i)
    remaining = max(0.5, budget_s - (time.monotonic() - t0))
    result = pyvrp.solve(data, stop=MaxRuntime(remaining), seed=seed, display=False)
    best = result.best
    # Back to ClearDay: assign each PyVRP route to a truck of its vehicle type.
    pool: dict[int, list[str]] = {}
    for gi, g in enumerate(group_keys):
        pool[gi] = [t.truck_id for t in trucks if _vehicle_group(t) == g]
    visits_by_truck: dict[str, list[Visit]] = {}
    station_of_depot = {
        depot_pos[keys.index(station_key(s.station_id))]: s.station_id for s in problem.stations
    }
    for route in best.routes():
        truck_id = pool[route.vehicle_type()].pop(0)
        visits: list[Visit] = []
        for act in route.schedule()[1:-1]:
            if str(act.type).endswith("CLIENT"):
                visits.append(Visit("point", problem.points[act.idx].point_id))
            elif act.idx in station_of_depot:
                visits.append(Visit("station", station_of_depot[act.idx]))
        visits_by_truck[truck_id] = visits
    served = {v.ref_id for vs in visits_by_truck.values() for v in vs if v.kind == "point"}
    missing = [
        Unassigned(point_id=p.point_id, reason="shift")
        for p in problem.points
        if p.point_id not in served
    ]
    # Time the routes exactly (the break placed by ClearDay's scheduler, the final
    # unload at the nearest station) and finish them as ClearDay's own search results
    # are finished: a route that does not hold (the folded break is an approximation)
    # is repaired, points left out re-inserted. What needed repair is reported.
    unrepaired = Counter(
        schedule_route(problem, problem.truck(t), normalise(problem, problem.truck(t), v)).reason
        for t, v in visits_by_truck.items()
        if v
    )
    unrepaired.pop(None, None)
    routes, unassigned = finish_plan(
        problem, visits_by_truck, missing, repair=True, time_budget_s=max(10.0, 0.1 * budget_s)
    )
    plan = make_plan(
        problem,
        routes,
        unassigned,
        solve_time_s=time.monotonic() - t0,
        seed=seed,
        status="feasible" if best.is_feasible() else "infeasible",
        solver="pyvrp",
    )
    info = {
        "pyvrp_break": "folded into time" if fold else "none",
        "pyvrp_cost": best.distance() / SCALE,
        "pyvrp_feasible_own_model": bool(best.is_feasible()),
        "pyvrp_routes_repaired": dict(unrepaired),
        "pyvrp_points_left_out_by_pyvrp": len(missing),
    }
    return plan, info


def _break_fold(trucks: list[Any]) -> tuple[int, int] | None:
    """(start, duration) in deciseconds of the lunch break every truck takes, folded
    into PyVRP's time as ClearDay's model folds it (``routing.fold_break``: time runs
    behind by the break from its earliest start); None without a common break."""
    breaks = {(t.break_earliest_s, t.break_duration_s) for t in trucks}
    if len(breaks) != 1:
        return None
    earliest, duration = breaks.pop()
    if duration <= 0:
        return None
    return math.ceil(earliest * SCALE - 1e-6), math.ceil(duration * SCALE - 1e-6)


def _vehicle_group(t: Any) -> tuple[Any, ...]:
    """A PyVRP vehicle type: capacity, depots, shift and route duration with the
    break taken out, daily load cap."""
    shift_end = t.shift_end_s - max(0.0, t.break_duration_s)
    longest = min(
        t.route_duration_limit_s - max(0.0, t.break_duration_s), shift_end - t.shift_start_s
    )
    return (
        t.capacity_kg,
        t.start_depot_id,
        t.end_depot_id,
        t.shift_start_s,
        shift_end,
        longest,
        t.max_day_load_kg,
        _profile_key(t),
    )


def _profile_key(t: Any) -> tuple[Any, ...]:
    return (frozenset(t.streams), t.can_enter_narrow)


def _pyvrp_matrix(
    problem: Problem,
    keys: list[str],
    end_virtual: dict[str, int],
    point_offset: int,
    truck: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (dm) and durations (ds) for one kind of truck: its own matrix; the
    points it may not serve (stream, narrow lane) out of reach; each virtual end is
    the way home from anywhere through the nearest station that takes its streams."""
    mx = problem.matrix_for(truck)
    n = len(keys)
    dist = np.zeros((n, n))
    dur = np.zeros((n, n))
    real_idx = [i for i, k in enumerate(keys) if not k.startswith("virtual-end/")]
    sub = mx.subset([keys[i] for i in real_idx])
    dist[np.ix_(real_idx, real_idx)] = sub.distance_m
    dur[np.ix_(real_idx, real_idx)] = sub.duration_s
    big = float(np.nanmax(np.where(np.isfinite(dist), dist, 0))) * 10 + 1e6
    stations = problem.stations_for(truck) or list(problem.stations)
    for d, ve in end_virtual.items():
        home = mx.index[depot_key(d)]
        for i, k in enumerate(keys):
            if k.startswith("virtual-end/"):
                dist[i, ve] = dur[i, ve] = 0.0 if i == ve else big
                continue
            best = (math.inf, math.inf)
            for s in stations:
                sk = mx.index[station_key(s.station_id)]
                d1 = mx.distance_m[mx.index[k], sk] + mx.distance_m[sk, home]
                t1 = mx.duration_s[mx.index[k], sk] + s.tipping_time_s + mx.duration_s[sk, home]
                if d1 < best[0]:
                    best = (d1, t1)
            dist[i, ve], dur[i, ve] = best
        dist[ve, :] = np.where(np.arange(n) == ve, 0.0, big)
        dur[ve, :] = np.where(np.arange(n) == ve, 0.0, big)
    for k, p in enumerate(problem.points):
        if p.stream not in truck.streams or (
            p.access_class == "narrow" and not truck.can_enter_narrow
        ):
            dist[point_offset + k, :] = dist[:, point_offset + k] = big
            dur[point_offset + k, :] = dur[:, point_offset + k] = big
            dist[point_offset + k, point_offset + k] = dur[point_offset + k, point_offset + k] = 0
    dist = np.where(np.isfinite(dist), dist, big)
    dur = np.where(np.isfinite(dur), dur, big)
    return (
        np.rint(dist * SCALE).astype(np.int64),
        np.ceil(dur * SCALE - 1e-6).astype(np.int64),
    )


# --------------------------------------------------------------------------- runs


def within_budget(wall_s: float, budget_s: float) -> bool:
    return wall_s <= budget_s * WALL_FACTOR + WALL_SLACK_S


def _spin() -> None:
    while True:
        pass


@contextmanager
def competitors(n: int) -> Iterator[None]:
    """``n`` CPU-bound processes running for as long as the block does."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spin, daemon=True) for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()


def run_demo_loaded(
    budget: float,
    seed: int,
    n_competitors: int,
    solution_limit: int | None = None,
    options: SolverOptions | None = None,
) -> dict[str, Any]:
    """The demo district planned while other processes load the CPU (with
    ``solution_limit``: a search bounded by solutions, the budget only a cap)."""
    from simulator.city import generate
    from simulator.plans import routing_problem

    problem = routing_problem(generate(n_points=300, n_trucks=12, seed=1, district="demo"))
    with competitors(n_competitors):
        t0 = time.monotonic()
        options = replace(options or SolverOptions(), solution_limit=solution_limit)
        plan = solve(problem, time_limit_s=budget, seed=seed, options=options)
        wall = time.monotonic() - t0
    violations = check_plan(problem, plan)
    return {
        "instance": "demo district (300 points, 12 trucks)",
        "set": "demo-loaded",
        "competitors": n_competitors,
        "solution_limit": solution_limit,
        "points": len(problem.points),
        "value": round(plan.stats.distance_m / 1000.0, 3),
        "unit": "km",
        "routes": len(plan.routes),
        "unassigned": len(plan.unassigned),
        "unassigned_reasons": dict(Counter(u.reason for u in plan.unassigned)),
        "violations": len(violations),
        "feasible": not violations and not plan.unassigned,
        "wall_s": round(wall, 2),
        "within_budget": within_budget(wall, budget),
    }


def compare_district(
    problem: Problem, budget: float, seed: int, set_label: str, options: SolverOptions
) -> dict[str, Any]:
    """Both planners on one district at the same budget, both plans checked; km."""
    t0 = time.monotonic()
    plan = solve(problem, time_limit_s=budget, seed=seed, options=options)
    wall = time.monotonic() - t0
    violations = check_plan(problem, plan)
    pplan, info = solve_pyvrp(problem, budget, seed)
    pviol = check_plan(problem, pplan)
    ours = plan.stats.distance_m / 1000.0
    theirs = pplan.stats.distance_m / 1000.0
    row: dict[str, Any] = {
        "instance": problem.name,
        "set": set_label,
        "points": len(problem.points),
        "trucks": len(problem.trucks),
        "value": round(ours, 3),
        "unit": "km",
        "routes": len(plan.routes),
        "unassigned": len(plan.unassigned),
        "unassigned_reasons": dict(Counter(u.reason for u in plan.unassigned)),
        "violations": len(violations),
        "feasible": not violations and not plan.unassigned,
        "wall_s": round(wall, 2),
        "within_budget": within_budget(wall, budget),
        "notes": list(plan.stats.notes),
        "pyvrp_value": round(theirs, 3),
        "pyvrp_unassigned": len(pplan.unassigned),
        "pyvrp_violations": len(pviol),
        "pyvrp_feasible": not pviol and not pplan.unassigned,
        "pyvrp_routes": len(pplan.routes),
        **info,
    }
    if theirs > 0:
        row["ratio_vs_pyvrp"] = round(ours / theirs, 4)
    if info["pyvrp_cost"] > 0:
        # PyVRP's own (relaxed: no break, no daily cap) cost, in metres: what to
        # compare with when its routes fail the checks once timed with the break.
        row["ratio_vs_pyvrp_own_model"] = round(plan.stats.distance_m / info["pyvrp_cost"], 4)
    return row


def run_scale(size: int, budget: float, seed: int, options: SolverOptions) -> dict[str, Any]:
    problem, _graph = synthetic_district(
        n_points=size,
        n_trucks=max(2, size // 30),
        n_stations=max(1, size // 1000),
        n_depots=max(1, size // 1500),
        seed=seed,
        kitchen_share=0.1,
    )
    return compare_district(problem, budget, seed, "scale", options)


def run_district_db(
    code: str, day: str, budget: float, seed: int, options: SolverOptions
) -> dict[str, Any]:
    from datetime import date

    from fleet import db
    from fleet.config import Settings
    from fleet.plans import service

    with db.connect(Settings().storage.database_dsn()) as conn:
        problem = service.build_problem(
            conn, district_id=code, service_date=date.fromisoformat(day)
        )
    return compare_district(problem, budget, seed, "district-db", options)


def plan_value(inst: Instance, plan: Plan) -> float:
    return plan.stats.distance_m * inst.unit_per_m


def run_instance(
    path: Path, budget: float, seed: int, with_pyvrp: bool, options: SolverOptions
) -> dict[str, Any]:
    inst = read_instance(path)
    problem = inst.problem
    t0 = time.monotonic()
    plan = solve(problem, time_limit_s=budget, seed=seed, options=options)
    wall = time.monotonic() - t0
    violations = check_plan(problem, plan)
    ours = plan_value(inst, plan)
    row: dict[str, Any] = {
        "instance": inst.name,
        "set": set_name(path),
        "kind": inst.kind,
        "points": len(problem.points),
        "trucks": len(problem.trucks),
        "value": round(ours, 4),
        "routes": len(plan.routes),
        "unassigned": len(plan.unassigned),
        "violations": len(violations),
        "violation_kinds": dict(Counter(v.kind for v in violations)),
        "feasible": not violations and not plan.unassigned,
        "wall_s": round(wall, 2),
        "within_budget": within_budget(wall, budget),
        "bks": inst.bks,
        "bks_convention": inst.bks_convention,
    }
    if inst.bks and inst.bks_convention == "distance":
        row["gap_pct"] = round(100.0 * (ours - inst.bks) / inst.bks, 3)
    elif inst.bks and inst.bks_convention == "hierarchical":
        row["gap_vs_hierarchical_pct"] = round(100.0 * (ours - inst.bks) / inst.bks, 3)
    elif inst.bks:
        row["ratio_vs_published"] = round(ours / inst.bks, 4)
    if with_pyvrp:
        pplan, info = solve_pyvrp(problem, budget, seed)
        pviol = check_plan(problem, pplan)
        theirs = plan_value(inst, pplan)
        row.update(
            {
                "pyvrp_value": round(theirs, 4),
                "pyvrp_unassigned": len(pplan.unassigned),
                "pyvrp_violations": len(pviol),
                "pyvrp_violation_kinds": dict(Counter(v.kind for v in pviol)),
                "pyvrp_feasible": not pviol and not pplan.unassigned,
                "pyvrp_routes": len(pplan.routes),
                **info,
            }
        )
        if theirs > 0:
            row["ratio_vs_pyvrp"] = round(ours / theirs, 4)
    return row


def run_district(spec: str, budget: float, seed: int, options: SolverOptions) -> dict[str, Any]:
    n_points, n_trucks = (int(x) for x in spec.lower().split("x"))
    t0 = time.monotonic()
    problem, _graph = synthetic_district(
        n_points=n_points,
        n_trucks=n_trucks,
        n_stations=max(1, n_points // 1000),
        n_depots=max(1, n_trucks // 50),
        seed=seed,
        kitchen_share=0.1,
    )
    build_s = time.monotonic() - t0
    plan = solve(problem, time_limit_s=max(1.0, budget - build_s), seed=seed, options=options)
    wall = time.monotonic() - t0
    violations = check_plan(problem, plan)
    return {
        "instance": problem.name,
        "set": "district",
        "budget_s": budget,
        "points": n_points,
        "trucks": n_trucks,
        "value": round(plan.stats.distance_m / 1000.0, 3),
        "unit": "km",
        "routes": len(plan.routes),
        "pieces": plan.stats.pieces,
        "unassigned": len(plan.unassigned),
        "unassigned_reasons": dict(Counter(u.reason for u in plan.unassigned)),
        "violations": len(violations),
        "violation_kinds": dict(Counter(v.kind for v in violations)),
        "feasible": not violations and not plan.unassigned,
        "build_s": round(build_s, 2),
        "wall_s": round(wall, 2),
        "within_budget": within_budget(wall, budget),
        "notes": list(plan.stats.notes),
    }


def summarise(rows: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    sets: dict[str, dict[str, Any]] = {}
    for name in sorted({r["set"] for r in rows}):
        rs = [r for r in rows if r["set"] == name]
        gaps = [r["gap_pct"] for r in rs if "gap_pct" in r]
        # A cost ratio compares like with like: only where both plans hold and serve
        # the same points (PyVRP's relaxation can fail the waste instances' checks).
        ratios = [
            r["ratio_vs_pyvrp"]
            for r in rs
            if "ratio_vs_pyvrp" in r and r["feasible"] and r.get("pyvrp_feasible", False)
        ]
        pub = [r["ratio_vs_published"] for r in rs if "ratio_vs_published" in r]
        pyvrp_gaps = [
            100.0 * (r["pyvrp_value"] - r["bks"]) / r["bks"]
            for r in rs
            if "gap_pct" in r and "pyvrp_value" in r
        ]
        out: dict[str, Any] = {
            "instances": len(rs),
            "infeasible": sum(1 for r in rs if not r["feasible"]),
        }
        if gaps:
            out["mean_gap_pct"] = round(statistics.fmean(gaps), 3)
        if ratios:
            out["mean_ratio_vs_pyvrp"] = round(statistics.fmean(ratios), 4)
        if pyvrp_gaps:
            out["pyvrp_mean_gap_pct"] = round(statistics.fmean(pyvrp_gaps), 3)
        if pub:
            out["mean_ratio_vs_published"] = round(statistics.fmean(pub), 4)
        if any("pyvrp_feasible" in r for r in rs):
            out["pyvrp_infeasible"] = sum(1 for r in rs if not r.get("pyvrp_feasible", True))
        out["within_budget"] = all(r.get("within_budget", True) for r in rs)
        out["max_wall_s"] = max(r.get("wall_s", 0.0) for r in rs)
        sets[name] = out
    study = budget_study(rows)
    return {"budget_s": budget, "sets": sets, **({"budget_study": study} if study else {})}


def budget_study(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per generated district planned at several budgets: its length at each budget
    and that length against the longest budget's plan (1.02 = 2 % longer)."""
    by_instance: dict[str, dict[float, dict[str, Any]]] = {}
    for r in rows:
        if r["set"] == "district" and "budget_s" in r:
            by_instance.setdefault(r["instance"], {})[r["budget_s"]] = r
    study = {}
    for name, by_budget in sorted(by_instance.items()):
        if len(by_budget) < 2:
            continue
        longest = by_budget[max(by_budget)]
        study[name] = {
            f"{b:g}": {
                "km": r["value"],
                "vs_longest": round(r["value"] / longest["value"], 4),
                "unassigned": r["unassigned"],
                "wall_s": r["wall_s"],
            }
            for b, r in sorted(by_budget.items())
        }
    return study


def read_rows(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of an earlier run's output (per-instance lines and summaries)."""
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def solver_options(parser: argparse.ArgumentParser, pairs: list[str]) -> SolverOptions:
    """``NAME=VALUE`` pairs as SolverOptions fields (values read as JSON, else text)."""
    fields = {f.name for f in dataclasses.fields(SolverOptions)}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in fields:
            parser.error(
                f"--option {pair!r}: expected NAME=VALUE with NAME one of {sorted(fields)}"
            )
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return SolverOptions(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="instance files or folders")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per instance")
    parser.add_argument(
        "--budgets",
        default="",
        metavar="B,B,...",
        help="with --district: plan each district once per budget (seconds)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pyvrp", action="store_true", help="skip the PyVRP anchor")
    parser.add_argument(
        "--district", action="append", default=[], help="generated district PxT, e.g. 3000x100"
    )
    parser.add_argument(
        "--demo-loaded",
        action="store_true",
        help="the demo district while CPU-bound processes compete (see --competitors)",
    )
    parser.add_argument("--competitors", type=int, default=2, help="with --demo-loaded")
    parser.add_argument(
        "--solution-limit",
        type=int,
        help="with --demo-loaded: stop after this many solutions (--budget is then a cap)",
    )
    parser.add_argument(
        "--scale", default="", metavar="N,N,...", help="generated districts of these sizes"
    )
    parser.add_argument("--district-db", metavar="CODE", help="an imported district")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a SolverOptions field for ClearDay's planner, e.g. improve_rounds=0",
    )
    parser.add_argument("--date", metavar="YYYY-MM-DD", help="with --district-db")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="LOG",
        help="summarise the per-instance lines of earlier runs (e.g. sets run in parallel)",
    )
    args = parser.parse_args(argv)
    if args.merge:
        merged = [row for log in args.merge for row in read_rows(Path(log))]
        budgets = {row["budget_s"] for row in merged if "budget_s" in row} or {args.budget}
        rows = [row for row in merged if "instance" in row]
        print(json.dumps(summarise(rows, max(budgets))), flush=True)
        return 0
    if args.district_db and not args.date:
        parser.error("--district-db needs --date")
    try:
        sizes = [int(x) for x in args.scale.split(",") if x.strip()]
    except ValueError:
        parser.error("--scale: sizes are whole numbers, e.g. 300,1000,3000")
    try:
        budgets = sorted(float(x) for x in args.budgets.split(",") if x.strip())
    except ValueError:
        parser.error("--budgets: seconds, e.g. 30,60,600")
    if budgets and not args.district:
        parser.error("--budgets needs --district")
    if not (args.paths or args.district or args.demo_loaded or sizes or args.district_db):
        parser.error("give instance PATHs, --district, --demo-loaded, --scale or --district-db")
    options = solver_options(parser, args.option)
    rows = []
    for path in find_instances(args.paths):
        row = run_instance(path, args.budget, args.seed, not args.no_pyvrp, options)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for spec in args.district:
        for budget in budgets or [args.budget]:
            row = run_district(spec, budget, args.seed, options)
            rows.append(row)
            print(json.dumps(row), flush=True)
    later: list[Any] = []
    if args.demo_loaded:
        later.append(
            lambda: run_demo_loaded(
                args.budget, args.seed, args.competitors, args.solution_limit, options
            )
        )
    for size in sizes:
        later.append(lambda size=size: run_scale(size, args.budget, args.seed, options))
    if args.district_db:
        later.append(
            lambda: run_district_db(args.district_db, args.date, args.budget, args.seed, options)
        )
    for run in later:
        row = run()
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(summarise(rows, max(budgets or [args.budget]))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
