"""Alert accuracy and delay against the simulator's ground truth (issue 6).

Several simulated days of a generated district (default 300 points) with position
noise σ = 15 m, 5 % dropped fixes, blind-zone periods whose fixes arrive late as one
batch, and every fault kind of the simulator drawn at random. Each day is planned by
the real planner (`fleet.plans`) and stored as the published plan; the simulator
drives it and the alert worker raises alerts; then the alerts are compared with the
ground truth:

- ``missed``: planned points that no truck really served by the end of their window
  (capped at the clearance deadline) plus the grace period — whatever the cause
  (skip, drive-by, too-short stop, breakdown);
- ``drive_by``: the simulator's ``drive_by`` and ``too_short`` faults, and its
  ``skip`` and ``idle_beside`` faults whose point the truck's true track then crossed,
  on its way to its next stop, without standing in the fence (it drove past it);
- ``not_unloaded``: trucks that parked at the depot still loaded (``no_unload``).

Delay is, for each true alert, its ``raised_at`` (the worker's clock, in simulated
time) minus the moment the condition became true in the ground truth, by each rule's
own definition: for ``missed`` the end of the window plus grace; for ``not_unloaded``
the truck's arrival home with its load; for ``drive_by`` the moment the truck had
clearly gone on after the pass or the too-short stop — its arrival at its next stop,
or its true position ``drive_by_confirm_m`` (250 m, farther than a loop round a
block) from the point at least ``drive_by_confirm_s`` after it, whichever came first
(true positions: the same day replayed with a perfect terminal). Before that the
truck may still come back, so nothing can be claimed. The drive-by delay from the
pass (or departure) itself is reported beside it (``delay_from_event_*``): it adds
the drive to 250 m, and a lunch break taken near the point. Skips scored as
drive-bys have no time and no delay. ``delay_from_data_*`` measures from when the data
showing the condition could first reach the platform: the same moment, except when the
truck was in a blind zone then — its fixes arrive when the terminal releases them, and
no alert can come before — and, for a drive-by, not before the terminal's first fix at
or after that moment (a truck that parks with its ignition off reports once a minute)
(``delay_*`` keeps those waits in).

Modes:

- ``live`` (default): the real pipeline. A private Mosquitto and PostgreSQL (or
  CLEARDAY_MQTT_URL / CLEARDAY_DATABASE_URL), `clearday ingest` as a process, the
  simulator publishing at ``--speed`` × real time, and the alert worker ticking every
  ``--worker-interval`` wall seconds on a clock that follows the simulation. The
  ingestor flushes batches at ``--ingest-age`` seconds. Delays include every stage.
- ``offline``: no broker. The day's messages are written to the database in sending
  order and the worker ticks every ``--tick`` simulated seconds: the same detection
  and rules, minutes instead of hours — for tuning. Its delays carry no transport.

The last stdout line is one JSON object:

    {"missed": {"precision": …, "recall": …}, "drive_by": {…}, "not_unloaded": {…},
     "delay_p50_s": …, "delay_p99_s": …, "days": …, "points": …, …}

    .venv/bin/python bench/alerts.py [--days 3] [--points 300] [--trucks 12] [--speed 60]
    .venv/bin/python bench/alerts.py --mode offline --days 1 --planner greedy

A run of several days can be split into runs of one day each (``--only-day K
--tally-out dayK.json``, the same days, plans and faults) whose tallies
``--combine day0.json day1.json …`` sums and scores as one run.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from fleet import db, importer  # noqa: E402
from fleet.alerts import worker  # noqa: E402
from fleet.alerts.rules import RuleParams  # noqa: E402
from fleet.config import Settings  # noqa: E402
from fleet.devservers import PrivateMosquitto, PrivatePostgres  # noqa: E402
from routing.plan import Plan  # noqa: E402
from routing.vocab import haversine_m  # noqa: E402
from simulator.city import City, generate  # noqa: E402
from simulator.direct import DirectSink  # noqa: E402
from simulator.faults import FaultRates, random_faults  # noqa: E402
from simulator.geo import drove_through_fence  # noqa: E402
from simulator.plans import greedy_plan  # noqa: E402
from simulator.roads import RoadNetwork  # noqa: E402
from simulator.trucks import DaySpec, Emission, SimDay, TerminalConfig, run  # noqa: E402

DISTRICT = "bench"
TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
KINDS = ("missed", "drive_by", "not_unloaded")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- servers


@dataclass
class Servers:
    admin_url: str
    mqtt_url: str | None
    stop: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for s in reversed(self.stop):
            s.stop()


def servers(tmp: Path, *, need_mqtt: bool) -> Servers:
    pg_url = os.environ.get("CLEARDAY_DATABASE_URL")
    mq_url = os.environ.get("CLEARDAY_MQTT_URL")
    out = Servers(admin_url=pg_url or "", mqtt_url=mq_url)
    if not pg_url:
        pg = PrivatePostgres(tmp / "pg", durable=False).start()
        out.stop.append(pg)
        out.admin_url = pg.admin_url
    if need_mqtt and not mq_url:
        broker = PrivateMosquitto(tmp / "mosquitto").start()
        out.stop.append(broker)
        out.mqtt_url = broker.url
    return out


def fresh_database(admin_url: str) -> str:
    name = f"alerts_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    db.migrate(url, timescale="auto")
    return url


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[-1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------------------- a day


def local(d: date, seconds: float) -> datetime:
    return datetime.combine(d, datetime.min.time(), tzinfo=TZ) + timedelta(seconds=seconds)


def plan_day(url: str, city: City, net: RoadNetwork, d: date, args: argparse.Namespace) -> Any:
    """Plan with the real planner and publish (or, --planner greedy, store a greedy plan)."""
    with db.connect(url, autocommit=True) as conn:
        if args.planner == "ortools":
            from fleet.plans import repo as plans_repo
            from fleet.plans import service as plans_service

            plan_id = plans_service.plan_day(
                conn, district_id=DISTRICT, service_date=d, tz=TZ,
                time_limit_s=args.plan_time_limit, seed=args.seed,
                solution_limit=args.solution_limit, publish=True,
            )  # fmt: skip
            row = plans_repo.get_plan(conn, plan_id)
            assert row is not None
            stats = row["stats"]
            log(f"  planned {d}: {stats.get('num_assigned')}/{stats.get('num_points')} points, "
                f"{stats.get('num_routes')} routes")  # fmt: skip
            return Plan.from_dict(row["document"])
        plan = greedy_plan(city, net=net)
        store_sim_plan(conn, plan, d)
        return plan


def store_sim_plan(conn: psycopg.Connection, plan: Any, d: date) -> None:
    from psycopg.types.json import Jsonb

    row = conn.execute(
        """INSERT INTO plan (district_id, service_date, status, document, published_at)
           VALUES (%s, %s, 'published', %s, now()) RETURNING plan_id""",
        (DISTRICT, d, Jsonb(plan.to_dict())),
    ).fetchone()
    assert row is not None
    for route in plan.routes:
        for seq, s in enumerate(route.stops):
            conn.execute(
                """INSERT INTO plan_stop (plan_id, truck_id, seq, kind, point_id, station_id, depot_id,
                                          arrival_at, departure_at, load_after_kg)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    row[0], route.truck_id, seq, s.kind,
                    s.ref_id if s.kind == "point" else None,
                    s.ref_id if s.kind == "station" else None,
                    s.ref_id if s.kind in ("start", "end") else None,
                    local(d, s.arrival_s), local(d, s.departure_s), s.load_after_kg,
                ),
            )  # fmt: skip


