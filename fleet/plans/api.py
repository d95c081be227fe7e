"""/api/v1/plans: start planning a date (a background job you poll), read a plan, its
routes as GeoJSON following the roads, a printable route sheet per truck, publish.
Built on fleet/plans/service.py and the read queries of fleet/plans/repo.py."""

from __future__ import annotations

import itertools
import json
import threading
from collections import OrderedDict
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from fleet.auth.models import Principal
from fleet.districts import repo as districts_repo
from fleet.plans import jobs as plans_jobs
from fleet.plans import repo, service
from fleet.roads.paths import NetworkCache
from fleet.web.deps import (
    Anyone,
    Conn,
    Dispatcher,
    JobsDep,
    PagingDep,
    district_scope,
    ensure_district,
    now_utc,
)
from fleet.web.errors import ApiError, FieldError, not_found
from fleet.web.fields import DistrictId, PathId

router = APIRouter(prefix="/plans", tags=["plans"])
PlanId = Annotated[int, Path(ge=1, le=2**63 - 1)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
GEOJSON = "application/geo+json"
_networks = NetworkCache()


class SearchLimits(BaseModel):
    """How long and how far a plan's search may go; the same fields for every way a
    plan is asked for."""

    time_limit_s: float | None = Field(
        None,
        ge=1,
        le=900,
        description="solver budget in seconds (per district); without it, a day's plan "
        f"gets {service.BUDGET_S_PER_POINT:g} s a point within "
        f"{service.BUDGET_MIN_S:g}–{service.BUDGET_MAX_S:g} s, a re-plan "
        f"{service.REPLAN_BUDGET_S:g} s",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    solution_limit: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="stop the search after this many solutions: the same plan for the same "
        "seed on any machine (time_limit_s is then only a safety cap)",
    )


class PlanJobIn(SearchLimits):
    district_id: DistrictId
    service_date: date


class ReplanIn(SearchLimits):
    unavailable_truck_ids: list[PathId] = Field(
        default_factory=list,
        max_length=1000,
        description="trucks out of service (broken down): their remaining points go to others",
    )
    new_point_ids: list[PathId] = Field(
        default_factory=list,
        max_length=10_000,
        description="collection points to add today (not in the plan yet)",
    )


class AllDistrictsIn(SearchLimits):
    service_date: date
    district_ids: list[DistrictId] | None = Field(
        None, max_length=1000, description="only these districts (default: every one you may plan)"
    )


class PlanJob(BaseModel):
    job_id: int
    kind: Literal["plan", "replan"]
    district_id: str
    service_date: date
    state: Literal["queued", "running", "cancelling", "done", "failed", "cancelled"]
    progress: float
    message: str | None
    error_code: str | None = Field(
        None, description="why a failed job failed, as a stable code (see `message`)"
    )
    error_params: dict[str, Any] | None = Field(None, description="the values it names")
    plan_id: int | None
    requested_by: str | None
    worker: str | None = Field(description="the worker process running (or that ran) it")
    priority: int | None
    attempt: int = Field(description="1, or more when a worker died and another took over")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CityJobs(BaseModel):
    queued: list[PlanJob]
    refused: dict[str, str] = Field(description="district -> why it was not queued")


class PlanSummary(BaseModel):
    plan_id: int
    district_id: str
    service_date: date
    status: Literal["draft", "published", "superseded"]
    replaces_plan_id: int | None
    seed: int
    time_limit_s: float | None
    stats: dict[str, Any]
    created_by: str | None
    created_at: datetime
    published_at: datetime | None
    trucks: int
    points: int
    unassigned: int


class PlanStop(BaseModel):
    seq: int
    kind: Literal["start", "point", "station", "break", "end"]
    ref_id: str | None
    name: str | None
    lat: float | None
    lon: float | None
    arrival_at: datetime
    departure_at: datetime
    load_after_kg: float
    distance_from_prev_m: float


class PlanRoute(BaseModel):
    truck_id: str
    plate: str | None
    distance_m: float
    duration_s: float
    points: int
    station_trips: int
    stops: list[PlanStop]


class Unassigned(BaseModel):
    point_id: str
    name: str | None
    reason: str


class PlanOut(PlanSummary):
    routes: list[PlanRoute]
    unassigned_points: list[Unassigned]


class SheetStop(BaseModel):
    seq: int
    kind: str
    ref_id: str | None
    name: str | None
    arrive: str = Field(description="local HH:MM")
    depart: str = Field(description="local HH:MM")
    load_after_kg: float
    distance_from_prev_m: float


class RouteSheet(BaseModel):
    """What a crew takes along: the day's stops in order with local times (路线单)."""

    plan_id: int
    district_id: str
    district_name: str
    service_date: date
    status: str
    truck_id: str
    plate: str | None
    truck_type: str | None
    timezone: str
    distance_m: float
    duration_s: float
    points: int
    station_trips: int
    collected_kg: float
    stops: list[SheetStop]


def _summary(conn: psycopg.Connection, principal: Principal, plan_id: int) -> dict[str, Any]:
    row = repo.plan_summary(conn, plan_id)
    if row is None or not principal.can_see(row["district_id"]):
        raise not_found("plan", plan_id)
    return row


def _routes(
    conn: psycopg.Connection, plan_id: int, document: dict[str, Any], truck_id: str | None = None
) -> list[PlanRoute]:
    stops = repo.plan_stops(conn, plan_id, truck_id)
    trucks = repo.truck_columns(conn, sorted({s["truck_id"] for s in stops}))
    totals = {r["truck_id"]: r for r in document.get("routes", [])}
    by_truck: dict[str, list[PlanStop]] = {}
    for stop in stops:
        by_truck.setdefault(stop.pop("truck_id"), []).append(PlanStop(**stop))
    routes = []
    for truck, truck_stops in by_truck.items():
        total = totals.get(truck, {})
        routes.append(
            PlanRoute(
                truck_id=truck,
                plate=trucks[truck]["plate"] if truck in trucks else None,
                distance_m=float(
                    total.get("distance_m", sum(s.distance_from_prev_m for s in truck_stops))
                ),
                duration_s=float(
                    total.get(
                        "duration_s",
                        (truck_stops[-1].arrival_at - truck_stops[0].departure_at).total_seconds(),
                    )
                ),
                points=sum(s.kind == "point" for s in truck_stops),
                station_trips=sum(s.kind == "station" for s in truck_stops),
                stops=truck_stops,
            )
        )
    return routes


def _job(conn: psycopg.Connection, principal: Principal, job_id: int) -> PlanJob:
    job = service.get_job(conn, job_id=job_id)
    if job is None or not principal.can_see(job["district_id"]):
        raise not_found("planning job", job_id)
    return PlanJob(**job)


@router.post("/jobs", status_code=202, summary="Queue planning a district's date (poll the job)")
def start_planning(conn: Conn, principal: Dispatcher, jobs: JobsDep, body: PlanJobIn) -> PlanJob:
    ensure_district(principal, body.district_id, writing=True)
    try:
        job_id = plans_jobs.queue_plan(
            jobs, conn, district_id=body.district_id, service_date=body.service_date,
            time_limit_s=body.time_limit_s, seed=body.seed, solution_limit=body.solution_limit,
            requested_by=principal.username,
        )  # fmt: skip
    except plans_jobs.JobConflict as exc:
        raise ApiError.refused(409, exc) from None
    except service.PlanningError as exc:
        raise ApiError.refused(422, exc) from None
    return _job(conn, principal, job_id)


@router.post(
    "/jobs/all-districts",
    status_code=202,
    summary="Queue planning every district of a date (the workers run them in parallel)",
)
def plan_all_districts(
    conn: Conn, principal: Dispatcher, jobs: JobsDep, body: AllDistrictsIn
) -> CityJobs:
    wanted = body.district_ids
    if wanted is not None:
        for district_id in wanted:
            ensure_district(principal, district_id, writing=True)
    elif principal.districts is not None:
        wanted = sorted(principal.districts)
    queued, refused = plans_jobs.queue_all_districts(
        jobs, conn, district_ids=wanted, service_date=body.service_date,
        time_limit_s=body.time_limit_s, seed=body.seed, solution_limit=body.solution_limit,
        requested_by=principal.username,
    )  # fmt: skip
    return CityJobs(
        queued=[_job(conn, principal, job_id) for job_id in queued.values()], refused=refused
    )


@router.post(
    "/{plan_id}/replan",
    status_code=202,
    summary="Re-plan the rest of today from now (a job; poll GET /plans/jobs/{job_id})",
)
def replan_from_now(
    conn: Conn,
    principal: Dispatcher,
    jobs: JobsDep,
    plan_id: PlanId,
    body: ReplanIn | None = None,
) -> PlanJob:
    """Start from where each truck is now (its latest position, the load on board, its
    completed stops), re-insert planned points it passed over, give the points of
    unavailable trucks to others and add new points. The job stores a draft plan that
    replaces this one (`replaces_plan_id`); publish it to send it to the trucks.
    Re-plans run before other planning jobs."""
    body = body or ReplanIn()
    summary = _summary(conn, principal, plan_id)
    ensure_district(principal, summary["district_id"], writing=True)
    try:
        job_id = plans_jobs.queue_replan(
            jobs, conn, plan_id=plan_id, now=now_utc(),
            unavailable_truck_ids=body.unavailable_truck_ids, new_point_ids=body.new_point_ids,
            time_limit_s=body.time_limit_s, seed=body.seed, solution_limit=body.solution_limit,
            requested_by=principal.username,
        )  # fmt: skip
    except plans_jobs.JobConflict as exc:
        raise ApiError.refused(409, exc) from None
    except service.PlanNotFound as exc:
        raise ApiError.refused(404, exc) from None
    except service.InvalidIds as exc:
        field = FieldError(
            field=exc.field, location="body", message=str(exc), code=exc.code,
            params=dict(exc.params),
        )  # fmt: skip
        raise ApiError.refused(422, exc, errors=[field]) from None
    except service.ReplanRefused as exc:
        raise ApiError.refused(409, exc) from None
    except service.PlanningError as exc:
        raise ApiError.refused(422, exc) from None
    return _job(conn, principal, job_id)


@router.get("/jobs", summary="Planning jobs, newest first: state, progress, worker")
def list_jobs(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    service_date: date | None = None,
    active: Annotated[bool, Query(description="only queued or running jobs")] = False,
) -> list[PlanJob]:
    rows = service.list_jobs(
        conn, district_ids=district_scope(principal, district_id), service_date=service_date,
        active_only=active, limit=paging.limit, offset=paging.offset,
    )  # fmt: skip
    return [PlanJob(**r) for r in rows]


@router.get("/jobs/{job_id}", summary="A planning job's state, progress and worker")
def get_job(conn: Conn, principal: Anyone, job_id: JobId) -> PlanJob:
    return _job(conn, principal, job_id)


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    summary="Cancel a queued job, or stop a running one (poll until it shows cancelled)",
)
def cancel_job(conn: Conn, principal: Dispatcher, jobs: JobsDep, job_id: JobId) -> PlanJob:
    job = _job(conn, principal, job_id)
    ensure_district(principal, job.district_id, writing=True)
    if not plans_jobs.cancel(jobs, conn, job_id=job_id):
        raise ApiError(
            409,
            f"job {job_id} is {job.state}: only a queued or running job can be cancelled",
            code="job_not_cancellable",
            params={"job_id": job_id, "state": job.state},
        )
    return _job(conn, principal, job_id)


