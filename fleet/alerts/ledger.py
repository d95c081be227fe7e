"""The clearance ledger (日产日清): one verdict per collection point due on a day.

Pure functions over the day's due points, visits and trucks' coverage; the worker
loads those from the database and writes the verdicts back.

Verdicts:

- ``cleared``: some truck stayed at the point for at least its minimum dwell, or a
  bin-lift / RFID event names the point while that truck's GPS was silent;
- ``partial``: the point was visited, but every stay was shorter than the dwell;
- ``missed``: not visited (or only driven past) by the verdict time — the end of the
  point's window, capped at the clearance deadline, plus a grace period;
- ``unverifiable``: not cleared, but the planned truck's terminal was silent long
  enough, and near enough in time and space, that a visit could hide in the silence;
- ``pending``: not cleared yet and the verdict time has not come (or the truck is at
  the point right now).

A cleared point's load counts as **delivered** only once the truck that collected it
unloads at a transfer station (a long enough stay there, or a weighbridge ticket). A
truck that parks at a depot, or whose shift ends, with that load breaks 日清 for the
point too (``delivery = not_delivered``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any, Literal

from fleet.alerts.visits import Gap, Visit, VisitParams
from routing.vocab import haversine_m

LedgerStatus = Literal["pending", "cleared", "partial", "missed", "unverifiable"]
Delivery = Literal["none", "on_truck", "delivered", "not_delivered"]
LEDGER_STATUSES: tuple[LedgerStatus, ...] = (
    "pending",
    "cleared",
    "partial",
    "missed",
    "unverifiable",
)


# How long after a point's window ends it is judged missed, when nothing cleared it (the
# ledger's verdict and the rules' alert use the same grace).
MISSED_GRACE_S = 900.0
# A drifted stay at least this sure (see visits.VisitParams.drift_confidence) can clear.
DRIFT_CLEARS = 0.5
# How far beside a point's fence a drifted stay may lie (the detector's reach), and
# how long a drift lasts at most.
DRIFT_REACH_M = VisitParams().drift_reach_m
DRIFT_MAX_S = VisitParams().drift_max_s


@dataclass(frozen=True, slots=True)
class LedgerParams:
    missed_grace_s: float = MISSED_GRACE_S
    # After shift end, a truck still carrying a load is taken to have parked with it.
    unload_grace_s: float = 3600.0
    # The fastest a truck could have driven to a point and back during a silence.
    hidden_visit_speed_kmh: float = 60.0
    # A silence shorter than this many reporting intervals is dropped fixes (5 % lost
    # fixes make four in a row a one-in-160,000 event), not a terminal gone dark.
    silence_cadences: float = 4.0


@dataclass(frozen=True, slots=True)
class DuePoint:
    point_id: str
    district_id: str
    service_date: date
    lat: float
    lon: float
    radius_m: float
    min_dwell_s: float
    window_start_at: datetime
    window_end_at: datetime
    deadline_at: datetime
    stream: str = "mixed"
    # Bins a truck lifts (a lift sensor reports each lift); False: sacks, a heap.
    has_bins: bool = True
    planned_truck_id: str | None = None
    plan_id: int | None = None
    planned_seq: int | None = None
    planned_arrival_at: datetime | None = None
    unassigned_reason: str | None = None

    def verdict_at(self, grace_s: float) -> datetime:
        """When an uncleared point becomes missed: window end (capped at the deadline) + grace."""
        return min(self.window_end_at, self.deadline_at) + timedelta(seconds=grace_s)


@dataclass(frozen=True, slots=True)
class PlannedStop:
    seq: int
    kind: str  # start / point / station / break / end
    site_id: str | None  # point, station or depot id
    arrival_at: datetime
    # Where the stop is (None: a break, or unknown) and a point's fence.
    lat: float | None = None
    lon: float | None = None
    radius_m: float = 0.0


@dataclass(frozen=True)
class TruckDay:
    """One truck on one service date: its shift, what it reported, what it did."""

    truck_id: str
    district_id: str
    service_date: date
    depot_id: str
    shift_start_at: datetime
    shift_end_at: datetime
    break_start_at: datetime
    break_end_at: datetime  # latest break start + break duration
    break_duration_s: float
    first_fix_at: datetime | None = None
    first_lat: float | None = None
    first_lon: float | None = None
    last_fix_at: datetime | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    gaps: tuple[Gap, ...] = ()
    visits: tuple[Visit, ...] = ()  # this truck's visits on the day, by arrival
    planned: tuple[PlannedStop, ...] = ()  # by seq; empty when the truck has no route
    plate: str = ""  # what a person reads for the truck (皖D12345)
    # When the worker last received data from the terminal, on its own clock (None:
    # unknown, e.g. in a replay). A terminal whose clock runs behind sends fixes that
    # look minutes old on arrival; it is not silent.
    last_heard_at: datetime | None = None

    @property
    def tz(self) -> tzinfo | None:
        """The district's time zone (the shift is read in it), for times a person reads."""
        return self.shift_start_at.tzinfo

    @property
    def name(self) -> str:
        """The truck as a person reads it: its plate, its id when it has none."""
        return self.plate or self.truck_id

    @property
    def has_route(self) -> bool:
        return any(s.kind == "point" for s in self.planned)

    @property
    def starts_at(self) -> datetime:
        """When the truck's day begins: its planned start, else its shift start."""
        return self.planned[0].arrival_at if self.planned else self.shift_start_at

    @cached_property
    def lifts_bins(self) -> bool:
        """Does the truck's device report its bin lifts (or RFID reads of the bins)? Then
        a point with bins it served has a lift naming it (``lifted_if_it_lifts``)."""
        return any(v.has_event("bin_lift", "rfid") for v in self.visits)

    def parked_home(self) -> Visit | None:
        """The depot stay the track ends in after the day's work: home for the night."""
        stays = [v for v in self.visits if v.kind == "stay"]
        if not stays:
            return None
        last = stays[-1]
        worked = any(v.site_kind in ("point", "station") for v in stays[:-1])
        return last if last.site_kind == "depot" and last.is_open and worked else None

    def quiet_since(self) -> datetime | None:
        """Since when nothing has been heard from the terminal (None: never heard)."""
        if self.last_fix_at is None:
            return None
        if self.last_heard_at is None:
            return self.last_fix_at
        return max(self.last_fix_at, self.last_heard_at)

    def asleep(self) -> bool:
        """The terminal went quiet with the truck parked: home after work, or standing
        still at the end of its shift (a truck broken down earlier, switched off)."""
        if self.parked_home() is not None:
            return True
        stays = [v for v in self.visits if v.kind == "stay"]
        return (
            bool(stays)
            and stays[-1].is_open
            and self.last_fix_at is not None
            and self.last_fix_at >= self.shift_end_at - timedelta(minutes=15)
        )

    @cached_property
    def _placed(self) -> list[str]:
        return [s.site_id for s in self.planned if s.site_id is not None]

    def rank_of(self, site_id: str) -> int | None:
        """Position of a planned point among the route's placed stops (None: not planned)."""
        placed = self._placed
        return placed.index(site_id) if site_id in placed else None

    def progress(self, *, by_arrival: bool = False) -> list[tuple[datetime, int]]:
        return self._progress[1 if by_arrival else 0]

    @cached_property
    def _progress(self) -> tuple[list[tuple[datetime, int]], list[tuple[datetime, int]]]:
        by_departure = self._progress_by(by_arrival=False)
        return by_departure, self._progress_by(by_arrival=True)

    def _progress_by(self, *, by_arrival: bool) -> list[tuple[datetime, int]]:
        """(time, rank): how far along its route the truck was, at each stay's
        departure (or arrival).

        Ranks count the planned stops that have a place (start, points, stations, end;
        not the break). Stays are matched to them in order: a stay at a site advances
        the rank to the first stop at that site beyond it (a station visited twice is
        two stops). Stays elsewhere do not move it.
        """
        placed = self._placed
        rank = -1  # before the start
        out = [(self.shift_start_at - timedelta(days=1), rank)]
        for v in self.visits:
            if v.kind != "stay" or v.site_id is None:
                continue
            nxt = next((r for r in range(rank + 1, len(placed)) if placed[r] == v.site_id), None)
            if nxt is not None:
                rank = nxt
                out.append((v.arrived_at if by_arrival else v.departed_at, rank))
        return out

    def route_window(self, start: datetime, end: datetime) -> tuple[int, float]:
        """For a silence from `start` to `end`: (rank of the last planned stop reached
        before it, rank of the first planned stop seen after it; inf if none)."""
        placed = self._placed
        before = max(r for t, r in self.progress(by_arrival=True) if t <= start)
        stays = [v for v in self.visits if v.kind == "stay" and v.site_id is not None]
        there = next((v for v in stays if v.arrived_at <= start <= v.departed_at), None)
        for v in stays:
            if v.departed_at < end:
                continue
            if v.arrived_at <= start or (there is not None and there.site_id == v.site_id):
                return before, before  # it never left, or is back where it was
            nxt = next((r for r in range(before + 1, len(placed)) if placed[r] == v.site_id), None)
            if nxt is not None:
                return before, nxt
        return before, math.inf

    def at_depot_during(self, start: datetime, end: datetime) -> bool:
        """Was the truck in one depot stay from `start` to `end` (parked, terminal asleep)?"""
        return any(
            v.kind == "stay"
            and v.site_kind == "depot"
            and v.arrived_at <= start
            and end <= v.departed_at
            for v in self.visits
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    due: DuePoint
    status: LedgerStatus
    reason: str | None = None
    cleared_at: datetime | None = None
    cleared_by_truck_id: str | None = None
    dwell_s: float | None = None
    delivery: Delivery = "none"
    delivered_at: datetime | None = None
    delivered_station_id: str | None = None
    # A visit could be hiding in the planned truck's silence (so far).
    coverage_hole: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)
    # How sure the verdict is (0-1); also in `evidence`, with the basis it rests on.
    confidence: float = 1.0

    @property
    def point_id(self) -> str:
        return self.due.point_id