def sim_day(
    city: City, net: RoadNetwork, plan: Any, d: date, k: int, args: argparse.Namespace
) -> SimDay:
    rates = FaultRates.scaled(args.fault_scale)
    # More of the street cases (drift, jump, idle beside), so each is scored on enough
    # point-days; skips, drive-bys and short stops fall on the same points whatever
    # their rates.
    street = {kind: getattr(rates, kind) * args.street_fault_scale for kind in STREET_FAULTS}
    faults = random_faults(plan, city, replace(rates, **street), seed=args.seed * 1000 + k)
    terminal = TerminalConfig(
        fix_interval_s=10.0,
        noise_m=args.noise_m,
        dropout_prob=args.dropout,
        signal_losses_per_day=args.signal_losses,
    )
    spec = DaySpec(
        city=city, plan=plan, service_date=d, timezone=TZ_NAME, seed=args.seed * 1000 + k,
        terminal=terminal, faults=faults,
    )  # fmt: skip
    log(
        f"  faults {d}: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(Counter(f.kind for f in faults).items()))
    )
    return SimDay(spec, net=net)


def true_positions(day: SimDay) -> dict[str, list[tuple[datetime, float, float]]]:
    """Where each truck really was, at every fix time of the day: the same day replayed
    with a perfect terminal (no noise, no dropped fixes, no drift or multipath jump,
    never offline, a true clock). The trucks' motion has its own random stream, so they
    drive exactly as in `day`."""
    spec = day.spec
    perfect = DaySpec(
        city=spec.city, plan=spec.plan, service_date=spec.service_date, timezone=spec.timezone,
        seed=spec.seed, driving=spec.driving,
        terminal=replace(spec.terminal, noise_m=0.0, dropout_prob=0.0, gps_faults=False),
        faults=tuple(f for f in spec.faults if f.kind not in ("offline", "clock_skew")),
    )  # fmt: skip
    replica = SimDay(perfect, net=day.net)
    truck_of = {t.terminal_id: t.id for t in spec.city.trucks}
    out: dict[str, list[tuple[datetime, float, float]]] = {}
    for em in replica.emissions():
        for f in em.fixes:
            out.setdefault(truck_of[em.terminal_id], []).append((f.recorded_at, f.lat, f.lon))
    for track in out.values():
        track.sort()
    return out


# ---------------------------------------------------------------------------- offline feeding


def run_offline(
    url: str, day: SimDay, d: date, eval_end: datetime, args: argparse.Namespace
) -> list[float]:
    """Feed the day and tick at `--tick`; returns each tick's wall time, s."""
    sink = DirectSink(url, day.spec.city)
    clock = _ManualClock(local(d, 0))
    w = worker.Worker(url, worker.AlertConfig.from_settings(Settings()), clock=clock, overlap_s=0.0)
    step = timedelta(seconds=args.tick)
    emissions = day.emissions()
    pending: Emission | None = next(emissions, None)
    assert pending is not None
    now = local(d, pending.at_s)
    tick_s: list[float] = []
    while now <= eval_end:
        while pending is not None and local(d, pending.at_s) <= now:
            sink.send(pending)
            pending = next(emissions, None)
        sink.flush()
        clock.now = now
        started = time.monotonic()
        w.tick()
        tick_s.append(time.monotonic() - started)
        now += step
    sink.close()
    w.close()
    log(f"  offline day {d} done; slowest tick {max(tick_s) * 1000:.0f} ms")
    return tick_s


