"""Planning a district's day: read its inputs, solve with the routing library, store.

Keyword-only functions the CLI and the API call. `routing` stays a pure library: this
module is where database rows become a `routing.problem.Problem` and a `Plan` becomes
rows again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg

from fleet.alerts import ledger, visits
from fleet.alerts import repo as alerts_repo
from fleet.alerts.worker import AlertConfig
from fleet.districts import repo as districts_repo
from fleet.fields import DEFAULT_TIMEZONE
from fleet.plans import progress as progress_mod
from fleet.plans import repo
from fleet.refusal import Param, Refused
from routing import graph as road_graph
from routing import problem as rp
from routing.check import check_plan
from routing.plan import Plan

if TYPE_CHECKING:
    from routing.pieces import PieceRunner
    from routing.replan import Replan

Progress = Callable[[float, str], None]

# The budget of a day's plan asked for without one (CLI, API, dashboard) grows with the
# district: the search keeps improving large districts for minutes (docs/routing.md,
# "The default budget").
BUDGET_S_PER_POINT = 1.0
BUDGET_MIN_S = 60.0
BUDGET_MAX_S = 600.0
# A re-plan is asked for while trucks wait on the street: a short budget whatever the size.
REPLAN_BUDGET_S = 30.0


def default_budget_s(points: int) -> float:
    """The budget of a day's plan of this many points when none is asked for."""
    return min(BUDGET_MAX_S, max(BUDGET_MIN_S, BUDGET_S_PER_POINT * points))


class PlanningError(Refused):
    """The district cannot be planned as it stands; the message says why."""


class PlanNotFound(PlanningError):
    """The plan to re-plan does not exist."""


class ReplanRefused(PlanningError):
    """The plan exists but cannot be re-planned now (not published, not today's)."""


class InvalidIds(PlanningError):
    """Truck or point ids given for a re-plan that the district does not have."""

    def __init__(self, field: str, code: str, message: str, **params: Param) -> None:
        super().__init__(code, message, **params)
        self.field = field


def _noop(fraction: float, message: str) -> None:
    pass


def build_problem(
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    extra_locations: Mapping[str, tuple[float, float]] | None = None,
) -> rp.Problem:
    """The routing problem for a district's service date, from the database;
    `extra_locations` (key: (lat, lon)) are measured into its travel matrices too."""
    return _build_problem(
        conn, district_id=district_id, service_date=service_date, extra_locations=extra_locations
    )[0]


def _point(r: dict[str, Any]) -> rp.Point:
    s = repo.seconds_of_day
    return rp.Point(
        point_id=r["point_id"], lat=r["lat"], lon=r["lon"], stream=r["stream"],
        amount_kg=r["daily_amount_kg"], service_time_s=float(r["service_time_s"]),
        window_start_s=s(r["window_start"]), window_end_s=s(r["window_end"]),
        access_class=r["access_class"],
    )  # fmt: skip