def is_unload(visit: Visit, station_min_dwell_s: Mapping[str, float]) -> bool:
    if visit.site_kind != "station":
        return False
    if visit.has_event("weighbridge"):
        return True
    return visit.kind == "stay" and visit.dwell_s >= station_min_dwell_s.get(
        visit.site_id or "", 0.0
    )


def is_clearing(visit: Visit, min_dwell_s: float) -> bool:
    if visit.site_kind != "point":
        return False
    if visit.kind == "stay":
        return visit.dwell_s >= min_dwell_s
    return visit.kind == "event" and visit.has_event("bin_lift", "rfid")


def names_point(visit: Visit) -> bool:
    """Was a bin lifted (or read) during the visit at its point: a lift naming the point,
    or one naming none (most lift sensors report the lift alone; it happened during
    this stay)?"""
    return any(
        e.kind in ("bin_lift", "rfid") and e.point_id in (None, visit.site_id)
        for e in visit.evidence
    )


def lifted_if_it_lifts(
    visit: Visit, point: DuePoint, trucks: Mapping[str, TruckDay], p: LedgerParams
) -> bool:
    """A truck whose device reports its bin lifts (it has that day) empties no point
    with bins without one: its stay clears such a point only if a lift during it names
    the point — unless its terminal went silent during the stay (off, or in a blind zone
    whose batch never came), when the lifts may be lost with the fixes. A truck standing
    minutes in a point's fence while it serves a neighbour 28 m on, or idles for its
    next stop, lifts nothing there."""
    day = trucks.get(visit.truck_id)
    if not point.has_bins or day is None or not day.lifts_bins or names_point(visit):
        return True
    return any(
        g.start_at <= visit.departed_at
        and g.end_at >= visit.arrived_at
        and g.duration_s > p.silence_cadences * g.cadence_s
        for g in day.gaps
    )