class _ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# ---------------------------------------------------------------------------- live


class Ingestor:
    def __init__(self, url: str, mqtt_url: str, tmp: Path, batch_age_s: float) -> None:
        env = {
            **os.environ,
            "CLEARDAY_DATABASE_URL": url,
            "CLEARDAY_MQTT_URL": mqtt_url,
            "CLEARDAY_INGEST_BATCH_MAX_AGE_S": str(batch_age_s),
            "CLEARDAY_METRICS_PORT": "0",
            "CLEARDAY_INGEST_CLIENT_ID": f"bench-alerts-{uuid.uuid4().hex[:6]}",
        }
        self.log_path = tmp / "ingest.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "ingest"],
            env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        time.sleep(3.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"the ingestor exited: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_settled(url: str, *, quiet_s: float = 2.0, timeout_s: float = 120.0) -> None:
    """Until the position table stops growing (the ingestor drained the broker)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM position").fetchone()
            n = int(row[0]) if row else 0
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.2)


def run_live(
    url: str, mqtt_url: str, day: SimDay, d: date, eval_end: datetime, args: argparse.Namespace
) -> dict[str, Any]:
    from simulator.mqtt import MqttFleet

    emissions = day.emissions()
    first = next(emissions)
    start_s = first.at_s
    clock = worker.ScaledClock(local(d, start_s), args.speed)
    config = worker.AlertConfig.from_settings(Settings())
    w = worker.Worker(url, config, clock=clock, interval_s=args.worker_interval)
    tick_s: list[float] = []
    tick = w.tick

    def timed_tick() -> worker.TickStats:
        started = time.monotonic()
        try:
            return tick()
        finally:
            tick_s.append(time.monotonic() - started)

    w.tick = timed_tick  # type: ignore[method-assign]  # the live ticks' wall time
    stop = threading.Event()
    thread = threading.Thread(target=w.run, args=(stop,), daemon=True)
    thread.start()

    def chain() -> Iterator[Emission]:
        yield first
        yield from emissions

    fleet = MqttFleet(mqtt_url)
    try:
        stats = run(chain(), fleet, speed=args.speed, start_s=start_s)
    finally:
        counts = fleet.close()
    wait_settled(url)
    sim_now = clock()
    stop.set()
    thread.join(30)
    w.tick = tick  # type: ignore[method-assign]  # the catch-up ticks below are not live
    # No more data: step the clock on to the evaluation end at the worker's cadence.
    step = timedelta(seconds=args.worker_interval * args.speed)
    manual = _ManualClock(sim_now)
    w.clock = manual
    while manual.now <= eval_end:
        w.tick()
        manual.now += step
    w.close()
    summary = stats.summary()
    log(f"  live day {d}: {summary['messages']} messages, max publish lag {summary['max_lag_s']} s, "
        f"acked {counts.acked}/{counts.published}")  # fmt: skip
    return {**summary, "tick_s": tick_s}


# ---------------------------------------------------------------------------- truth


@dataclass
class Expected:
    key: str  # point id or truck id
    at: datetime  # when the condition became true
    event_at: datetime | None = None  # drive_by: the pass, or the too-short stop's departure
    # When the data showing the condition reached the platform at the earliest: `at`,
    # or, when the truck was in a blind zone then, when its buffered fixes were released;
    # for a drive-by, no earlier than the terminal's first fix at or after `at`.
    known_at: datetime | None = None


NEVER = datetime.max.replace(tzinfo=TZ)  # no time known: scored, but no delay measured


def parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


def verdict_time(city: City, point_id: str, d: date, grace_s: float) -> datetime:
    p = city.point(point_id)
    return local(d, min(p.window_end_s, p.clearance_deadline_s) + grace_s)


def gone_at(
    track: Sequence[tuple[datetime, float, float]],
    stops_at: Sequence[datetime],
    lat: float,
    lon: float,
    after: datetime,
    rp: RuleParams,
) -> datetime:
    """When a truck that passed (or left) a point at `after` had clearly gone on, by the
    drive-by rule's own definition, on its true positions: its arrival at its next stop
    (a site), or the moment it was `drive_by_confirm_m` from the point, at least
    `drive_by_confirm_s` after `after`, whichever came first."""
    nxt = min((t for t in stops_at if t > after), default=NEVER)
    earliest = after + timedelta(seconds=rp.drive_by_confirm_s)
    radius = rp.drive_by_confirm_m
    prev: tuple[datetime, float] | None = None
    for t, la, lo in track:
        if t < after:
            continue
        dist = haversine_m(la, lo, lat, lon)
        if t >= earliest and dist >= radius:
            at = t
            if prev is not None and prev[1] < radius:  # interpolate the crossing
                frac = (radius - prev[1]) / (dist - prev[1])
                at = max(earliest, prev[0] + (t - prev[0]) * frac)
            elif prev is not None and prev[0] < earliest:  # already that far by then
                at = earliest
            return min(nxt, at)
        prev = (t, dist)
        if t > nxt:
            break
    return nxt


def expected(
    day: SimDay,
    d: date,
    eval_end: datetime,
    grace_s: float,
    positions: dict[str, list[tuple[datetime, float, float]]],
    rp: RuleParams,
    reported: dict[str, list[datetime]] | None = None,
    reported_stopped: dict[str, list[datetime]] | None = None,
) -> dict[str, dict[str, Expected]]:
    """The true alerts of a day. `reported`: each truck's stored fix times, sorted: a
    drive-by is known no earlier than the first fix the terminal sent at or after the
    moment the truck had gone on. `reported_stopped`: the times of the stored fixes that
    show the truck standing: a truck parked loaded is known no earlier than the first
    of them at or after it arrived (a parked terminal reports once a minute, and a fix
    at the moment of arrival may still show it driving)."""
    city = day.spec.city
    skewed = {f.truck_id for f in day.spec.faults if f.kind == "clock_skew"}
    truth = day.truth
    stops_at: dict[str, list[datetime]] = {}  # truck -> arrivals at sites
    for rec in truth:
        when = rec.get("arrival_at") if rec["type"] in ("service", "unload") else None
        if rec["type"] == "fault" and rec["kind"] == "too_short":
            when = rec["arrival_at"]
        if rec["type"] == "route_end" and rec["depot_id"] is not None:
            when = rec["at"]
        if when is not None:
            stops_at.setdefault(rec["truck_id"], []).append(parse(when))

    blind: dict[str, list[tuple[datetime, datetime, datetime]]] = {}
    for rec in truth:
        if rec["type"] == "signal_loss":
            span = (parse(rec["start_at"]), parse(rec["end_at"]), parse(rec["released_at"]))
            blind.setdefault(rec["truck_id"], []).append(span)

    def known(truck_id: str | None, at: datetime) -> datetime:
        for start, end, released in blind.get(truck_id or "", ()):
            if start <= at < end:
                return max(at, released)
        return at

    def first_fix(
        fixes: dict[str, list[datetime]] | None, truck_id: str, at: datetime, shown: datetime
    ) -> datetime:
        """`shown`, or the first of the truck's `fixes` at or after `at` if later."""
        times = (fixes or {}).get(truck_id, [])
        if not times or truck_id in skewed:  # a skewed clock's fix times are not true times
            return shown
        k = bisect.bisect_left(times, at)
        return max(shown, times[k]) if k < len(times) else shown

    def drive_by(rec: dict[str, Any], event_at: datetime) -> Expected:
        p = city.point(rec["point_id"])
        track = positions.get(rec["truck_id"], [])
        at = gone_at(track, stops_at.get(rec["truck_id"], []), p.lat, p.lon, event_at, rp)
        shown = first_fix(reported, rec["truck_id"], at, known(rec["truck_id"], at))
        return Expected(rec["point_id"], at, event_at, shown)

    planned = {
        s.ref_id: r.truck_id
        for r in day.spec.plan.routes
        for s in r.stops
        if s.kind == "point" and s.ref_id
    }
    cleared_by: dict[str, datetime] = {}
    for rec in truth:
        if rec["type"] == "service":
            p = city.point(rec["point_id"])
            done = parse(rec["arrival_at"]) + timedelta(seconds=p.min_dwell_s)
            cleared_by[rec["point_id"]] = min(done, cleared_by.get(rec["point_id"], done))
    out: dict[str, dict[str, Expected]] = {k: {} for k in KINDS}
    for pid in planned:
        due = verdict_time(city, pid, d, grace_s)
        if due > eval_end:
            continue
        if pid not in cleared_by or cleared_by[pid] > due:
            out["missed"][pid] = Expected(pid, due, known_at=known(planned[pid], due))
    for pid in skipped_through(day, positions):
        out["drive_by"][pid] = Expected(pid, NEVER)  # no delay: time unknown
    for rec in truth:
        if rec["type"] == "fault" and rec["kind"] == "drive_by":
            out["drive_by"][rec["point_id"]] = drive_by(rec, parse(rec["at"]))
        elif rec["type"] == "fault" and rec["kind"] == "too_short":
            out["drive_by"][rec["point_id"]] = drive_by(rec, parse(rec["departure_at"]))
        elif (
            rec["type"] == "route_end"
            and rec["load_kg"] > 0
            and rec["depot_id"] is not None
            and not rec["broken_down"]
        ):
            home_at = parse(rec["at"])
            shown = first_fix(
                reported_stopped, rec["truck_id"], home_at, known(rec["truck_id"], home_at)
            )
            out["not_unloaded"][rec["truck_id"]] = Expected(
                rec["truck_id"], home_at, known_at=shown
            )
    return out


def reported_fixes(
    url: str, d: date, *, max_speed_kmh: float | None = None
) -> dict[str, list[datetime]]:
    """Each truck's stored fix times on day `d` (local), sorted; with `max_speed_kmh`,
    only the fixes that show the truck standing (no speed, or at most that)."""
    start = datetime.combine(d, datetime.min.time(), tzinfo=TZ)
    out: dict[str, list[datetime]] = {}
    with psycopg.connect(url) as conn:
        for truck_id, at in conn.execute(
            "SELECT truck_id, recorded_at FROM position WHERE recorded_at >= %s"
            " AND recorded_at < %s AND (%s::float8 IS NULL OR speed_kmh IS NULL"
            " OR speed_kmh <= %s) ORDER BY truck_id, recorded_at",
            (start, start + timedelta(days=1), max_speed_kmh, max_speed_kmh),
        ):
            out.setdefault(truck_id, []).append(at)
    return out


# A truck whose true track spends this long in a point's fence stood there: it did not
# drive past (a drive-by at 20-30 km/h crosses a 30 m fence in under 10 s).
STOOD_IN_FENCE_S = 30.0


def skipped_through(
    day: SimDay, positions: dict[str, list[tuple[datetime, float, float]]]
) -> set[str]:
    """Skipped points the truck nevertheless drove past: its true track (``positions``:
    a perfect terminal's fixes, every 10 s while driving), from when it left for the point
    (``skip``: its departure from the stop before) or left its spot beside it
    (``idle_beside``) until it reached its next stop (a service, a short stop, an unload,
    its route's end), crossed the point's geofence, and it did not stand in the fence.
    On the track that is a drive-by — a crossing of the fence without stopping — and it
    is scored as one. The track, not the road from the planned stop before to the one
    after: a truck that idled beside the next point first, or came from idling beside the
    point before, took another road; one whose spot beside the next point lies in this
    point's fence stood in it for minutes, which no one calls driving past."""
    city = day.spec.city
    reached: dict[str, list[datetime]] = {}
    for rec in day.truth:
        when = rec.get("arrival_at") if rec["type"] in ("service", "unload") else None
        if rec["type"] == "fault" and rec["kind"] == "too_short":
            when = rec["arrival_at"]
        if rec["type"] == "route_end":
            when = rec["at"]
        if when is not None:
            reached.setdefault(rec["truck_id"], []).append(parse(when))
    out: set[str] = set()
    for rec in day.truth:
        if rec["type"] != "fault" or rec["kind"] not in ("skip", "idle_beside"):
            continue
        left = parse(rec["at"] if rec["kind"] == "skip" else rec["departure_at"])
        until = min((t for t in reached.get(rec["truck_id"], ()) if t > left), default=NEVER)
        track = [f for f in positions.get(rec["truck_id"], ()) if left <= f[0] <= until]
        point = city.point(rec["point_id"])
        if drove_through_fence(
            track, point.lat, point.lon, point.geofence_radius_m, stood_s=STOOD_IN_FENCE_S
        ):
            out.add(rec["point_id"])
    return out


SCENARIO_KINDS = ("missed", "drive_by")
STREET_FAULTS = ("drift", "jump", "idle_beside")


def scenarios(day: SimDay) -> dict[str, str]:
    """Point -> the scenario it belongs to that day: the fault at it (``jump`` also for
    the point the thrown fix landed beside), ``breakdown`` for the points a broken-down
    truck left, else ``normal``."""
    out: dict[str, str] = {}
    for rec in day.truth:
        if rec["type"] != "fault":
            continue
        if rec.get("point_id"):
            out[rec["point_id"]] = rec["kind"]
        if rec["kind"] == "jump" and rec.get("beside_point_id"):
            out.setdefault(rec["beside_point_id"], "jump")
        if rec["kind"] == "breakdown":
            for pid in rec.get("unserved_point_ids", []):
                out.setdefault(pid, "breakdown")
    return out


def planned_waits_flagged(url: str, day: SimDay, d: date) -> list[str]:
    """疑似故障 (stationary) alerts of trucks that did not break down: every stop of such
    a truck off a site is a wait or a break its plan contains."""
    broken = {r["truck_id"] for r in day.truth if r["type"] == "fault" and r["kind"] == "breakdown"}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT truck_id, message FROM alert WHERE service_date = %s AND kind = 'stationary'",
            (d,),
        ).fetchall()
    return [f"{d}:{t}: {m}" for t, m in rows if t not in broken]


