"""Ledger verdicts and alert rules as pure functions of hand-made days and `now`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from fleet.alerts import ledger, rules
from fleet.alerts.ledger import DuePoint, PlannedStop, TruckDay
from fleet.alerts.visits import DeviceEvent, Fix, Site, SiteIndex, Visit, detect

from .tracks import DAY, TZ, Track, at, site

# A street running east: depot, P1, P2, P3, the station.
D1 = site("depot", "D1", -500, 0, radius_m=60, min_dwell_s=0)
P1 = site("point", "P1", 0, 0, min_dwell_s=120)
P2 = site("point", "P2", 400, 0, min_dwell_s=120)
P3 = site("point", "P3", 800, 0, min_dwell_s=120)
S1 = site("station", "S1", 1600, 0, radius_m=50, min_dwell_s=200)
SITES = SiteIndex([D1, P1, P2, P3, S1])
STATION_DWELL = {"S1": 200.0}
PLAN = [
    ("start", "D1"),
    ("point", "P1"),
    ("point", "P2"),
    ("point", "P3"),
    ("station", "S1"),
    ("end", "D1"),
]
P = rules.RuleParams()
LP = ledger.LedgerParams()


def due(
    s: Site,
    *,
    window: tuple[str, str] = ("06:00", "10:00"),
    truck: str | None = "T1",
    seq: int | None = None,
) -> DuePoint:
    return DuePoint(
        point_id=s.site_id, district_id="d1", service_date=DAY, lat=s.lat, lon=s.lon,
        radius_m=s.radius_m, min_dwell_s=s.min_dwell_s, window_start_at=at(window[0]),
        window_end_at=at(window[1]), deadline_at=at("20:00"), planned_truck_id=truck,
        planned_seq=seq if seq is not None else next(i for i, (_, x) in enumerate(PLAN) if x == s.site_id),
    )  # fmt: skip


def truck_day(
    truck_id: str,
    fixes: Sequence[Fix],
    events: Sequence[DeviceEvent] = (),
    *,
    planned: bool = True,
    until: datetime | None = None,
    sites: SiteIndex = SITES,
    plan: Sequence[tuple[str, str]] = PLAN,
) -> TruckDay:
    """The day as the worker would see it at `until` (fixes after it have not arrived)."""
    seen = [f for f in fixes if until is None or f.at <= until]
    found = detect(truck_id, seen, [e for e in events if until is None or e.at <= until], sites)
    return TruckDay(
        truck_id=truck_id, district_id="d1", service_date=DAY, depot_id="D1",
        shift_start_at=at("05:00"), shift_end_at=at("17:00"), break_start_at=at("11:00"),
        break_end_at=at("13:30"), break_duration_s=1800,
        first_fix_at=seen[0].at if seen else None, first_lat=seen[0].lat if seen else None,
        first_lon=seen[0].lon if seen else None, last_fix_at=seen[-1].at if seen else None,
        last_lat=seen[-1].lat if seen else None, last_lon=seen[-1].lon if seen else None,
        gaps=found.gaps, visits=found.visits,
        planned=tuple(PlannedStop(i, k, x, at("06:00")) for i, (k, x) in enumerate(plan)) if planned else (),
    )  # fmt: skip


def evaluate(
    days: Sequence[TruckDay], points: Sequence[DuePoint], now: datetime
) -> tuple[dict[str, ledger.Verdict], list[rules.AlertCandidate]]:
    at_point: dict[str, list[Visit]] = {}
    for d in days:
        for v in d.visits:
            if v.site_kind == "point" and v.site_id:
                at_point.setdefault(v.site_id, []).append(v)
    trucks = {d.truck_id: d for d in days}
    verdicts = ledger.compute(points, at_point, trucks, STATION_DWELL, now, LP)
    return {v.point_id: v for v in verdicts}, rules.evaluate(verdicts, days, STATION_DWELL, now, P)


def kinds(alerts: Sequence[rules.AlertCandidate]) -> list[tuple[str, str | None]]:
    return sorted((a.kind, a.point_id or a.truck_id) for a in alerts)


def full_day(
    skip: str | None = None, *, short: str | None = None, pass_by: str | None = None
) -> Track:
    """Depot → P1 → P2 → P3 → station → depot, with one point skipped, cut short or driven past."""
    t = Track(at("06:00"), x=-500, noise_m=10, seed=11).stay(120)
    for point_id, x in (("P1", 0.0), ("P2", 400.0), ("P3", 800.0)):
        if point_id == skip:
            t.drive(t.x, 300, 30).drive(x + 400, 300, 30).drive(x + 400, 0, 30).stay(300)
            continue  # round the block to the next point: never near this one
        if t.x > x:
            continue  # served on the detour
        t.drive(x, 0, 30)
        if point_id == pass_by:
            continue
        t.stay(40 if point_id == short else 300)
    t.drive(1600, 0, 30).stay(900).drive(-500, 0, 40).stay(600)
    return t


def test_clean_day_is_all_cleared_and_delivered_with_no_alerts() -> None:
    track = full_day()
    day = truck_day("T1", track.fixes)
    verdicts, alerts = evaluate([day], [due(P1), due(P2), due(P3)], at("21:00"))
    assert {v.status for v in verdicts.values()} == {"cleared"}
    assert {v.delivery for v in verdicts.values()} == {"delivered"}
    assert alerts == []


def test_skipped_point_is_missed_after_window_plus_grace_once() -> None:
    """missed: pending up to window end + 15 min, then missed, raised with that moment as its condition time."""
    track = full_day(skip="P2")
    points = [due(P1), due(P2), due(P3)]
    before = at("10:14")
    verdicts, alerts = evaluate([truck_day("T1", track.fixes, until=before)], points, before)
    assert verdicts["P2"].status == "pending" and alerts == []
    after = at("10:15")
    verdicts, alerts = evaluate([truck_day("T1", track.fixes, until=after)], points, after)
    assert verdicts["P2"].status == "missed"
    (missed,) = [a for a in alerts if a.kind == "missed"]
    assert missed.point_id == "P2" and missed.condition_at == at("10:15")
    later = evaluate([truck_day("T1", track.fixes, until=at("11:00"))], points, at("11:00"))[1]
    assert [a.key for a in later if a.kind == "missed"] == [missed.key], "same crossing, same key"


def test_drive_by_at_30_kmh_alerts_within_a_minute_of_the_pass() -> None:
    track = full_day(pass_by="P2")
    passed = next(f.at for f in track.fixes if f.lon >= P2.lon)
    points = [due(P1), due(P2), due(P3)]
    alerts: list[rules.AlertCandidate] = []
    now = passed
    while not alerts and now < passed + timedelta(minutes=5):
        now += timedelta(seconds=10)
        alerts = [
            a
            for a in evaluate([truck_day("T1", track.fixes, until=now)], points, now)[1]
            if a.kind == "drive_by"
        ]
    (a,) = alerts
    assert a.point_id == "P2" and a.truck_id == "T1"
    assert abs((a.condition_at - passed).total_seconds()) <= 10
    assert (now - a.condition_at).total_seconds() <= 60


def test_passing_a_point_long_before_its_turn_is_not_a_drive_by() -> None:
    """The truck drives through P3 on its way to P1 (its route serves P3 last): no alert."""
    t = Track(at("06:00"), x=1200, noise_m=10, seed=5).stay(60)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30).stay(300).drive(800, 0, 30).stay(300)
    t.drive(1600, 0, 30).stay(900)
    verdicts, alerts = evaluate(
        [truck_day("T1", t.fixes)], [due(P1), due(P2), due(P3)], at("09:00")
    )
    assert [a for a in alerts if a.kind == "drive_by"] == []
    assert verdicts["P3"].status == "cleared"


def test_stop_just_under_min_dwell_is_partial_and_a_drive_by() -> None:
    track = full_day(short="P2")
    verdicts, alerts = evaluate(
        [truck_day("T1", track.fixes)], [due(P1), due(P2), due(P3)], at("10:30")
    )
    assert verdicts["P2"].status == "partial" and verdicts["P2"].reason == "too_short"
    (incident,) = alerts
    assert (incident.kind, incident.point_id) == ("missed", "P2")
    assert [s["kind"] for s in incident.details["stages"]] == ["drive_by", "missed"]


def test_a_missed_point_is_one_incident_escalating_in_place() -> None:
    """Drive-by, then missed, then 日清 deadline: one alert key throughout, kind and severity
    following the latest stage, and the evidence listing every stage (not three alerts)."""
    track = full_day(pass_by="P2")
    points = [due(P1), due(P2), due(P3)]
    seen = []
    for now in (at("06:30"), at("10:30"), at("20:30")):
        alerts = evaluate([truck_day("T1", track.fixes, until=now)], points, now)[1]
        (incident,) = [a for a in alerts if a.point_id == "P2"]
        seen.append(
            (incident.key, incident.kind, incident.severity, len(incident.details["stages"]))
        )
    key = seen[0][0]
    assert seen == [
        (key, "drive_by", "normal", 1),
        (key, "missed", "normal", 2),
        (key, "not_cleared_by_deadline", "high", 3),
    ]
    assert "驶过未停车" in incident.message and "日清未完成" in incident.message


def test_alert_texts_name_trucks_by_plate_and_by_id_without_one() -> None:
    """Every stage of an incident names the planned truck by its plate, never its id; a truck
    without a plate (a silent one here) is named by its id."""
    track = full_day(pass_by="P2")
    plated = dataclasses.replace(truck_day("T1", track.fixes), plate="皖D12345")
    silent = truck_day("T2", [])
    alerts = evaluate([plated, silent], [due(P1), due(P2), due(P3)], at("20:30"))[1]
    (incident,) = [a for a in alerts if a.point_id == "P2"]
    assert [s["kind"] for s in incident.details["stages"]] == [
        "drive_by",
        "missed",
        "not_cleared_by_deadline",
    ]
    for stage in incident.details["stages"]:
        assert "皖D12345" in stage["message"] and "T1" not in stage["message"], stage
    (offline,) = [a for a in alerts if a.kind == "offline" and a.truck_id == "T2"]
    assert "车辆 T2 " in offline.message


def test_silent_terminal_makes_the_point_unverifiable_not_missed() -> None:
    """No missed alert while a visit could hide in the planned truck's silence; the late batch then clears it."""
    track = full_day()
    p2 = [f for f in track.fixes if abs(f.lon - P2.lon) * 94_000 < 60]
    silence_start, silence_end = p2[0].at - timedelta(seconds=60), p2[-1].at + timedelta(seconds=60)
    live = [f for f in track.fixes if not silence_start <= f.at < silence_end]
    points = [due(P1), due(P2, window=("06:00", "06:30")), due(P3)]
    now = max(at("06:45"), silence_end - timedelta(seconds=30))
    live_day = truck_day("T1", [f for f in live if f.at <= now], until=now)
    verdicts, alerts = evaluate([live_day], points, now)
    assert verdicts["P2"].status in ("unverifiable", "pending")
    assert [a for a in alerts if a.point_id == "P2"] == []
    batch_day = truck_day("T1", track.fixes, until=now + timedelta(minutes=2))
    verdicts, alerts = evaluate([batch_day], points, now + timedelta(minutes=2))
    assert verdicts["P2"].status == "cleared"
    assert [a for a in alerts if a.point_id == "P2"] == []


