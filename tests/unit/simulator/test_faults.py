"""Fault specifications: text form, validation, random draws."""

from __future__ import annotations

import pytest

from routing.plan import Plan
from simulator.city import City
from simulator.faults import (
    Fault,
    FaultRates,
    drive_by_possible,
    faults_from_json,
    index_faults,
    parse_fault,
    random_faults,
)


def test_text_forms() -> None:
    assert parse_fault("skip:P0012") == Fault("skip", point_id="P0012")
    assert parse_fault("breakdown:T02@10:30") == Fault("breakdown", truck_id="T02", at_s=37800)
    assert parse_fault("offline:T01@09:00+1200") == Fault(
        "offline", truck_id="T01", at_s=32400, duration_s=1200
    )
    assert parse_fault("clock_skew:T04-90") == Fault("clock_skew", truck_id="T04", skew_s=-90)
    assert parse_fault("no_unload:T03") == Fault("no_unload", truck_id="T03")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode:T01", "unknown fault kind"),
        ("breakdown:T01", "needs a time"),
        ("offline:T01@09:00", "positive duration"),
        ("skip", "cannot read"),
    ],
)
def test_bad_text_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(text)


def test_json_form_round_trips() -> None:
    faults = (Fault("offline", truck_id="T01", at_s=100.0, duration_s=60.0),)
    assert faults_from_json([f.to_dict() for f in faults]) == faults
    with pytest.raises(ValueError, match="unknown field"):
        faults_from_json([{"kind": "skip", "point_id": "P1", "when": 3}])


def test_random_faults_are_seeded(small_city: City, small_plan: Plan) -> None:
    rates = FaultRates.scaled(10)
    a = random_faults(small_plan, small_city, rates, seed=4)
    assert a == random_faults(small_plan, small_city, rates, seed=4)
    assert a != random_faults(small_plan, small_city, rates, seed=5)
    assert random_faults(small_plan, small_city, FaultRates.scaled(0), seed=4) == ()
    points = [f.point_id for f in a if f.point_id]
    assert len(points) == len(set(points)), "at most one fault per point"
    for f in a:
        if f.kind == "drive_by":
            assert f.point_id and drive_by_possible(small_city, f.point_id)
    index_faults(a, small_plan, small_city)  # all valid for this plan


def test_faults_must_fit_the_plan(small_city: City, small_plan: Plan) -> None:
    planned = {s.ref_id for r in small_plan.routes for s in r.stops if s.kind == "point"}
    unplanned = next(p.id for p in small_city.points if p.id not in planned)
    with pytest.raises(ValueError, match="no route"):
        index_faults([Fault("skip", point_id=unplanned)], small_plan, small_city)
    with pytest.raises(KeyError):
        index_faults([Fault("no_unload", truck_id="T77")], small_plan, small_city)
    truck = small_plan.routes[0].truck_id
    with pytest.raises(ValueError, match="overlap"):
        index_faults(
            [
                Fault("offline", truck_id=truck, at_s=100, duration_s=100),
                Fault("offline", truck_id=truck, at_s=150, duration_s=100),
            ],
            small_plan,
            small_city,
        )