def raised(url: str, d: date) -> dict[str, dict[str, datetime]]:
    """kind -> subject -> when raised; a point's one incident counts once for each of its
    stages (drive-by, missed, ...), as raised when it reached that stage."""
    out: dict[str, dict[str, datetime]] = {k: {} for k in KINDS}
    with psycopg.connect(url) as conn:
        for kind, point_id, truck_id, raised_at, details in conn.execute(
            "SELECT kind, point_id, truck_id, raised_at, details FROM alert"
            " WHERE service_date = %s",
            (d,),
        ):
            stages = [
                (s["kind"], datetime.fromisoformat(s["raised_at"]))
                for s in (details or {}).get("stages", [])
            ] or [(kind, raised_at)]
            for stage, at in stages:
                if stage in out:
                    out[stage][point_id if stage != "not_unloaded" else truck_id] = at
    return out


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    delays: list[float] = field(default_factory=list)
    # drive_by: from the pass (or the too-short stop's departure) itself, before the
    # truck had clearly gone on; shown beside the delay, not in the target
    delays_from_event: list[float] = field(default_factory=list)
    # from when the data showing the condition could first reach the platform (after a
    # blind zone: when the terminal released its buffered fixes)
    delays_from_data: list[float] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)

    def add(self, d: date, want: dict[str, Expected], got: dict[str, datetime]) -> None:
        for key, exp in want.items():
            if key in got:
                self.tp += 1
                if exp.at.year < 9999:
                    self.delays.append((got[key] - exp.at).total_seconds())
                    known_at = exp.known_at or exp.at
                    self.delays_from_data.append((got[key] - known_at).total_seconds())
                if exp.event_at is not None:
                    self.delays_from_event.append((got[key] - exp.event_at).total_seconds())
            else:
                self.fn += 1
                self.false_negatives.append(f"{d}:{key}")
        for key in got:
            if key not in want:
                self.fp += 1
                self.false_positives.append(f"{d}:{key}")

    def merge(self, other: Score) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn
        self.delays += other.delays
        self.delays_from_event += other.delays_from_event
        self.delays_from_data += other.delays_from_data
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives

    def summary(self) -> dict[str, Any]:
        return {
            "precision": round(self.tp / (self.tp + self.fp), 4) if self.tp + self.fp else None,
            "recall": round(self.tp / (self.tp + self.fn), 4) if self.tp + self.fn else None,
            "true": self.tp + self.fn,
            "raised": self.tp + self.fp,
            "delay_p50_s": quantile(self.delays, 0.5),
            "delay_p99_s": quantile(self.delays, 0.99),
            "delay_from_data_p99_s": quantile(self.delays_from_data, 0.99),
            **(
                {
                    "delay_from_event_p50_s": quantile(self.delays_from_event, 0.5),
                    "delay_from_event_p99_s": quantile(self.delays_from_event, 0.99),
                }
                if self.delays_from_event
                else {}
            ),
        }


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def explain(url: str, day: SimDay, d: date, keys: Iterable[str]) -> dict[str, str]:
    """What really happened at each point (or truck), and what the ledger said."""
    what: dict[str, list[str]] = {}
    for rec in day.truth:
        key = rec.get("point_id") or ""
        if rec["type"] == "service":
            what.setdefault(key, []).append(
                f"served {rec['arrival_at'][11:19]}+{rec['dwell_s']:.0f}s"
            )
        elif rec["type"] == "fault" and key:
            what.setdefault(key, []).append(f"{rec['kind']}")
        elif rec["type"] == "fault" and rec["kind"] == "breakdown":
            for pid in rec.get("unserved_point_ids", []):
                what.setdefault(pid, []).append(f"breakdown {rec['truck_id']}")
    out = {}
    with psycopg.connect(url) as conn:
        for key in keys:
            row = conn.execute(
                "SELECT status, reason, planned_truck_id FROM ledger_entry WHERE service_date = %s AND point_id = %s",
                (d, key),
            ).fetchone()
            out[key] = f"truth: {', '.join(what.get(key, ['-']))}; ledger: {row}"
    return out