def test_silence_after_the_truck_moved_past_a_point_hides_no_visit_there() -> None:
    """The truck skipped P2, served P3, then went silent at the station: P2 is missed, not unverifiable."""
    track = full_day(skip="P2")
    at_station = [f for f in track.fixes if abs(f.lon - S1.lon) * 94_000 < 40]
    start, end = at_station[2].at, at_station[-3].at
    fixes = [f for f in track.fixes if not start < f.at < end]
    points = [due(P1), due(P2), due(P3)]
    verdicts, alerts = evaluate([truck_day("T1", fixes)], points, at("10:15"))
    assert verdicts["P2"].status == "missed"
    assert ("missed", "P2") in kinds(alerts)


def test_late_batch_from_another_truck_turns_missed_into_cleared() -> None:
    """T1 never went to P2 (missed raised); T2's blind-zone batch arriving later shows it was served."""
    t1 = full_day(skip="P2")
    t2 = (
        Track(at("09:40"), x=350, noise_m=10, seed=9)
        .drive(400, 0, 20)
        .stay(300)
        .drive(700, 300, 30)
    )
    points = [due(P1), due(P2), due(P3)]
    now = at("10:20")
    blind = truck_day("T2", [], planned=False)
    verdicts, alerts = evaluate([truck_day("T1", t1.fixes, until=now), blind], points, now)
    assert verdicts["P2"].status == "missed"
    assert ("missed", "P2") in kinds(alerts)
    late = truck_day("T2", t2.fixes, planned=False)
    verdicts, _ = evaluate([truck_day("T1", t1.fixes, until=now), late], points, now)
    assert verdicts["P2"].status == "cleared" and verdicts["P2"].cleared_by_truck_id == "T2"