@router.get("", summary="Plans, newest first")
def list_plans(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    service_date: date | None = None,
    status: Literal["draft", "published", "superseded"] | None = None,
) -> list[PlanSummary]:
    rows = repo.plan_summaries(
        conn, district_ids=district_scope(principal, district_id), service_date=service_date,
        status=status, limit=paging.limit, offset=paging.offset,
    )  # fmt: skip
    return [PlanSummary(**r) for r in rows]


@router.get("/{plan_id}", summary="A plan: every route's stops with ETAs, and the points left out")
def get_plan(conn: Conn, principal: Anyone, plan_id: PlanId) -> PlanOut:
    summary = _summary(conn, principal, plan_id)
    document = (service.get_plan(conn, plan_id=plan_id) or {}).get("document") or {}
    return PlanOut(
        **summary,
        routes=_routes(conn, plan_id, document),
        unassigned_points=[Unassigned(**r) for r in repo.plan_unassigned(conn, plan_id)],
    )


@router.post("/{plan_id}/publish", summary="Publish a plan (the day's previous one is superseded)")
def publish_plan(conn: Conn, principal: Dispatcher, plan_id: PlanId) -> PlanSummary:
    summary = _summary(conn, principal, plan_id)
    ensure_district(principal, summary["district_id"], writing=True)
    if summary["status"] == "superseded":
        raise ApiError(
            409,
            f"plan {plan_id} was superseded; plan the day again instead",
            code="plan_superseded",
            params={"plan_id": plan_id},
        )
    service.publish_plan(conn, plan_id=plan_id)
    return PlanSummary(**_summary(conn, principal, plan_id))