def explain_delays(
    url: str,
    d: date,
    want: dict[str, dict[str, Expected]],
    got: dict[str, dict[str, datetime]],
    *,
    limit_s: float,
) -> list[str]:
    """The true alerts raised more than `limit_s` after their condition, with the rule's
    own condition time and details."""
    out = []
    with psycopg.connect(url) as conn:
        for kind in KINDS:
            for key, exp in want[kind].items():
                if key not in got[kind] or exp.at.year == 9999:
                    continue
                delay = (got[kind][key] - exp.at).total_seconds()
                if delay <= limit_s:
                    continue
                column = "truck_id" if kind == "not_unloaded" else "point_id"
                row = conn.execute(
                    f"SELECT condition_at, details FROM alert WHERE service_date = %s"
                    f" AND (kind = %s OR details->'stages' @> jsonb_build_array("
                    f"jsonb_build_object('kind', %s::text))) AND {column} = %s",
                    (d, kind, kind, key),
                ).fetchone()
                cond, details = row if row else (None, {})
                details = dict(details or {})
                visit = details.pop("visit", None)
                when = f"{cond.astimezone(TZ):%H:%M:%S}" if cond else "-"
                out.append(
                    f"    {kind} SLOW {key}: delay {delay:.0f} s, truth {exp.at.astimezone(TZ):%H:%M:%S}"
                    + (
                        f" (data {exp.known_at.astimezone(TZ):%H:%M:%S})"
                        if exp.known_at and exp.known_at != exp.at
                        else ""
                    )
                    + (f" (event {exp.event_at.astimezone(TZ):%H:%M:%S})" if exp.event_at else "")
                    + ", "
                    f"condition {when}, raised {got[kind][key].astimezone(TZ):%H:%M:%S}; "
                    f"{details} visit {visit}"
                )
    return out