def at_turn(visit: Visit, point: DuePoint, trucks: Mapping[str, TruckDay]) -> bool:
    """Was `visit` made by the point's planned truck at the point's turn: it had not yet
    reached the point in its route order (without a route: inside the point's window)?"""
    if visit.truck_id != point.planned_truck_id:
        return False
    day = trucks.get(visit.truck_id)
    rank = day.rank_of(point.point_id) if day is not None else None
    if day is None or rank is None:
        return point.window_start_at <= visit.arrived_at <= point.window_end_at
    before = max(r for t, r in day.progress() if t < visit.arrived_at)
    return before < rank


def parked_after(day: TruckDay, after: datetime) -> Visit | None:
    """The first stay at a depot that began after `after`: the truck is back home."""
    for v in day.visits:
        if v.kind == "stay" and v.site_kind == "depot" and v.arrived_at >= after:
            return v
    return None


def compute(
    due: Iterable[DuePoint],
    visits_at: Mapping[str, Sequence[Visit]],
    trucks: Mapping[str, TruckDay],
    station_min_dwell_s: Mapping[str, float],
    now: datetime,
    params: LedgerParams | None = None,
) -> list[Verdict]:
    """One verdict per due point, as things stand at `now`."""
    p = params or LedgerParams()
    due = list(due)
    mine: dict[str, list[DuePoint]] = {}
    for point in due:
        if point.planned_truck_id is not None:
            mine.setdefault(point.planned_truck_id, []).append(point)
    return [
        verdict(
            point,
            [
                v
                for v in visits_at.get(point.point_id, ())
                if not explained_elsewhere(v, point, mine.get(v.truck_id, ()), trucks)
            ],
            trucks,
            station_min_dwell_s,
            now,
            p,
        )
        for point in due
    ]


