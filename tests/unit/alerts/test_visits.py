"""Visit detection on hand-made tracks."""

from __future__ import annotations

from datetime import timedelta

from fleet.alerts.visits import DeviceEvent, Fix, SiteIndex, Visit, detect

from .tracks import Track, at, fence_flips, latlon, site

P1 = site("point", "P1", 0, 0, radius_m=30, min_dwell_s=120)
P2 = site("point", "P2", 400, 0, radius_m=30, min_dwell_s=120)
S1 = site("station", "S1", 800, 0, radius_m=50, min_dwell_s=200)
D1 = site("depot", "D1", -500, 0, radius_m=60, min_dwell_s=0)
SITES = SiteIndex([P1, P2, S1, D1])


def stays(visits: tuple[Visit, ...], site_id: str | None = None) -> list[Visit]:
    return [v for v in visits if v.kind == "stay" and (site_id is None or v.site_id == site_id)]


def test_jitter_at_fence_edge_is_one_visit() -> None:
    """A truck parked 27 m from the centre of a 30 m fence with 12 m noise: one stay, not a flicker."""
    track = Track(at("08:00"), x=-300, noise_m=12, seed=7)
    track.drive(27, 0, 30).stay(300).drive(400, 0, 30)
    flips = fence_flips(track.fixes, P1)
    assert flips >= 4, "the track must actually cross the fence edge repeatedly"
    found = detect("T1", track.fixes, [], SITES)
    at_p1 = stays(found.visits, "P1")
    assert len(at_p1) == 1
    assert 280 <= at_p1[0].dwell_s <= 320
    assert not [v for v in found.visits if v.kind == "pass" and v.site_id == "P1"]


def test_drive_by_at_30_kmh_is_a_pass_not_a_visit() -> None:
    """Driving through the point at 30 km/h leaves a pass and no stay, even with no fix inside the fence."""
    track = Track(at("08:00"), x=-300, noise_m=0, interval_s=10)
    track.drive(300, 0, 30)
    found = detect("T1", track.fixes, [], SITES)
    assert stays(found.visits) == []
    passes = [v for v in found.visits if v.kind == "pass"]
    assert [p.site_id for p in passes] == ["P1"]
    assert passes[0].speed_kmh == 30
    assert passes[0].distance_m is not None and passes[0].distance_m < 5


def test_pass_is_reported_only_once_the_truck_is_clearly_gone() -> None:
    """A track that ends just past the point does not yet claim a drive-by."""
    track = Track(at("08:00"), x=-300)
    track.drive(35, 0, 30)
    found = detect("T1", track.fixes, [], SITES)
    assert [v for v in found.visits if v.kind == "pass"] == []


def test_approach_and_departure_of_a_stay_are_not_passes() -> None:
    track = Track(at("08:00"), x=-300, noise_m=8, seed=3)
    track.drive(0, 0, 30).stay(200).drive(300, 0, 30)
    found = detect("T1", track.fixes, [], SITES)
    assert len(stays(found.visits, "P1")) == 1
    assert [v for v in found.visits if v.kind == "pass"] == []


def test_dwell_just_under_and_just_over_minimum() -> None:
    """Stops of 105 s and 135 s at a 120 s point are measured to within a fix interval."""
    for stop_s, expect_clearing in ((105, False), (135, True)):
        track = Track(at("08:00", 3), x=-300, noise_m=10, seed=stop_s)
        track.drive(0, 0, 30).stay(stop_s).drive(300, 0, 30)
        (v,) = stays(detect("T1", track.fixes, [], SITES).visits, "P1")
        assert abs(v.dwell_s - stop_s) <= 10, v.dwell_s
        assert (v.dwell_s >= P1.min_dwell_s) == expect_clearing


def test_off_route_stop_has_no_site() -> None:
    track = Track(at("09:00"), x=200, y=200).stay(600)
    (v,) = detect("T1", track.fixes, [], SITES).visits
    assert v.kind == "stay" and v.site_id is None and v.is_open


