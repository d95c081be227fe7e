"""Faults the simulator injects into a day, by configuration or at random with a seed.

Point faults (apply to whichever truck's route holds the point):
  skip        the truck never goes to the point
  drive_by    the truck drives through the point at road speed without stopping
  too_short   the truck stops, but for less than the point's minimum dwell (no bin lifts)
  drift       the truck serves the point, but its fixes drift 41-76 m off (one direction)
              for the first 2-3 minutes of the stop (urban canyon): truly served
  jump        on the way to the point one fix lands 150-300 m off (multipath), beside
              another point when one lies that far: the point is then served
  idle_beside the truck stops 46-59 m (straight line) short of the point on the road it
              comes by, idles there 5-8 minutes and turns back: not served
Truck faults:
  breakdown   at `at_s` the truck stops where it is and stays there until its shift ends
  no_unload   the truck skips its last station visit and parks loaded
  offline     the terminal is off from `at_s` for `duration_s`: nothing recorded or sent;
              its MQTT connection drops so the broker publishes the last will
  clock_skew  the terminal's clock is `skew_s` off all day (device times shifted)

Text form (CLI): ``skip:P0012``, ``drive_by:P0007``, ``too_short:P0031``, ``drift:P0003``,
``jump:P0004``, ``idle_beside:P0005``,
``breakdown:T02@10:30``, ``no_unload:T03``, ``offline:T01@09:00+1200``,
``clock_skew:T04+300`` (seconds, may be negative: ``clock_skew:T04-90``).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from routing.plan import Plan
from simulator.city import City, parse_hhmm

FaultKind = Literal[
    "skip",
    "drive_by",
    "too_short",
    "drift",
    "jump",
    "idle_beside",
    "breakdown",
    "no_unload",
    "offline",
    "clock_skew",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
POINT_FAULTS = frozenset({"skip", "drive_by", "too_short", "drift", "jump", "idle_beside"})
TRUCK_FAULTS = frozenset({"breakdown", "no_unload", "offline", "clock_skew"})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    point_id: str | None = None
    truck_id: str | None = None
    at_s: float | None = None  # breakdown, offline: seconds since local midnight
    duration_s: float | None = None  # offline
    skew_s: float | None = None  # clock_skew

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(FAULT_KINDS)})")
        if self.kind in POINT_FAULTS and not self.point_id:
            raise ValueError(f"a {self.kind} fault needs a point_id")
        if self.kind in TRUCK_FAULTS and not self.truck_id:
            raise ValueError(f"a {self.kind} fault needs a truck_id")
        if self.kind in ("breakdown", "offline") and self.at_s is None:
            raise ValueError(f"a {self.kind} fault needs a time (at_s)")
        if self.kind == "offline" and (self.duration_s is None or self.duration_s <= 0):
            raise ValueError("an offline fault needs a positive duration_s")
        if self.kind == "clock_skew" and not self.skew_s:
            raise ValueError("a clock_skew fault needs a non-zero skew_s")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("point_id", "truck_id", "at_s", "duration_s", "skew_s"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        unknown = set(data) - {"kind", "point_id", "truck_id", "at_s", "duration_s", "skew_s"}
        if unknown:
            raise ValueError(f"fault: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**data)


_TEXT = re.compile(
    r"^(?P<kind>[a-z_]+):(?P<ref>[^@+\-]+)(?:@(?P<at>\d{1,2}:\d{2}))?(?P<num>[+-]\d+(?:\.\d+)?)?$"
)


def parse_fault(text: str) -> Fault:
    """Parse the text form, e.g. ``breakdown:T02@10:30`` or ``offline:T01@09:00+1200``."""
    m = _TEXT.match(text.strip())
    if not m:
        raise ValueError(f"cannot read fault {text!r}; e.g. skip:P0012 or breakdown:T02@10:30")
    kind, ref = m["kind"], m["ref"]
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
    at_s = float(parse_hhmm(m["at"])) if m["at"] else None
    num = float(m["num"]) if m["num"] else None
    if kind in POINT_FAULTS:
        return Fault(kind, point_id=ref)  # type: ignore[arg-type]
    if kind == "offline":
        return Fault("offline", truck_id=ref, at_s=at_s, duration_s=num)
    if kind == "clock_skew":
        return Fault("clock_skew", truck_id=ref, skew_s=num)
    return Fault(kind, truck_id=ref, at_s=at_s)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probabilities for random faults: per planned point, or per truck-day."""

    skip: float = 0.02
    drive_by: float = 0.02
    too_short: float = 0.02
    drift: float = 0.02
    jump: float = 0.02
    idle_beside: float = 0.02
    breakdown: float = 0.05
    no_unload: float = 0.05
    offline: float = 0.05
    clock_skew: float = 0.05
    offline_min_s: float = 600.0
    offline_max_s: float = 2400.0
    skew_max_s: float = 300.0

    def __post_init__(self) -> None:
        for name in FAULT_KINDS:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"fault rate {name} must be in 0..1, got {value}")
        if sum(getattr(self, k) for k in POINT_FAULTS) > 1 + 1e-9:
            raise ValueError("the point fault rates must not add up to more than 1")

    @classmethod
    def scaled(cls, factor: float) -> FaultRates:
        """The default rates times `factor` (0 = no faults); the point faults together
        at most 1 (every point then gets one)."""
        base = cls()
        rates = {k: min(1.0, getattr(base, k) * factor) for k in FAULT_KINDS}
        point_sum = sum(rates[k] for k in POINT_FAULTS)
        if point_sum > 1:
            rates.update({k: rates[k] / point_sum for k in POINT_FAULTS})
        return cls(**rates)


