"""`clearday demo`: one simulated district day, end to end, on private servers.

Stages: servers → fresh database → generated (or given) district imported → the day
planned → ingestor, alert worker and dashboard started → the day played by the
simulator over MQTT → a summary read back from the ledger. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
import typer
from pydantic import SecretStr

from fleet import db, importer
from fleet.alerts import service as alerts
from fleet.alerts import worker
from fleet.auth import service as auth
from fleet.auth.models import Role
from fleet.config import Settings
from fleet.devservers import PrivateMosquitto, PrivatePostgres, ServiceError, free_port
from fleet.plans import repo as plans_repo
from fleet.plans import service as plans
from routing.plan import Plan
from simulator import faults as faults_mod
from simulator.city import City, generate
from simulator.district import load_city
from simulator.mqtt import MqttFleet
from simulator.trucks import DaySpec, RunStats, SimDay, run

DEMO_DATABASE = "clearday_demo"
DISTRICT = "demo"


def say(message: str) -> None:
    typer.echo(message, err=False)


@dataclass
class Stack:
    """Everything the demo started, so that it can all be stopped."""

    postgres: PrivatePostgres | None = None
    broker: PrivateMosquitto | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start_process(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        log = (log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [*clearday_command(), *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order
        )
        self.processes.append((name, process))

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        if self.broker:
            self.broker.stop()
        if self.postgres:
            self.postgres.stop()


def clearday_command() -> list[str]:
    script = Path(sys.executable).with_name("clearday")
    if script.exists():
        return [str(script)]
    found = shutil.which("clearday")
    return [found] if found else [sys.executable, "-c", "from fleet.cli import main; main()"]


@contextlib.contextmanager
def running_stack(settings: Settings) -> Iterator[tuple[Stack, str, str]]:
    """Servers for the demo: the configured ones, or private ones under data_dir."""
    stack = Stack()
    try:
        if settings.storage.database_url is None:
            say("▸ starting a private PostgreSQL …")
            stack.postgres = PrivatePostgres(settings.storage.data_dir / "pg", durable=True).start()
            admin_url = stack.postgres.admin_url
        else:
            admin_url = settings.storage.database_dsn()
        if settings.ingest.mqtt_url is None:
            say("▸ starting a private Mosquitto …")
            stack.broker = PrivateMosquitto(settings.storage.data_dir / "mosquitto").start()
            mqtt_url = stack.broker.url
        else:
            mqtt_url = settings.ingest.mqtt_dsn()
        yield stack, admin_url, mqtt_url
    finally:
        stack.stop()


def fresh_database(admin_url: str, configured: bool) -> str:
    """A new, empty, migrated demo database (each demo starts a fresh day)."""
    if configured:
        # Never drop a database somebody pointed us at: use it as it is.
        db.migrate(admin_url)
        return admin_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")
    url = admin_url.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}"
    mode, _ = db.migrate(url)
    say(f"  database ready ({mode} storage)")
    return url


def import_city(url: str, city_dir: Path) -> tuple[dict[str, int], str]:
    """Import the folder; returns the counts and the district its points and trucks are in
    (`demo` unless the rows name their own, as a real district's files may)."""
    parsed = importer.parse_files(importer.read_paths([city_dir]), default_district=DISTRICT)
    districts = {row["district"] for kind in ("points", "trucks") for row in parsed.rows[kind]}
    if len(districts) != 1:
        raise typer.BadParameter(
            f"the demo plays one district; {city_dir} has {', '.join(sorted(districts))}",
            param_hint="--city",
        )
    with db.connect(url) as conn:
        importer.load(conn, parsed)
    return parsed.count(), districts.pop()


class StatusLine:
    """One line rewritten in place on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = 0.0

    def show(self, text: str, *, force: bool = False) -> None:
        if self.tty:
            sys.stdout.write("\r" + text[:118].ljust(118))
            sys.stdout.flush()
        elif force or time.monotonic() - self.last >= 10:
            self.last = time.monotonic()
            say("  " + text)

    def done(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r" + " " * 118 + "\r")
        say(text)


def bar(fraction: float, width: int = 24) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def plan_the_day(
    url: str,
    service_date: date,
    settings: Settings,
    *,
    seed: int,
    time_limit_s: float,
    district: str = DISTRICT,
) -> int:

    status = StatusLine()
    with db.connect(url, autocommit=True) as conn:

        def progress(fraction: float, message: str) -> None:
            status.show(f"{bar(fraction)} {fraction:4.0%} {message}")

        plan_id = plans.plan_day(
            conn, district_id=district, service_date=service_date, tz=settings.tz,
            time_limit_s=time_limit_s, seed=seed, publish=True, created_by="demo", progress=progress,
        )  # fmt: skip
        stats = (plans.get_plan(conn, plan_id=plan_id) or {}).get("stats", {})
    status.done(
        f"  plan {plan_id} published: {stats.get('num_routes')} routes, "
        f"{stats.get('num_assigned')}/{stats.get('num_points')} points, "
        f"{stats.get('distance_m', 0) / 1000:.1f} km"
    )
    return plan_id


def create_demo_login(url: str) -> tuple[str, str]:

    password = secrets.token_urlsafe(12)
    with db.connect(url, autocommit=True) as conn:
        auth.create_user(conn, username="demo", password=password, role=Role.admin, districts=[],
                         display_name="演示管理员")  # fmt: skip
    return "demo", password


def wait_for_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stored_counts(url: str, service_date: date) -> dict[str, int]:
    with db.connect(url) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM position), (SELECT count(*) FROM device_event),
                      (SELECT count(*) FROM dead_letter),
                      (SELECT count(*) FROM alert WHERE service_date = %s)""",
            (service_date,),
        ).fetchone()
    assert row is not None
    return {"fixes": row[0], "events": row[1], "dead_letters": row[2], "alerts": row[3]}


