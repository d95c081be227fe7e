"""Driving a plan: tracks on the roads, dwell and unloads as planned, every fault in the
ground truth, the same seed giving the same day (pure: no broker)."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ingest import wire
from routing.plan import Plan
from simulator import geo
from simulator.city import City
from simulator.faults import Fault, drive_by_possible
from simulator.trucks import (
    DaySpec,
    Emission,
    ListSink,
    SimDay,
    TerminalConfig,
    run,
    simulate,
)

DAY = date(2025, 3, 3)
MIDNIGHT_UTC = datetime(2025, 3, 2, 16, 0, tzinfo=UTC)  # 00:00 Asia/Shanghai


def _spec(city: City, plan: Plan, **kw: object) -> DaySpec:
    return DaySpec(city=city, plan=plan, service_date=DAY, seed=kw.pop("seed", 7), **kw)  # type: ignore[arg-type]


def _fixes(ems: list[Emission], terminal_id: str | None = None) -> list[wire.Fix]:
    return [
        f
        for e in ems
        if e.kind == "fixes" and (terminal_id is None or e.terminal_id == terminal_id)
        for f in e.fixes
    ]


def _events(ems: list[Emission], kind: str) -> list[tuple[str, wire.Event]]:
    return [
        (e.terminal_id, ev) for e in ems if e.kind == "events" for ev in e.events if ev.kind == kind
    ]


def _sim_s(at: datetime) -> float:
    return (at - MIDNIGHT_UTC).total_seconds()


def _iso_s(text: str) -> float:
    return _sim_s(datetime.fromisoformat(text))


def test_same_seed_same_day_other_seed_other_day(small_city: City, small_plan: Plan) -> None:
    faults = (Fault("skip", point_id=small_plan.routes[0].stops[2].ref_id),)
    a, day_a = simulate(_spec(small_city, small_plan, faults=faults))
    b, day_b = simulate(_spec(small_city, small_plan, faults=faults))
    assert a == b
    assert day_a.truth == day_b.truth
    c, _ = simulate(_spec(small_city, small_plan, faults=faults, seed=8))
    assert _fixes(a) != _fixes(c)


def test_emissions_come_in_time_order_between_online_and_offline(
    small_city: City, small_plan: Plan
) -> None:
    ems, _ = simulate(_spec(small_city, small_plan))
    assert [e.at_s for e in ems] == sorted(e.at_s for e in ems)
    by_terminal: dict[str, list[Emission]] = defaultdict(list)
    for e in ems:
        by_terminal[e.terminal_id].append(e)
    assert set(by_terminal) == {small_city.truck(r.truck_id).terminal_id for r in small_plan.routes}
    for items in by_terminal.values():
        assert items[0].kind == "online" and items[-1].kind == "offline"


def test_every_fix_is_within_noise_of_a_road(small_city: City, small_plan: Plan) -> None:
    sigma = 15.0
    spec = _spec(small_city, small_plan, terminal=TerminalConfig(noise_m=sigma))
    ems, _ = simulate(spec)
    g = small_city.graph
    lat0, lon0 = small_city.center
    kx, ky = geo.m_per_deg_lon(lat0), geo.M_PER_DEG_LAT

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return (lon - lon0) * kx, (lat - lat0) * ky

    segs = np.array(
        [(*xy(*small_city.node_latlon(u)), *xy(*small_city.node_latlon(v))) for u, v in g.edges]
    )
    a, b = segs[:, :2], segs[:, 2:]
    d = b - a
    worst = 0.0
    fixes = _fixes(ems)
    assert len(fixes) > 500
    for f in fixes:
        p = np.array(xy(f.lat, f.lon))
        t = np.clip(((p - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-9), 0, 1)
        dist = np.hypot(*(a + t[:, None] * d - p).T).min()
        worst = max(worst, float(dist))
    # 2-D Gaussian noise: P(r > 5σ) = e^-12.5 ≈ 4e-6 per fix
    assert worst < 5 * sigma
    assert worst > sigma  # the noise is really there


def test_services_and_unloads_follow_the_plan(small_city: City, small_plan: Plan) -> None:
    ems, day = simulate(_spec(small_city, small_plan))
    truth = day.truth
    lifts = _events(ems, "bin_lift")
    tickets = _events(ems, "weighbridge")
    for route in small_plan.routes:
        truck = small_city.truck(route.truck_id)
        planned_points = [s.ref_id for s in route.stops if s.kind == "point"]
        planned_stations = [s.ref_id for s in route.stops if s.kind == "station"]
        services = [r for r in truth if r["type"] == "service" and r["truck_id"] == truck.id]
        unloads = [r for r in truth if r["type"] == "unload" and r["truck_id"] == truck.id]
        assert [r["point_id"] for r in services] == planned_points
        assert [r["station_id"] for r in unloads] == planned_stations
        for r in services:
            point = small_city.point(r["point_id"])
            arrival = _iso_s(r["arrival_at"])
            wait = max(0.0, point.window_start_s - arrival)
            assert (
                0.8 * point.service_time_s <= r["dwell_s"] - wait <= 1.3 * point.service_time_s + 1
            )
            assert r["dwell_s"] >= point.min_dwell_s
        # each weighbridge ticket carries what was collected since the last unload
        mine = [ev for tid, ev in tickets if tid == truck.terminal_id]
        assert [ev.station_id for ev in mine] == planned_stations
        records = sorted(services + unloads, key=lambda r: _iso_s(r["arrival_at"]))
        load = 0.0
        k = 0
        for r in records:
            if r["type"] == "service":
                load += r["amount_kg"]
            else:
                assert mine[k].weight_kg == pytest.approx(load, abs=0.2)
                assert r["weight_kg"] == pytest.approx(load, abs=0.2)
                load, k = 0.0, k + 1
        end = next(r for r in truth if r["type"] == "route_end" and r["truck_id"] == truck.id)
        assert end["load_kg"] == 0 and not end["broken_down"]
        # bin lifts: one per bin, where the truck has a lift sensor
        for r in services:
            point = small_city.point(r["point_id"])
            n = sum(1 for tid, ev in lifts if tid == truck.terminal_id and ev.point_id == point.id)
            expected = point.bin_count if truck.truck_type in ("compactor", "kitchen") else 0
            assert n == expected == r["bin_lifts"]


def test_dropouts_and_blind_zone_batches(small_city: City, small_plan: Plan) -> None:
    terminal = TerminalConfig(dropout_prob=0.05, signal_losses_per_day=12.0)
    ems, day = simulate(_spec(small_city, small_plan, terminal=terminal))
    losses = [r for r in day.truth if r["type"] == "signal_loss"]
    assert losses
    batches = [e for e in ems if e.kind == "fixes" and len(e.fixes) > 1]
    assert len(batches) == sum(1 for r in losses if r["fixes_buffered"] > 0)
    for e in batches:
        times = [_sim_s(f.recorded_at) for f in e.fixes]
        assert times == sorted(times) and times[-1] <= e.at_s  # sent late, after the last
    released = {(r["truck_id"], round(_iso_s(r["released_at"]), 3)) for r in losses}
    for e in batches:
        truck = next(t.id for t in small_city.trucks if t.terminal_id == e.terminal_id)
        assert (truck, round(e.at_s, 3)) in released
    for t in small_city.trucks:
        seqs = [f.seq or 0 for f in _fixes(ems, t.terminal_id)]
        if not seqs:
            continue
        assert seqs == sorted(seqs)
        end = next(r for r in day.truth if r["type"] == "route_end" and r["truck_id"] == t.id)
        assert end["fixes_generated"] - len(seqs) == end["fixes_dropped"] > 0


def _route(plan: Plan, truck_type: str, city: City) -> tuple[str, list[str], float, float]:
    route = next(r for r in plan.routes if city.truck(r.truck_id).truck_type == truck_type)
    points = [s.ref_id or "" for s in route.stops if s.kind == "point"]
    return route.truck_id, points, route.stops[0].departure_s, route.stops[-1].arrival_s


def test_every_configured_fault_happens_and_is_in_the_ground_truth(
    tmp_path: Path, small_city: City, small_plan: Plan
) -> None:
    t1, pts1, _, _ = _route(small_plan, "compactor", small_city)
    t2, _, start2, _ = _route(small_plan, "kitchen", small_city)
    t3, pts3, start3, end3 = _route(small_plan, "small", small_city)
    drive_by = next(p for p in pts1[2:] if drive_by_possible(small_city, p))
    too_short = next(p for p in pts1[2:] if p != drive_by)
    skip = pts1[1]
    breakdown_at = start3 + (end3 - start3) / 2
    offline = (start2 + 1200.0, start2 + 2400.0)
    faults = (
        Fault("skip", point_id=skip),
        Fault("drive_by", point_id=drive_by),
        Fault("too_short", point_id=too_short),
        Fault("clock_skew", truck_id=t1, skew_s=120.0),
        Fault("offline", truck_id=t2, at_s=offline[0], duration_s=offline[1] - offline[0]),
        Fault("no_unload", truck_id=t2),
        Fault("breakdown", truck_id=t3, at_s=breakdown_at),
    )
    ems, day = simulate(_spec(small_city, small_plan, faults=faults))
    path = day.write_truth(tmp_path / "truth.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["type"] == "run" and len(lines[0]["faults"]) == len(faults)
    found = {
        (r["kind"], r.get("point_id") or r["truck_id"]): r for r in lines if r["type"] == "fault"
    }
    assert set(found) == {
        ("skip", skip),
        ("drive_by", drive_by),
        ("too_short", too_short),
        ("clock_skew", t1),
        ("offline", t2),
        ("no_unload", t2),
        ("breakdown", t3),
    }
    services = {r["point_id"] for r in day.truth if r["type"] == "service"}
    lifted = {ev.point_id for _, ev in _events(ems, "bin_lift")}
    term = {t.id: t.terminal_id for t in small_city.trucks}

    # skip, drive-by, too short: no service, no bin lift
    assert not {skip, drive_by, too_short} & (services | lifted)
    # drive-by: through the point at speed, no fix standing near it
    p = small_city.point(drive_by)
    assert found[("drive_by", drive_by)]["speed_kmh"] > 5
    near = [f for f in _fixes(ems, term[t1]) if geo.haversine_m(f.lat, f.lon, p.lat, p.lon) < 25]
    assert all((f.speed_kmh or 0) > 5 for f in near)
    # too short: a stop shorter than the minimum dwell
    r = found[("too_short", too_short)]
    assert r["dwell_s"] < small_city.point(too_short).min_dwell_s

    # clock skew: every device time is 120 s ahead of the truth
    for e in ems:
        if e.terminal_id == term[t1] and e.kind == "fixes" and len(e.fixes) == 1:
            assert _sim_s(e.fixes[0].recorded_at) == pytest.approx(e.at_s + 120.0, abs=1e-3)

    # offline: nothing recorded in the period; the connection drops, then comes back
    mine = [e for e in ems if e.terminal_id == term[t2]]
    assert not [f for f in _fixes(mine) if offline[0] <= _sim_s(f.recorded_at) < offline[1]]
    assert [(e.kind, e.at_s) for e in mine if e.kind == "drop"] == [("drop", offline[0])]
    assert ("online", offline[1]) in [(e.kind, e.at_s) for e in mine]

    # no unload: one ticket fewer than planned, parks loaded
    route2 = next(r for r in small_plan.routes if r.truck_id == t2)
    planned = sum(1 for s in route2.stops if s.kind == "station")
    assert len([1 for tid, _ in _events(ems, "weighbridge") if tid == term[t2]]) == planned - 1
    end2 = next(r for r in day.truth if r["type"] == "route_end" and r["truck_id"] == t2)
    assert end2["load_kg"] > 0 and end2["load_kg"] == found[("no_unload", t2)]["load_kg"]

    # breakdown: stays put from then on; the rest of its points are listed as unserved
    b = found[("breakdown", t3)]
    # (a breakdown due while the truck stands at a stop happens as it leaves)
    assert breakdown_at <= _iso_s(b["at"]) <= breakdown_at + 900
    after = [f for f in _fixes(ems, term[t3]) if _sim_s(f.recorded_at) > _iso_s(b["at"])]
    assert len(after) > 10
    assert max(geo.haversine_m(f.lat, f.lon, b["lat"], b["lon"]) for f in after) < 75
    served3 = [r["point_id"] for r in day.truth if r["type"] == "service" and r["truck_id"] == t3]
    assert served3 + b["unserved_point_ids"] == pts3
    assert b["unserved_point_ids"]


def test_offline_truck_still_works_and_its_services_are_in_the_truth(
    small_city: City, small_plan: Plan
) -> None:
    truck_id, points, start, end = _route(small_plan, "compactor", small_city)
    fault = Fault("offline", truck_id=truck_id, at_s=start, duration_s=end - start)
    ems, day = simulate(_spec(small_city, small_plan, faults=(fault,)))
    services = [
        r["point_id"] for r in day.truth if r["type"] == "service" and r["truck_id"] == truck_id
    ]
    assert services == points
    terminal = small_city.truck(truck_id).terminal_id
    assert not [f for f in _fixes(ems, terminal) if start <= _sim_s(f.recorded_at) < end]


def test_paced_run_keeps_to_the_schedule(small_city: City, small_plan: Plan) -> None:
    day = SimDay(_spec(small_city, small_plan))
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    sink = ListSink()
    stats = run(
        day.emissions(),
        sink,
        speed=60.0,
        start_s=5 * 3600.0,
        until_s=6 * 3600.0,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert stats.max_lag_s == 0.0
    assert now[0] == pytest.approx((sink.items[-1].at_s - 5 * 3600.0) / 60.0)
    assert all(e.at_s <= 6 * 3600 for e in sink.items)
    with pytest.raises(RuntimeError, match="played once"):
        day.emissions()


def test_terminal_config_is_validated() -> None:
    with pytest.raises(ValueError, match="fix_interval_s"):
        TerminalConfig(fix_interval_s=0)
    with pytest.raises(ValueError, match="dropout_prob"):
        TerminalConfig(dropout_prob=1.5)
    assert dataclasses.replace(TerminalConfig(), noise_m=20).noise_m == 20
    assert timedelta(0) == timedelta(0)


def test_idle_beside_stands_46_to_59_m_from_the_point_however_short_the_last_edge(
    small_city: City, small_plan: Plan
) -> None:
    """Every point of every route idled beside: the truck stands 46-59 m from each (it
    stood inside the fence when the road's last edge was shorter than that)."""
    points = [s.ref_id for r in small_plan.routes for s in r.stops if s.kind == "point"]
    faults = tuple(Fault("idle_beside", point_id=p) for p in points if p)
    perfect = TerminalConfig(noise_m=0.0, dropout_prob=0.0, signal_losses_per_day=0.0)
    ems, day = simulate(_spec(small_city, small_plan, faults=faults, terminal=perfect))
    records = [r for r in day.truth if r["type"] == "fault" and r["kind"] == "idle_beside"]
    assert len(records) == len(faults)
    term = {t.id: t.terminal_id for t in small_city.trucks}
    for r in records:
        p = small_city.point(r["point_id"])
        standing = [
            f
            for f in _fixes(ems, term[r["truck_id"]])
            if _iso_s(r["at"]) <= _sim_s(f.recorded_at) <= _iso_s(r["departure_at"])
        ]
        assert len(standing) >= 25, r
        distances = {round(geo.haversine_m(f.lat, f.lon, p.lat, p.lon), 1) for f in standing}
        assert distances == {r["distance_m"]}, r
        assert 46 <= r["distance_m"] <= 59, r


def test_a_receiver_out_of_reach_of_gps_faults_shows_where_the_truck_was(
    small_city: City, small_plan: Plan
) -> None:
    """The drift and jump faults drawn but not applied (``gps_faults=False``, the bench's
    ground truth of where trucks drove): the same day, fix for fix, except that the
    drifted and thrown fixes lie where the truck was — at the drifted point while it
    served it — and an idle beside a later point, drawn from the same stream, is the same."""
    truck_id, points, _, _ = _route(small_plan, "compactor", small_city)
    faults = (
        Fault("drift", point_id=points[1]),
        Fault("jump", point_id=points[2]),
        Fault("idle_beside", point_id=points[3]),
    )
    seen = TerminalConfig(noise_m=0.0, dropout_prob=0.0, signal_losses_per_day=0.0)
    truth = dataclasses.replace(seen, gps_faults=False)
    ems, day = simulate(_spec(small_city, small_plan, faults=faults, terminal=seen))
    true_ems, _ = simulate(_spec(small_city, small_plan, faults=faults, terminal=truth))
    term = next(t.terminal_id for t in small_city.trucks if t.id == truck_id)
    fixes, true_fixes = _fixes(ems, term), _fixes(true_ems, term)
    assert [f.recorded_at for f in fixes] == [f.recorded_at for f in true_fixes]
    off = [
        geo.haversine_m(f.lat, f.lon, g.lat, g.lon) for f, g in zip(fixes, true_fixes, strict=True)
    ]
    drift = next(r for r in day.truth if r["type"] == "fault" and r["kind"] == "drift")
    drifted = [
        (f, g)
        for f, g in zip(fixes, true_fixes, strict=True)
        if _iso_s(drift["at"]) <= _sim_s(f.recorded_at) < _iso_s(drift["end_at"])
    ]
    assert len(drifted) >= 10
    p = small_city.point(points[1])
    for f, g in drifted:
        assert geo.haversine_m(f.lat, f.lon, p.lat, p.lon) == pytest.approx(
            drift["offset_m"], abs=0.5
        )
        assert geo.haversine_m(g.lat, g.lon, p.lat, p.lon) < 0.5
    assert max(off) >= 150  # the multipath jump
    assert sum(1 for m in off if m > 0.5) == len(drifted) + 1  # nothing else moved
