"""Frozen, validated inputs of one planning run.

Everything the planner needs is parsed here into one :class:`Problem` value; the
solver, the checker and the decomposer trust it after that. Bad input raises a
``ValueError`` that names the offending field, e.g.
``points[3] (P0004).window_end_s: 100 is before window_start_s 200``.

Units are in the names: kilograms, metres, seconds. Times of day are seconds since
local midnight of the service date.

Travel between locations comes from a :class:`TravelMatrix` keyed by location key
(``depot/D1``, ``station/S1``, ``point/P0001``, ``truck/T01`` for a live position).
``Problem.matrix`` is for trucks that may enter narrow lanes (the whole road graph);
``Problem.matrix_no_narrow`` (if given) is for trucks that may not. Build them with
:mod:`routing.graph`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from routing.graph import straight_line_matrix, travel_matrix
from routing.matrix import TravelMatrix
from routing.vocab import ACCESS_CLASSES, STREAMS

DAY_S: Final = 86_400.0
# Latest time of day a plan may reach (a shift may run past midnight, not beyond).
MAX_TIME_S: Final = 2 * DAY_S


def depot_key(depot_id: str) -> str:
    return f"depot/{depot_id}"


def station_key(station_id: str) -> str:
    return f"station/{station_id}"


def point_key(point_id: str) -> str:
    return f"point/{point_id}"


def truck_key(truck_id: str) -> str:
    """Location key of a truck's live position (mid-day re-planning)."""
    return f"truck/{truck_id}"


def _where(kind: str, index: int, ident: str) -> str:
    return f"{kind}[{index}] ({ident})"


def _finite(where: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}.{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}.{name}: must be finite, got {value!r}")
    return float(value)


def _non_negative(where: str, name: str, value: float) -> float:
    value = _finite(where, name, value)
    if value < 0:
        raise ValueError(f"{where}.{name}: must be >= 0, got {value}")
    return value


def _time_of_day(where: str, name: str, value: float) -> float:
    value = _non_negative(where, name, value)
    if value > MAX_TIME_S:
        raise ValueError(f"{where}.{name}: {value} s is beyond {MAX_TIME_S:.0f} s after midnight")
    return value