def test_not_unloaded_when_truck_parks_with_its_load() -> None:
    t = Track(at("06:00"), x=-500, noise_m=10, seed=3).stay(120)
    for x in (0, 400, 800):
        t.drive(x, 0, 30).stay(300)
    t.drive(-500, 0, 40)
    home = t.t
    t.stay(600)
    verdicts, alerts = evaluate(
        [truck_day("T1", t.fixes, until=home + timedelta(seconds=30))],
        [due(P1), due(P2), due(P3)],
        home + timedelta(seconds=30),
    )
    (a,) = [a for a in alerts if a.kind == "not_unloaded"]
    assert a.truck_id == "T1" and abs((a.condition_at - home).total_seconds()) <= 10
    assert {v.delivery for v in verdicts.values()} == {"not_delivered"}


def test_offline_terminal_during_shift() -> None:
    t = Track(at("06:00"), x=-500).stay(60).drive(0, 0, 30).stay(300)
    silent_from = t.fixes[-1].at
    t.silence(900).drive(400, 0, 30).stay(300)
    _, alerts = evaluate([truck_day("T1", t.fixes)], [], t.t)
    offline = [a for a in alerts if a.kind == "offline"]
    assert [a.condition_at for a in offline] == [silent_from + timedelta(seconds=600)]
    short = Track(at("06:00"), x=-500).stay(60).drive(0, 0, 30).silence(300).drive(400, 0, 30)
    assert [
        a for a in evaluate([truck_day("T1", short.fixes)], [], short.t)[1] if a.kind == "offline"
    ] == []