def explained_elsewhere(
    visit: Visit, point: DuePoint, own: Sequence[DuePoint], trucks: Mapping[str, TruckDay]
) -> bool:
    """Is `visit` a weakly placed drifted stay at `point` (on a crossing, off the
    roads, or a service-length stop beside it; no lift naming it) by a truck `point` is not planned for, that stood, at its
    turn, within reach of a point of its own route? Then it was that truck's stop there
    (or beside it), and says nothing about `point`: the plan chooses between the
    candidates its fixes leave."""
    if (
        not visit.drifted
        or visit.confidence >= DRIFT_CLEARS
        or visit.has_event("bin_lift", "rfid")
        or point.planned_truck_id in (None, visit.truck_id)
        or visit.distance_m is None
    ):
        return False
    reach = visit.distance_m + DRIFT_REACH_M
    return any(
        other.point_id != point.point_id
        and haversine_m(point.lat, point.lon, other.lat, other.lon) <= reach + other.radius_m
        and at_turn(visit, other, trucks)
        for other in own
    )


def verdict(
    point: DuePoint,
    visits: Sequence[Visit],
    trucks: Mapping[str, TruckDay],
    station_min_dwell_s: Mapping[str, float],
    now: datetime,
    p: LedgerParams,
) -> Verdict:
    visits = sorted(visits, key=lambda v: v.arrived_at)
    # A drifted stay (its fixes beside the point) clears the point only when the plan
    # agrees — its planned truck, at its turn — and the track stood in the fence too
    # (or a bin lift names the point). Otherwise nothing can be claimed either way.
    clearing = [
        v
        for v in visits
        if is_clearing(v, point.min_dwell_s)
        and lifted_if_it_lifts(v, point, trucks, p)
        and (
            not v.drifted
            or (
                (v.confidence >= DRIFT_CLEARS or v.has_event("bin_lift", "rfid"))
                and at_turn(v, point, trucks)
            )
        )
    ]
    if clearing:
        return _cleared(point, clearing[0], visits, trucks, station_min_dwell_s, now, p)
    drifted = [v for v in visits if v.drifted and is_clearing(v, point.min_dwell_s)]

    short = [v for v in visits if v.kind == "stay" and not v.is_open]
    # Stays long enough that lifted nothing, by a truck that reports its lifts.
    unlifted = [v for v in short if is_clearing(v, point.min_dwell_s)]
    # Driving past counts against the point only for the truck that should have stopped.
    passes = [
        v for v in visits if v.kind == "pass" and point.planned_truck_id in (None, v.truck_id)
    ]
    here_now = [v for v in visits if v.kind == "stay" and v.is_open]
    planned = trucks.get(point.planned_truck_id) if point.planned_truck_id else None
    verdict_at = point.verdict_at(p.missed_grace_s)
    hole = False
    # Only a verdict (at verdict time) or the 日清 deadline asks about silences.
    judged = now >= verdict_at or now >= point.deadline_at
    if point.planned_truck_id is not None and judged and not here_now:
        hole = planned is None or hidden_visit_possible(
            point, planned, until=min(now, max(verdict_at, point.deadline_at)), p=p
        )
    evidence: dict[str, Any] = {
        "attempts": [visit_json(v) for v in (short + passes + here_now)[:10]],
    }
    if planned is not None and hole:
        evidence["gaps"] = [
            {"start_at": g.start_at.isoformat(), "end_at": g.end_at.isoformat()}
            for g in planned.gaps
            if g.end_at >= point.window_start_at and g.start_at <= verdict_at
        ][:10]

    def result(status: LedgerStatus, reason: str | None) -> Verdict:
        # Not cleared: sure when the track covers the day, unsure when it cannot tell.
        confidence = 0.0 if status == "unverifiable" else (0.5 if status == "pending" else 1.0)
        basis = "drifted_stay" if reason == "drifted_stay" else ("silence" if hole else "track")
        evidence.update(confidence=confidence, basis=basis)
        return Verdict(
            point, status, reason, coverage_hole=hole, evidence=evidence, confidence=confidence
        )

    if here_now:
        return result("pending", "at_point")
    if now < verdict_at:
        return result("pending", "too_short" if short else ("drive_by" if passes else None))
    if point.planned_truck_id is not None and hole:
        return result("unverifiable", "terminal_offline")
    if drifted:
        evidence["attempts"] = [visit_json(v) for v in drifted[:5]] + evidence["attempts"]
        return result("unverifiable", "drifted_stay")
    if short:
        return result("partial", "too_short" if len(unlifted) < len(short) else "no_lift")
    if passes:
        return result("missed", "drive_by")
    if point.planned_truck_id is None:
        if point.unassigned_reason:
            return result("missed", f"unassigned: {point.unassigned_reason}")
        return result("missed", "not_planned")
    return result("missed", "not_visited")


