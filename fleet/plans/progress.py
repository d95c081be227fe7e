"""How far each truck has got along its planned route, from what it really did.

Pure functions over a plan route, the truck's visits (``fleet.alerts.visits``) and its
latest position; ``service.replan_day`` loads those from the database. The result is
the ``routing.replan.TruckState`` the re-planner starts from, plus what the dispatcher
needs to hear about it (which planned points were served, which were missed).

The rules (docs/api.md, "Re-plan from now"):

- a planned point counts as served when the truck cleared it by the ledger's rule (a
  stay of at least the point's minimum dwell, or a bin-lift / RFID event naming it);
- an unload is a long enough stay at a station (or a weighbridge ticket);
- completed stops are the route up to the last planned stop the truck served (a
  point cleared or a station unloaded at, matched along the route in time order);
  planned points in that stretch that nobody cleared are missed and go back into
  the pool;
- the load on board is the planned amount of every point the truck cleared since its
  last unload at a station;
- the break is taken once the planned break is over;
- a truck with no position yet today, or still at its depot with nothing served,
  has not left.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from fleet.alerts import ledger
from fleet.alerts.visits import Visit
from routing.plan import Route, Stop
from routing.replan import TruckState
from routing.vocab import haversine_m


@dataclass(frozen=True, slots=True)
class LivePosition:
    """The truck's latest fix at or before the re-planning time."""

    at: datetime
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class TruckProgress:
    state: TruckState
    position: LivePosition | None
    served_point_ids: tuple[str, ...]  # planned points of its route it cleared
    missed_point_ids: tuple[str, ...]  # planned before its last served stop, cleared by nobody

    def as_json(self) -> dict[str, object]:
        s = self.state
        return {
            "truck_id": s.truck_id,
            "position_at": self.position.at.isoformat() if self.position else None,
            "lat": s.lat,
            "lon": s.lon,
            "load_kg": round(s.load_kg, 3),
            "completed_stops": s.completed_stops,
            "break_taken": s.break_taken,
            "available": s.available,
            "served_point_ids": list(self.served_point_ids),
            "missed_point_ids": list(self.missed_point_ids),
        }


def truck_progress(
    *,
    truck_id: str,
    route: Route | None,
    depot: tuple[float, float],
    position: LivePosition | None,
    visits: Sequence[Visit],
    cleared_by_anyone: Collection[str],
    point_min_dwell_s: Mapping[str, float],
    station_min_dwell_s: Mapping[str, float],
    amount_kg: Mapping[str, float],
    now_s: float,
    depot_radius_m: float,
    available: bool = True,
) -> TruckProgress:
    """The truck's state at `now_s` (seconds since local midnight of the plan's day).

    `visits` are the truck's own visits up to now, by arrival; `cleared_by_anyone`
    the points some truck has cleared today (a point another truck took over is not
    missed)."""
    mine = [v for v in visits if v.truck_id == truck_id]
    clearing = [
        v
        for v in mine
        if v.site_id is not None and ledger.is_clearing(v, point_min_dwell_s.get(v.site_id, 0.0))
    ]
    cleared_at: dict[str, datetime] = {}
    for v in clearing:
        assert v.site_id is not None
        cleared_at.setdefault(v.site_id, v.arrived_at)
    unloads = [v for v in mine if ledger.is_unload(v, station_min_dwell_s)]

    stops = route.stops if route is not None else ()
    completed = _completed_stops(stops, cleared_at, unloads, position, depot, depot_radius_m)
    done = stops[:completed]
    served = tuple(s.ref_id for s in done if s.kind == "point" and s.ref_id in cleared_at)
    missed = tuple(
        s.ref_id
        for s in done
        if s.kind == "point" and s.ref_id is not None and s.ref_id not in cleared_by_anyone
    )
    last_unload_at = max((v.departed_at for v in unloads), default=None)
    load_kg = sum(
        amount_kg.get(pid, 0.0)
        for pid, at in cleared_at.items()
        if last_unload_at is None or at >= last_unload_at
    )
    break_taken = any(s.kind == "break" and s.departure_s <= now_s for s in stops)
    lat, lon = (position.lat, position.lon) if position is not None else depot
    return TruckProgress(
        state=TruckState(
            truck_id=truck_id,
            lat=lat,
            lon=lon,
            load_kg=load_kg if completed else 0.0,
            completed_stops=completed,
            break_taken=break_taken,
            available=available,
        ),
        position=position,
        served_point_ids=served,
        missed_point_ids=missed,
    )


def _completed_stops(
    stops: Sequence[Stop],
    cleared_at: Mapping[str, datetime],
    unloads: Sequence[Visit],
    position: LivePosition | None,
    depot: tuple[float, float],
    depot_radius_m: float,
) -> int:
    """How many of the route's stops the truck has done. Walks what it did in time
    order along its route: each clearing or unload moves it on to the next planned
    stop of that place (a point served out of turn further on moves it there; one
    already behind it does not move it back). Without any, it has done the start
    once it has left the depot."""
    done_stops = sorted(
        [(at, "point", pid) for pid, at in cleared_at.items()]
        + [(v.arrived_at, "station", v.site_id or "") for v in unloads]
    )
    last: int | None = None
    for _, kind, ref in done_stops:
        nxt = next(
            (
                j
                for j in range((last or 0) + 1, len(stops))
                if stops[j].kind == kind and stops[j].ref_id == ref
            ),
            None,
        )
        if nxt is not None:
            last = nxt
    if last is not None:
        return last + 1
    if position is None:
        return 0
    away_m = haversine_m(position.lat, position.lon, depot[0], depot[1])
    return 0 if away_m <= depot_radius_m or not stops else 1