def test_alert_texts_give_the_district_time_even_when_the_plan_is_read_in_utc() -> None:
    """An 11:21 local silence says "自 11:21 起", not 03:21, though the planned stops (the
    start of the day) come from the database in UTC; the same for a drive-by's time."""
    t = Track(at("11:00"), x=-500).stay(60).drive(0, 0, 30).stay(300).drive(400, 0, 30)
    t.drive(800, 0, 30).stay(1800)
    cut = at("11:21")
    fixes = [f for f in t.fixes if f.at < cut] + [f for f in t.fixes if f.at >= at("11:45")]
    day = truck_day("T1", fixes)
    utc = tuple(
        dataclasses.replace(s, arrival_at=s.arrival_at.astimezone(UTC)) for s in day.planned
    )
    day = dataclasses.replace(day, planned=utc)
    _, alerts = evaluate([day], [due(P1), due(P2), due(P3)], at("11:40"))
    offline = max((a for a in alerts if a.kind == "offline"), key=lambda a: a.condition_at)
    silent_from = max(f.at for f in fixes if f.at < cut).astimezone(TZ)
    assert f"自 {silent_from:%H:%M} 起" in offline.message and silent_from.hour == 11


def test_offline_key_and_details_do_not_depend_on_the_zone_the_track_was_read_in() -> None:
    """The same silence read in UTC or in local time: the same incident key; its
    `silent_since` in the district's time."""
    t = Track(at("06:00"), x=-500).stay(60).drive(0, 0, 30).stay(300)
    t.silence(900).drive(400, 0, 30).stay(300)
    utc = [dataclasses.replace(f, at=f.at.astimezone(UTC)) for f in t.fixes]
    got = []
    for fixes in (t.fixes, utc):
        (a,) = [a for a in evaluate([truck_day("T1", fixes)], [], t.t)[1] if a.kind == "offline"]
        got.append((a.key, a.details["silent_since"]))
    assert got[0] == got[1] and got[0][1].endswith("+08:00"), got


