"""`clearday simulate city | day | load` (registered through the `clearday.commands`
entry point, so fleet never imports the simulator)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from fleet import db
from fleet.config import Settings
from fleet.plans import repo as plans_repo
from ingest.credentials import ROLE_TERMINAL, read_existing
from routing.plan import Plan
from simulator import faults as faults_mod
from simulator.city import City, CityConfig, generate, jt808_phone_for, parse_hhmm
from simulator.district import load_city
from simulator.jt808 import Jt808Fleet
from simulator.load import LoadConfig, run_load
from simulator.mqtt import BrokerUnavailable, MqttFleet
from simulator.plans import greedy_plan, load_plan, solved_plan
from simulator.roads import RoadNetwork
from simulator.trucks import DaySpec, ListSink, RunStats, SimDay, TerminalConfig, run


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _settings() -> Settings:
    return Settings()


def _terminal_passwords(path: Path | None) -> dict[str, str] | None:
    """Terminal id -> password from a credentials.csv, or None (the URL's account)."""
    if path is None:
        return None
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such credentials file (clearday mqtt-credentials)")
    return {a.username: a.password for a in read_existing(path).values() if a.role == ROLE_TERMINAL}


def _mqtt_url(option: str | None) -> str:
    if option:
        return option
    settings = _settings()
    if settings.ingest.mqtt_url is None:
        raise _fail("no broker: pass --mqtt-url or set CLEARDAY_MQTT_URL (mqtt://host:1883)")
    return settings.ingest.mqtt_url.get_secret_value()


def _timezone(option: str | None) -> str:
    if option:
        return option
    return _settings().timezone


def _city(city_dir: Path | None, points: int, trucks: int, seed: int) -> City:
    if city_dir is not None:
        return load_city(city_dir)
    return generate(CityConfig(n_points=points, n_trucks=trucks, seed=seed))


def _clock(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        return float(parse_hhmm(text))
    except ValueError:
        raise _fail(f"{what}: expected HH:MM, got {text!r}") from None


def _plan_from_db(district: str, service_date: date) -> Plan:
    """The day's published plan (else the newest draft) of a district."""
    settings = _settings()
    if settings.storage.database_url is None:
        raise _fail("--from-db: set CLEARDAY_DATABASE_URL")
    with db.connect(settings.storage.database_url.get_secret_value()) as conn:
        plan_id = plans_repo.latest_plan_id(conn, district, service_date)
        row = plans_repo.get_plan(conn, plan_id) if plan_id is not None else None
    if row is None:
        raise _fail(f"no plan for district {district!r} on {service_date.isoformat()}")
    typer.echo(f"driving plan {row['plan_id']} ({row['status']})", err=True)
    return Plan.from_dict(row["document"])


def _jt808_fleet(city: City, mqtt: Any, address: str | None, share: float) -> Any:
    """The first ``share`` of the city's trucks on JT/T 808, the rest (and every
    truck's events) on ``mqtt``."""
    if address is None:
        address = f"127.0.0.1:{_settings().jt808.port}"
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise _fail(f"--jt808-address: expected host:port, got {address!r}")
    n = round(share * len(city.trucks))
    phones = {t.terminal_id: jt808_phone_for(k) for k, t in enumerate(city.trucks[:n])}
    return Jt808Fleet(host, int(port), phones, mqtt)


# The options of `simulate day`, named once here so the command reads as a list.
CityDirOpt = Annotated[
    Path | None, typer.Option("--city", help="a folder written by `simulate city`")
]
PlanOpt = Annotated[
    Path | None, typer.Option(help="plan JSON (Plan.to_dict form); default: a greedy plan")
]
FromDbOpt = Annotated[
    bool,
    typer.Option("--from-db", help="drive the day's published plan from CLEARDAY_DATABASE_URL"),
]
SolveOpt = Annotated[
    float | None, typer.Option("--solve", help="plan with the real planner, this many seconds")
]
DateOpt = Annotated[
    str | None,
    typer.Option(
        "--date", help="service date YYYY-MM-DD; default today at --speed 1, else yesterday"
    ),
]
StartOpt = Annotated[
    str | None,
    typer.Option(help="HH:MM simulated time that is 'now'; earlier traffic goes at once"),
]
FaultOpt = Annotated[
    list[str] | None,
    typer.Option(help="e.g. skip:P0012, breakdown:T02@10:30, offline:T01@09:00+1200"),
]
RandomFaultsOpt = Annotated[
    float, typer.Option(help="random faults at this multiple of the default rates")
]
SignalLossesOpt = Annotated[
    float, typer.Option(help="blind-zone periods per truck-day (late batches)")
]
TruthOpt = Annotated[
    Path | None, typer.Option(help="ground-truth JSONL (default: truth-DATE-SEED.jsonl)")
]
MqttUrlOpt = Annotated[str | None, typer.Option(help="default: CLEARDAY_MQTT_URL")]
CredentialsOpt = Annotated[
    Path | None,
    typer.Option(
        help="credentials.csv of `clearday mqtt-credentials`: each terminal logs in "
        "as itself (needed on the shipped broker)"
    ),
]
ProtocolOpt = Annotated[
    str,
    typer.Option(
        help="mqtt, or jt808: terminals connect to the JT/T 808 gateway over TCP "
        "(phone numbers as in the city's trucks.csv; events still go over MQTT)"
    ),
]
Jt808AddressOpt = Annotated[
    str | None,
    typer.Option(
        help="with --protocol jt808: gateway host:port (default 127.0.0.1:CLEARDAY_JT808_PORT)"
    ),
]
Jt808ShareOpt = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="with --protocol jt808: share of the fleet on JT/T 808"),
]
DryRunOpt = Annotated[bool, typer.Option(help="no MQTT: only compute the day and its ground truth")]


