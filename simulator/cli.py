"""`clearday simulate city | day | load` (registered through the `clearday.commands`
entry point, so fleet never imports the simulator)."""

from __future__ import annotations

import json
import sys
import time
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


def register(app: typer.Typer) -> None:
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
                n_points=points,
                n_trucks=trucks,
                seed=seed,
                district=district,
                block_m=block_m,
                center_lat=lat,
                center_lon=lon,
            )
            started = time.monotonic()
            city = generate(config)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        city.write(out)
        g = city.graph
        typer.echo(
            f"wrote {out}: {len(city.points)} points, {len(city.trucks)} trucks, "
            f"{len(city.stations)} stations, {len(city.depots)} depots, "
            f"{g.number_of_nodes()} road nodes, {len(city.roads)} road segments "
            f"({time.monotonic() - started:.1f} s); load it with `clearday import {out}`"
        )

    @sim.command("day")
    def day_cmd(
        city_dir: Annotated[
            Path | None, typer.Option("--city", help="a folder written by `simulate city`")
        ] = None,
        points: Annotated[int, typer.Option(help="without --city: points to generate")] = 300,
        trucks: Annotated[int, typer.Option(help="without --city: trucks to generate")] = 10,
        city_seed: Annotated[int, typer.Option(help="without --city: city seed")] = 1,
        plan: Annotated[
            Path | None,
            typer.Option(help="plan JSON (Plan.to_dict form); default: a greedy plan"),
        ] = None,
        from_db: Annotated[
            bool,
            typer.Option(
                "--from-db", help="drive the day's published plan from CLEARDAY_DATABASE_URL"
            ),
        ] = False,
        district: Annotated[
            str, typer.Option(help="with --from-db: the district whose plan to drive")
        ] = "default",
        solve_s: Annotated[
            float | None,
            typer.Option("--solve", help="plan with the real planner, this many seconds"),
        ] = None,
        plan_out: Annotated[
            Path | None, typer.Option(help="also write the plan driven, as JSON")
        ] = None,
        service_date: Annotated[
            str | None,
            typer.Option(
                "--date", help="service date YYYY-MM-DD; default today at --speed 1, else yesterday"
            ),
        ] = None,
        speed: Annotated[float, typer.Option(help="times real time (1 = real time)")] = 60.0,
        afap: Annotated[bool, typer.Option(help="as fast as possible (ignores --speed)")] = False,
        start: Annotated[
            str | None,
            typer.Option(help="HH:MM simulated time that is 'now'; earlier traffic goes at once"),
        ] = None,
        until: Annotated[str | None, typer.Option(help="HH:MM: stop sending after this")] = None,
        seed: Annotated[int, typer.Option(help="seed for driving, noise and random faults")] = 0,
        fault: Annotated[
            list[str] | None,
            typer.Option(help="e.g. skip:P0012, breakdown:T02@10:30, offline:T01@09:00+1200"),
        ] = None,
        faults_file: Annotated[Path | None, typer.Option(help="JSON list of faults")] = None,
        random_faults: Annotated[
            float, typer.Option(help="random faults at this multiple of the default rates")
        ] = 0.0,
        noise_m: Annotated[float, typer.Option(help="σ of position noise, metres")] = 10.0,
        dropout: Annotated[float, typer.Option(help="probability a fix is lost")] = 0.02,
        signal_losses: Annotated[
            float, typer.Option(help="blind-zone periods per truck-day (late batches)")
        ] = 1.0,
        interval_s: Annotated[float, typer.Option(help="seconds between fixes")] = 10.0,
        truth: Annotated[
            Path | None, typer.Option(help="ground-truth JSONL (default: truth-DATE-SEED.jsonl)")
        ] = None,
        mqtt_url: Annotated[str | None, typer.Option(help="default: CLEARDAY_MQTT_URL")] = None,
        credentials: Annotated[
            Path | None,
            typer.Option(
                help="credentials.csv of `clearday mqtt-credentials`: each terminal logs in "
                "as itself (needed on the shipped broker)"
            ),
        ] = None,
        timezone: Annotated[str | None, typer.Option(help="default: CLEARDAY_TIMEZONE")] = None,
        protocol: Annotated[
            str,
            typer.Option(
                help="mqtt, or jt808: terminals connect to the JT/T 808 gateway over TCP "
                "(phone numbers as in the city's trucks.csv; events still go over MQTT)"
            ),
        ] = "mqtt",
        jt808_address: Annotated[
            str | None,
            typer.Option(
                help="with --protocol jt808: gateway host:port (default 127.0.0.1:CLEARDAY_JT808_PORT)"
            ),
        ] = None,
        jt808_share: Annotated[
            float,
            typer.Option(
                min=0.0, max=1.0, help="with --protocol jt808: share of the fleet on JT/T 808"
            ),
        ] = 1.0,
        dry_run: Annotated[
            bool, typer.Option(help="no MQTT: only compute the day and its ground truth")
        ] = False,
    ) -> None:
        """Drive a day's plan: publish the trucks' fixes and events, write the ground truth."""
        tz_name = _timezone(timezone)
        if service_date is None:
            today = datetime.now(ZoneInfo(tz_name)).date()
            day_date = today if (speed == 1 and not afap) else today - timedelta(days=1)
        else:
            try:
                day_date = date.fromisoformat(service_date)
            except ValueError:
                raise _fail(f"--date: expected YYYY-MM-DD, got {service_date!r}") from None
        try:
            city = _city(city_dir, points, trucks, city_seed)
            net = RoadNetwork(city)
            if sum((plan is not None, from_db, solve_s is not None)) > 1:
                raise _fail("give one of --plan, --from-db, --solve")
            if plan is not None:
                the_plan: Any = load_plan(plan)
            elif from_db:
                the_plan = _plan_from_db(district, day_date)
            elif solve_s is not None:
                typer.echo(f"planning with the routing solver ({solve_s:g} s) …", err=True)
                the_plan = solved_plan(city, time_limit_s=solve_s, seed=seed)
            else:
                typer.echo("no --plan given: driving a greedy nearest-neighbour plan", err=True)
                the_plan = greedy_plan(city, net=net)
            if plan_out is not None and hasattr(the_plan, "to_dict"):
                plan_out.write_text(json.dumps(the_plan.to_dict(), ensure_ascii=False) + "\n")
            chosen: list[faults_mod.Fault] = [faults_mod.parse_fault(f) for f in fault or []]
            if faults_file is not None:
                chosen += faults_mod.faults_from_json(json.loads(faults_file.read_text()))
            if random_faults > 0:
                rates = faults_mod.FaultRates.scaled(random_faults)
                chosen += faults_mod.random_faults(the_plan, city, rates, seed=seed)
            terminal = TerminalConfig(
                fix_interval_s=interval_s,
                parked_interval_s=max(60.0, interval_s),
                noise_m=noise_m,
                dropout_prob=dropout,
                signal_losses_per_day=signal_losses,
            )
            spec = DaySpec(
                city=city,
                plan=the_plan,
                service_date=day_date,
                timezone=tz_name,
                seed=seed,
                terminal=terminal,
                faults=tuple(chosen),
            )
            day = SimDay(spec, net=net)
        except (ValueError, KeyError, OSError) as exc:
            raise _fail(str(exc)) from None
        start_s, until_s = _clock(start, "--start"), _clock(until, "--until")
        truth_path = truth or Path(f"truth-{day_date.isoformat()}-{seed}.jsonl")

        def progress(stats: RunStats) -> None:
            h, m = divmod(int(stats.sim_end_s) // 60, 60)
            typer.echo(
                f"  {h:02d}:{m:02d} simulated, {stats.messages} messages, "
                f"max lag {stats.max_lag_s:.2f} s",
                err=True,
            )

        run_speed = None if (afap or dry_run) else speed
        if dry_run:
            stats = run(day.emissions(), ListSink(), speed=None, until_s=until_s)
            counts: dict[str, Any] = {}
        else:
            url = _mqtt_url(mqtt_url)
            fleet: Any = MqttFleet(url, passwords=_terminal_passwords(credentials))
            if protocol == "jt808":
                fleet = _jt808_fleet(city, fleet, jt808_address, jt808_share)
            elif protocol != "mqtt":
                raise _fail(f"--protocol: expected mqtt or jt808, got {protocol!r}")
            try:
                stats = run(
                    day.emissions(),
                    fleet,
                    speed=run_speed,
                    start_s=start_s,
                    until_s=until_s,
                    on_progress=progress,
                )
            except BrokerUnavailable as exc:
                raise _fail(str(exc)) from None
            except KeyboardInterrupt:
                typer.echo("interrupted; ground truth so far is written", err=True)
                stats = RunStats(speed=run_speed)
            finally:
                pub = fleet.close()
            if hasattr(pub, "published"):
                counts = {"published": pub.published, "acked": pub.acked}
            else:
                counts = {"jt808_locations": pub.reported, "jt808_acked": pub.acked}
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
            typer.Option(
                "--city", help="a folder written by `simulate city`: its roads and trucks"
            ),
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

    app.add_typer(sim, name="simulate")


if __name__ == "__main__":  # pragma: no cover
    root = typer.Typer()
    register(root)
    root(sys.argv[1:])