def _ident(where: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{name}: expected a non-empty string, got {value!r}")
    return value


def _lat_lon(where: str, lat: float, lon: float) -> None:
    if not -90.0 <= _finite(where, "lat", lat) <= 90.0:
        raise ValueError(f"{where}.lat: {lat} is outside [-90, 90]")
    if not -180.0 <= _finite(where, "lon", lon) <= 180.0:
        raise ValueError(f"{where}.lon: {lon} is outside [-180, 180]")


def _streams(where: str, name: str, value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise ValueError(f"{where}.{name}: expected a set of streams, got the string {value!r}")
    streams = frozenset(value)
    unknown = sorted(s for s in streams if s not in STREAMS)
    if unknown:
        raise ValueError(f"{where}.{name}: unknown stream(s) {unknown}; known: {sorted(STREAMS)}")
    if not streams:
        raise ValueError(f"{where}.{name}: must name at least one stream")
    return streams


@dataclass(frozen=True, slots=True)
class Point:
    """A collection point (收集点) to clear once on the service date.

    Service must *start* within ``[window_start_s, window_end_s]``.
    """

    point_id: str
    lat: float
    lon: float
    stream: str
    amount_kg: float
    service_time_s: float = 300.0
    window_start_s: float = 0.0
    window_end_s: float = DAY_S
    access_class: str = "normal"

    def validate(self, index: int) -> None:
        where = _where("points", index, str(self.point_id))
        _ident(where, "point_id", self.point_id)
        _lat_lon(where, self.lat, self.lon)
        if self.stream not in STREAMS:
            raise ValueError(f"{where}.stream: unknown stream {self.stream!r}")
        _non_negative(where, "amount_kg", self.amount_kg)
        _non_negative(where, "service_time_s", self.service_time_s)
        start = _time_of_day(where, "window_start_s", self.window_start_s)
        end = _time_of_day(where, "window_end_s", self.window_end_s)
        if end < start:
            raise ValueError(f"{where}.window_end_s: {end} is before window_start_s {start}")
        if self.access_class not in ACCESS_CLASSES:
            raise ValueError(
                f"{where}.access_class: {self.access_class!r} is not one of "
                f"{sorted(ACCESS_CLASSES)}"
            )


@dataclass(frozen=True, slots=True)
class Station:
    """A transfer station (中转站) or landfill: tipping starts and ends within hours."""

    station_id: str
    lat: float
    lon: float
    streams: frozenset[str]
    opens_s: float = 0.0
    closes_s: float = DAY_S
    tipping_time_s: float = 900.0

    def validate(self, index: int) -> None:
        where = _where("stations", index, str(self.station_id))
        _ident(where, "station_id", self.station_id)
        _lat_lon(where, self.lat, self.lon)
        object.__setattr__(self, "streams", _streams(where, "streams", self.streams))
        opens = _time_of_day(where, "opens_s", self.opens_s)
        closes = _time_of_day(where, "closes_s", self.closes_s)
        tipping = _non_negative(where, "tipping_time_s", self.tipping_time_s)
        if closes - opens < tipping:
            raise ValueError(
                f"{where}.closes_s: open {opens}..{closes} is shorter than the tipping time "
                f"{tipping}"
            )


@dataclass(frozen=True, slots=True)
class Depot:
    """A depot (车场): where trucks start and end."""

    depot_id: str
    lat: float
    lon: float

    def validate(self, index: int) -> None:
        where = _where("depots", index, str(self.depot_id))
        _ident(where, "depot_id", self.depot_id)
        _lat_lon(where, self.lat, self.lon)


@dataclass(frozen=True, slots=True)
class Truck:
    """A collection truck and its working day.

    ``max_day_load_kg`` (optional) caps the total collected over the day, across all
    trips; Kim et al.'s "route capacity" is such a cap. The lunch break of
    ``break_duration_s`` starts within ``[break_earliest_s, break_latest_s]``; a truck
    whose route leaves room for it before departure or after return takes it at the
    depot and the plan shows no break stop.
    """

    truck_id: str
    capacity_kg: float
    streams: frozenset[str]
    start_depot_id: str
    end_depot_id: str
    shift_start_s: float = 5 * 3600.0
    shift_end_s: float = 17 * 3600.0
    max_route_duration_s: float | None = None
    break_duration_s: float = 0.0
    break_earliest_s: float = 11 * 3600.0
    break_latest_s: float = 13 * 3600.0
    can_enter_narrow: bool = False
    max_day_load_kg: float | None = None

    @property
    def route_duration_limit_s(self) -> float:
        shift = self.shift_end_s - self.shift_start_s
        if self.max_route_duration_s is None:
            return shift
        return min(shift, self.max_route_duration_s)

    @property
    def day_load_limit_kg(self) -> float:
        return math.inf if self.max_day_load_kg is None else self.max_day_load_kg

    def validate(self, index: int) -> None:
        where = _where("trucks", index, str(self.truck_id))
        _ident(where, "truck_id", self.truck_id)
        if _finite(where, "capacity_kg", self.capacity_kg) <= 0:
            raise ValueError(f"{where}.capacity_kg: must be > 0, got {self.capacity_kg}")
        object.__setattr__(self, "streams", _streams(where, "streams", self.streams))
        _ident(where, "start_depot_id", self.start_depot_id)
        _ident(where, "end_depot_id", self.end_depot_id)
        start = _time_of_day(where, "shift_start_s", self.shift_start_s)
        end = _time_of_day(where, "shift_end_s", self.shift_end_s)
        if end < start:
            raise ValueError(f"{where}.shift_end_s: {end} is before shift_start_s {start}")
        if self.max_route_duration_s is not None:
            _non_negative(where, "max_route_duration_s", self.max_route_duration_s)
        _non_negative(where, "break_duration_s", self.break_duration_s)
        earliest = _time_of_day(where, "break_earliest_s", self.break_earliest_s)
        latest = _time_of_day(where, "break_latest_s", self.break_latest_s)
        if latest < earliest:
            raise ValueError(
                f"{where}.break_latest_s: {latest} is before break_earliest_s {earliest}"
            )
        if not isinstance(self.can_enter_narrow, bool):
            raise ValueError(f"{where}.can_enter_narrow: expected a bool")
        if (
            self.max_day_load_kg is not None
            and _finite(where, "max_day_load_kg", self.max_day_load_kg) <= 0
        ):
            raise ValueError(f"{where}.max_day_load_kg: must be > 0, got {self.max_day_load_kg}")


@dataclass(frozen=True, slots=True, eq=False)
class Problem:
    """One day's planning problem: validated at construction.

    With no ``stations`` the depots are the disposal sites: each truck makes one trip
    and unloads at its end depot (this is the classic CVRP / VRPTW setting). With
    stations, every truck unloads at a compatible station whenever it must and before
    it returns to its depot.
    """

    points: tuple[Point, ...]
    stations: tuple[Station, ...]
    depots: tuple[Depot, ...]
    trucks: tuple[Truck, ...]
    matrix: TravelMatrix
    matrix_no_narrow: TravelMatrix | None = None
    name: str = ""
    point_index: Mapping[str, int] = field(init=False, repr=False)
    station_index: Mapping[str, int] = field(init=False, repr=False)
    depot_index: Mapping[str, int] = field(init=False, repr=False)
    truck_index: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("points", "stations", "depots", "trucks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        kinds: list[tuple[str, Sequence[Point | Station | Depot | Truck], str]] = [
            ("points", self.points, "point_id"),
            ("stations", self.stations, "station_id"),
            ("depots", self.depots, "depot_id"),
            ("trucks", self.trucks, "truck_id"),
        ]
        expected_types = {"points": Point, "stations": Station, "depots": Depot, "trucks": Truck}
        for name, items, id_attr in kinds:
            index: dict[str, int] = {}
            for i, item in enumerate(items):
                if not isinstance(item, expected_types[name]):
                    raise ValueError(
                        f"{name}[{i}]: expected {expected_types[name].__name__}, "
                        f"got {type(item).__name__}"
                    )
                item.validate(i)
                ident = getattr(item, id_attr)
                if ident in index:
                    raise ValueError(f"{name}[{i}].{id_attr}: duplicate id {ident!r}")
                index[ident] = i
            object.__setattr__(self, name.rstrip("s") + "_index", index)
        if not self.depots:
            raise ValueError("depots: at least one depot is required")
        for i, truck in enumerate(self.trucks):
            for attr in ("start_depot_id", "end_depot_id"):
                if getattr(truck, attr) not in self.depot_index:
                    raise ValueError(
                        f"trucks[{i}] ({truck.truck_id}).{attr}: unknown depot "
                        f"{getattr(truck, attr)!r}"
                    )
        for name, matrix in (("matrix", self.matrix), ("matrix_no_narrow", self.matrix_no_narrow)):
            if matrix is None:
                continue
            if not isinstance(matrix, TravelMatrix):
                raise ValueError(f"{name}: expected a TravelMatrix")
            missing = [k for k in self.location_keys() if k not in matrix.index]
            if missing:
                raise ValueError(f"{name}.location_ids: missing {missing[:5]}")

    def location_keys(self) -> list[str]:
        return (
            [depot_key(d.depot_id) for d in self.depots]
            + [station_key(s.station_id) for s in self.stations]
            + [point_key(p.point_id) for p in self.points]
        )

    def matrix_for(self, truck: Truck) -> TravelMatrix:
        if truck.can_enter_narrow or self.matrix_no_narrow is None:
            return self.matrix
        return self.matrix_no_narrow

    def point(self, point_id: str) -> Point:
        return self.points[self.point_index[point_id]]

    def station(self, station_id: str) -> Station:
        return self.stations[self.station_index[station_id]]

    def depot(self, depot_id: str) -> Depot:
        return self.depots[self.depot_index[depot_id]]

    def truck(self, truck_id: str) -> Truck:
        return self.trucks[self.truck_index[truck_id]]

    def stations_for(self, truck: Truck) -> list[Station]:
        """Stations where ``truck`` may unload: they accept every stream it carries."""
        return [s for s in self.stations if truck.streams <= s.streams]

    def replace(
        self,
        *,
        points: Iterable[Point] | None = None,
        trucks: Iterable[Truck] | None = None,
        stations: Iterable[Station] | None = None,
        name: str | None = None,
    ) -> Problem:
        """A new problem with some collections replaced (same matrices)."""
        return Problem(
            points=tuple(self.points if points is None else points),
            stations=tuple(self.stations if stations is None else stations),
            depots=self.depots,
            trucks=tuple(self.trucks if trucks is None else trucks),
            matrix=self.matrix,
            matrix_no_narrow=self.matrix_no_narrow,
            name=self.name if name is None else name,
        )


def build_problem(
    *,
    points: Iterable[Point],
    stations: Iterable[Station],
    depots: Iterable[Depot],
    trucks: Iterable[Truck],
    graph: object | None = None,
    detour_factor: float = 1.3,
    fallback_speed_kmh: float = 25.0,
    extra_locations: Mapping[str, tuple[float, float]] | None = None,
    name: str = "",
) -> Problem:
    """Build a :class:`Problem` with travel matrices from ``graph`` (a road graph
    as described in :mod:`routing.graph`), or straight-line distance × ``detour_factor``
    when no graph is given."""
    points, stations, depots, trucks = tuple(points), tuple(stations), tuple(depots), tuple(trucks)
    coords: dict[str, tuple[float, float]] = {}
    for d in depots:
        coords[depot_key(d.depot_id)] = (d.lat, d.lon)
    for s in stations:
        coords[station_key(s.station_id)] = (s.lat, s.lon)
    for p in points:
        coords[point_key(p.point_id)] = (p.lat, p.lon)
    if extra_locations:
        coords.update(extra_locations)
    need_no_narrow = any(not t.can_enter_narrow for t in trucks)
    if graph is None:
        matrix = straight_line_matrix(
            coords, detour_factor=detour_factor, speed_kmh=fallback_speed_kmh
        )
        matrix_no_narrow = None
    else:
        matrix = travel_matrix(graph, coords, allow_narrow=True)
        matrix_no_narrow = (
            travel_matrix(graph, coords, allow_narrow=False) if need_no_narrow else None
        )
    return Problem(
        points=points,
        stations=stations,
        depots=depots,
        trucks=trucks,
        matrix=matrix,
        matrix_no_narrow=matrix_no_narrow,
        name=name,
    )