def _service_date(option: str | None, tz_name: str, *, live: bool) -> date:
    """--date, else today when the day runs in real time, else yesterday."""
    if option is None:
        today = datetime.now(ZoneInfo(tz_name)).date()
        return today if live else today - timedelta(days=1)
    try:
        return date.fromisoformat(option)
    except ValueError:
        raise _fail(f"--date: expected YYYY-MM-DD, got {option!r}") from None


@dataclass(frozen=True, slots=True)
class PlanChoice:
    """Where the day's plan comes from: at most one of a file, the database, the solver."""

    path: Path | None
    from_db: bool
    district: str
    solve_s: float | None
    seed: int


def _plan(choice: PlanChoice, city: City, net: RoadNetwork, day_date: date) -> Plan:
    if sum((choice.path is not None, choice.from_db, choice.solve_s is not None)) > 1:
        raise _fail("give one of --plan, --from-db, --solve")
    if choice.path is not None:
        return load_plan(choice.path)
    if choice.from_db:
        return _plan_from_db(choice.district, day_date)
    if choice.solve_s is not None:
        typer.echo(f"planning with the routing solver ({choice.solve_s:g} s) …", err=True)
        return solved_plan(city, time_limit_s=choice.solve_s, seed=choice.seed)
    typer.echo("no --plan given: driving a greedy nearest-neighbour plan", err=True)
    return greedy_plan(city, net=net)


def _faults(
    plan: Plan, city: City, given: list[str], file: Path | None, random_scale: float, seed: int
) -> list[faults_mod.Fault]:
    """The faults named on the command line, then those of the file, then random ones."""
    chosen = [faults_mod.parse_fault(f) for f in given]
    if file is not None:
        chosen += faults_mod.faults_from_json(json.loads(file.read_text()))
    if random_scale > 0:
        rates = faults_mod.FaultRates.scaled(random_scale)
        chosen += faults_mod.random_faults(plan, city, rates, seed=seed)
    return chosen