def _build_problem(
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    point_ids: Sequence[str] | None = None,
    also_truck_ids: Sequence[str] = (),
    extra_locations: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[rp.Problem, Any]:
    """The problem and the road graph it was measured on (None: straight lines).

    With `point_ids`, exactly those points (a re-plan keeps the points of the plan it
    replaces); otherwise every active point collected daily."""
    if not districts_repo.district_exists(conn, district_id):
        raise PlanningError(
            "district_unknown", f"district {district_id!r} does not exist", district=district_id
        )
    rows = repo.district_inputs(
        conn, district_id, point_ids=point_ids, also_truck_ids=also_truck_ids
    )
    for kind in ("depots", "points", "trucks"):
        if not rows[kind]:
            raise PlanningError(
                f"district_no_{kind}",
                f"district {district_id!r} has no active {kind}: import them first",
                district=district_id,
            )
    s = repo.seconds_of_day
    points = [
        _point(r) for r in rows["points"] if point_ids is not None or r["schedule"] == "daily"
    ]
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
        problem = rp.build_problem(
            points=points, stations=stations, depots=depots, trucks=trucks, graph=graph,
            extra_locations=extra_locations, name=f"{district_id} {service_date.isoformat()}",
        )  # fmt: skip
    except ValueError as exc:
        raise PlanningError(
            "plan_inputs_invalid", f"district {district_id!r}: {exc}",
            district=district_id, detail=str(exc),
        ) from exc  # fmt: skip
    return problem, graph


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


@contextmanager
def _ticking(time_limit_s: float, progress: Progress) -> Iterator[None]:
    """Report progress from 20 % to 90 % as the solver's time budget runs."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(0.5):
            share = min((time.monotonic() - started) / max(time_limit_s, 0.1), 1.0)
            progress(0.2 + 0.7 * share, "searching for better routes")

    ticker = threading.Thread(target=tick, name="plan-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def solve(
    problem: rp.Problem,
    *,
    time_limit_s: float,
    seed: int,
    solution_limit: int | None = None,
    progress: Progress = _noop,
    max_points_per_solve: int | None = None,
    piece_runner: PieceRunner | None = None,
) -> Plan:
    """Solve with the routing library, reporting progress as the time budget runs.
    With `solution_limit` the search stops after that many solutions: the same plan
    for the same seed on any machine (`time_limit_s` is then only a safety cap).
    A district above `max_points_per_solve` points is decomposed; its pieces run by
    `piece_runner` when given (fleet/jobs/pieces.py), else in this machine's processes."""
    import routing  # its solve imports OR-Tools: only when planning

    options = routing.SolverOptions(solution_limit=solution_limit)
    if max_points_per_solve is not None:
        options = replace(options, max_points_per_solve=max_points_per_solve)
    with _ticking(time_limit_s, progress):
        return routing.solve(
            problem, time_limit_s=time_limit_s, seed=seed, options=options, runner=piece_runner
        )


def plan_day(
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    tz: ZoneInfo,
    time_limit_s: float | None = None,
    seed: int = 0,
    solution_limit: int | None = None,
    created_by: str | None = None,
    publish: bool = False,
    progress: Progress = _noop,
    plan_job_id: int | None = None,
    max_points_per_solve: int | None = None,
    piece_runner: PieceRunner | None = None,
) -> int:
    """Plan the day and store it (as a draft unless `publish`); returns the plan id.
    Without `time_limit_s`, the budget grows with the district (`default_budget_s`).
    With `plan_job_id`, the job's one plan (see repo.insert_plan); for
    `max_points_per_solve` and `piece_runner` see `solve`."""
    progress(0.02, "reading the district")
    problem = build_problem(conn, district_id=district_id, service_date=service_date)
    if time_limit_s is None:
        time_limit_s = default_budget_s(len(problem.points))
    progress(
        0.2,
        f"planning {len(problem.points)} points with {len(problem.trucks)} trucks"
        f" in {time_limit_s:g} s",
    )
    plan = solve(
        problem, time_limit_s=time_limit_s, seed=seed, solution_limit=solution_limit,
        progress=progress, max_points_per_solve=max_points_per_solve, piece_runner=piece_runner,
    )  # fmt: skip
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
        plan_job_id=plan_job_id,
    )
    if publish:
        repo.publish(conn, plan_id)
    progress(1.0, f"plan {plan_id} stored")
    return plan_id


@dataclass(frozen=True, slots=True)
class ReplanRequest:
    """A re-plan request checked against the database: the published plan of the day
    in progress, and ids the district has."""

    plan_id: int
    district_id: str
    service_date: date
    tz: ZoneInfo
    now: datetime
    plan: Plan
    unavailable_truck_ids: tuple[str, ...]
    new_point_ids: tuple[str, ...]

    @property
    def now_s(self) -> float:
        """`now` in seconds since local midnight of the service date (the plan's clock)."""
        return (self.now - repo.at_seconds(self.service_date, 0, self.tz)).total_seconds()