def _cleared(
    point: DuePoint,
    visit: Visit,
    visits: Sequence[Visit],
    trucks: Mapping[str, TruckDay],
    station_min_dwell_s: Mapping[str, float],
    now: datetime,
    p: LedgerParams,
) -> Verdict:
    reason = None
    if visit.arrived_at > point.window_end_at:
        reason = "late"
    elif visit.departed_at < point.window_start_at:
        reason = "early"
    day = trucks.get(visit.truck_id)
    delivery: Delivery = "on_truck"
    delivered_at = None
    station = None
    if day is not None:
        for v in day.visits:
            if v.arrived_at >= visit.arrived_at and is_unload(v, station_min_dwell_s):
                delivery, delivered_at, station = "delivered", v.arrived_at, v.site_id
                break
        else:
            home = parked_after(day, visit.departed_at)
            ended = now >= day.shift_end_at + timedelta(seconds=p.unload_grace_s)
            if not visit.is_open and (home is not None or ended):
                delivery = "not_delivered"
    if visit.drifted:
        basis = "drifted_stay"
        confidence = 0.9 if visit.has_event("bin_lift", "rfid") else visit.confidence
    else:
        basis, confidence = ("event" if visit.kind == "event" else "stay"), 1.0
    evidence: dict[str, Any] = {
        "basis": basis,
        "confidence": confidence,
        "visit": visit_json(visit),
    }
    others = [v for v in visits if v is not visit and v.kind != "pass"]
    if others:
        evidence["other_visits"] = [visit_json(v) for v in others[:5]]
    return Verdict(
        point,
        "cleared",
        reason,
        cleared_at=visit.arrived_at,
        cleared_by_truck_id=visit.truck_id,
        dwell_s=visit.dwell_s,
        delivery=delivery,
        delivered_at=delivered_at,
        delivered_station_id=station,
        evidence=evidence,
        confidence=confidence,
    )