def ledger_confusion(url: str, day: SimDay, d: date) -> Counter[str]:
    """Ledger status vs what really happened, per planned point."""
    served = {r["point_id"] for r in day.truth if r["type"] == "service"}
    out: Counter[str] = Counter()
    with psycopg.connect(url) as conn:
        for point_id, status in conn.execute(
            "SELECT point_id, status FROM ledger_entry WHERE service_date = %s", (d,)
        ):
            out[f"{'served' if point_id in served else 'not_served'}->{status}"] += 1
    return out


# ---------------------------------------------------------------------------- main


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings as the last line reports them."""
    return {
        "days": args.days,
        "only_day": args.only_day,
        "first_date": args.first_date,
        "points": args.points,
        "trucks": args.trucks,
        "mode": args.mode,
        "speed": args.speed if args.mode == "live" else None,
        "tick_s": (args.worker_interval * args.speed) if args.mode == "live" else args.tick,
        "fault_scale": args.fault_scale,
        "street_fault_scale": args.street_fault_scale,
        "noise_m": args.noise_m,
        "dropout": args.dropout,
        "planner": args.planner,
    }


@dataclass
class Tally:
    """What a run scored, its days summed; runs of single days (``--only-day``, each
    short enough for a shared machine) are summed with ``--combine``."""

    settings: dict[str, Any]
    scores: dict[str, Score] = field(default_factory=lambda: {k: Score() for k in KINDS})
    by_scenario: dict[str, dict[str, Score]] = field(default_factory=dict)
    point_days: Counter[str] = field(default_factory=Counter)  # planned, per scenario
    waits_flagged: list[str] = field(default_factory=list)
    confusion: Counter[str] = field(default_factory=Counter)
    publish_max_lag_s: float | None = None
    tick_s: list[float] = field(default_factory=list)  # each tick's wall time
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "scores": {k: asdict(s) for k, s in self.scores.items()},
            "by_scenario": {
                name: {k: asdict(s) for k, s in kinds.items()}
                for name, kinds in self.by_scenario.items()
            },
            "point_days": dict(self.point_days),
            "waits_flagged": self.waits_flagged,
            "confusion": dict(self.confusion),
            "publish_max_lag_s": self.publish_max_lag_s,
            "tick_s": self.tick_s,
            "wall_s": self.wall_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            settings=data["settings"],
            scores={k: Score(**s) for k, s in data["scores"].items()},
            by_scenario={
                name: {k: Score(**s) for k, s in kinds.items()}
                for name, kinds in data["by_scenario"].items()
            },
            point_days=Counter(data["point_days"]),
            waits_flagged=data["waits_flagged"],
            confusion=Counter(data["confusion"]),
            publish_max_lag_s=data["publish_max_lag_s"],
            tick_s=data.get("tick_s", []),
            wall_s=data["wall_s"],
        )

    @classmethod
    def combined(cls, tallies: Sequence[Tally]) -> Tally:
        out = cls(settings={**tallies[0].settings, "only_day": None, "runs": len(tallies)})
        for t in tallies:
            for k, s in t.scores.items():
                out.scores[k].merge(s)
            for name, kinds in t.by_scenario.items():
                for k, s in kinds.items():
                    out.by_scenario.setdefault(name, {}).setdefault(k, Score()).merge(s)
            out.point_days += t.point_days
            out.waits_flagged += t.waits_flagged
            out.confusion += t.confusion
            if t.publish_max_lag_s is not None:
                out.publish_max_lag_s = max(out.publish_max_lag_s or 0.0, t.publish_max_lag_s)
            out.tick_s += t.tick_s
            out.wall_s += t.wall_s
        return out

    def summary(self) -> dict[str, Any]:
        """The last line's JSON object."""
        scores, point_days = self.scores, self.point_days
        delays = [x for s in scores.values() for x in s.delays]
        from_data = [x for s in scores.values() for x in s.delays_from_data]
        tick_ms = [round(x * 1000, 1) for x in self.tick_s]
        result: dict[str, Any] = {kind: scores[kind].summary() for kind in KINDS}
        # Per scenario, besides precision / recall over its alerts: its planned point-days
        # and the share of them whose alert (raised or not) was right — the measure of a
        # scenario with nothing truly missed, such as drift (served: any alert is false).
        result["scenarios"] = {
            name: {
                "point_days": point_days[name],
                **{
                    kind: {
                        **{
                            k: v
                            for k, v in s.summary().items()
                            if k in ("precision", "recall", "true", "raised")
                        },
                        "right": round(1 - (s.fp + s.fn) / point_days[name], 4)
                        if point_days[name]
                        else None,
                    }
                    for kind, s in sorted(kinds.items())
                },
            }
            for name, kinds in sorted(self.by_scenario.items())
        }
        result["stationary_on_planned_waits"] = len(self.waits_flagged)
        result["stationary_on_planned_waits_examples"] = self.waits_flagged[:10]
        result.update(
            delay_p50_s=quantile(delays, 0.5),
            delay_p99_s=quantile(delays, 0.99),
            delay_from_data_p50_s=quantile(from_data, 0.5),
            delay_from_data_p99_s=quantile(from_data, 0.99),
            **self.settings,
            ledger=dict(sorted(self.confusion.items())),
            false_positives={k: s.false_positives[:20] for k, s in scores.items() if s.false_positives},
            false_negatives={k: s.false_negatives[:20] for k, s in scores.items() if s.false_negatives},
            ticks=len(self.tick_s),
            tick_p50_ms=quantile(tick_ms, 0.5),
            tick_p99_ms=quantile(tick_ms, 0.99),
            tick_max_ms=max(tick_ms, default=None),
            wall_s=round(self.wall_s, 1),
        )  # fmt: skip
        if self.publish_max_lag_s is not None:
            result["publish_max_lag_s"] = self.publish_max_lag_s
        return result


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mode", choices=("live", "offline"), default="live")
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--trucks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed", type=float, default=60.0, help="live: simulated seconds per second")
    ap.add_argument(
        "--worker-interval", type=float, default=0.2, help="live: wall seconds between ticks"
    )
    ap.add_argument("--ingest-age", type=float, default=0.1, help="live: ingest batch max age, s")
    ap.add_argument(
        "--tick", type=float, default=10.0, help="offline: simulated seconds between ticks"
    )
    ap.add_argument("--noise-m", type=float, default=15.0)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--signal-losses", type=float, default=1.0, help="blind zones per truck-day")
    ap.add_argument(
        "--fault-scale", type=float, default=1.0, help="× the simulator's default fault rates"
    )
    ap.add_argument(
        "--street-fault-scale",
        type=float,
        default=1.0,
        help="× the drift, jump and idle-beside rates on top of --fault-scale",
    )
    ap.add_argument("--planner", choices=("ortools", "greedy"), default="ortools")
    ap.add_argument("--plan-time-limit", type=float, default=30.0)
    ap.add_argument(
        "--solution-limit",
        type=int,
        default=None,
        help="stop planning after this many solutions: the same plan on any machine",
    )
    ap.add_argument(
        "--first-date", default=None, help="the first service date (default: --days before today)"
    )
    ap.add_argument("--eval-end", default="21:00", help="local time the last day is judged at")
    ap.add_argument("--explain", action="store_true", help="log the truth behind each error")
    ap.add_argument(
        "--keep", action="store_true", help="keep the database (with CLEARDAY_DATABASE_URL)"
    )
    ap.add_argument(
        "--only-day", type=int, default=None, help="run only this day index (debugging)"
    )
    ap.add_argument(
        "--tally-out", default=None, help="also write what was scored to this file (JSON)"
    )
    ap.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="TALLY",
        help="run nothing: sum the tallies of runs (e.g. one per --only-day) and score them",
    )
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.combine:
        tallies = [Tally.from_json(json.loads(Path(f).read_text())) for f in args.combine]
        print(json.dumps(Tally.combined(tallies).summary(), ensure_ascii=False))
        return

    started = time.monotonic()
    settings = Settings()
    grace_s = float(settings.alerts.missed_grace_s)
    rules_params = worker.AlertConfig.from_settings(settings).rules
    h, m = (int(x) for x in args.eval_end.split(":"))
    first = (
        date.fromisoformat(args.first_date)
        if args.first_date
        else datetime.now(TZ).date() - timedelta(days=args.days)
    )
    days = [first + timedelta(days=k) for k in range(args.days)]
    with tempfile.TemporaryDirectory(prefix="clearday-bench-alerts-") as tmp_name:
        tmp = Path(tmp_name)
        srv = servers(tmp, need_mqtt=args.mode == "live")
        url = fresh_database(srv.admin_url)
        ingestor: Ingestor | None = None
        try:
            city = generate(
                n_points=args.points, n_trucks=args.trucks, seed=args.seed, district=DISTRICT
            )
            city.write(tmp / "city")
            parsed = importer.parse_files(
                importer.read_paths([tmp / "city"]), default_district=DISTRICT
            )
            with db.connect(url) as conn:
                importer.load(conn, parsed)
            net = RoadNetwork(city)
            log(f"district: {len(city.points)} points, {len(city.trucks)} trucks; mode {args.mode}")
            if args.mode == "live":
                assert srv.mqtt_url is not None
                ingestor = Ingestor(url, srv.mqtt_url, tmp, args.ingest_age)
            tally = Tally(settings=settings_of(args))
            scores, by_scenario, point_days = tally.scores, tally.by_scenario, tally.point_days
            for k, d in enumerate(days):
                if args.only_day is not None and k != args.only_day:
                    continue
                plan = plan_day(url, city, net, d, args)
                day = sim_day(city, net, plan, d, k, args)
                eval_end = datetime.combine(d, datetime.min.time(), tzinfo=TZ).replace(
                    hour=h, minute=m
                )
                if args.mode == "live":
                    assert srv.mqtt_url is not None
                    live = run_live(url, srv.mqtt_url, day, d, eval_end, args)
                    tally.publish_max_lag_s = max(tally.publish_max_lag_s or 0.0, live["max_lag_s"])
                    tally.tick_s += live["tick_s"]
                else:
                    tally.tick_s += run_offline(url, day, d, eval_end, args)
                want = expected(
                    day, d, eval_end, grace_s, true_positions(day), rules_params,
                    reported_fixes(url, d),
                    reported_fixes(url, d, max_speed_kmh=settings.alerts.stop_speed_kmh),
                )  # fmt: skip
                got = raised(url, d)
                for kind in KINDS:
                    scores[kind].add(d, want[kind], got[kind])
                scenario_of = scenarios(day)
                point_days.update(
                    scenario_of.get(stop.ref_id, "normal")
                    for route in plan.routes
                    for stop in route.stops
                    if stop.kind == "point" and stop.ref_id is not None
                )
                for kind in SCENARIO_KINDS:
                    for name in {*scenario_of.values(), "normal"}:
                        in_it = {
                            k
                            for k in {*want[kind], *got[kind]}
                            if scenario_of.get(k, "normal") == name
                        }
                        by_scenario.setdefault(name, {}).setdefault(kind, Score()).add(
                            d,
                            {k: v for k, v in want[kind].items() if k in in_it},
                            {k: v for k, v in got[kind].items() if k in in_it},
                        )
                tally.waits_flagged += planned_waits_flagged(url, day, d)
                tally.confusion += ledger_confusion(url, day, d)
                if args.explain:
                    for line in explain_delays(url, d, want, got, limit_s=60.0):
                        log(line)
                    for kind in KINDS:
                        wrong = [k.split(":", 1)[1] for k in scores[kind].false_positives + scores[kind].false_negatives
                                 if k.startswith(str(d))]  # fmt: skip
                        for key, text in explain(url, day, d, wrong).items():
                            tag = "FP" if f"{d}:{key}" in scores[kind].false_positives else "FN"
                            log(f"    {kind} {tag} {key}: {text}")
                log(f"  {d}: " + "; ".join(f"{kind} {scores[kind].summary()}" for kind in KINDS))
        finally:
            if ingestor is not None:
                ingestor.stop()
            if args.keep:
                log(f"kept the database: {url}")
            else:
                drop_database(srv.admin_url, url)
            srv.close()

    tally.wall_s += time.monotonic() - started
    if args.tally_out:
        Path(args.tally_out).write_text(json.dumps(tally.to_json(), ensure_ascii=False))
    print(json.dumps(tally.summary(), ensure_ascii=False))


if __name__ == "__main__":
    main()
