"""Re-planning mid-day from live truck positions (`service.replan_day`, the API's
POST /api/v1/plans/{plan_id}/replan and `clearday plan --replan`) on a generated
district (30 points; T01, T02 compactors, T03 kitchen, T04 small) with the real
solver and a real PostgreSQL. Tracks are written straight into `position`, as the
ingestor would: the visits are found from them at re-planning time."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from fastapi.testclient import TestClient

from fleet import db, importer
from fleet.alerts.visits import SiteKind, VisitKind
from fleet.alerts.visits import Visit as SeenVisit
from fleet.auth import service as auth_service
from fleet.auth.models import Role
from fleet.plans import progress, service
from fleet.web.app import create_app
from routing import replan as replan_mod
from routing.check import LivePosition, check_plan
from routing.plan import Plan, Route, Stop, StopKind
from routing.problem import truck_key
from simulator.city import CityConfig, generate
from tests.settings import flat_settings

DAY = date(2026, 3, 3)
TZ = ZoneInfo("Asia/Shanghai")
# Every search stops after a number of solutions: the same plans on a loaded machine as
# on a quiet one (the time limit is only a safety cap).
SEARCH: dict[str, Any] = {"time_limit_s": 120, "solution_limit": 100}
FixRow = tuple[datetime, float, float, float]


def at(seconds: float, day: date = DAY, tz: ZoneInfo = TZ) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(seconds=seconds)


@dataclass
class Day:
    url: str
    plan_id: int
    plan: Plan


def import_city(url: str, folder: Path) -> None:
    generate(CityConfig(n_points=30, n_trucks=4, seed=1, district="demo")).write(folder)
    with db.connect(url) as conn:
        importer.load(conn, importer.parse_files(importer.read_paths([folder])))


def plan_and_publish(url: str, day: date, tz: ZoneInfo) -> Day:
    with db.connect(url, autocommit=True) as conn:
        plan_id = service.plan_day(
            conn, district_id="demo", service_date=day, tz=tz, publish=True, **SEARCH
        )
        stored = service.get_plan(conn, plan_id=plan_id)
    assert stored is not None
    return Day(url, plan_id, Plan.from_dict(stored["document"]))


@pytest.fixture
def published(database_url: str, tmp_path: Path) -> Day:
    """The demo district's plan for DAY, published."""
    import_city(database_url, tmp_path / "city")
    return plan_and_publish(database_url, DAY, TZ)


def place(url: str, ref: str | None) -> tuple[float, float]:
    with db.connect(url) as conn:
        row = conn.execute(
            """SELECT lat, lon FROM collection_point WHERE point_id = %(r)s
               UNION ALL SELECT lat, lon FROM depot WHERE depot_id = %(r)s
               UNION ALL SELECT lat, lon FROM transfer_station WHERE station_id = %(r)s""",
            {"r": ref},
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


class Track:
    """A truck's fixes every 10 s: standing still, or driving straight between places."""

    def __init__(self, t_s: float, lat: float, lon: float) -> None:
        self.t_s, self.lat, self.lon = t_s, lat, lon
        self.fixes: list[FixRow] = []

    def stay_until(self, t_s: float) -> Track:
        while self.t_s < t_s:
            self.fixes.append((at(self.t_s), self.lat, self.lon, 0.0))
            self.t_s += 10
        return self

    def drive_to(self, lat: float, lon: float, *, speed_kmh: float = 20.0) -> Track:
        start_s, lat0, lon0 = self.t_s, self.lat, self.lon
        dist_m = math.hypot((lat - lat0) * 111_320, (lon - lon0) * 111_320 * 0.85)
        arrive_s = start_s + dist_m / (speed_kmh / 3.6)
        while self.t_s < arrive_s:
            f = (self.t_s - start_s) / (arrive_s - start_s)
            self.fixes.append(
                (at(self.t_s), lat0 + f * (lat - lat0), lon0 + f * (lon - lon0), speed_kmh)
            )
            self.t_s += 10
        self.lat, self.lon = lat, lon
        return self


def drive_route(url: str, route: Route, *, skip: set[str], until_s: float) -> list[FixRow]:
    """The fixes, up to `until_s`, of a truck working its route: it stands at each
    stop until the planned departure and leaves out the points in `skip`."""
    start = route.stops[0]
    track = Track(start.departure_s - 300, *place(url, start.ref_id))
    track.stay_until(start.departure_s)
    for stop in route.stops[1:]:
        if track.t_s >= until_s:
            break
        if stop.kind == "break" or stop.ref_id in skip:
            continue
        track.drive_to(*place(url, stop.ref_id)).stay_until(stop.departure_s)
    return [f for f in track.fixes if f[0] <= at(until_s)]


def insert_fixes(url: str, truck_id: str, fixes: list[FixRow]) -> None:
    with (
        db.connect(url) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY position (truck_id, recorded_at, lat, lon, speed_kmh, accuracy_m) FROM STDIN"
        ) as copy,
    ):
        for when, lat, lon, speed in fixes:
            copy.write_row((truck_id, when, lat, lon, speed, 5.0))