def test_single_speed_spike_does_not_split_a_stay() -> None:
    track = Track(at("08:00"), x=0).stay(100)
    spike = track.fixes[5]
    track.fixes[5] = Fix(spike.at, spike.lat, spike.lon, 12.0, spike.accuracy_m)
    assert len(stays(detect("T1", track.fixes, [], SITES).visits)) == 1


def test_dropped_fixes_inside_a_stay_keep_one_visit() -> None:
    track = Track(at("08:00"), x=-300).drive(0, 0, 30).stay(300).drive(300, 0, 30)
    holes = [f for i, f in enumerate(track.fixes) if not (40 <= i < 45)]
    (v,) = stays(detect("T1", holes, [], SITES).visits, "P1")
    assert v.dwell_s > 250


def test_terminal_without_speed_still_finds_stays() -> None:
    track = (
        Track(at("08:00"), x=-300, noise_m=5, seed=2).drive(0, 0, 30).stay(300).drive(300, 0, 30)
    )
    bare = [Fix(f.at, f.lat, f.lon, None, None) for f in track.fixes]
    found = stays(detect("T1", bare, [], SITES).visits, "P1")
    assert len(found) == 1 and found[0].dwell_s > 250


def test_bin_lift_in_stay_is_evidence_and_in_gap_is_an_event_visit() -> None:
    """A lift during a stay corroborates it; a lift while the GPS was silent is a visit of its own."""
    track = Track(at("08:00"), x=-300).drive(0, 0, 30).stay(200)
    during_stay = track.t - timedelta(seconds=100)
    track.drive(400, 0, 30)
    silent_from = track.t
    track.silence(600).drive(800, 0, 30)
    lifts = [
        DeviceEvent(during_stay, "bin_lift", point_id="P1"),
        DeviceEvent(silent_from + timedelta(seconds=300), "bin_lift", point_id="P2"),
    ]
    found = detect("T1", track.fixes, lifts, SITES)
    (p1,) = stays(found.visits, "P1")
    assert p1.has_event("bin_lift")
    (ev,) = [v for v in found.visits if v.kind == "event"]
    assert ev.site_id == "P2" and ev.has_event("bin_lift")


def test_alarm_events_are_no_evidence_of_service_and_are_left_out() -> None:
    """JT/T 808 alarms (in a stay, in a GPS gap, naming a point or not) make no visit and
    are attached to no stay: an overspeed or SOS bit says nothing about a bin emptied."""
    track = Track(at("08:00"), x=-300).drive(0, 0, 30).stay(200)
    during_stay = track.t - timedelta(seconds=100)
    track.drive(400, 0, 30)
    silent_from = track.t
    track.silence(600).drive(800, 0, 30)
    alarms = [
        DeviceEvent(during_stay, "alarm"),
        DeviceEvent(during_stay, "alarm", point_id="P1"),
        DeviceEvent(silent_from + timedelta(seconds=300), "alarm", point_id="P2"),
        DeviceEvent(silent_from + timedelta(seconds=310), "alarm", station_id="S1"),
    ]
    plain = detect("T1", track.fixes, [], SITES)
    found = detect("T1", track.fixes, alarms, SITES)
    assert found == plain
    assert not [v for v in found.visits if v.evidence or v.kind == "event"]


def test_weighbridge_ticket_is_attached_to_station_stay() -> None:
    track = Track(at("10:00"), x=400).drive(800, 0, 30).stay(600).drive(900, 300, 30)
    stay = stays(detect("T1", track.fixes, [], SITES).visits, "S1")[0]
    ticket = DeviceEvent(stay.arrived_at, "weighbridge", station_id="S1", weight_kg=3200)
    (s1,) = stays(detect("T1", track.fixes, [ticket], SITES).visits, "S1")
    assert s1.has_event("weighbridge")


def test_gaps_are_reported_with_both_ends() -> None:
    track = Track(at("08:00"), x=-300).drive(0, 0, 30).silence(400).drive(300, 0, 30)
    (gap,) = [g for g in detect("T1", track.fixes, [], SITES).gaps if g.duration_s > 300]
    assert 400 <= gap.duration_s <= 420