def hidden_visit_possible(
    point: DuePoint, day: TruckDay, *, until: datetime, p: LedgerParams
) -> bool:
    """Could the truck have served `point` unseen, in a silence of its terminal up to `until`?

    A silence from fix a to fix b hides a visit only if the truck could drive from a to
    the point, stay the minimum dwell and drive on to b in that time.
    """
    v_ms = p.hidden_visit_speed_kmh / 3.6
    need = point.min_dwell_s
    begin = day.starts_at
    if day.first_fix_at is None or day.last_fix_at is None:
        return (until - begin).total_seconds() >= need
    stays = [v for v in day.visits if v.kind == "stay"]
    woke_at_depot = (
        bool(stays)
        and stays[0].site_kind == "depot"
        and stays[0].fixes > 0
        and (stays[0].arrived_at <= day.first_fix_at + timedelta(seconds=60))
    )

    def far(lat: float | None, lon: float | None) -> float:
        if lat is None or lon is None:
            return 0.0
        return max(0.0, haversine_m(lat, lon, point.lat, point.lon) - point.radius_m)

    if day.first_fix_at > begin and not woke_at_depot:
        span = (min(day.first_fix_at, until) - begin).total_seconds()
        if span - need >= far(day.first_lat, day.first_lon) / v_ms:
            return True
    rank = day.rank_of(point.point_id)
    for gap in day.gaps:
        if (
            gap.end_at <= begin
            or gap.start_at >= until
            or day.at_depot_during(gap.start_at, gap.end_at)
            or gap.duration_s <= p.silence_cadences * gap.cadence_s
        ):
            continue
        if rank is not None:
            # A truck working its route in order serves, while silent, only the stops
            # between the one it had left and the one it is next seen at.
            before, after = day.route_window(gap.start_at, gap.end_at)
            if not before < rank <= after:
                continue
        travel = (far(gap.start_lat, gap.start_lon) + far(gap.end_lat, gap.end_lon)) / v_ms
        if gap.duration_s - need >= travel:
            return True
    quiet = day.quiet_since() or day.last_fix_at
    if quiet < until and not day.asleep():
        span = (until - quiet).total_seconds()
        if span - need >= far(day.last_lat, day.last_lon) / v_ms:
            return True
    return False


def visit_json(v: Visit) -> dict[str, Any]:
    out: dict[str, Any] = {
        "truck_id": v.truck_id,
        "kind": v.kind,
        "arrived_at": v.arrived_at.isoformat(),
        "departed_at": v.departed_at.isoformat(),
        "dwell_s": round(v.dwell_s, 1),
    }
    if v.distance_m is not None:
        out["distance_m"] = v.distance_m
    if v.speed_kmh is not None:
        out["speed_kmh"] = v.speed_kmh
    if v.is_open:
        out["open"] = True
    if v.confidence < 1.0:
        out["confidence"] = v.confidence
    if v.evidence:
        out["events"] = [e.as_json() for e in v.evidence]
    return out