def wait_for_ingest(url: str, fixes_sent: int, service_date: date, timeout_s: float = 60) -> int:
    """Fixes stored once the ingestor has drained what was published (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline:
        stored = stored_counts(url, service_date)["fixes"]
        if stored >= fixes_sent:
            break
        time.sleep(0.5)
    return stored


@dataclass(frozen=True)
class Summary:
    due: int
    by_status: dict[str, int]
    clearance_rate: float
    alerts_by_kind: dict[str, int]
    alerts_matching_faults: int
    faults: int
    faults_alerted: int
    fixes_published: int
    fixes_stored: int
    dead_letters: int


# Which alert each injected fault should raise (the subject is the point or the truck).
FAULT_ALERTS = {
    "skip": ("missed",), "drive_by": ("drive_by", "missed"), "too_short": ("drive_by", "missed"),
    "idle_beside": ("missed",),
    "breakdown": ("stationary",), "no_unload": ("not_unloaded",), "offline": ("offline",),
}  # fmt: skip


def summarize(url: str, service_date: date, faults: list[Any], fixes_published: int) -> Summary:
    with db.connect(url) as conn:
        statuses: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM ledger_entry WHERE service_date = %s GROUP BY 1",
                (service_date,),
            ).fetchall()
        )
        # A point's one incident counts under each stage it reached (drive-by, missed, ...).
        alerts = conn.execute(
            """SELECT coalesce(s.stage ->> 'kind', a.kind), coalesce(a.point_id, a.truck_id)
                 FROM alert a
                 LEFT JOIN LATERAL jsonb_array_elements(
                      CASE WHEN jsonb_typeof(a.details -> 'stages') = 'array'
                           THEN a.details -> 'stages' END) AS s(stage) ON true
                WHERE a.service_date = %s""",
            (service_date,),
        ).fetchall()
    counts = stored_counts(url, service_date)
    expected = {
        (kind, f.point_id or f.truck_id) for f in faults for kind in FAULT_ALERTS.get(f.kind, ())
    }
    matching = sum(1 for a in alerts if (a[0], a[1]) in expected)
    alerted = {subject for _, subject in alerts}
    faults_alerted = sum(
        1 for f in faults if f.kind in FAULT_ALERTS and (f.point_id or f.truck_id) in alerted
    )
    due = sum(statuses.values())
    by_kind: dict[str, int] = {}
    for kind, _ in alerts:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return Summary(
        due=due, by_status=statuses,
        clearance_rate=statuses.get("cleared", 0) / due if due else 0.0,
        alerts_by_kind=by_kind, alerts_matching_faults=matching,
        faults=sum(1 for f in faults if f.kind in FAULT_ALERTS), faults_alerted=faults_alerted,
        fixes_published=fixes_published, fixes_stored=counts["fixes"], dead_letters=counts["dead_letters"],
    )  # fmt: skip


ALERT_NAMES = {
    "missed": "漏收 missed", "drive_by": "驶过未停 drive-by", "not_cleared_by_deadline": "未日清 not cleared",
    "not_unloaded": "未卸载 not unloaded", "offline": "离线 offline", "stationary": "异常停留 stationary",
}  # fmt: skip


def new_alerts(url: str, seen: list[int], tz: ZoneInfo) -> list[str]:
    """Alerts raised since the last call, one line each, for the watcher."""
    with db.connect(url) as conn:
        rows = conn.execute(
            """SELECT alert_id, kind, coalesce(point_id, truck_id), condition_at, message
               FROM alert WHERE alert_id > %s ORDER BY alert_id""",
            (seen[0],),
        ).fetchall()
    if rows:
        seen[0] = rows[-1][0]
    return [
        f"  ⚠ {at.astimezone(tz):%H:%M} {ALERT_NAMES.get(kind, kind)}: {subject} — {message}"
        for _, kind, subject, at, message in rows
    ]


def play_day(
    settings: Settings,
    url: str,
    mqtt_url: str,
    service_date: date,
    *,
    seed: int,
    speed: float | None,
    city_dir: Path,
    log_dir: Path,
    district: str = DISTRICT,
) -> tuple[list[Any], int, Path]:
    """Drive the published plan over MQTT while the alert worker follows the simulated clock."""

    city = load_city(city_dir)
    with db.connect(url) as conn:
        plan_id = plans_repo.latest_plan_id(conn, district, service_date)
        row = plans_repo.get_plan(conn, plan_id) if plan_id is not None else None
    assert row is not None
    plan = Plan.from_dict(row["document"])
    faults = _demo_faults(plan, city, seed)
    spec = DaySpec(city=city, plan=plan, service_date=service_date, timezone=settings.timezone,
                   seed=seed, faults=tuple(faults))  # fmt: skip
    day = SimDay(spec)
    first_s = min(r.stops[0].departure_s for r in plan.routes) - 600
    last_s = max(r.stops[-1].arrival_s for r in plan.routes)
    end_s = last_s + 2 * 3600  # room for late batches and the shift-end rules
    sim_start = datetime.combine(service_date, datetime.min.time(), tzinfo=settings.tz) + timedelta(
        seconds=first_s
    )
    stop = threading.Event()
    clock: worker.Clock = worker.ScaledClock(sim_start, speed) if speed else worker.wall_clock
    alert_settings = settings.model_copy(
        update={
            "storage": settings.storage.model_copy(update={"database_url": SecretStr(url)}),
            "alerts": settings.alerts.model_copy(update={"worker_interval_s": 1.0}),
        }
    )
    alert_thread = threading.Thread(
        target=worker.run_forever, args=(alert_settings, stop), kwargs={"clock": clock},
        name="alert-worker", daemon=True,
    )  # fmt: skip
    if speed:
        alert_thread.start()
    status = StatusLine()
    seen = [0]

    def progress(stats: RunStats) -> None:
        for line in new_alerts(url, seen, settings.tz):
            status.done(line)
        share = (stats.sim_end_s - first_s) / max(end_s - first_s, 1)
        h, m = divmod(int(stats.sim_end_s) // 60, 60)
        counts = stored_counts(url, service_date)
        status.show(
            f"{bar(share)} {h:02d}:{m:02d}  fixes sent {stats.fixes}  stored {counts['fixes']}  "
            f"alerts {counts['alerts']}"
        )

    fleet = MqttFleet(mqtt_url)
    try:
        try:
            stats = run(
                day.emissions(), fleet, speed=speed, start_s=first_s, until_s=end_s,
                on_progress=progress,
            )  # fmt: skip
        finally:
            fleet.close()
            truth = day.write_truth(log_dir / f"truth-{service_date.isoformat()}.jsonl")
        status.done(
            f"  day played: {stats.fixes} fixes, {stats.events} events in {stats.wall_s:.0f} s"
        )
        wait_for_ingest(url, stats.fixes, service_date)
    finally:
        # Stop the alert worker before anything it talks to goes away.
        stop.set()
        if alert_thread.is_alive():
            alert_thread.join(timeout=30)
    _close_day(alert_settings, service_date)
    return faults, stats.fixes, truth


def _close_day(settings: Settings, service_date: date) -> None:
    """Close the day as the worker would that night: every deadline has passed."""
    with db.connect(settings.storage.database_dsn(), autocommit=True) as conn:
        end_of_day = datetime.combine(service_date, datetime.max.time(), tzinfo=settings.tz)
        alerts.replay_day(conn=conn, settings=settings, service_date=service_date, now=end_of_day)


def _demo_faults(plan: Plan, city: City, seed: int) -> list[faults_mod.Fault]:
    """Random faults at half the default rates, without clock skews (they would
    complicate the demo's story)."""
    rates = faults_mod.FaultRates.scaled(0.5)
    faults = [
        f for f in faults_mod.random_faults(plan, city, rates, seed=seed) if f.kind != "clock_skew"
    ]
    for fault in faults:
        say(f"  fault injected: {fault.to_dict()}")
    return faults


def print_summary(
    summary: Summary, dashboard: str, login: tuple[str, str], truth: Path, service_date: date
) -> None:
    s = summary.by_status
    say("")
    say(f"══ 日产日清 summary for {service_date} ══")
    say(f"  points due             {summary.due}")
    say(f"  cleared                {s.get('cleared', 0)}")
    say(f"  partial (too short)    {s.get('partial', 0)}")
    say(f"  missed                 {s.get('missed', 0)}")
    say(f"  unverifiable (offline) {s.get('unverifiable', 0)}")
    say(f"  日清率 clearance rate   {summary.clearance_rate:.1%}")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.alerts_by_kind.items())) or "none"
    say(f"  alerts raised          {sum(summary.alerts_by_kind.values())} ({kinds})")
    say(f"  alerts matching faults {summary.alerts_matching_faults}; "
        f"faults that raised an alert {summary.faults_alerted}/{summary.faults}")  # fmt: skip
    say(f"  fixes ingested         {summary.fixes_stored} of {summary.fixes_published} sent; "
        f"{summary.dead_letters} dead letters")  # fmt: skip
    say("")
    say("Where to look next:")
    say(f"  dashboard   {dashboard}  (login {login[0]} / {login[1]})")
    say(f"  report      clearday alerts report --date {service_date}")
    say(f"  truth       {truth}")