def test_out_of_order_and_duplicate_fixes_give_the_same_visits() -> None:
    track = (
        Track(at("08:00"), x=-300, noise_m=10, seed=4)
        .drive(0, 0, 30)
        .stay(200)
        .drive(400, 0, 30)
        .stay(300)
    )
    shuffled = list(reversed(track.fixes)) + track.fixes[10:20]
    assert detect("T1", shuffled, [], SITES) == detect("T1", track.fixes, [], SITES)


def test_a_wild_newest_fix_does_not_end_a_stay_yet() -> None:
    """While the truck stands at P1, a last fix 70 m off keeps the stay open instead of ending it short."""
    track = Track(at("08:00"), x=-300).drive(0, 0, 30).stay(60)
    last = track.fixes[-1]
    wild = Fix(last.at + timedelta(seconds=10), *latlon(0, 70), 0.0, 10.0)
    (v,) = stays(detect("T1", [*track.fixes, wild], [], SITES).visits, "P1")
    assert v.is_open


def test_window_from_a_stay_that_follows_a_stay_finds_the_same_stay() -> None:
    """A truck parked 70 m from P1 moves onto it between two stopped fixes: re-detecting from
    the P1 stay's arrival (the worker's window) finds the stay the whole day has."""
    track = Track(at("11:00"), x=-300, interval_s=60).drive(-70, 0, 30).stay(1800)
    track.interval_s = 10.0
    track.jump(0, 0).stay(300).drive(400, 0, 30)
    whole = stays(detect("T1", track.fixes, [], SITES).visits, "P1")
    assert len(whole) == 1 and whole[0].dwell_s >= 290
    start = whole[0].arrived_at
    context = max(i for i, f in enumerate(track.fixes) if f.at < start)
    window = detect("T1", track.fixes[context:], [], SITES, window_from=start).visits
    assert [v for v in window if v.kind == "stay" and v.arrived_at < start] == []
    assert stays(window, "P1") == whole


def test_a_pass_followed_by_a_silence_too_short_to_hide_a_service_is_still_a_pass() -> None:
    """Through P1 at 30 km/h, then ~100 s without a fix, then parked 190 m on: a pass (no stop
    of P1's 120 s minimum dwell fits in the silence); after a 200 s silence, nothing is claimed."""
    for silence_s, passes in ((90, ["P1"]), (200, [])):
        track = Track(at("08:00"), x=-300).drive(100, 0, 30).silence(silence_s)
        track.jump(190, 0).stay(300)
        found = detect("T1", track.fixes, [], SITES)
        assert [v.site_id for v in found.visits if v.kind == "pass"] == passes, silence_s


# Roads for the pass tests: street X runs east-west through P1 (0, 0); street Y runs
# north-south 36 m east of it, crossing X at J (36, 0).
def road(from_node: int, to_node: int, *xy: tuple[float, float]) -> dict[str, object]:
    coords = [[lon, lat] for lat, lon in (latlon(x, y) for x, y in xy)]
    return {"from_node": from_node, "to_node": to_node, "oneway": False, "coordinates": coords}


ROADS = [
    road(1, 2, (-400, 0), (0, 0)),  # X, west of P1 (P1 is node 2, as the simulator's points)
    road(2, 3, (0, 0), (36, 0)),  # X, P1 to J
    road(3, 4, (36, 0), (400, 0)),  # X, east of J
    road(5, 3, (36, -400), (36, 0)),  # Y, south of J
    road(3, 6, (36, 0), (36, 400)),  # Y, north of J
]
ROAD_SITES = SiteIndex([P1], roads=ROADS)
NO_ROAD_SITES = SiteIndex([P1])


def passes_at_p1(fixes: list[Fix], sites: SiteIndex) -> list[Visit]:
    return [v for v in detect("T1", fixes, [], sites).visits if v.kind == "pass"]


