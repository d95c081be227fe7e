"""Trucks that drive a day's plan and report like real terminals, with ground truth.

`SimDay(spec)` turns a city, a plan, faults and a seed into two things:

* `emissions()`: every message the fleet's terminals send, in the order they are
  sent (`Emission.at_s`, simulated seconds since local midnight): fixes every
  `fix_interval_s` with Gaussian noise, single dropped fixes, signal-loss periods
  whose fixes arrive late as one array, bin-lift and weighbridge events, online /
  offline status and dropped connections;
* `truth`: what really happened (each service with arrival and departure, each
  unload, each break, each fault, each signal loss), filled in as the emissions are
  produced and written as JSON lines by `write_truth`.

It is pure and deterministic: the same spec gives the same emissions and truth,
whatever the speed at which they are later published. `run(day, sink, speed=…)`
publishes them in real time (speed 1), accelerated (e.g. 60; device times stay
simulated) or as fast as possible (speed None), and measures how well it kept up.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from fleet.fields import DEFAULT_TIMEZONE
from ingest import wire
from routing.plan import Plan, Route, Stop
from simulator import geo, truth
from simulator.city import City, Depot, Point, Station
from simulator.faults import Fault, TruckFaults, index_faults
from simulator.plans import refuse_unknown_places
from simulator.roads import RoadNetwork

EmissionKind = Literal["online", "offline", "drop", "fixes", "events"]


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """How the GPS terminals report."""

    fix_interval_s: float = 10.0
    parked_interval_s: float = 60.0  # ignition off
    noise_m: float = 10.0  # σ of the Gaussian position error, per axis
    dropout_prob: float = 0.02  # a single fix never sent
    signal_losses_per_day: float = 1.0  # expected blind-zone periods per truck-day
    signal_loss_min_s: float = 120.0
    signal_loss_max_s: float = 600.0
    batch_size: int = 1  # fixes per message outside blind zones
    # The drift and multipath-jump faults throw the fixes off where the truck is; False:
    # a receiver they do not reach (they are still drawn, so the day is the same) —
    # where the trucks really were, for the ground truth.
    gps_faults: bool = True
    wake_before_s: float = 60.0  # terminal comes online this long before the shift
    sleep_after_s: float = 300.0  # and goes to sleep this long after parking

    def __post_init__(self) -> None:
        if not 0.5 <= self.fix_interval_s <= 600:
            raise ValueError("fix_interval_s must be in 0.5..600")
        if self.parked_interval_s < self.fix_interval_s:
            raise ValueError("parked_interval_s must be at least fix_interval_s")
        if not 0 <= self.noise_m <= 500:
            raise ValueError("noise_m must be in 0..500")
        if not 0 <= self.dropout_prob < 1:
            raise ValueError("dropout_prob must be in 0..1")
        if self.signal_losses_per_day < 0:
            raise ValueError("signal_losses_per_day must be >= 0")
        if not 0 < self.signal_loss_min_s <= self.signal_loss_max_s:
            raise ValueError("need 0 < signal_loss_min_s <= signal_loss_max_s")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@dataclass(frozen=True, slots=True)
class DrivingConfig:
    """How the trucks drive and work."""

    speed_factor_mean: float = 0.8  # of the road's free-flow speed, drawn per edge
    speed_factor_sd: float = 0.12
    dwell_sd: float = 0.1  # relative variation of service and tipping times
    amount_sd: float = 0.15  # relative variation of the collected amount
    lift_sensor_types: tuple[str, ...] = ("compactor", "kitchen")  # send bin-lift events
    long_wait_s: float = 600.0  # waits longer than this are spent with the ignition off

    def __post_init__(self) -> None:
        if not 0.2 <= self.speed_factor_mean <= 1.5 or self.speed_factor_sd < 0:
            raise ValueError("speed_factor_mean must be in 0.2..1.5, speed_factor_sd >= 0")
        if not 0 <= self.dwell_sd <= 0.5 or not 0 <= self.amount_sd <= 0.5:
            raise ValueError("dwell_sd and amount_sd must be in 0..0.5")


@dataclass(frozen=True, slots=True)
class DaySpec:
    city: City
    plan: Plan
    service_date: date
    timezone: str = DEFAULT_TIMEZONE
    seed: int = 0
    terminal: TerminalConfig = field(default_factory=TerminalConfig)
    driving: DrivingConfig = field(default_factory=DrivingConfig)
    faults: tuple[Fault, ...] = ()


@dataclass(frozen=True, slots=True)
class Emission:
    """One thing a terminal sends at simulated time `at_s`.

    kind: `online` (connect, retained status online), `offline` (retained status
    offline, clean disconnect: the terminal sleeps), `drop` (connection lost: the
    broker publishes the last will), `fixes`, `events`."""

    at_s: float
    terminal_id: str
    kind: EmissionKind
    fixes: tuple[wire.Fix, ...] = ()
    events: tuple[wire.Event, ...] = ()
    device_at: datetime | None = None


def encode(em: Emission) -> tuple[str, bytes, bool] | None:
    """(topic, payload, retain) for an emission that is a message, else None."""
    if em.kind == "fixes":
        payload = wire.encode_fixes(em.fixes[0] if len(em.fixes) == 1 else em.fixes)
        return wire.positions_topic(em.terminal_id), payload, False
    if em.kind == "events":
        payload = wire.encode_events(em.events[0] if len(em.events) == 1 else em.events)
        return wire.events_topic(em.terminal_id), payload, False
    if em.kind in ("online", "offline"):
        state: wire.TerminalState = "online" if em.kind == "online" else "offline"
        return wire.status_topic(em.terminal_id), wire.encode_status(state, em.device_at), True
    return None


# ---- one truck's day -----------------------------------------------------------------
class _Broken(Exception):
    pass


def _clip(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass(slots=True)
class _TerminalState:
    """What a truck's terminal keeps: its sequence number, when its next fix is due, the
    fixes waiting for a batch and those held back in a blind zone, its counters."""

    seq: int = 0
    next_fix_s: float = 0.0
    pending: list[wire.Fix] = field(default_factory=list)
    blind_fixes: list[wire.Fix] = field(default_factory=list)
    blind_events: list[wire.Event] = field(default_factory=list)
    fixes_generated: int = 0
    fixes_dropped: int = 0
    tickets: int = 0  # weighbridge tickets issued


class _TruckDay:
    def __init__(
        self,
        day: SimDay,
        route: Route,
        faults: TruckFaults,
    ) -> None:
        spec = day.spec
        self.day = day
        self.city = spec.city
        self.net = day.net
        self.route = route
        self.truck = spec.city.truck(route.truck_id)
        self.faults = faults
        self.tc = spec.terminal
        self.dc = spec.driving
        self.terminal_id = self.truck.terminal_id
        self.motion = random.Random(f"clearday-sim:{spec.seed}:{self.truck.id}:motion")
        self.term = random.Random(f"clearday-sim:{spec.seed}:{self.truck.id}:terminal")
        self.midnight = day.midnight_utc
        self.truth: list[tuple[float, int, truth.TruthRecord]] = []  # (at, order, record)
        self.narrow_ok = self.truck.can_enter_narrow
        self.lift_sensor = self.truck.truck_type in self.dc.lift_sensor_types
        # GPS faults (drift, jump): their own stream, so the rest of the day is drawn
        # the same with or without them.
        self.gps = random.Random(f"clearday-sim:{spec.seed}:{self.truck.id}:gps")
        self.drift: tuple[float, float, float, float] | None = None  # (from_s, to_s, east, north)
        self.jump_to: Point | bool = False  # True / a point: throw the next moving fix
        # motion state
        self.t = 0.0
        self.node = -1
        self.lat = self.lon = 0.0
        self.heading = 0.0
        self.speed_kmh = 0.0
        self.ignition = False
        self.load_kg = 0.0
        self.odometer_m = self.motion.uniform(20_000, 150_000) * 1000.0
        self.broken = False
        self.terminal = _TerminalState()
        stops = route.stops
        self.losses = self._draw_losses(stops[0].departure_s, stops[-1].arrival_s)
        checkpoints: list[tuple[float, int, str, tuple[float, float]]] = []
        for start, end in self.losses:
            checkpoints.append((end, 0, "loss_end", (start, end)))
        for start, end in faults.offline:
            checkpoints.append((start, 1, "offline_start", (start, end)))
            checkpoints.append((end, 2, "offline_end", (start, end)))
        checkpoints.sort()
        self.checkpoints = checkpoints
        self.next_checkpoint = 0

    # -- helpers
    def _draw_losses(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        span = max(0.0, end_s - start_s)
        n = _poisson(self.term, self.tc.signal_losses_per_day * span / (12 * 3600))
        out: list[tuple[float, float]] = []
        for _ in range(n):
            a = self.term.uniform(start_s, max(start_s, end_s - self.tc.signal_loss_min_s))
            b = a + self.term.uniform(self.tc.signal_loss_min_s, self.tc.signal_loss_max_s)
            overlaps_offline = any(a < oe and os_ < b for os_, oe in self.faults.offline)
            if not overlaps_offline and all(b <= s or a >= e for s, e in out):
                out.append((round(a, 3), round(b, 3)))
        return sorted(out)

    def device_time(self, t: float) -> datetime:
        return self.midnight + timedelta(seconds=t + self.faults.skew_s)

    def record(self, t: float, rec: truth.TruthRecord) -> None:
        self.truth.append((t, len(self.truth), rec))

    def at(self, t: float) -> str:
        return self.day.iso(t)

    def offline_at(self, t: float) -> bool:
        return any(s <= t < e for s, e in self.faults.offline)

    def blind_at(self, t: float) -> bool:
        return any(s <= t < e for s, e in self.losses)

    def _advance(self, t: float) -> Iterator[Emission]:
        """Handle blind-zone ends and offline periods up to time t."""
        while self.next_checkpoint < len(self.checkpoints):
            when, _, what, (start, end) = self.checkpoints[self.next_checkpoint]
            if when > t:
                return
            self.next_checkpoint += 1
            if what == "loss_end":
                n = len(self.terminal.blind_fixes)
                if self.terminal.blind_fixes:
                    yield Emission(
                        when, self.terminal_id, "fixes", fixes=tuple(self.terminal.blind_fixes)
                    )
                if self.terminal.blind_events:
                    yield Emission(
                        when, self.terminal_id, "events", events=tuple(self.terminal.blind_events)
                    )
                self.record(
                    start,
                    truth.SignalLoss(
                        self.truck.id,
                        terminal_id=self.terminal_id,
                        start_at=self.at(start),
                        end_at=self.at(end),
                        released_at=self.at(when),
                        fixes_buffered=n,
                        events_buffered=len(self.terminal.blind_events),
                    ),
                )
                self.terminal.blind_fixes, self.terminal.blind_events = [], []
            elif what == "offline_start":
                yield from self._flush_pending(when)
                yield Emission(when, self.terminal_id, "drop")
                self.record(
                    start,
                    truth.Offline(
                        self.truck.id,
                        terminal_id=self.terminal_id,
                        start_at=self.at(start),
                        end_at=self.at(end),
                        duration_s=round(end - start, 3),
                    ),
                )
            else:
                yield Emission(when, self.terminal_id, "online", device_at=self.device_time(when))

    def _flush_pending(self, t: float) -> Iterator[Emission]:
        if self.terminal.pending:
            yield Emission(t, self.terminal_id, "fixes", fixes=tuple(self.terminal.pending))
            self.terminal.pending = []

    def _fix(self, t: float, lat: float, lon: float, speed_kmh: float) -> Iterator[Emission]:
        yield from self._advance(t)
        if self.offline_at(t):
            return
        self.terminal.seq += 1
        self.terminal.fixes_generated += 1
        if self.term.random() < self.tc.dropout_prob:
            self.terminal.fixes_dropped += 1
            return
        sigma = self.tc.noise_m
        east, north = self._gps_error_m(t, lat, lon, speed_kmh)
        if not self.tc.gps_faults:
            east = north = 0.0
        nlat, nlon = geo.offset(
            lat, lon, east + self.term.gauss(0, sigma), north + self.term.gauss(0, sigma)
        )
        if speed_kmh > 0:
            speed_kmh = max(0.0, speed_kmh * (1 + self.term.gauss(0, 0.03)))
        load_ratio = self.load_kg / self.truck.capacity_kg
        fix = wire.Fix(
            recorded_at=self.device_time(t),
            lat=round(nlat, 7),
            lon=round(nlon, 7),
            speed_kmh=round(speed_kmh, 1),
            heading_deg=round(self.heading, 1),
            accuracy_m=round(max(1.0, sigma) * self.term.uniform(0.8, 1.6), 1),
            odometer_km=round(self.odometer_m / 1000.0, 3),
            ignition=self.ignition,
            load_state="empty" if self.load_kg <= 0 else "full" if load_ratio >= 0.8 else "half",
            seq=self.terminal.seq,
        )
        if self.blind_at(t):
            self.terminal.blind_fixes.append(fix)
            return
        self.terminal.pending.append(fix)
        if len(self.terminal.pending) >= self.tc.batch_size:
            yield from self._flush_pending(t)

    def _gps_error_m(
        self, t: float, lat: float, lon: float, speed_kmh: float
    ) -> tuple[float, float]:
        """The drift or multipath jump (east, north metres) of the fix at t, if any."""
        if self.drift is not None and self.drift[0] <= t < self.drift[1]:
            return self.drift[2], self.drift[3]
        if self.jump_to is not False and speed_kmh > 0:
            target, self.jump_to = self.jump_to, False
            if isinstance(target, Point):
                kx = geo.m_per_deg_lon(lat)
                return (
                    (target.lon - lon) * kx + self.gps.gauss(0, 5.0),
                    (target.lat - lat) * geo.M_PER_DEG_LAT + self.gps.gauss(0, 5.0),
                )
            angle, dist = self.gps.uniform(0, 2 * math.pi), self.gps.uniform(150, 300)
            return dist * math.sin(angle), dist * math.cos(angle)
        return 0.0, 0.0

    def _jump_target(self, point: Point) -> Point | None:
        """Another point 150-300 m from here for a multipath fix to land beside, if any."""
        near = [
            p
            for p in self.city.points
            if p.id != point.id and 150 <= geo.haversine_m(self.lat, self.lon, p.lat, p.lon) <= 300
        ]
        return self.gps.choice(near) if near else None

    def _idle_beside(self, point: Point) -> Iterator[Emission]:
        """Stop 46-59 m (straight line) short of the point on the road in, idle 5-8
        minutes, turn back. The spot lies on the last stretch of the route that leaves
        that distance, so a short last edge does not leave the truck inside the fence;
        a truck already closer than that backs off along the road leading away."""
        path = self.net.path(self.node, point.node, narrow_ok=self.narrow_ok)
        short_m = self.gps.uniform(46, 59)

        def away(node: int) -> float:
            return geo.haversine_m(*self.city.node_latlon(node), point.lat, point.lon)

        far = [k for k, node in enumerate(path[:-1]) if away(node) >= short_m]
        if far:
            for u, v in itertools.pairwise(path[: far[-1] + 1]):
                yield from self._move(u, v)
            toward = path[far[-1] + 1]
        else:
            toward = max(self.city.graph.successors(self.node), key=away)
        u = self.node
        ulat, ulon = self.lat, self.lon
        arrival = self.t
        spot = self._at_distance(ulat, ulon, *self.city.node_latlon(toward), point, short_m)
        yield from self._move_line(ulat, ulon, *spot, 20.0)
        stood_from = self.t
        yield from self._stay(self.t + self.gps.uniform(300, 480))
        self.record(
            arrival,
            truth.IdleBeside(
                self.truck.id,
                point_id=point.id,
                at=self.at(stood_from),
                departure_at=self.at(self.t),
                distance_m=round(geo.haversine_m(self.lat, self.lon, point.lat, point.lon), 1),
                from_node=u,
            ),
        )
        yield from self._move_line(self.lat, self.lon, ulat, ulon, 20.0)
        self.node = u

    @staticmethod
    def _at_distance(
        alat: float, alon: float, blat: float, blon: float, point: Point, distance_m: float
    ) -> tuple[float, float]:
        """Where on the line a -> b the distance to the point crosses `distance_m` (a and
        b on either side of it); b when the whole line lies on one side."""

        def at(frac: float) -> tuple[float, float]:
            return alat + frac * (blat - alat), alon + frac * (blon - alon)

        def dist(frac: float) -> float:
            return geo.haversine_m(*at(frac), point.lat, point.lon)

        lo, hi = 0.0, 1.0
        if (dist(lo) >= distance_m) == (dist(hi) >= distance_m):
            return at(hi)
        for _ in range(40):
            mid = (lo + hi) / 2
            if (dist(mid) >= distance_m) == (dist(lo) >= distance_m):
                lo = mid
            else:
                hi = mid
        return at(lo if dist(lo) >= distance_m else hi)

    def _move_line(
        self, lat1: float, lon1: float, lat2: float, lon2: float, speed_kmh: float
    ) -> Iterator[Emission]:
        """Drive a straight line off the graph's nodes (part of an edge)."""
        length = geo.haversine_m(lat1, lon1, lat2, lon2)
        duration = length / (speed_kmh / 3.6)
        t0 = self.t
        self.heading = geo.bearing_deg(lat1, lon1, lat2, lon2)
        self.speed_kmh = speed_kmh
        while self.terminal.next_fix_s < t0 + duration:
            tf = self.terminal.next_fix_s
            frac = (tf - t0) / duration if duration > 0 else 1.0
            yield from self._fix(
                tf, lat1 + frac * (lat2 - lat1), lon1 + frac * (lon2 - lon1), speed_kmh
            )
            self.terminal.next_fix_s = tf + self._interval()
        self.t = t0 + duration
        self.lat, self.lon = lat2, lon2
        self.odometer_m += length

    def _event(self, t: float, event: wire.Event) -> Iterator[Emission]:
        yield from self._advance(t)
        if self.offline_at(t):
            return
        if self.blind_at(t):
            self.terminal.blind_events.append(event)
            return
        yield Emission(t, self.terminal_id, "events", events=(event,))

    def _interval(self) -> float:
        return self.tc.fix_interval_s if self.ignition else self.tc.parked_interval_s

    def _set_ignition(self, on: bool) -> Iterator[Emission]:
        if on == self.ignition:
            return
        self.ignition = on
        yield from self._fix(self.t, self.lat, self.lon, 0.0)  # terminals report ACC changes
        self.terminal.next_fix_s = self.t + self._interval()

    def _stay(self, until: float) -> Iterator[Emission]:
        while self.terminal.next_fix_s < until:
            self.t = self.terminal.next_fix_s
            yield from self._fix(self.t, self.lat, self.lon, 0.0)
            self.terminal.next_fix_s = self.t + self._interval()
        self.t = max(self.t, until)

    def _move(self, u: int, v: int) -> Iterator[Emission]:
        edge = self.city.graph.edges[u, v]
        length = float(edge["length_m"])
        factor = _clip(
            self.motion.gauss(self.dc.speed_factor_mean, self.dc.speed_factor_sd), 0.35, 1.1
        )
        speed_kmh = float(edge["speed_kmh"]) * factor
        duration = length / (speed_kmh / 3.6)
        (lat1, lon1), (lat2, lon2) = self.city.node_latlon(u), self.city.node_latlon(v)
        self.heading = geo.bearing_deg(lat1, lon1, lat2, lon2)
        t0, odo0 = self.t, self.odometer_m
        t1 = t0 + duration
        stop_at = self.faults.breakdown_at_s
        end = t1 if stop_at is None or stop_at >= t1 else max(t0, stop_at)
        self.speed_kmh = speed_kmh
        while self.terminal.next_fix_s < end:
            tf = self.terminal.next_fix_s
            frac = (tf - t0) / duration
            self.odometer_m = odo0 + frac * length
            yield from self._fix(
                tf, lat1 + frac * (lat2 - lat1), lon1 + frac * (lon2 - lon1), speed_kmh
            )
            self.terminal.next_fix_s = tf + self._interval()
        frac = (end - t0) / duration
        self.t = end
        self.lat, self.lon = lat1 + frac * (lat2 - lat1), lon1 + frac * (lon2 - lon1)
        self.odometer_m = odo0 + frac * length
        if end < t1:
            raise _Broken
        self.node = v

    def _drive_to(self, target: int) -> Iterator[Emission]:
        if self.faults.breakdown_at_s is not None and self.t >= self.faults.breakdown_at_s:
            raise _Broken
        path = self.net.path(self.node, target, narrow_ok=self.narrow_ok)
        for u, v in itertools.pairwise(path):
            yield from self._move(u, v)

    def _wait_until(self, t: float) -> Iterator[Emission]:
        if t <= self.t:
            return
        if t - self.t > self.dc.long_wait_s:
            yield from self._set_ignition(False)
            yield from self._stay(t)
            yield from self._set_ignition(True)
        else:
            yield from self._stay(t)

    # -- stops
    def _serve(self, point: Point, too_short: bool) -> Iterator[Emission]:
        arrival = self.t
        if not too_short:  # a crew that cuts the stop short does not wait for the window
            yield from self._wait_until(point.window_start_s)
        start = self.t
        if too_short:
            dwell = max(10.0, point.min_dwell_s * self.motion.uniform(0.15, 0.5))
        else:
            var = _clip(self.motion.gauss(1.0, self.dc.dwell_sd), 0.8, 1.3)
            dwell = max(point.service_time_s * var, point.min_dwell_s + 10.0)
        lifts = point.bin_count if (self.lift_sensor and not too_short) else 0
        for k in range(lifts):
            te = start + (k + 0.5) * dwell / lifts
            yield from self._stay(te)
            self.t = te
            elat, elon = geo.offset(
                self.lat, self.lon, self.term.gauss(0, 3.0), self.term.gauss(0, 3.0)
            )
            yield from self._event(
                te,
                wire.Event(
                    recorded_at=self.device_time(te),
                    kind="bin_lift",
                    point_id=point.id,
                    rfid_tag=f"{point.id}-{k + 1:02d}",
                    lat=round(elat, 7),
                    lon=round(elon, 7),
                ),
            )
        yield from self._stay(start + dwell)
        departure = self.t
        if too_short:
            self.record(
                arrival,
                truth.TooShort(
                    self.truck.id,
                    point_id=point.id,
                    arrival_at=self.at(arrival),
                    departure_at=self.at(departure),
                    dwell_s=round(departure - arrival, 3),
                    min_dwell_s=point.min_dwell_s,
                ),
            )
            return
        amount = round(
            point.daily_amount_kg * _clip(self.motion.gauss(1.0, self.dc.amount_sd), 0.5, 1.6), 1
        )
        self.load_kg += amount
        self.record(
            arrival,
            truth.Service(
                self.truck.id,
                point_id=point.id,
                arrival_at=self.at(arrival),
                service_start_at=self.at(start),
                departure_at=self.at(departure),
                dwell_s=round(departure - arrival, 3),
                amount_kg=amount,
                bin_lifts=lifts,
            ),
        )

    def _unload(self, station: Station) -> Iterator[Emission]:
        arrival = self.t
        yield from self._wait_until(station.opens_s)
        weigh = self.t + 20.0
        yield from self._stay(weigh)
        self.t = weigh
        self.terminal.tickets += 1
        weight = round(self.load_kg, 1)
        yield from self._event(
            weigh,
            wire.Event(
                recorded_at=self.device_time(weigh),
                kind="weighbridge",
                station_id=station.id,
                weight_kg=weight,
                lat=round(self.lat, 7),
                lon=round(self.lon, 7),
                extra={
                    "ticket_no": f"{station.id}-{self.day.spec.service_date:%Y%m%d}-"
                    f"{self.truck.id}-{self.terminal.tickets:02d}"
                },
            ),
        )
        tipping = station.tipping_time_s * _clip(self.motion.gauss(1.0, self.dc.dwell_sd), 0.7, 1.4)
        yield from self._stay(arrival + max(tipping, weigh - arrival + 30))
        self.load_kg = 0.0
        self.record(
            arrival,
            truth.Unload(
                self.truck.id,
                station_id=station.id,
                arrival_at=self.at(arrival),
                departure_at=self.at(self.t),
                weight_kg=weight,
            ),
        )

    def _take_break(self, duration_s: float, next_node: int | None) -> Iterator[Emission]:
        # Park away from every collection point, so a lunch break is never a "visit".
        if next_node is not None and self.node not in self.net.quiet:
            path = self.net.path(self.node, next_node, narrow_ok=self.narrow_ok)
            walked = 0.0
            for u, v in itertools.pairwise(path):
                walked += float(self.city.graph.edges[u, v]["length_m"])
                if walked > 800:
                    break
                if v in self.net.quiet:
                    yield from self._drive_to(v)
                    break
        start = self.t
        yield from self._set_ignition(False)
        yield from self._stay(start + duration_s)
        yield from self._set_ignition(True)
        self.record(
            start,
            truth.Break(
                self.truck.id,
                start_at=self.at(start),
                end_at=self.at(self.t),
                lat=round(self.lat, 7),
                lon=round(self.lon, 7),
                at_site=self.node not in self.net.quiet,
            ),
        )

    # -- the day
    def run(self) -> Iterator[Emission]:
        """The truck's day: wake at the depot, drive the route's stops (until a
        breakdown, if one is injected), park and let the terminal go to sleep."""
        stops = list(self.route.stops)
        depot = yield from self._leave_depot(stops[0])
        end_depot = depot
        try:
            end_depot = yield from self._drive_stops(stops, depot)
        except _Broken:
            self._record_breakdown(stops)
        yield from self._park_and_sleep(end_depot)

    def _leave_depot(self, first: Stop) -> Generator[Emission, None, Depot]:
        depot = self.city.depot(first.ref_id or self.truck.depot_id)
        self.node = depot.node
        self.lat, self.lon = self.city.node_latlon(depot.node)
        leave = float(first.departure_s)
        self.t = leave - self.tc.wake_before_s
        self.terminal.next_fix_s = self.t
        yield from self._advance(self.t)
        if not self.offline_at(self.t):
            yield Emission(self.t, self.terminal_id, "online", device_at=self.device_time(self.t))
        yield from self._stay(leave)
        yield from self._set_ignition(True)
        self.record(
            leave,
            truth.RouteStart(
                self.truck.id, terminal_id=self.terminal_id, depot_id=depot.id, at=self.at(leave)
            ),
        )
        return depot

    def _drive_stops(self, stops: list[Stop], depot: Depot) -> Generator[Emission, None, Depot]:
        """Every stop after the start, in order; the depot the route ends at."""
        stations = [i for i, s in enumerate(stops) if s.kind == "station"]
        last_station = stations[-1] if stations else None
        end_depot = depot
        for i, stop in enumerate(stops[1:], start=1):
            if stop.kind == "break":
                yield from self._break_stop(stop, stops[i + 1 :])
            elif stop.kind == "point":
                assert stop.ref_id is not None
                yield from self._point_stop(self.city.point(stop.ref_id))
            elif stop.kind == "station":
                assert stop.ref_id is not None
                yield from self._station_stop(self.city.station(stop.ref_id), i == last_station)
            elif stop.kind == "end":
                end_depot = self.city.depot(stop.ref_id or self.truck.depot_id)
                yield from self._drive_to(end_depot.node)
        return end_depot

    def _break_stop(self, stop: Stop, after: list[Stop]) -> Iterator[Emission]:
        """The break, taken on the way to the next place the route goes to."""
        nxt = next((s for s in after if s.kind != "break" and s.ref_id), None)
        duration = stop.departure_s - stop.arrival_s
        if duration <= 0:
            duration = self.truck.break_duration_s
        node = self.city.site(nxt.ref_id).node if nxt and nxt.ref_id else None
        yield from self._take_break(duration, node)

    def _point_stop(self, point: Point) -> Iterator[Emission]:
        """Drive to a point and serve it, or play the fault injected there."""
        fault = self.faults.points.get(point.id)
        if fault == "skip":
            self.record(self.t, truth.Skip(self.truck.id, point_id=point.id, at=self.at(self.t)))
            return
        if fault == "idle_beside":
            yield from self._idle_beside(point)
            return
        beside = self._jump_target(point) if fault == "jump" else None
        if fault == "jump":
            self.jump_to = beside or True
        yield from self._drive_to(point.node)
        if fault == "jump":
            self.record(
                self.t,
                truth.Jump(
                    self.truck.id,
                    point_id=point.id,
                    at=self.at(self.t),
                    beside_point_id=beside.id if beside else None,
                ),
            )
        if fault == "drift":
            self._start_drift(point)
        if fault == "drive_by":
            self.record(
                self.t,
                truth.DriveBy(
                    self.truck.id,
                    point_id=point.id,
                    at=self.at(self.t),
                    speed_kmh=round(self.speed_kmh, 1),
                ),
            )
            return
        yield from self._serve(point, too_short=fault == "too_short")

    def _start_drift(self, point: Point) -> None:
        """Urban-canyon drift: the fixes of the next few minutes are offset 41-76 m."""
        angle = self.gps.uniform(0, 2 * math.pi)
        dist = self.gps.uniform(41, 76)
        until = self.t + self.gps.uniform(120, 180)
        self.drift = (self.t, until, dist * math.sin(angle), dist * math.cos(angle))
        self.record(
            self.t,
            truth.Drift(
                self.truck.id,
                point_id=point.id,
                at=self.at(self.t),
                end_at=self.at(until),
                offset_m=round(dist, 1),
            ),
        )

    def _station_stop(self, station: Station, last: bool) -> Iterator[Emission]:
        """Drive to a station and unload, unless the last unload is faulted away."""
        if self.faults.no_unload and last:
            self.record(
                self.t,
                truth.NoUnload(
                    self.truck.id,
                    station_id=station.id,
                    at=self.at(self.t),
                    load_kg=round(self.load_kg, 1),
                ),
            )
            return
        yield from self._drive_to(station.node)
        yield from self._unload(station)

    def _record_breakdown(self, stops: list[Stop]) -> None:
        self.broken = True
        handled = self._handled_points()
        unserved = [
            s.ref_id for s in stops if s.kind == "point" and s.ref_id and s.ref_id not in handled
        ]
        self.record(
            self.t,
            truth.Breakdown(
                self.truck.id,
                at=self.at(self.t),
                lat=round(self.lat, 7),
                lon=round(self.lon, 7),
                load_kg=round(self.load_kg, 1),
                unserved_point_ids=tuple(unserved),
            ),
        )

    def _park_and_sleep(self, end_depot: Depot) -> Iterator[Emission]:
        """Ignition off, the terminal's last fixes, then its sleep (a broken-down
        truck stands until its shift ends)."""
        self.speed_kmh = 0.0
        arrived = self.t
        yield from self._set_ignition(False)
        until = (
            max(self.t, float(self.truck.shift_end_s))
            if self.broken
            else self.t + self.tc.sleep_after_s
        )
        yield from self._stay(until)
        yield from self._flush_pending(self.t)
        # The terminal goes to sleep: a blind zone still open ends now, and blind
        # zones or offline periods that would start later never happen.
        self.checkpoints = [
            (min(when, self.t) if what == "loss_end" else when, order, what, span)
            for when, order, what, span in self.checkpoints[self.next_checkpoint :]
            if span[0] < self.t
        ]
        self.next_checkpoint = 0
        yield from self._advance(math.inf)
        end_t = max(self.t, self.checkpoints[-1][0] if self.checkpoints else self.t)
        if not self.offline_at(end_t):
            yield Emission(end_t, self.terminal_id, "offline", device_at=self.device_time(end_t))
        self.record(
            arrived,
            truth.RouteEnd(
                self.truck.id,
                terminal_id=self.terminal_id,
                at=self.at(arrived),
                depot_id=None if self.broken else end_depot.id,
                load_kg=round(self.load_kg, 1),
                broken_down=self.broken,
                fixes_generated=self.terminal.fixes_generated,
                fixes_dropped=self.terminal.fixes_dropped,
                asleep_at=self.at(end_t),
            ),
        )

    def _handled_points(self) -> set[str]:
        """Points served, or met with a fault (skip, drive-by, too short), so far."""
        return {
            rec.point_id
            for _, _, rec in self.truth
            if isinstance(rec, truth.Service | truth.PointFault)
        }