def run_demo(
    settings: Settings,
    *,
    city: Path | None,
    points: int,
    trucks: int,
    seed: int,
    speed: float | None,
    plan_time_s: float,
    keep_open: bool,
) -> Summary:
    started = time.monotonic()
    log_dir = settings.storage.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with running_stack(settings) as (stack, admin_url, mqtt_url):
        url = fresh_database(admin_url, configured=settings.storage.database_url is not None)
        city_dir = _city_folder(settings, city, points=points, trucks=trucks, seed=seed)
        say(f"▸ importing {city_dir} …")
        counts, district = import_city(url, city_dir)
        say("  " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        service_date = datetime.now(settings.tz).date()
        say(f"▸ planning {service_date} with OR-Tools ({plan_time_s:g} s budget) …")
        plan_the_day(
            url, service_date, settings, seed=seed, time_limit_s=plan_time_s, district=district
        )

        say("▸ starting the ingestor and the dashboard …")
        dashboard = _start_ingest_and_api(stack, settings, url, mqtt_url, log_dir)
        login = create_demo_login(url)
        say(f"  dashboard {dashboard}  login: {login[0]} / {login[1]}")
        pace = f"{speed:g}× real time" if speed else "as fast as possible"
        say(
            f"▸ playing the day at {pace} (CLEARDAY_DEMO_SPEED); alerts appear on the dashboard (监管) …"
        )
        faults, fixes, truth = play_day(
            settings,
            url,
            mqtt_url,
            service_date,
            seed=seed,
            speed=speed,
            city_dir=city_dir,
            log_dir=log_dir,
            district=district,
        )
        summary = summarize(url, service_date, faults, fixes)
        print_summary(summary, dashboard, login, truth, service_date)
        say(f"(finished in {time.monotonic() - started:.0f} s)")
        if keep_open:
            say("The dashboard stays up until you press Ctrl-C.")
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.poll() is None for _, p in stack.processes):
                    time.sleep(1)
        return summary