def drive_by_possible(city: City, point_id: str) -> bool:
    """A drive-by needs a road through the point (not the dead end of a lane)."""
    node = city.point(point_id).node
    return len(set(city.graph.successors(node)) | set(city.graph.predecessors(node))) >= 2


def random_faults(plan: Plan, city: City, rates: FaultRates, *, seed: int) -> tuple[Fault, ...]:
    """Draw faults for the plan's points and trucks. Deterministic for a seed; at most
    one fault per point; a truck that breaks down does not also skip its unload; point
    faults on a broken-down truck's route only before the breakdown."""
    rng = random.Random(f"clearday-faults:{seed}")
    out: list[Fault] = []
    for route in sorted(plan.routes, key=lambda r: r.truck_id):
        stops = list(route.stops)
        start_s, end_s = stops[0].departure_s, stops[-1].arrival_s
        breakdown_at: float | None = None
        if rng.random() < rates.breakdown and end_s - start_s > 3 * 3600:
            breakdown_at = round(rng.uniform(start_s + 3600, end_s - 3600))
            out.append(Fault("breakdown", truck_id=route.truck_id, at_s=breakdown_at))
        elif rng.random() < rates.no_unload and any(s.kind == "station" for s in stops):
            out.append(Fault("no_unload", truck_id=route.truck_id))
        if rng.random() < rates.offline and end_s - start_s > 2 * rates.offline_max_s:
            duration = round(rng.uniform(rates.offline_min_s, rates.offline_max_s))
            at = round(rng.uniform(start_s + 600, end_s - duration - 600))
            out.append(Fault("offline", truck_id=route.truck_id, at_s=at, duration_s=duration))
        if rng.random() < rates.clock_skew:
            skew = round(rng.uniform(30, rates.skew_max_s)) * rng.choice((-1, 1))
            out.append(Fault("clock_skew", truck_id=route.truck_id, skew_s=skew))
        for stop in stops:
            if stop.kind != "point" or stop.ref_id is None:
                continue
            if breakdown_at is not None and stop.departure_s > breakdown_at - 1800:
                break
            u = rng.random()
            if u < rates.skip:
                out.append(Fault("skip", point_id=stop.ref_id))
            elif u < rates.skip + rates.drive_by:
                if drive_by_possible(city, stop.ref_id):
                    out.append(Fault("drive_by", point_id=stop.ref_id))
            elif u < rates.skip + rates.drive_by + rates.too_short:
                out.append(Fault("too_short", point_id=stop.ref_id))
            else:
                # The newer kinds take the range after the first three, so a seed draws the
                # same skips, drive-bys and short stops as before they existed.
                edge = rates.skip + rates.drive_by + rates.too_short
                for kind in ("drift", "jump", "idle_beside"):
                    edge += getattr(rates, kind)
                    if u < edge:
                        out.append(Fault(kind, point_id=stop.ref_id))
                        break
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TruckFaults:
    """The faults that concern one truck's day."""

    points: Mapping[str, FaultKind]
    breakdown_at_s: float | None = None
    no_unload: bool = False
    offline: tuple[tuple[float, float], ...] = ()  # (start_s, end_s), sorted
    skew_s: float = 0.0