# ---- the fleet's day -------------------------------------------------------------------
class SimDay:
    """A deterministic day of the fleet: emissions to publish and the ground truth."""

    def __init__(self, spec: DaySpec, *, net: RoadNetwork | None = None) -> None:
        refuse_unknown_places(spec.plan, spec.city)
        self.spec = spec
        self.tz = ZoneInfo(spec.timezone)
        local_midnight = datetime.combine(spec.service_date, datetime.min.time(), tzinfo=self.tz)
        self.midnight_utc = local_midnight.astimezone(UTC)
        self.net = net or RoadNetwork(spec.city)
        by_truck = index_faults(spec.faults, spec.plan, spec.city)
        self.trucks = [
            _TruckDay(self, route, by_truck[route.truck_id])
            for route in spec.plan.routes
            if any(s.kind in ("point", "station") for s in route.stops)  # idle trucks stay off
        ]
        self._consumed = False

    def iso(self, t: float) -> str:
        return (self.midnight_utc + timedelta(seconds=t)).astimezone(self.tz).isoformat()

    def emissions(self) -> Iterator[Emission]:
        """All emissions of the day in sending order (ties: plan's truck order)."""
        if self._consumed:
            raise RuntimeError("a SimDay can be played once; build another from the same spec")
        self._consumed = True
        return heapq.merge(*(t.run() for t in self.trucks), key=lambda e: e.at_s)

    @property
    def records(self) -> list[truth.TruthRecord]:
        """The ground truth so far, in time order (ties: plan's truck order)."""
        rows = sorted(
            ((t, k, i, rec) for k, td in enumerate(self.trucks) for t, i, rec in td.truth),
            key=lambda r: (r[0], r[1], r[2]),
        )
        return [rec for _, _, _, rec in rows]

    @property
    def truth(self) -> list[dict[str, Any]]:
        """The ground truth as the lines of the truth file."""
        return [rec.as_json() for rec in self.records]

    def header(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "type": "run",
            "service_date": spec.service_date.isoformat(),
            "timezone": spec.timezone,
            "seed": spec.seed,
            "city": spec.city.describe(),
            "terminal": asdict(spec.terminal),
            "driving": asdict(spec.driving),
            "faults": [f.to_dict() for f in spec.faults],
            "trucks": [
                {"truck_id": t.truck.id, "terminal_id": t.terminal_id, "skew_s": t.faults.skew_s}
                for t in self.trucks
            ],
        }

    def clock_skew_records(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "fault",
                "kind": "clock_skew",
                "truck_id": t.truck.id,
                "terminal_id": t.terminal_id,
                "skew_s": t.faults.skew_s,
            }
            for t in self.trucks
            if t.faults.skew_s
        ]

    def write_truth(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the ground truth as JSON lines: a `run` header, then the records in
        time order. Call after the emissions have been consumed."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        header = self.header()
        if extra:
            header.update(extra)
        with out.open("w", encoding="utf-8") as fh:
            for rec in [header, *self.clock_skew_records(), *self.truth]:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return out


# ---- publishing in (scaled) real time ----------------------------------------------------
class Sink(Protocol):
    def send(self, em: Emission) -> None: ...


@dataclass(slots=True)
class ListSink:
    """Collects emissions (tests)."""

    items: list[Emission] = field(default_factory=list)

    def send(self, em: Emission) -> None:
        self.items.append(em)


@dataclass(slots=True)
class RunStats:
    speed: float | None
    emissions: int = 0
    messages: int = 0
    fixes: int = 0
    events: int = 0
    sim_start_s: float = 0.0
    sim_end_s: float = 0.0
    wall_s: float = 0.0
    busy_s: float = 0.0
    max_lag_s: float = 0.0
    lags_s: list[float] = field(default_factory=list, repr=False)

    def lag_quantile_s(self, q: float) -> float:
        if not self.lags_s:
            return 0.0
        ordered = sorted(self.lags_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        sim_span = self.sim_end_s - self.sim_start_s
        return {
            "speed": self.speed,
            "emissions": self.emissions,
            "messages": self.messages,
            "fixes": self.fixes,
            "events": self.events,
            "sim_span_s": round(sim_span, 1),
            "wall_s": round(self.wall_s, 3),
            "achieved_speed": round(sim_span / self.wall_s, 1) if self.wall_s > 0 else None,
            "busy_fraction": round(self.busy_s / self.wall_s, 4) if self.wall_s > 0 else None,
            "max_lag_s": round(self.max_lag_s, 4),
            "p50_lag_s": round(self.lag_quantile_s(0.5), 4),
            "p99_lag_s": round(self.lag_quantile_s(0.99), 4),
        }


def run(
    emissions: Iterator[Emission],
    sink: Sink,
    *,
    speed: float | None,
    start_s: float | None = None,
    until_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Send the emissions at `speed` × real time (None: as fast as possible).

    Simulated time `start_s` is now; emissions before it go out at once (catching
    up), emissions after `until_s` are not sent. The lag of each paced emission
    (how late it went out against its schedule) is recorded."""
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    stats = RunStats(speed=speed)
    wall0 = clock()
    sim0: float | None = start_s
    slept = 0.0
    last_progress = wall0
    for em in emissions:
        if until_s is not None and em.at_s > until_s:
            break
        if sim0 is None:
            sim0 = em.at_s
        if stats.emissions == 0:
            stats.sim_start_s = sim0
        target: float | None = None
        if speed is not None and em.at_s >= sim0:
            target = wall0 + (em.at_s - sim0) / speed
            ahead = target - clock()
            if ahead > 0:
                sleep(ahead)
                slept += ahead
        sink.send(em)
        if target is not None:
            lag = max(0.0, clock() - target)
            stats.lags_s.append(lag)
            stats.max_lag_s = max(stats.max_lag_s, lag)
        stats.emissions += 1
        stats.sim_end_s = em.at_s
        if em.kind == "fixes":
            stats.messages += 1
            stats.fixes += len(em.fixes)
        elif em.kind == "events":
            stats.messages += 1
            stats.events += len(em.events)
        elif em.kind in ("online", "offline"):
            stats.messages += 1
        if on_progress is not None and clock() - last_progress >= 5.0:
            last_progress = clock()
            stats.wall_s = last_progress - wall0
            on_progress(stats)
    stats.wall_s = clock() - wall0
    stats.busy_s = stats.wall_s - slept
    return stats


def simulate(spec: DaySpec) -> tuple[list[Emission], SimDay]:
    """All emissions of a day, in memory (tests, small days)."""
    day = SimDay(spec)
    return list(day.emissions()), day