def test_stationary_off_route_but_not_the_lunch_break() -> None:
    t = Track(at("08:00"), x=-200, y=300).stay(25 * 60)
    (a,) = [a for a in evaluate([truck_day("T1", t.fixes)], [], t.t)[1] if a.kind == "stationary"]
    assert a.condition_at == t.fixes[0].at + timedelta(seconds=1200)
    lunch = Track(at("11:30"), x=-200, y=300).stay(40 * 60)
    assert [
        a
        for a in evaluate([truck_day("T1", lunch.fixes)], [], lunch.t)[1]
        if a.kind == "stationary"
    ] == []


def test_a_wait_the_plan_contains_is_not_stationary() -> None:
    """Planned to reach P1 at 11:00, the truck waits off-site from 06:26: no 疑似故障 until
    the plan's wait plus the threshold are over; a truck behind its plan gets the threshold."""
    t = Track(at("06:20"), x=-500).stay(60).drive(-200, 300, 30).stay(4.5 * 3600)
    day = truck_day("T1", t.fixes)
    timed = tuple(
        dataclasses.replace(s, arrival_at=at("06:00" if s.kind == "start" else "11:00"))
        for s in day.planned
    )
    waiting = dataclasses.replace(day, planned=timed)
    stays = [v for v in waiting.visits if v.kind == "stay" and v.site_id is None]
    assert stays and stays[0].arrived_at < at("06:30")
    _, alerts = evaluate([waiting], [], at("10:59"))
    assert [a for a in alerts if a.kind == "stationary"] == []
    _, alerts = evaluate([waiting], [], at("11:21"))
    (a,) = [a for a in alerts if a.kind == "stationary"]
    assert a.condition_at == at("11:20")
    _, behind = evaluate([day], [], at("07:00"))
    assert [a.kind for a in behind if a.kind == "stationary"] == ["stationary"]


def test_a_planned_wait_after_idling_beside_the_point_is_not_stationary() -> None:
    """The truck idles 50 m short of P1 (its next stop) and leaves it unserved, then
    waits off-site as its plan has it wait after P1 (P2 is planned for 11:00): it stood
    at P1's stop of its route, so the plan's wait counts from there — no 疑似故障 until
    that wait and the threshold are over."""
    t = Track(at("06:00"), x=-500).stay(60).drive(-50, 0, 30).stay(6 * 60)
    t.drive(-50, 300, 30).drive(-200, 300, 30).stay(4 * 3600)
    day = truck_day("T1", t.fixes)
    times = {"start": "06:00", "P1": "06:10", "P2": "11:00", "P3": "11:10"}
    where = {p.site_id: p for p in (P1, P2, P3)}
    timed = tuple(
        dataclasses.replace(
            s,
            arrival_at=at(times.get(s.site_id or "", times.get(s.kind, "12:00"))),
            lat=where[s.site_id].lat if s.site_id in where else None,
            lon=where[s.site_id].lon if s.site_id in where else None,
            radius_m=30.0,
        )
        for s in day.planned
    )
    waiting = dataclasses.replace(day, planned=timed)
    beside, wait = [v for v in waiting.visits if v.kind == "stay" and v.site_id is None]
    assert beside.dwell_s > 300 and wait.arrived_at < at("06:30")
    assert beside.lat is not None and wait.lat is not None
    _, alerts = evaluate([waiting], [due(P1)], at("10:59"))
    assert [a for a in alerts if a.kind == "stationary"] == []
    _, alerts = evaluate([waiting], [due(P1)], at("11:21"))
    (a,) = [a for a in alerts if a.kind == "stationary"]
    assert a.condition_at == at("11:20")