def counts(url: str) -> tuple[int, int, int]:
    with db.connect(url) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM plan), (SELECT count(*) FROM plan_stop),
                      (SELECT count(*) FROM plan_unassigned)"""
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


# ------------------------------------------------------------------ the service


def test_replan_keeps_done_stops_reinserts_the_skipped_point_and_reassigns_a_broken_truck(
    published: Day,
) -> None:
    old = published.plan
    small = old.route_for("T04")
    big = old.route_for("T01")
    assert small is not None and big is not None and old.route_for("T02") is None
    assert [s.kind for s in small.stops[:4]] == ["start", "point", "point", "point"]
    first, skipped, third = small.point_ids[:3]
    # T04 serves its first point, drives on past the second, serves the third and is on
    # its way on; T01 broke down before leaving. T02 (a spare compactor) is at the depot.
    now_s = small.stops[3].departure_s + 60
    fixes = drive_route(published.url, small, skip={skipped}, until_s=now_s)
    insert_fixes(published.url, "T04", fixes)
    before = counts(published.url)
    with db.connect(published.url, autocommit=True) as conn:
        new_id = service.replan_day(
            conn, plan_id=published.plan_id, now=at(now_s), unavailable_truck_ids=["T01"],
            **SEARCH,
        )  # fmt: skip
        stored = service.get_plan(conn, plan_id=new_id)
        old_status = service.get_plan(conn, plan_id=published.plan_id)
        problem = service.build_problem(
            conn, district_id="demo", service_date=DAY,
            extra_locations={truck_key("T04"): (fixes[-1][1], fixes[-1][2])},
        )  # fmt: skip
        stored_stops = conn.execute(
            "SELECT count(*) FROM plan_stop WHERE plan_id = %s", (new_id,)
        ).fetchone()
    assert stored is not None and old_status is not None
    assert stored["status"] == "draft" and stored["replaces_plan_id"] == published.plan_id
    assert old_status["status"] == "published"  # until the dispatcher publishes the new one
    new = Plan.from_dict(stored["document"])

    # T04 keeps what it did (the skipped point taken out), then the rest from where it is.
    route = new.route_for("T04")
    assert route is not None
    assert route.stops[:2] == small.stops[:2]
    assert route.stops[2].ref_id == third
    assert (route.stops[2].arrival_s, route.stops[2].departure_s) == (
        small.stops[3].arrival_s,
        small.stops[3].departure_s,
    )
    # The skipped point goes back into the day, after the live position.
    assert skipped in route.point_ids[2:] or any(
        skipped in r.point_ids for r in new.routes if r.truck_id != "T04"
    )
    assert skipped not in {u.point_id for u in new.unassigned}
    # The broken-down truck drives nothing; its points are all on other trucks' routes.
    assert new.route_for("T01") is None
    assert set(big.point_ids) <= new.assigned_point_ids()
    # Every point of the day is served once or explained, and the routes pass the
    # independent checker, measured from T04's last fix with what it has on board.
    amounts = {p.point_id: p.amount_kg for p in problem.points}
    live = LivePosition(
        key=truck_key("T04"), time_s=now_s, completed_stops=3,
        load_kg=amounts[first] + amounts[third],
    )  # fmt: skip
    assert check_plan(problem, new, live={"T04": live}) == []
    assert stored_stops is not None and stored_stops[0] == sum(len(r.stops) for r in new.routes)
    assert counts(published.url)[0] == before[0] + 1

    # What the re-plan started from is kept with the plan.
    trucks = {t["truck_id"]: t for t in stored["document"]["replan"]["trucks"]}
    assert trucks["T04"]["served_point_ids"] == [first, third]
    assert trucks["T04"]["missed_point_ids"] == [skipped]
    assert trucks["T04"]["completed_stops"] == 4
    assert trucks["T04"]["load_kg"] == pytest.approx(live.load_kg)
    assert trucks["T01"]["available"] is False and trucks["T01"]["completed_stops"] == 0
    assert trucks["T02"]["position_at"] is None and trucks["T02"]["completed_stops"] == 0
    assert stored["document"]["replan"]["missed_point_ids"] == [skipped]


def test_a_truck_behind_its_plan_after_lunch_needs_no_second_break(published: Day) -> None:
    # T01 served its first four points, then stood still off its route until 11:45,
    # after the planned break (11:00-11:30): it had its break, the rest is re-planned.
    big = published.plan.route_for("T01")
    assert big is not None
    now_s = 11 * 3600 + 45 * 60
    fixes = drive_route(published.url, big, skip=set(), until_s=big.stops[4].departure_s)
    lat, lon = place(published.url, big.stops[5].ref_id)
    track = Track(big.stops[4].departure_s, *fixes[-1][1:3])
    track.drive_to(lat + 0.002, lon).stay_until(now_s)
    insert_fixes(published.url, "T01", fixes + [f for f in track.fixes if f[0] > fixes[-1][0]])
    with db.connect(published.url, autocommit=True) as conn:
        new_id = service.replan_day(conn, plan_id=published.plan_id, now=at(now_s), **SEARCH)
        stored = service.get_plan(conn, plan_id=new_id)
        problem = service.build_problem(conn, district_id="demo", service_date=DAY)
    assert stored is not None
    new = Plan.from_dict(stored["document"])
    route = new.route_for("T01")
    assert route is not None
    assert route.stops[:5] == big.stops[:5]
    assert "break" not in [s.kind for s in route.stops]
    # Its points are still served, but those whose window closed while it stood still
    # (P0015: until 10:30), which are left out with that reason.
    closed = {p.point_id for p in problem.points if p.window_end_s < now_s}
    left_out = set(big.point_ids) - new.assigned_point_ids()
    assert left_out and left_out <= closed
    reasons = {u.point_id: u.reason for u in new.unassigned if u.point_id in left_out}
    assert reasons == dict.fromkeys(left_out, "time_window")
    t01 = next(t for t in stored["document"]["replan"]["trucks"] if t["truck_id"] == "T01")
    assert t01["break_taken"] is True and t01["completed_stops"] == 5


def test_refusals_are_clear_and_store_nothing(published: Day) -> None:
    url, plan_id = published.url, published.plan_id
    with db.connect(url, autocommit=True) as conn:
        row = conn.execute(
            """INSERT INTO plan (district_id, service_date, document)
               SELECT district_id, service_date, document FROM plan WHERE plan_id = %s
               RETURNING plan_id""",
            (plan_id,),
        ).fetchone()
        assert row is not None
        draft_id = int(row[0])
    before = counts(url)
    now = at(8 * 3600)
    cases: list[tuple[dict[str, Any], type[service.PlanningError], str]] = [
        ({"plan_id": 999_999}, service.PlanNotFound, "plan 999999 does not exist"),
        (
            {"plan_id": draft_id},
            service.ReplanRefused,
            f"plan {draft_id} is draft, not published: only the plan the trucks are driving "
            f"can be re-planned from now; plan {plan_id} is the published plan of that day",
        ),
        (
            {"now": at(8 * 3600, DAY + timedelta(days=1))},
            service.ReplanRefused,
            f"plan {plan_id} is for 2026-03-03, but today in Asia/Shanghai is 2026-03-04: "
            "re-planning starts from where the trucks are now, so it only makes sense for "
            "the day in progress",
        ),
        ({"now": datetime(2026, 3, 3, 8)}, service.PlanningError, "must carry a time zone"),
        (
            {"unavailable_truck_ids": ["T04", "T99", "X1"]},
            service.InvalidIds,
            "district demo has no truck T99, X1",
        ),
        (
            {"new_point_ids": ["NOPE"]},
            service.InvalidIds,
            "district demo has no collection point NOPE",
        ),
        (
            {"new_point_ids": ["P0001"]},
            service.InvalidIds,
            f"plan {plan_id} already holds P0001",
        ),
    ]
    for overrides, kind, message in cases:
        args: dict[str, Any] = {"plan_id": plan_id, "now": now, "time_limit_s": 1, **overrides}
        with db.connect(url, autocommit=True) as conn, pytest.raises(kind) as raised:
            service.replan_day(conn, **args)
        assert message in str(raised.value), (overrides, str(raised.value))
    assert counts(url) == before


def test_a_replan_that_breaks_a_rule_is_not_stored(
    published: Day, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = replan_mod.replan

    def dropping_a_route(*args: Any, **kwargs: Any) -> replan_mod.Replan:
        result = real(*args, **kwargs)
        broken = msgspec.structs.replace(result.plan, routes=result.plan.routes[1:])
        return replan_mod.Replan(broken, result.problem, result.live_positions)

    monkeypatch.setattr(replan_mod, "replan", dropping_a_route)
    before = counts(published.url)
    with (
        db.connect(published.url, autocommit=True) as conn,
        pytest.raises(service.PlanningError) as raised,
    ):
        service.replan_day(conn, plan_id=published.plan_id, now=at(8 * 3600), time_limit_s=1)
    assert "planning rule(s), so nothing was stored" in str(raised.value)
    assert "[unserved]" in str(raised.value)
    assert counts(published.url) == before


# ------------------------------------------------------------------ truck progress (pure)


def stop(kind: StopKind, ref: str | None, t: float) -> Stop:
    return Stop(
        kind=kind, ref_id=ref, arrival_s=t, departure_s=t + 60, load_after_kg=0,
        distance_from_prev_m=0,
    )  # fmt: skip


def seen(
    kind: VisitKind, site_kind: SiteKind, site: str, start_s: float, dwell_s: float
) -> SeenVisit:
    return SeenVisit(
        truck_id="T1", kind=kind, site_kind=site_kind, site_id=site,
        arrived_at=at(start_s), departed_at=at(start_s + dwell_s), dwell_s=dwell_s, fixes=5,
    )  # fmt: skip


ROUTE = Route(
    truck_id="T1",
    stops=(
        stop("start", "D1", 0),
        stop("point", "A", 100),
        stop("point", "B", 200),
        stop("station", "S1", 300),
        stop("point", "C", 400),
        stop("break", None, 500),
        stop("point", "D", 600),
        stop("station", "S1", 700),
        stop("end", "D1", 800),
    ),
    distance_m=0,
    duration_s=800,
)


def progress_of(
    visits: list[SeenVisit], *, position: progress.LivePosition | None = None, now_s: float = 550
) -> progress.TruckProgress:
    return progress.truck_progress(
        truck_id="T1", route=ROUTE, depot=(31.8, 117.2), position=position, visits=visits,
        cleared_by_anyone={v.site_id or "" for v in visits if v.site_kind == "point" and v.dwell_s >= 60},
        point_min_dwell_s={"A": 60, "B": 60, "C": 60, "D": 60}, station_min_dwell_s={"S1": 100},
        amount_kg={"A": 100, "B": 200, "C": 300, "D": 400}, now_s=now_s, depot_radius_m=60,
    )  # fmt: skip


def test_progress_runs_to_the_last_stop_served_along_the_route() -> None:
    here = progress.LivePosition(at(550), 31.81, 117.21)
    # A served, B only driven past, unloaded at S1, C served: B is missed; load is C's.
    visits = [
        seen("stay", "point", "A", 100, 90),
        seen("pass", "point", "B", 200, 0),
        seen("stay", "station", "S1", 280, 100),
        seen("stay", "point", "C", 400, 90),
    ]
    p = progress_of(visits, position=here)
    assert p.state.completed_stops == 5 and p.missed_point_ids == ("B",)
    assert p.served_point_ids == ("A", "C") and p.state.load_kg == 300
    assert p.state.break_taken is False and (p.state.lat, p.state.lon) == (31.81, 117.21)
    # A stay shorter than the point's minimum dwell is not service: done up to the unload.
    short = progress_of([*visits[:3], seen("stay", "point", "C", 400, 30)], position=here)
    assert short.state.completed_stops == 4 and short.state.load_kg == 0
    # A stay at the station shorter than its unload time is not an unload.
    no_unload = progress_of([visits[0], seen("stay", "station", "S1", 280, 50)], position=here)
    assert no_unload.state.completed_stops == 2 and no_unload.state.load_kg == 100
    # The second unload at S1 is the route's second S1 stop; the break is over by 560 s.
    more = [seen("stay", "point", "D", 600, 90), seen("stay", "station", "S1", 700, 200)]
    done = progress_of([*visits, *more], position=here, now_s=960)
    assert done.state.completed_stops == 8 and done.state.load_kg == 0
    assert done.state.break_taken is True


def test_progress_of_a_truck_that_has_not_left() -> None:
    assert progress_of([]).state.completed_stops == 0  # no fix today
    at_depot = progress.LivePosition(at(550), 31.8002, 117.2)
    assert progress_of([], position=at_depot).state.completed_stops == 0
    away = progress.LivePosition(at(550), 31.81, 117.2)
    assert progress_of([], position=away).state.completed_stops == 1  # on its way to A


# ------------------------------------------------------------------ the API


def _local_tz_at_nine() -> ZoneInfo:
    """A fixed-offset zone where the wall clock now reads about 09:00, so that the
    API's "now" falls inside the trucks' shifts whenever the test runs."""
    offset = (9 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 11 else offset
    return ZoneInfo(f"Etc/GMT{-offset:+d}")


@pytest.fixture
def api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], Day]]:
    from argon2 import PasswordHasher

    monkeypatch.setattr(
        auth_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    import_city(database_url, tmp_path / "city")
    tz = _local_tz_at_nine()
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE district SET timezone = %s WHERE district_id = 'demo'", (tz.key,))
        conn.execute("INSERT INTO district (district_id, name) VALUES ('other', 'other')")
        headers = {}
        for name, role, districts in (
            ("dispatcher", Role.dispatcher, ()),
            ("viewer", Role.viewer, ()),
            ("other_dispatcher", Role.dispatcher, ("other",)),
        ):
            user = auth_service.create_user(
                conn,
                username=name,
                password="correct horse battery",
                role=role,
                districts=districts,
            )
            token = auth_service.issue_token(
                conn, user_id=user.user_id, now=datetime.now(UTC), ttl_s=3600
            )
            headers[name] = {"Authorization": f"Bearer {token.token}"}
    day = plan_and_publish(database_url, datetime.now(tz).date(), tz)
    settings = flat_settings(database_url=database_url, data_dir=tmp_path / "state")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, headers, day


def wait_for_job(client: TestClient, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/plans/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def test_replan_over_the_api(api: tuple[TestClient, dict[str, dict[str, str]], Day]) -> None:
    client, headers, day = api
    with db.connect(day.url, autocommit=True) as conn:
        lat, lon = place(day.url, "P0005")
        conn.execute(
            """INSERT INTO collection_point (point_id, district_id, name, lat, lon, stream, daily_amount_kg)
               VALUES ('P9001', 'demo', '临时堆放点', %s, %s, 'other', 150)""",
            (lat + 0.0005, lon),
        )
    url = f"/api/v1/plans/{day.plan_id}/replan"
    body = {"unavailable_truck_ids": ["T01"], "new_point_ids": ["P9001"], **SEARCH}

    def refused(status: int, who: str, path: str = url, **payload: Any) -> dict[str, Any]:
        response = client.post(path, headers=headers[who], json=payload or body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        out: dict[str, Any] = response.json()
        return out

    refused(403, "viewer")
    refused(404, "other_dispatcher")  # another district's plan does not exist for them
    refused(404, "dispatcher", "/api/v1/plans/999999/replan")
    bad = refused(422, "dispatcher", unavailable_truck_ids=["T99"])
    assert bad["errors"][0]["field"] == "unavailable_truck_ids"
    assert "district demo has no truck T99" in bad["detail"]
    assert refused(422, "dispatcher", time_limit_s=5000)["errors"][0]["field"] == "time_limit_s"
    assert refused(422, "dispatcher", solution_limit=0)["errors"][0]["field"] == "solution_limit"

    started = client.post(url, headers=headers["dispatcher"], json=body)
    assert started.status_code == 202, started.text
    assert started.json()["requested_by"] == "dispatcher"
    job = wait_for_job(client, headers["viewer"], started.json()["job_id"])
    assert job["state"] == "done", job["message"]
    new = client.get(f"/api/v1/plans/{job['plan_id']}", headers=headers["viewer"]).json()
    assert new["status"] == "draft" and new["replaces_plan_id"] == day.plan_id
    routes = {r["truck_id"]: r for r in new["routes"]}
    assert "T01" not in routes
    assert any(s["ref_id"] == "P9001" for r in new["routes"] for s in r["stops"])
    assert new["points"] + new["unassigned"] == 31

    # The new plan is a draft: re-planning it is refused until it is published; once
    # it is, the old one is superseded and points there.
    conflict = refused(409, "dispatcher", f"/api/v1/plans/{job['plan_id']}/replan", time_limit_s=1)
    assert "not published" in conflict["detail"]
    published = client.post(
        f"/api/v1/plans/{job['plan_id']}/publish", headers=headers["dispatcher"]
    )
    assert published.status_code == 200
    stale = refused(409, "dispatcher", time_limit_s=1)
    assert f"plan {job['plan_id']} is the published plan of that day" in stale["detail"]


# ------------------------------------------------------------------ the CLI


def test_replan_from_the_command_line(published: Day) -> None:
    env = {**os.environ, "CLEARDAY_DATABASE_URL": published.url}

    def clearday(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from fleet.cli import main; main()", "plan", *args],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip

    done = clearday(
        "--replan", str(published.plan_id), "--unavailable", "T01", "--now", "2026-03-03T07:30",
        "--time-limit", str(SEARCH["time_limit_s"]), "--solution-limit", str(SEARCH["solution_limit"]),
        "--here",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"re-planned from 2026-03-03T07:30+08:00 (replaces {published.plan_id})" in done.stdout
    assert "(draft)" in done.stdout
    refused = clearday("--replan", str(published.plan_id), "--now", "2026-03-05T07:30+08:00")
    assert refused.returncode == 2 and "only makes sense for the day in progress" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = clearday("--replan", "999999")
    assert missing.returncode == 2 and "plan 999999 does not exist" in missing.stderr