def index_faults(faults: Iterable[Fault], plan: Plan, city: City) -> dict[str, TruckFaults]:
    """Group faults by truck (point faults go to the truck whose route has the point).
    Raise ValueError for a fault naming a point no route serves, or an unknown truck."""
    route_of_point: dict[str, str] = {}
    for route in plan.routes:
        for stop in route.stops:
            if stop.kind == "point" and stop.ref_id is not None:
                route_of_point[stop.ref_id] = route.truck_id
    planned_trucks = {r.truck_id for r in plan.routes}
    points: dict[str, dict[str, FaultKind]] = {}
    breakdown: dict[str, float] = {}
    no_unload: set[str] = set()
    offline: dict[str, list[tuple[float, float]]] = {}
    skew: dict[str, float] = {}
    for f in faults:
        if f.kind in POINT_FAULTS:
            assert f.point_id is not None
            city.point(f.point_id)
            truck_id = route_of_point.get(f.point_id)
            if truck_id is None:
                raise ValueError(f"{f.kind}:{f.point_id}: no route in the plan serves that point")
            if f.kind == "drive_by" and not drive_by_possible(city, f.point_id):
                raise ValueError(f"drive_by:{f.point_id}: the point is at a dead end")
            points.setdefault(truck_id, {})[f.point_id] = f.kind
            continue
        assert f.truck_id is not None
        city.truck(f.truck_id)
        if f.truck_id not in planned_trucks:
            raise ValueError(f"{f.kind}:{f.truck_id}: that truck has no route in the plan")
        if f.kind == "breakdown":
            assert f.at_s is not None
            breakdown[f.truck_id] = f.at_s
        elif f.kind == "no_unload":
            no_unload.add(f.truck_id)
        elif f.kind == "offline":
            assert f.at_s is not None and f.duration_s is not None
            offline.setdefault(f.truck_id, []).append((f.at_s, f.at_s + f.duration_s))
        elif f.kind == "clock_skew":
            assert f.skew_s is not None
            skew[f.truck_id] = f.skew_s
    out = {}
    for truck_id in planned_trucks:
        periods = sorted(offline.get(truck_id, []))
        for (_, end), (start, _) in itertools.pairwise(periods):
            if start < end:
                raise ValueError(f"offline periods of {truck_id} overlap")
        out[truck_id] = TruckFaults(
            points=points.get(truck_id, {}),
            breakdown_at_s=breakdown.get(truck_id),
            no_unload=truck_id in no_unload,
            offline=tuple(periods),
            skew_s=skew.get(truck_id, 0.0),
        )
    return out


def faults_from_json(items: Sequence[Mapping[str, Any] | str]) -> tuple[Fault, ...]:
    """Faults from a JSON list whose items are objects or text forms."""
    return tuple(parse_fault(i) if isinstance(i, str) else Fault.from_dict(i) for i in items)