def test_a_planned_wait_after_driving_past_the_point_is_not_stationary() -> None:
    """The truck drives past P1 (its next stop) and parks off-site far from any point,
    waiting as its plan has it wait after P1 (P2 is planned for 11:00): it has left P1
    behind, so the plan's wait counts from there — no 疑似故障 until that wait and the
    threshold are over."""
    t = Track(at("06:00"), x=-500).stay(60).drive(200, 0, 30).drive(200, 300, 30)
    t.stay(4 * 3600)
    day = truck_day("T1", t.fixes)
    assert [v.site_id for v in day.visits if v.kind == "pass"] == ["P1"]
    times = {"start": "06:00", "P1": "06:10", "P2": "11:00", "P3": "11:10"}
    timed = tuple(
        dataclasses.replace(
            s, arrival_at=at(times.get(s.site_id or "", times.get(s.kind, "12:00")))
        )
        for s in day.planned
    )
    waiting = dataclasses.replace(day, planned=timed)
    _, alerts = evaluate([waiting], [due(P1)], at("10:59"))
    assert [a for a in alerts if a.kind == "stationary"] == []
    _, alerts = evaluate([waiting], [due(P1)], at("11:21"))
    (a,) = [a for a in alerts if a.kind == "stationary"]
    assert a.condition_at == at("11:20")


def test_deadline_violation_is_high_severity() -> None:
    track = full_day(skip="P3")
    _, alerts = evaluate(
        [truck_day("T1", track.fixes)],
        [due(P1), due(P2), due(P3, window=("06:00", "23:59"))],
        at("20:00"),
    )
    (a,) = [a for a in alerts if a.kind == "not_cleared_by_deadline"]
    assert a.point_id == "P3" and a.severity == "high"
    assert not [a for a in alerts if a.kind == "missed"], (
        "missed waits for 20:15 (deadline + grace)"
    )


def test_drive_by_after_a_skipped_point_is_caught_at_the_next_stop() -> None:
    """P1 skipped (round the block), then P2 driven past: raised once the truck stops at P3."""
    t = Track(at("06:00"), x=-500, noise_m=10, seed=17).stay(120)
    t.drive(-500, 300, 30).drive(300, 300, 30).drive(300, 0, 30)  # round P1
    t.drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900)  # through P2, serve P3
    points = [due(P1), due(P2), due(P3)]
    _, alerts = evaluate([truck_day("T1", t.fixes)], points, at("06:40"))
    assert ("drive_by", "P2") in kinds(alerts)
    assert ("drive_by", "P1") not in kinds(alerts)