def _city_folder(
    settings: Settings, city: Path | None, *, points: int, trucks: int, seed: int
) -> Path:
    """The district to play: `city` once it is known to be drivable, else a new one."""
    if city is not None:
        try:  # a folder of import files must also be drivable: say so before importing
            load_city(city)
        except (ValueError, OSError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--city") from None
        return city
    say(f"▸ generating a district: {points} points, {trucks} trucks (seed {seed}) …")
    city_dir = settings.storage.data_dir / "city"
    if city_dir.exists():
        shutil.rmtree(city_dir)
    generate(n_points=points, n_trucks=trucks, seed=seed, district=DISTRICT).write(city_dir)
    return city_dir


def _start_ingest_and_api(
    stack: Stack, settings: Settings, url: str, mqtt_url: str, log_dir: Path
) -> str:
    """Start the ingestor and the API (with the dashboard); returns the dashboard's URL."""
    # The simulated terminals report device times ahead of the wall clock (the day
    # is played faster than real time), so the demo's ingestor accepts them.
    env = {"CLEARDAY_DATABASE_URL": url, "CLEARDAY_MQTT_URL": mqtt_url,
           "CLEARDAY_INGEST_MAX_FUTURE_S": str(2 * 86400), "CLEARDAY_METRICS_PORT": "0",
           "CLEARDAY_TIMEZONE": settings.timezone}  # fmt: skip
    stack.start_process("ingest", ["ingest", "--client-id", "clearday-demo-ingest"], env, log_dir)
    http_port = free_port()
    stack.start_process(
        "api",
        ["serve", "--host", "127.0.0.1", "--port", str(http_port), "--no-alerts"],
        env,
        log_dir,
    )
    dashboard = f"http://127.0.0.1:{http_port}/"
    if not wait_for_http(dashboard + "healthz", 30):
        raise ServiceError(f"the dashboard did not start; see {log_dir / 'api.log'}")
    return dashboard


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        city: Annotated[
            Path | None,
            typer.Option(
                help="a district folder instead of a new one: written by `clearday simulate "
                "city`, or import files (docs/import.md) of a real district"
            ),
        ] = None,
        points: Annotated[int, typer.Option(help="points in the generated district")] = 300,
        trucks: Annotated[int, typer.Option(help="trucks in the generated district")] = 12,
        seed: Annotated[
            int, typer.Option(help="seed for the district, the plan and the faults")
        ] = 1,
        speed: Annotated[
            float,
            typer.Option(
                envvar="CLEARDAY_DEMO_SPEED", help="times real time; 0 = as fast as possible"
            ),
        ] = 60.0,
        plan_time: Annotated[float, typer.Option(help="planner time budget, seconds")] = 20.0,
        keep_open: Annotated[
            bool,
            typer.Option(
                help="keep the dashboard up after the summary until Ctrl-C "
                "(--no-keep-open: exit after the summary, e.g. in scripts)"
            ),
        ] = True,
    ) -> None:
        """Run a whole simulated district day on private servers (Ctrl-C stops everything)."""
        settings = Settings()
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
        # New alerts are shown as they appear; the worker's own log lines would interleave.
        logging.getLogger("clearday.alerts").setLevel(logging.WARNING)
        # A process manager's SIGTERM stops the demo as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            run_demo(settings, city=city, points=points, trucks=trucks, seed=seed,
                     speed=speed or None, plan_time_s=plan_time,
                     keep_open=keep_open)  # fmt: skip
        except KeyboardInterrupt:
            say("\nstopped; every process the demo started has been stopped too")
            raise typer.Exit(130) from None