def test_next_street_36_m_away_is_no_pass_with_the_roads() -> None:
    """Driving the cross street 36 m from the point with 15 m noise: the fixes alone often
    claim a pass; judged on the road taken, at most one track in 30 (a turn into the
    side street and back is nearly as likely on its fixes)."""
    seeds = range(30)
    tracks = []
    for seed in seeds:
        t = Track(at("08:00"), x=36, y=-400, noise_m=15, seed=seed, accuracy_m=15)
        tracks.append(t.drive(36, 400, 30).fixes)
    assert sum(1 for f in tracks if passes_at_p1(f, NO_ROAD_SITES)) >= 5, (
        "noise must fool the fixes"
    )
    assert len([s for s, f in zip(seeds, tracks, strict=True) if passes_at_p1(f, ROAD_SITES)]) <= 1


def test_turning_at_the_junction_short_of_the_point_is_no_pass() -> None:
    """Coming up the cross street and turning east at J, 36 m short of the point: no pass
    (at most one track in 30), where the fixes alone claim several."""
    found, fixes_only = [], []
    for seed in range(30):
        t = Track(at("08:00"), x=36, y=-400, noise_m=15, seed=seed, accuracy_m=15)
        t.drive(36, 0, 30).drive(400, 0, 30)
        found += passes_at_p1(t.fixes, ROAD_SITES)
        fixes_only += passes_at_p1(t.fixes, NO_ROAD_SITES)
    assert len(fixes_only) >= 5, "noise must fool the fixes"
    assert len(found) <= 1


def test_driving_through_the_point_is_a_pass_with_the_roads() -> None:
    """Along street X through the point, and turning onto Y after it: a pass every time."""
    for seed in range(30):
        straight = Track(at("08:00"), x=-400, noise_m=15, seed=seed, accuracy_m=15)
        assert len(passes_at_p1(straight.drive(400, 0, 30).fixes, ROAD_SITES)) == 1, seed
        turn = Track(at("08:00"), x=-400, noise_m=15, seed=seed, accuracy_m=15)
        assert len(passes_at_p1(turn.drive(36, 0, 30).drive(36, 400, 30).fixes, ROAD_SITES)) == 1


def test_track_off_the_mapped_roads_falls_back_to_the_fixes() -> None:
    """A truck driving where no mapped road runs (a yard, a new street) is judged on its fixes."""
    track = Track(at("08:00"), x=0, y=-400, noise_m=0).drive(0, 400, 30)
    assert len(passes_at_p1(track.fixes, ROAD_SITES)) == 1


def test_turning_round_at_the_point_is_a_pass_with_the_roads() -> None:
    """Up the side street to the point and straight back (a drive-by at a point down a
    side street, 36 m from the corner): judged on the roads, still a pass nearly always."""
    p2 = site("point", "P2", 36, 200, radius_m=30, min_dwell_s=120)
    lane = [*ROADS[:3], road(5, 3, (36, -400), (36, 0)), road(3, 7, (36, 0), (36, 200))]
    sites = SiteIndex([p2], roads=lane)
    seen = 0
    for seed in range(30):
        t = Track(at("08:00"), x=-400, noise_m=15, seed=seed, accuracy_m=15)
        t.drive(36, 0, 30).drive(36, 200, 30).drive(36, 0, 30).drive(-400, 0, 30)
        seen += any(
            v.kind == "pass" and v.site_id == "P2" for v in detect("T1", t.fixes, [], sites).visits
        )
    assert seen >= 27


def test_the_site_at_one_fix_is_the_nearest_fence_stations_first_accuracy_capped() -> None:
    """One fix: the nearest fence holding it; a station before a point both hold; the
    fix's accuracy widens a fence by at most its own radius."""
    near_s1 = site("point", "N", 830, 0, radius_m=30)
    sites = SiteIndex([P1, P2, S1, D1, near_s1])
    assert sites.at(*latlon(10, 0)) is P1
    assert sites.at(*latlon(400, 45)) is None
    assert sites.at(*latlon(400, 45), accuracy_m=20) is P2
    assert sites.at(*latlon(400, 70), accuracy_m=100) is None  # 30 m + at most 30 m
    assert sites.at(*latlon(840, 0)) is S1  # inside N too, nearer N: the station wins
    assert sites.at(*latlon(-500, 0)) is D1