def test_drive_by_is_confirmed_by_a_stop_at_the_next_point_just_past_it() -> None:
    """P2 driven through, then a stop at P4 80 m on (a fix dropped in between, so the stop's
    estimated arrival comes before the interpolated pass): raised while the truck is at P4."""
    p4 = site("point", "P4", 480, 0, min_dwell_s=120)
    sites = SiteIndex([D1, P1, P2, p4, P3, S1])
    plan = [("start", "D1"), ("point", "P1"), ("point", "P2"), ("point", "P4"), ("point", "P3"),
            ("station", "S1"), ("end", "D1")]  # fmt: skip
    t = Track(at("06:00"), x=-500).stay(120).drive(0, 0, 30).stay(300).drive(300, 0, 30)
    t.interval_s = 20.0
    t.drive(480, 0, 32.4)  # one fix at x = 300, the next (stopped) at P4 20 s later
    t.interval_s = 10.0
    t.stay(300).drive(800, 0, 30).stay(300)
    arrived = next(f.at for f in t.fixes if f.lon >= p4.lon)
    points = [due(P1), due(P2), due(P3)]
    for now in (arrived + timedelta(seconds=s) for s in range(0, 300, 10)):
        day = truck_day("T1", t.fixes, until=now, sites=sites, plan=plan)
        if ("drive_by", "P2") in kinds(evaluate([day], points, now)[1]):
            break
    assert ("drive_by", "P2") in kinds(evaluate([day], points, now)[1])
    assert (now - arrived).total_seconds() <= 40, "raised while the truck stands at P4"


def test_drive_by_after_driving_past_the_point_before_it_is_raised_by_distance() -> None:
    """P1 and P2 both driven through, the truck then heads 400 m away: P2 is raised once it is
    250 m off, without waiting for the truck's next stop."""
    t = Track(at("06:00"), x=-500, noise_m=10, seed=23).stay(120)
    t.drive(600, 0, 30).drive(600, 600, 30).stay(60).drive(800, 0, 30).stay(300)
    passed = next(f.at for f in t.fixes if f.lon >= P2.lon)
    points = [due(P1), due(P2), due(P3)]
    for now in (passed + timedelta(seconds=s) for s in range(0, 300, 10)):
        if ("drive_by", "P2") in kinds(
            evaluate([truck_day("T1", t.fixes, until=now)], points, now)[1]
        ):
            break
    alerts = evaluate([truck_day("T1", t.fixes, until=now)], points, now)[1]
    assert ("drive_by", "P1") in kinds(alerts) and ("drive_by", "P2") in kinds(alerts)
    assert (now - passed).total_seconds() <= 60, "raised 250 m on, before the stop at P3"


def test_lunch_break_at_a_depot_is_not_parking_loaded() -> None:
    """A truck that takes its break at a depot with P3 still ahead is not 'not unloaded';
    one that stays there past the break's length (30 min + 10) is, and only then."""
    t = Track(at("10:50"), x=-500, noise_m=10, seed=3).stay(60)
    for x in (0, 400):
        t.drive(x, 0, 30).stay(300)
    t.drive(-500, 0, 40)
    home = t.t
    lunch = Track(t.t, x=-500, noise_m=10, seed=4).stay(1800)
    lunch.drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(400)
    points = [due(P1, window=("06:00", "16:00")), due(P2, window=("06:00", "16:00")),
              due(P3, window=("06:00", "16:00"))]  # fmt: skip
    fixes = [*t.fixes, *lunch.fixes]
    for now in (home + timedelta(minutes=5), home + timedelta(minutes=29), lunch.t):
        _, alerts = evaluate([truck_day("T1", fixes, until=now)], points, now)
        assert [a for a in alerts if a.kind == "not_unloaded"] == [], now
    parked = Track(t.t, x=-500, noise_m=10, seed=4).stay(3 * 3600)
    fixes = [*t.fixes, *parked.fixes]
    early = home + timedelta(minutes=39)
    assert [
        a
        for a in evaluate([truck_day("T1", fixes, until=early)], points, early)[1]
        if a.kind == "not_unloaded"
    ] == []
    late = home + timedelta(minutes=41)
    (a,) = [
        a
        for a in evaluate([truck_day("T1", fixes, until=late)], points, late)[1]
        if a.kind == "not_unloaded"
    ]
    assert abs((a.condition_at - home - timedelta(minutes=40)).total_seconds()) <= 10
    replayed = [a for a in evaluate([truck_day("T1", fixes)], points, parked.t)[1]]
    assert [a.condition_at for a in replayed if a.kind == "not_unloaded"] == [a.condition_at]