def _ids(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def _listed(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def check_replan(
    conn: psycopg.Connection,
    *,
    plan_id: int,
    now: datetime,
    unavailable_truck_ids: Sequence[str] = (),
    new_point_ids: Sequence[str] = (),
) -> ReplanRequest:
    """Everything about a re-plan request that can be refused before any work is done;
    raises PlanNotFound, ReplanRefused or InvalidIds with a message a dispatcher can act on."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise PlanningError(
            "replan_time_naive", "the re-planning time must carry a time zone (e.g. +08:00)"
        )
    stored = repo.get_plan(conn, plan_id)
    if stored is None:
        raise PlanNotFound("plan_not_found", f"plan {plan_id} does not exist", plan_id=plan_id)
    district_id, service_date = str(stored["district_id"]), stored["service_date"]
    if stored["status"] != "published":
        current = repo.published_plan_id(conn, district_id, service_date)
        hint = (
            f"; plan {current} is the published plan of that day: re-plan that one"
            if current is not None
            else "; publish it first"
        )
        raise ReplanRefused(
            "replan_not_published",
            f"plan {plan_id} is {stored['status']}, not published: only the plan the trucks "
            f"are driving can be re-planned from now{hint}",
            plan_id=plan_id,
        )
    tz = _district_tz(conn, district_id)
    today = now.astimezone(tz).date()
    if service_date != today:
        raise ReplanRefused(
            "replan_not_today",
            f"plan {plan_id} is for {service_date.isoformat()}, but today in {tz.key} is "
            f"{today.isoformat()}: re-planning starts from where the trucks are now, so it "
            f"only makes sense for the day in progress; to change another day, plan it again",
            plan_id=plan_id,
            service_date=service_date.isoformat(),
            today=today.isoformat(),
        )
    try:
        plan = Plan.from_dict(stored["document"])
    except (TypeError, ValueError) as exc:  # msgspec.ValidationError is a ValueError
        raise ReplanRefused(
            "replan_unreadable",
            f"plan {plan_id} was not stored by the planner ({exc}); it cannot be re-planned",
            plan_id=plan_id,
        ) from exc
    trucks, points = _ids(unavailable_truck_ids), _ids(new_point_ids)
    _refuse_unknown_ids(conn, district_id, plan_id, plan, trucks, points)
    return ReplanRequest(
        plan_id=plan_id, district_id=district_id, service_date=service_date, tz=tz, now=now,
        plan=plan, unavailable_truck_ids=trucks, new_point_ids=points,
    )  # fmt: skip


def _refuse_unknown_ids(
    conn: psycopg.Connection,
    district_id: str,
    plan_id: int,
    plan: Plan,
    trucks: tuple[str, ...],
    points: tuple[str, ...],
) -> None:
    """InvalidIds for a truck or point the district does not have, an inactive point,
    or a point to add that the plan already holds."""
    known_trucks = repo.ids_in_district(conn, district_id, table="truck", ids=trucks)
    unknown = [t for t in trucks if t not in known_trucks]
    if unknown:
        raise InvalidIds(
            "unavailable_truck_ids",
            "replan_unknown_trucks",
            f"district {district_id} has no truck {_listed(unknown)}",
            district=district_id,
            ids=_listed(unknown),
        )
    known_points = repo.ids_in_district(conn, district_id, table="collection_point", ids=points)
    unknown = [p for p in points if p not in known_points]
    if unknown:
        raise InvalidIds(
            "new_point_ids",
            "replan_unknown_points",
            f"district {district_id} has no collection point {_listed(unknown)}",
            district=district_id,
            ids=_listed(unknown),
        )
    inactive = [p for p in points if not known_points[p]]
    if inactive:
        raise InvalidIds(
            "new_point_ids",
            "replan_inactive_points",
            f"collection point {_listed(inactive)} is inactive: activate it before adding it",
            ids=_listed(inactive),
        )
    in_plan = plan.assigned_point_ids() | {u.point_id for u in plan.unassigned}
    already = [p for p in points if p in in_plan]
    if already:
        raise InvalidIds(
            "new_point_ids",
            "replan_points_in_plan",
            f"plan {plan_id} already holds {_listed(already)} (on a route or listed as "
            f"unassigned); missed points are re-inserted anyway: list only points to add",
            plan_id=plan_id,
            ids=_listed(already),
        )


def truck_progress(
    conn: psycopg.Connection,
    request: ReplanRequest,
    problem: rp.Problem,
    positions: Mapping[str, progress_mod.LivePosition],
    *,
    alert_config: AlertConfig,
) -> list[progress_mod.TruckProgress]:
    """Each truck's state at the request's `now`, from its track and device events
    so far (the visit detector and the ledger's rules of fleet/alerts)."""
    cfg = alert_config
    sites = alerts_repo.sites(
        conn, district_id=request.district_id, min_dwell_fraction=cfg.min_dwell_fraction,
        station_min_dwell_fraction=cfg.station_min_dwell_fraction,
        station_radius_m=cfg.station_radius_m, depot_radius_m=cfg.depot_radius_m,
    )  # fmt: skip
    index = visits.SiteIndex(sites, roads=alerts_repo.roads(conn, district_id=request.district_id))
    point_dwell = {s.site_id: s.min_dwell_s for s in sites if s.kind == "point"}
    station_dwell = alerts_repo.station_min_dwell(conn, fraction=cfg.station_min_dwell_fraction)
    day_start = repo.at_seconds(request.service_date, 0, request.tz)
    until = request.now + timedelta(microseconds=1)  # fixes at `now` itself count
    found: dict[str, tuple[visits.Visit, ...]] = {}
    for truck in problem.trucks:
        tid = truck.truck_id
        fixes = alerts_repo.fixes(conn, truck_id=tid, start=day_start, end=until)
        events = alerts_repo.events(conn, truck_id=tid, start=day_start, end=until)
        if fixes or events:
            found[tid] = visits.detect(tid, fixes, events, index, cfg.visit).visits
    cleared = {
        v.site_id
        for vs in found.values()
        for v in vs
        if v.site_id is not None and ledger.is_clearing(v, point_dwell.get(v.site_id, 0.0))
    }
    amounts = {p.point_id: p.amount_kg for p in problem.points}
    out = []
    for truck in problem.trucks:
        depot = problem.depot(truck.start_depot_id)
        out.append(
            progress_mod.truck_progress(
                truck_id=truck.truck_id, route=request.plan.route_for(truck.truck_id),
                depot=(depot.lat, depot.lon), position=positions.get(truck.truck_id),
                visits=found.get(truck.truck_id, ()), cleared_by_anyone=cleared,
                point_min_dwell_s=point_dwell, station_min_dwell_s=station_dwell,
                amount_kg=amounts, now_s=request.now_s, depot_radius_m=cfg.depot_radius_m,
                available=truck.truck_id not in request.unavailable_truck_ids,
            )
        )  # fmt: skip
    return out


def replan_day(
    conn: psycopg.Connection,
    *,
    plan_id: int,
    now: datetime,
    unavailable_truck_ids: Sequence[str] = (),
    new_point_ids: Sequence[str] = (),
    time_limit_s: float = REPLAN_BUDGET_S,
    seed: int = 0,
    solution_limit: int | None = None,
    created_by: str | None = None,
    progress: Progress = _noop,
    alert_config: AlertConfig | None = None,
    plan_job_id: int | None = None,
) -> int:
    """Re-plan the rest of today from `now` and store it as a draft that replaces
    `plan_id` (publish it to send it to the trucks); returns the new plan's id.

    Each truck starts from its latest position at or before `now` with the load it
    has on board; what it has done stays in its route; planned points it passed over
    are re-inserted; the points of `unavailable_truck_ids` (broken down) go to other
    trucks; `new_point_ids` are added. The result must pass ``routing.check``, or
    nothing is stored (PlanningError)."""
    from routing.replan import replan  # imports OR-Tools when it runs: only when planning

    progress(0.02, "reading the plan")
    request = check_replan(
        conn, plan_id=plan_id, now=now, unavailable_truck_ids=unavailable_truck_ids,
        new_point_ids=new_point_ids,
    )  # fmt: skip
    cfg = alert_config or AlertConfig()
    old = request.plan
    plan_points = sorted(old.assigned_point_ids() | {u.point_id for u in old.unassigned})
    plan_trucks = [r.truck_id for r in old.routes]
    positions = _live_positions(conn, request, plan_trucks)
    progress(0.05, "reading the district")
    full, graph = _build_problem(
        conn, district_id=request.district_id, service_date=request.service_date,
        point_ids=[*plan_points, *request.new_point_ids], also_truck_ids=plan_trucks,
        extra_locations={rp.truck_key(t): (p.lat, p.lon) for t, p in positions.items()},
    )  # fmt: skip
    _refuse_gone(plan_id, full, plan_points=plan_points, plan_trucks=plan_trucks)
    progress(0.1, "finding where each truck is and what it has done")
    trucks = truck_progress(conn, request, full, positions, alert_config=cfg)
    missed = sorted({p for t in trucks for p in t.missed_point_ids})
    added = set(request.new_point_ids)
    problem = full.replace(points=[p for p in full.points if p.point_id not in added])
    new_points = [p for p in full.points if p.point_id in added]
    progress(0.2, f"re-planning {len(problem.points) + len(new_points)} points from now")
    try:
        with _ticking(time_limit_s, progress):
            result = replan(
                problem, old, [t.state for t in trucks], now_s=request.now_s,
                time_limit_s=time_limit_s, new_points=new_points, missed_point_ids=missed,
                graph=graph, seed=seed, solution_limit=solution_limit,
            )  # fmt: skip
    except ValueError as exc:
        raise PlanningError(
            "replan_failed", f"plan {plan_id} cannot be re-planned: {exc}",
            plan_id=plan_id, detail=str(exc),
        ) from exc  # fmt: skip
    progress(0.92, "checking the new routes")
    _refuse_rule_breaks(result)
    progress(0.95, "storing the plan")
    plan = result.plan
    document = {**plan.to_dict(), "replan": _replan_note(request, missed, trucks)}
    new_plan_id = repo.insert_plan(
        conn, district_id=request.district_id, service_date=request.service_date,
        document=document, stats=document["stats"],
        stops=stop_rows(plan, service_date=request.service_date, tz=request.tz),
        unassigned=[(u.point_id, u.reason) for u in plan.unassigned], seed=seed,
        time_limit_s=time_limit_s, created_by=created_by, replaces_plan_id=plan_id,
        plan_job_id=plan_job_id,
    )  # fmt: skip
    progress(1.0, f"plan {new_plan_id} stored (a draft replacing plan {plan_id})")
    return new_plan_id


def _refuse_rule_breaks(result: Replan) -> None:
    """PlanningError if the re-planned routes break a planning rule (routing.check)."""
    violations = check_plan(result.problem, result.plan, live=result.live_positions)
    if violations:
        raise PlanningError(
            "replan_breaks_rules",
            f"the re-planned routes break {len(violations)} planning rule(s), so nothing was "
            f"stored: " + "; ".join(str(v) for v in violations[:5]),
            count=len(violations),
        )


def _replan_note(
    request: ReplanRequest, missed: list[str], trucks: Sequence[progress_mod.TruckProgress]
) -> dict[str, Any]:
    """What a re-planned plan's document says of where it started from."""
    return {
        "replaces_plan_id": request.plan_id,
        "at": request.now.astimezone(request.tz).isoformat(),
        "now_s": request.now_s,
        "unavailable_truck_ids": list(request.unavailable_truck_ids),
        "new_point_ids": list(request.new_point_ids),
        "missed_point_ids": missed,
        "trucks": [t.as_json() for t in trucks],
    }


def _live_positions(
    conn: psycopg.Connection, request: ReplanRequest, truck_ids: Sequence[str]
) -> dict[str, progress_mod.LivePosition]:
    """Each truck's latest position today at or before the request's `now`."""
    day_start = repo.at_seconds(request.service_date, 0, request.tz)
    latest = repo.latest_positions(
        conn, request.district_id, also_truck_ids=truck_ids, since=day_start, until=request.now
    )
    return {
        tid: progress_mod.LivePosition(at.astimezone(request.tz), lat, lon)
        for tid, (at, lat, lon) in latest.items()
    }


def _refuse_gone(
    plan_id: int, full: rp.Problem, *, plan_points: Sequence[str], plan_trucks: Sequence[str]
) -> None:
    """PlanningError if the plan holds a point or truck the district no longer has."""
    for ids, index, code, what in (
        (plan_points, full.point_index, "replan_points_gone", "holds collection point"),
        (plan_trucks, full.truck_index, "replan_trucks_gone", "has a route for truck"),
    ):
        gone = sorted(set(ids) - set(index))
        if gone:
            raise PlanningError(
                code,
                f"plan {plan_id} {what} {_listed(gone)}, which the district no "
                f"longer has: plan the day again instead",
                plan_id=plan_id,
                ids=_listed(gone),
            )


def _district_tz(conn: psycopg.Connection, district_id: str) -> ZoneInfo:
    return ZoneInfo(repo.district_timezone(conn, district_id) or DEFAULT_TIMEZONE)


def plan_timezone(conn: psycopg.Connection, *, plan_id: int) -> ZoneInfo:
    """The time zone of the plan's district (its service day is a local date there)."""
    stored = repo.get_plan(conn, plan_id)
    if stored is None:
        raise PlanNotFound("plan_not_found", f"plan {plan_id} does not exist", plan_id=plan_id)
    return _district_tz(conn, stored["district_id"])


def get_plan(conn: psycopg.Connection, *, plan_id: int) -> dict[str, Any] | None:
    return repo.get_plan(conn, plan_id)


def publish_plan(conn: psycopg.Connection, *, plan_id: int) -> None:
    repo.publish(conn, plan_id)


def run_job(
    conn: psycopg.Connection,
    *,
    job_id: int,
    worker: str,
    alert_config: AlertConfig | None = None,
    max_points_per_solve: int | None = None,
    piece_runner: PieceRunner | None = None,
) -> int:
    """Run a queued planning job (`plan_job` row) to its end: plan or re-plan as it
    asks, recording progress; returns the plan id. A job that stored its plan in an
    earlier attempt (its worker died just after) returns that plan: stored once.
    A PlanningError is recorded as the job's failure and raised. A plan's large
    district is decomposed as `solve` says."""
    job = repo.get_job(conn, job_id)
    if job is None:
        raise PlanningError(
            "plan_job_not_found", f"planning job {job_id} does not exist", job_id=job_id
        )
    stored = repo.plan_of_job(conn, job_id)
    if stored is None:
        repo.start_job(conn, job_id, worker=worker)
        last = [0.0]

        def report(fraction: float, message: str) -> None:
            # Throttle: a progress row per 2 % is plenty for a progress bar.
            if fraction - last[0] >= 0.02 or fraction >= 1.0:
                last[0] = fraction
                repo.update_job(conn, job_id, state="running", progress=fraction, message=message)

        ask = job["request"]
        asked_s = None if ask.get("time_limit_s") is None else float(ask["time_limit_s"])
        common = {
            "seed": int(ask.get("seed", 0)),
            "solution_limit": ask.get("solution_limit"),
            "created_by": job["requested_by"],
            "progress": report,
            "plan_job_id": job_id,
        }
        try:
            if job["kind"] == "replan":
                stored = replan_day(
                    conn, plan_id=int(ask["plan_id"]), now=datetime.fromisoformat(ask["now"]),
                    unavailable_truck_ids=ask.get("unavailable_truck_ids", ()),
                    new_point_ids=ask.get("new_point_ids", ()), alert_config=alert_config,
                    time_limit_s=REPLAN_BUDGET_S if asked_s is None else asked_s, **common,
                )  # fmt: skip
            else:
                tz = _district_tz(conn, job["district_id"])
                stored = plan_day(
                    conn, district_id=job["district_id"], service_date=job["service_date"],
                    tz=tz, max_points_per_solve=max_points_per_solve, piece_runner=piece_runner,
                    time_limit_s=asked_s, **common,
                )  # fmt: skip
        except PlanningError as exc:
            repo.update_job(
                conn, job_id, state="failed", progress=last[0], message=str(exc), error=exc
            )
            raise
    if job["request"].get("publish"):
        repo.publish(conn, stored)  # here, so a retry after a crash in between still does
    repo.update_job(conn, job_id, state="done", progress=1.0, message="done", plan_id=stored)
    return stored


def get_job(conn: psycopg.Connection, *, job_id: int) -> dict[str, Any] | None:
    return repo.get_job(conn, job_id)


def list_jobs(
    conn: psycopg.Connection,
    *,
    district_ids: Sequence[str] | None,
    service_date: date | None = None,
    active_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    return repo.list_jobs(
        conn, district_ids=district_ids, service_date=service_date, active_only=active_only,
        limit=limit, offset=offset,
    )  # fmt: skip