_GEOMETRY: OrderedDict[tuple[int, str], bytes] = OrderedDict()
_GEOMETRY_LOCK = threading.Lock()
_GEOMETRY_MAX = 32


@router.get(
    "/{plan_id}/routes.geojson",
    summary="Each route as a GeoJSON LineString following the roads",
    response_class=Response,
    responses={
        200: {
            "description": "FeatureCollection, one LineString per truck",
            "content": {GEOJSON: {"schema": {"type": "object", "required": ["type", "features"]}}},
        }
    },
)
def plan_routes_geojson(conn: Conn, principal: Anyone, plan_id: PlanId) -> Response:
    summary = _summary(conn, principal, plan_id)
    version = str(summary["published_at"] or summary["created_at"])
    key = (plan_id, version)
    with _GEOMETRY_LOCK:
        cached = _GEOMETRY.get(key)
    if cached is None:
        network = _networks.get(conn, summary["district_id"])
        document = (service.get_plan(conn, plan_id=plan_id) or {}).get("document") or {}
        routes = _routes(conn, plan_id, document)
        trucks = repo.truck_columns(conn, [r.truck_id for r in routes])
        features = []
        for index, route in enumerate(routes):
            places = [
                (s.lat, s.lon) for s in route.stops if s.lat is not None and s.lon is not None
            ]
            line: list[list[float]] = []
            for a, b in itertools.pairwise(places):
                if a == b:
                    continue
                narrow = bool(trucks.get(route.truck_id, {}).get("can_enter_narrow"))
                leg = network.path(a, b, allow_narrow=narrow)
                line.extend(leg if not line else leg[1:])
            features.append(
                {
                    "type": "Feature",
                    "id": route.truck_id,
                    "geometry": {"type": "LineString", "coordinates": line},
                    "properties": {
                        "truck_id": route.truck_id,
                        "plate": route.plate,
                        "index": index,
                        "distance_m": route.distance_m,
                        "points": route.points,
                        "station_trips": route.station_trips,
                    },
                }
            )
        cached = json.dumps(
            {"type": "FeatureCollection", "features": features}, separators=(",", ":")
        ).encode()
        with _GEOMETRY_LOCK:
            _GEOMETRY[key] = cached
            while len(_GEOMETRY) > _GEOMETRY_MAX:
                _GEOMETRY.popitem(last=False)
    return Response(cached, media_type=GEOJSON)