def _echo_progress(stats: RunStats) -> None:
    h, m = divmod(int(stats.sim_end_s) // 60, 60)
    typer.echo(
        f"  {h:02d}:{m:02d} simulated, {stats.messages} messages, max lag {stats.max_lag_s:.2f} s",
        err=True,
    )


@dataclass(frozen=True, slots=True)
class Publishing:
    """How the day's traffic reaches the platform."""

    mqtt_url: str | None
    credentials: Path | None
    protocol: str
    jt808_address: str | None
    jt808_share: float


def _publish(
    day: SimDay, city: City, how: Publishing, *, speed: float | None,
    start_s: float | None, until_s: float | None,
) -> tuple[RunStats, dict[str, Any]]:  # fmt: skip
    """Send the day's emissions; the run's stats and what the publisher counted."""
    url = _mqtt_url(how.mqtt_url)
    fleet: Any = MqttFleet(url, passwords=_terminal_passwords(how.credentials))
    if how.protocol == "jt808":
        fleet = _jt808_fleet(city, fleet, how.jt808_address, how.jt808_share)
    elif how.protocol != "mqtt":
        raise _fail(f"--protocol: expected mqtt or jt808, got {how.protocol!r}")
    try:
        stats = run(
            day.emissions(), fleet, speed=speed, start_s=start_s, until_s=until_s,
            on_progress=_echo_progress,
        )  # fmt: skip
    except BrokerUnavailable as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; ground truth so far is written", err=True)
        stats = RunStats(speed=speed)
    finally:
        pub = fleet.close()
    if hasattr(pub, "published"):
        return stats, {"published": pub.published, "acked": pub.acked}
    return stats, {"jt808_locations": pub.reported, "jt808_acked": pub.acked}


sim = typer.Typer(
    help="A synthetic district, trucks that drive a plan over MQTT, and load generation.",
    no_args_is_help=True,
)


@sim.command("city")
def city_cmd(
    out: Annotated[Path, typer.Option(help="folder to write the district to")],
    points: Annotated[int, typer.Option(help="collection points")] = 300,
    trucks: Annotated[int, typer.Option(help="trucks")] = 10,
    seed: Annotated[int, typer.Option(help="seed: same seed, same city")] = 1,
    district: Annotated[str | None, typer.Option(help="district code on every row")] = None,
    block_m: Annotated[float, typer.Option(help="street block size in metres")] = 150.0,
    lat: Annotated[float, typer.Option(help="centre latitude (WGS-84)")] = 31.82,
    lon: Annotated[float, typer.Option(help="centre longitude (WGS-84)")] = 117.27,
) -> None:
    """Generate a district and write it in the import format (plus city.json)."""
    try:
        config = CityConfig(
            n_points=points, n_trucks=trucks, seed=seed, district=district, block_m=block_m,
            center_lat=lat, center_lon=lon,
        )  # fmt: skip
        started = time.monotonic()
        city = generate(config)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    city.write(out)
    typer.echo(
        f"wrote {out}: {len(city.points)} points, {len(city.trucks)} trucks, "
        f"{len(city.stations)} stations, {len(city.depots)} depots, "
        f"{city.graph.number_of_nodes()} road nodes, {len(city.roads)} road segments "
        f"({time.monotonic() - started:.1f} s); load it with `clearday import {out}`"
    )


@sim.command("day")
def day_cmd(
    city_dir: CityDirOpt = None,
    points: Annotated[int, typer.Option(help="without --city: points to generate")] = 300,
    trucks: Annotated[int, typer.Option(help="without --city: trucks to generate")] = 10,
    city_seed: Annotated[int, typer.Option(help="without --city: city seed")] = 1,
    plan: PlanOpt = None,
    from_db: FromDbOpt = False,
    district: Annotated[str, typer.Option(help="with --from-db: the district's plan")] = "default",
    solve_s: SolveOpt = None,
    plan_out: Annotated[Path | None, typer.Option(help="also write the plan driven")] = None,
    service_date: DateOpt = None,
    speed: Annotated[float, typer.Option(help="times real time (1 = real time)")] = 60.0,
    afap: Annotated[bool, typer.Option(help="as fast as possible (ignores --speed)")] = False,
    start: StartOpt = None,
    until: Annotated[str | None, typer.Option(help="HH:MM: stop sending after this")] = None,
    seed: Annotated[int, typer.Option(help="seed for driving, noise and random faults")] = 0,
    fault: FaultOpt = None,
    faults_file: Annotated[Path | None, typer.Option(help="JSON list of faults")] = None,
    random_faults: RandomFaultsOpt = 0.0,
    noise_m: Annotated[float, typer.Option(help="σ of position noise, metres")] = 10.0,
    dropout: Annotated[float, typer.Option(help="probability a fix is lost")] = 0.02,
    signal_losses: SignalLossesOpt = 1.0,
    interval_s: Annotated[float, typer.Option(help="seconds between fixes")] = 10.0,
    truth: TruthOpt = None,
    mqtt_url: MqttUrlOpt = None,
    credentials: CredentialsOpt = None,
    timezone: Annotated[str | None, typer.Option(help="default: CLEARDAY_TIMEZONE")] = None,
    protocol: ProtocolOpt = "mqtt",
    jt808_address: Jt808AddressOpt = None,
    jt808_share: Jt808ShareOpt = 1.0,
    dry_run: DryRunOpt = False,
) -> None:
    """Drive a day's plan: publish the trucks' fixes and events, write the ground truth."""
    tz_name = _timezone(timezone)
    day_date = _service_date(service_date, tz_name, live=speed == 1 and not afap)
    try:
        city = _city(city_dir, points, trucks, city_seed)
        net = RoadNetwork(city)
        the_plan = _plan(PlanChoice(plan, from_db, district, solve_s, seed), city, net, day_date)
        if plan_out is not None:
            plan_out.write_text(json.dumps(the_plan.to_dict(), ensure_ascii=False) + "\n")
        chosen = _faults(the_plan, city, fault or [], faults_file, random_faults, seed)
        terminal = TerminalConfig(
            fix_interval_s=interval_s, parked_interval_s=max(60.0, interval_s), noise_m=noise_m,
            dropout_prob=dropout, signal_losses_per_day=signal_losses,
        )  # fmt: skip
        spec = DaySpec(
            city=city, plan=the_plan, service_date=day_date, timezone=tz_name, seed=seed,
            terminal=terminal, faults=tuple(chosen),
        )  # fmt: skip
        day = SimDay(spec, net=net)
    except (ValueError, KeyError, OSError) as exc:
        raise _fail(str(exc)) from None
    start_s, until_s = _clock(start, "--start"), _clock(until, "--until")
    counts: dict[str, Any] = {}
    if dry_run:
        stats = run(day.emissions(), ListSink(), speed=None, until_s=until_s)
    else:
        how = Publishing(mqtt_url, credentials, protocol, jt808_address, jt808_share)
        stats, counts = _publish(
            day, city, how, speed=None if afap else speed, start_s=start_s, until_s=until_s
        )
    truth_path = truth or Path(f"truth-{day_date.isoformat()}-{seed}.jsonl")
    day.write_truth(truth_path)
    summary = {**stats.summary(), **counts, "truth": str(truth_path)}
    summary["service_date"] = day_date.isoformat()
    summary["faults"] = len(chosen)
    typer.echo(json.dumps(summary, ensure_ascii=False))


@sim.command("load")
def load_cmd(
    terminals: Annotated[int, typer.Option(help="terminals publishing")] = 100,
    rate: Annotated[
        float, typer.Option(help="messages per second in total; 0 = as fast as possible")
    ] = 1000.0,
    duration_s: Annotated[float, typer.Option(help="seconds to run")] = 10.0,
    messages: Annotated[
        int | None, typer.Option(help="stop after this many messages instead")
    ] = None,
    processes: Annotated[int, typer.Option(help="publisher processes")] = 1,
    fixes_per_message: Annotated[int, typer.Option(help="fixes per message (batch)")] = 1,
    qos: Annotated[int, typer.Option(help="MQTT QoS")] = 1,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    city_dir: Annotated[
        Path | None,
        typer.Option("--city", help="a folder written by `simulate city`: its roads and trucks"),
    ] = None,
    mqtt_url: Annotated[str | None, typer.Option(help="default: CLEARDAY_MQTT_URL")] = None,
) -> None:
    """N terminals random-walking on the roads, publishing fixes at a rate."""
    url = _mqtt_url(mqtt_url)
    try:
        city_config = load_city(city_dir).config if city_dir is not None else None
        if city_dir is not None and city_config is None:
            raise ValueError(
                f"--city {city_dir}: load mode regenerates the city in each publisher "
                "process, so it needs a folder written by `clearday simulate city`"
            )
        config = LoadConfig(
            url=url,
            terminals=terminals,
            rate=rate,
            duration_s=None if messages is not None else duration_s,
            messages=messages,
            processes=processes,
            fixes_per_message=fixes_per_message,
            qos=qos,
            seed=seed,
            city=city_config,
        )
        result = run_load(config)
    except (ValueError, OSError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(result.summary()))


def register(app: typer.Typer) -> None:
    app.add_typer(sim, name="simulate")


if __name__ == "__main__":  # pragma: no cover
    root = typer.Typer()
    register(root)
    root(sys.argv[1:])