@router.get("/{plan_id}/sheet/{truck_id}", summary="A truck's printable route sheet (路线单)")
def route_sheet(conn: Conn, principal: Anyone, plan_id: PlanId, truck_id: PathId) -> RouteSheet:
    summary = _summary(conn, principal, plan_id)
    district = districts_repo.get_district(conn, district_id=summary["district_id"], districts=None)
    assert district is not None  # a plan's district is never deleted
    tz = ZoneInfo(str(district["timezone"]))
    document = (service.get_plan(conn, plan_id=plan_id) or {}).get("document") or {}
    routes = _routes(conn, plan_id, document, truck_id=truck_id)
    if not routes:
        raise not_found(f"route of truck {truck_id} in plan", plan_id)
    route = routes[0]
    truck = repo.truck_columns(conn, [truck_id]).get(truck_id)

    def local(at: datetime) -> str:
        return at.astimezone(tz).strftime("%H:%M")

    collected = 0.0
    previous_load = 0.0
    for stop in route.stops:
        if stop.kind == "point":
            collected += max(stop.load_after_kg - previous_load, 0.0)
        previous_load = stop.load_after_kg
    return RouteSheet(
        plan_id=plan_id,
        district_id=summary["district_id"],
        district_name=str(district["name"]),
        service_date=summary["service_date"],
        status=summary["status"],
        truck_id=truck_id,
        plate=route.plate,
        truck_type=truck["truck_type"] if truck else None,
        timezone=str(tz),
        distance_m=route.distance_m,
        duration_s=route.duration_s,
        points=route.points,
        station_trips=route.station_trips,
        collected_kg=round(collected, 1),
        stops=[
            SheetStop(
                seq=s.seq,
                kind=s.kind,
                ref_id=s.ref_id,
                name=s.name,
                arrive=local(s.arrival_at),
                depart=local(s.departure_at),
                load_after_kg=s.load_after_kg,
                distance_from_prev_m=s.distance_from_prev_m,
            )
            for s in route.stops
        ],
    )
