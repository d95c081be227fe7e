"""Visits from a truck's track: pure functions, no database.

A truck's day of fixes becomes three kinds of record:

- **stay**: the truck stood still (reported speed at most ``stop_speed_kmh``, or, for
  terminals that send no speed, fixes that do not move beyond their own noise). A
  stay is matched to the nearest site (collection point, transfer station, depot)
  whose geofence holds the stay's *median* position. Matching the median of many
  noisy fixes, instead of testing each fix against the fence, is what keeps a truck
  parked at the fence edge from flickering in and out: 15 m of noise on ten fixes
  moves their median by about 5 m. A stay that matches no site is an off-route stop.
- **pass**: the track crossed a collection point's fence without stopping. It is
  measured on the segments between fixes (a truck at 30 km/h covers 83 m between
  two fixes 10 s apart, so often no single fix lies inside a 30 m fence). A pass is
  reported only once the truck is seen clearly beyond the fence again, and never
  when it is the approach to or departure from a stay at the same point.
- **event**: a bin-lift / RFID read naming a point while the GPS was silent, or a
  weighbridge ticket at a station that no stay explains. Events that fall inside a
  stay are attached to it as corroborating evidence instead.

Dwell is estimated as the time between the midpoints of the gaps around the stay
(the truck arrived somewhere between the last moving fix and the first stopped
one), which is unbiased for evenly spaced fixes; each end adds at most half of
``edge_cap_s``.

Everything here is deterministic in its inputs, so re-running a day, or a window of
it, gives the same records (see ``worker`` for the windowed re-run).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median
from typing import Any, Literal

from fleet.alerts.geo import GridIndex, Projection, segment_closest
from fleet.alerts.roads import RoadIndex, distance_to_line
from fleet.positions.models import EventKind

SiteKind = Literal["point", "station", "depot"]
VisitKind = Literal["stay", "pass", "event"]
# Events that say where a truck worked. An `alarm` (overspeed, fatigue, SOS, ...) says
# nothing about serving a point or unloading, so the detector leaves alarms out.
EVIDENCE_KINDS: frozenset[EventKind] = frozenset({"bin_lift", "rfid", "weighbridge"})


@dataclass(frozen=True, slots=True)
class Site:
    """A place a truck may be at: its geofence and the dwell that counts as service."""

    kind: SiteKind
    site_id: str
    lat: float
    lon: float
    radius_m: float
    min_dwell_s: float


@dataclass(frozen=True, slots=True)
class Fix:
    at: datetime
    lat: float
    lon: float
    speed_kmh: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    at: datetime
    kind: EventKind
    point_id: str | None = None
    station_id: str | None = None
    rfid_tag: str | None = None
    weight_kg: float | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "at": self.at.isoformat()}
        for name in ("point_id", "station_id", "rfid_tag", "weight_kg"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Visit:
    truck_id: str
    kind: VisitKind
    site_kind: SiteKind | None  # None: an off-route stop
    site_id: str | None
    arrived_at: datetime
    departed_at: datetime
    dwell_s: float
    fixes: int
    distance_m: float | None = None  # stay: median position to site; pass: closest approach
    speed_kmh: float | None = None  # highest reported speed during the visit
    is_open: bool = False  # the track ends inside this stay: the truck is still there
    evidence: tuple[DeviceEvent, ...] = ()
    # The departure was observed (a fix soon after it); False when the stay ends in a
    # silence of the terminal, so it may have lasted longer than measured.
    end_seen: bool = True
    # How sure the detector is that this visit was at this site: 1 for a stay whose
    # fixes lie in the fence, less for a drifted stay (see ``VisitParams.drift_*``).
    confidence: float = 1.0
    # A stay's median position (None for passes and event-only visits): where a stop
    # at no site stood, so the rules can tell which planned stop it stood beside.
    lat: float | None = None
    lon: float | None = None

    @property
    def drifted(self) -> bool:
        """A stay beside the site, matched to it because the track entered its fence."""
        return self.kind == "stay" and self.confidence < 1.0

    def has_event(self, *kinds: EventKind) -> bool:
        return any(e.kind in kinds for e in self.evidence)


@dataclass(frozen=True, slots=True)
class Gap:
    """No fix between two consecutive fixes for longer than ``gap_min_s``."""

    start_at: datetime
    end_at: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    # The terminal's reporting interval just before the silence (60 s when parked
    # with the ignition off, 10 s when driving): a silence of a few intervals is
    # dropped fixes, not a terminal that went dark.
    cadence_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return (self.end_at - self.start_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Detection:
    visits: tuple[Visit, ...]
    gaps: tuple[Gap, ...]


@dataclass(frozen=True, slots=True)
class VisitParams:
    """Tuning of the detector; each constant carries its unit."""

    stop_speed_kmh: float = 3.0
    # Fixes of one stay lie within this of the stay's running mean position, or
    # within this many times their own reported accuracy.
    stay_radius_m: float = 50.0
    stay_radius_accuracies: float = 3.5
    # A stay is cut in two where its fixes shift for good (a change point): the truck
    # moved between two places, dropping the moving fixes or sending one spike, and each
    # place is judged on its own. The means of the two parts must lie at least this far
    # apart, and this many standard errors of their difference (so noise never cuts a
    # stay), each part holding at least this many fixes.
    stay_shift_min_m: float = 30.0
    stay_shift_errors: float = 5.0
    stay_shift_min_fixes: int = 3
    # ...but only where a truck could have driven the shift, from standing to standing,
    # in the time between the two parts (accelerating then braking at this): 68 m between
    # two standing fixes 10 s apart is a drift that ended, not a move, and is left whole.
    stay_shift_accel_ms2: float = 1.5
    # Without reported speed: a fix is still when its neighbours are this close (or
    # 2.5 × its accuracy, whichever is larger).
    still_jitter_m: float = 25.0
    # Neighbours further apart in time than this say nothing about each other.
    max_gap_s: float = 120.0
    # A stay continues over a silence up to this long when the truck is in the same
    # place on both sides of it.
    max_parked_gap_s: float = 900.0
    # Moving fixes tolerated inside a stay (speed spikes) when they stay put.
    spike_fixes: int = 1
    edge_cap_s: float = 30.0
    default_accuracy_m: float = 15.0
    min_match_margin_m: float = 5.0
    max_match_margin_m: float = 25.0
    # Stays at the same site closer than this are one visit (the truck repositioned).
    merge_gap_s: float = 120.0
    # Passes: segments longer than this in time are not interpolated.
    pass_max_gap_s: float = 60.0
    pass_margin_m: float = 30.0
    # A pass is final once a fix at least this long after it lies beyond the fence.
    pass_settle_s: float = 20.0
    # A pass this close in time to a stay at the same point is its approach/departure.
    pass_stay_adjacent_s: float = 60.0
    # With the district's roads: the route is fitted to the fixes from up to this long
    # before the pass to the fix that settles it, and the pass stands only if that
    # route enters the fence (widened by this; 5 m let through roads 30-35 m from a
    # 30 m fence, 48 false passes in 150 trips of bench/passes.py).
    pass_road_lookback_s: float = 60.0
    pass_road_slack_m: float = 0.0
    # ...or if a route by the point explains the fixes within this much log-likelihood
    # of the likeliest one (the fixes cannot tell the two apart).
    pass_road_margin: float = 0.0
    # A fitted route further than this many σ (RMS) from the fixes does not explain
    # them (a yard, a road missing from the map): the fixes alone decide.
    pass_road_max_misfit: float = 2.0
    # A fix is a multipath jump when the way out to it and back exceeds what the truck
    # could drive between its neighbours (reported speed, else this) plus this noise.
    jump_fallback_speed_kmh: float = 60.0
    jump_noise_m: float = 60.0
    # Urban-canyon drift: a stay whose fixes sit beside a point (up to this from its
    # fence) is a stay at that point when the truck also stood in the fence, or its
    # way into or out of the stay crossed the fence (see ``_match_drifted``); the
    # ledger then also asks the plan whether it was the point's turn.
    drift_reach_m: float = 60.0
    # Beside a stay in the fence (the drift ended while the truck still stood there):
    # enough for the plan to clear the point. On the track crossing the inner half of
    # the fence alone (noise fakes that now and then for a truck standing 50 m off):
    # too little to clear it, enough to keep it from being called missed.
    drift_confidence: float = 0.6
    drift_crossing_confidence: float = 0.3
    # ...as sure when the stay's last (or first) this many fixes lie deep in the fence:
    # the drift ended (or began) while the truck stood there.
    drift_settled_fixes: int = 2
    # A truck stands on a road (or in a site): a stay whose median lies farther than
    # this, plus the median's own uncertainty, from every road of the district cannot be
    # where the truck stood. Beside a point, its fixes drifted off it: as sure as a
    # crossing (the point is the likeliest place, not the only one).
    drift_road_halfwidth_m: float = 10.0
    # A stay no longer than serving the point takes — this many times its minimum
    # dwell (half the service time by default), plus a minute of measuring — whose
    # truck came from the point or left toward it (a fix just before or after it lies
    # this many accuracies nearer the point than the stay): the truck stood at the
    # point, its fixes drifted (``drift_crossing_confidence``). A truck idling across
    # the street comes and goes along its own street, and waits longer than a service.
    drift_service_dwells: float = 2.0
    drift_service_slack_s: float = 60.0
    # ...and no longer than a drift lasts (2-3 minutes in urban canyons; half a minute
    # more for the stop's estimated ends): a truck whose every fix sat beside the point
    # for longer stood there (idling 5-8 minutes across the street, then leaving through
    # the point, looks the same on its way out).
    drift_max_s: float = 210.0
    drift_toward_accuracies: float = 1.0
    # Leaving a stop beside a point, a fix this many accuracies nearer the point than the
    # stop is the truck driving toward it, not noise (see ``_passes``).
    came_toward_accuracies: float = 3.0
    # Events within this of a stay belong to it.
    event_slack_s: float = 60.0
    # An event is "in a GPS gap" when no fix lies within this of it.
    event_gap_s: float = 60.0
    # Event-only visits: events at the same site closer than this are one visit.
    event_merge_s: float = 600.0
    gap_min_s: float = 60.0


class SiteIndex:
    """The sites of a district, projected and gridded for fast 'what is near here';
    with the district's roads (`road` rows), passes are judged on the road taken."""

    def __init__(
        self, sites: Iterable[Site], roads: Iterable[Mapping[str, Any]] | None = None
    ) -> None:
        self.sites = tuple(sites)
        ref = median(s.lat for s in self.sites) if self.sites else 0.0
        self.proj = Projection(ref)
        road_index = RoadIndex(roads, self.proj) if roads is not None else None
        self.roads = road_index if road_index is not None and not road_index.empty else None
        self._items = [_PSite(*self.proj.xy(s.lat, s.lon), s) for s in self.sites]
        self.max_radius_m = max((s.radius_m for s in self.sites), default=0.0)
        self.grid: GridIndex[_PSite] = GridIndex(self._items, cell_m=200.0)
        self.by_key = {(s.kind, s.site_id): s for s in self.sites}

    def get(self, kind: SiteKind, site_id: str) -> Site | None:
        return self.by_key.get((kind, site_id))

    def at(self, lat: float, lon: float, *, accuracy_m: float = 0.0) -> Site | None:
        """The site whose fence, widened by the fix's accuracy (at most its own radius),
        holds one fix: the nearest, stations and depots before points (the live map's
        status at a glance; visits are decided on stays, not single fixes)."""
        x, y = self.proj.xy(lat, lon)
        best: tuple[int, float, Site] | None = None
        for ps in self.grid.near(x, y, self.max_radius_m + min(accuracy_m, self.max_radius_m)):
            d = math.hypot(ps.x - x, ps.y - y)
            if d > ps.site.radius_m + min(accuracy_m, ps.site.radius_m):
                continue
            key = (_AT_RANK[ps.site.kind], d, ps.site)
            if best is None or key[:2] < best[:2]:
                best = key
        return best[2] if best else None


_AT_RANK: dict[str, int] = {"station": 0, "depot": 1, "point": 2}


@dataclass(frozen=True, slots=True)
class _PSite:
    x: float
    y: float
    site: Site


@dataclass(slots=True)
class _Stay:
    idx: list[int]
    arrived: float
    departed: float
    is_open: bool
    end_seen: bool
    x: float
    y: float
    site: Site | None = None
    distance_m: float | None = None
    max_speed: float | None = None
    events: list[DeviceEvent] = field(default_factory=list)
    confidence: float = 1.0
    # The stay's position is read from its fixes from this one on (an offset into idx):
    # 0, or where its fixes settled after a drift that ended while the truck stood.
    settled: int = 0


def detect(
    truck_id: str,
    fixes: Sequence[Fix],
    events: Sequence[DeviceEvent],
    sites: SiteIndex,
    params: VisitParams | None = None,
    *,
    window_from: datetime | None = None,
) -> Detection:
    """Stays, passes and event-only visits of one truck's track, sorted by arrival.

    `window_from`: the track is a window of the day re-detected from this moment (the
    worker's incremental run) and its fixes before it are context: they give the first
    arrival and silence, but belong to the stays before the window, so no stay begins
    at them. Without this, a stopped context fix (the end of the stay before, when the
    truck moved on without a moving fix in between) started a stay before the window,
    which the caller drops, and the stay at the window start was lost.
    """
    p = params or VisitParams()
    track = _clean(fixes)
    proj = sites.proj
    xy = [proj.xy(f.lat, f.lon) for f in track]
    keep = _without_jumps(track, xy, p)
    track = [track[k] for k in keep]
    n = len(track)
    xs = [xy[k][0] for k in keep]
    ys = [xy[k][1] for k in keep]
    ts = [f.at.timestamp() for f in track]
    first = (
        0 if window_from is None else bisect.bisect_left(ts, window_from.timestamp())
    )  # the first fix that may begin a stay
    stopped = _stopped_flags(track, ts, xs, ys, p)
    stays = _stays(track, ts, xs, ys, stopped, p, first)
    evidence = sorted((e for e in events if e.kind in EVIDENCE_KINDS), key=lambda e: e.at)
    for stay in stays:
        _match(stay, track, xs, ys, sites, p)
        # Placed where its fixes settled: sure only if they stood there alone for the
        # site's dwell (as for a drifted stay merged with one in the fence).
        if (
            stay.settled
            and stay.site is not None
            and stay.departed - ts[stay.idx[stay.settled]] < stay.site.min_dwell_s
        ):
            stay.confidence = p.drift_confidence
    for k, stay in enumerate(stays):
        if not _match_named(stay, evidence, sites, p) and stay.site is None:
            beside = stays[k - 1 : k] + stays[k + 1 : k + 2]
            _match_drifted(stay, beside, track, ts, xs, ys, stopped, sites, p)
    for stay, after in itertools.pairwise(stays):
        _drift_ended_in(stay, after, ts, xs, ys, stopped, sites, p)
    stays = _merge(stays, p)
    passes = _passes(truck_id, track, ts, xs, ys, stopped, stays, sites, p)
    extra = _attach_events(truck_id, evidence, stays, ts, p)
    tz = track[0].at.tzinfo if track else (events[0].at.tzinfo if events else None)
    visits = [_stay_visit(truck_id, s, track, tz) for s in stays] + passes + extra
    visits.sort(key=lambda v: (v.arrived_at, v.kind, v.site_id or ""))
    gaps = tuple(
        Gap(
            track[i].at,
            track[i + 1].at,
            track[i].lat,
            track[i].lon,
            track[i + 1].lat,
            track[i + 1].lon,
            cadence_s=_cadence(ts, i),
        )
        for i in range(n - 1)
        if ts[i + 1] - ts[i] > p.gap_min_s
    )
    return Detection(tuple(visits), gaps)


def _cadence(ts: list[float], i: int) -> float:
    """The terminal's reporting interval around the silence from fix i to fix i+1: the
    usual interval (median of up to three) just before it or just after it, whichever is
    longer. A truck that has just parked reports once a minute from its last fix on, so
    one lost fix makes a 2-minute silence after fixes 10 s apart: dropped fixes, not a
    terminal gone dark."""
    sides = (range(max(0, i - 3), i), range(i + 1, min(len(ts) - 1, i + 4)))
    usual = [median(ts[k + 1] - ts[k] for k in side) for side in sides if side]
    return round(max(usual), 3) if usual else 0.0


def _clean(fixes: Sequence[Fix]) -> list[Fix]:
    """Sorted by time, one fix per instant (the first one given wins)."""
    seen: set[datetime] = set()
    out = []
    for f in sorted(fixes, key=lambda f: f.at):
        if f.at not in seen:
            seen.add(f.at)
            out.append(f)
    return out


def _without_jumps(track: list[Fix], xy: list[tuple[float, float]], p: VisitParams) -> list[int]:
    """Indices of the fixes to keep: a fix out and back that no truck could drive
    between its two neighbours (a multipath jump) is dropped."""
    keep = []
    for i, f in enumerate(track):
        if 0 < i < len(track) - 1:
            a, b = track[i - 1], track[i + 1]
            span_s = (b.at - a.at).total_seconds()
            speeds = [s for s in (a.speed_kmh, f.speed_kmh, b.speed_kmh) if s is not None]
            v_kmh = max(speeds) if len(speeds) == 3 else p.jump_fallback_speed_kmh
            acc = max(x.accuracy_m or p.default_accuracy_m for x in (a, f, b))
            out_and_back = math.dist(xy[i - 1], xy[i]) + math.dist(xy[i], xy[i + 1])
            # The way straight on counts as well as the way a truck could drive: where a
            # standing truck's drift ends, its fixes step 60 m between two neighbours and
            # the fix at the step lies on the way from one to the other, not off it.
            way_m = max(v_kmh / 3.6 * span_s, math.dist(xy[i - 1], xy[i + 1]))
            noise_m = max(p.jump_noise_m, 4 * acc)
            if v_kmh <= p.stop_speed_kmh:
                # Standing, the way out and the way back each carry the noise of a fix
                # (σ = 15 m: 60 m out and back is exceeded one time in ten); a jump beside
                # a standing truck is 300-600 m out and back.
                noise_m *= 2
            if out_and_back > way_m + noise_m:
                continue
        keep.append(i)
    return keep


def _stopped_flags(
    track: list[Fix], ts: list[float], xs: list[float], ys: list[float], p: VisitParams
) -> list[bool]:
    n = len(track)
    flags = []
    for i, f in enumerate(track):
        if f.speed_kmh is not None:
            flags.append(f.speed_kmh <= p.stop_speed_kmh)
            continue
        jitter = max(p.still_jitter_m, 2.5 * (f.accuracy_m or p.default_accuracy_m))
        near = []
        for j in (i - 1, i + 1):
            if 0 <= j < n and abs(ts[j] - ts[i]) <= p.max_gap_s:
                near.append(math.hypot(xs[j] - xs[i], ys[j] - ys[i]) <= jitter)
        flags.append(bool(near) and all(near))
    return flags


def _stays(
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    p: VisitParams,
    first_member: int = 0,
) -> list[_Stay]:
    groups, tail_pending = _stay_groups(track, ts, xs, ys, stopped, p, first_member)
    parts = [part for idx in groups for part in _split_shifts(idx, track, ts, xs, ys, p)]
    return [_stay_of(idx, track, ts, xs, ys, p, tail_pending, settled) for idx, settled in parts]


def _split_shifts(
    idx: list[int],
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
) -> list[tuple[list[int], int]]:
    """The stay's fixes cut wherever they shift for good (binary segmentation), each part
    with the offset of the fix its position is read from.

    A stay keeps fixes within 3.5 accuracies of its running mean, up to about 80 m: a
    truck that served a point and then moved 60 m to wait, with no moving fix in
    between, made one stay whose median lies between the two places. The cut is at the
    fix that best separates the means before and after it; it stands only when that
    shift is larger than ``stay_shift_min_m`` and than ``stay_shift_errors`` standard
    errors of the difference of two means of noisy fixes, which noise on a truck standing
    still does not reach. A shift faster than a truck could drive, from standing to
    standing, is a drift that ended while the truck stood: the stay is left whole, and
    placed where its fixes settled (the part after the shift)."""
    k = p.stay_shift_min_fixes
    n = len(idx)
    if n < 2 * k:
        return [(idx, 0)]
    px = [0.0]
    py = [0.0]
    for j in idx:
        px.append(px[-1] + xs[j])
        py.append(py[-1] + ys[j])
    best: tuple[float, int, float] | None = None  # (statistic, cut, shift)
    for m in range(k, n - k + 1):
        ax, ay = px[m] / m, py[m] / m
        bx, by = (px[n] - px[m]) / (n - m), (py[n] - py[m]) / (n - m)
        shift = math.hypot(ax - bx, ay - by)
        stat = shift * math.sqrt(m * (n - m) / n)
        if best is None or stat > best[0]:
            best = (stat, m, shift)
    assert best is not None
    _, m, shift = best
    accs = [a for j in idx if (a := track[j].accuracy_m) is not None]
    sigma = median(accs) if accs else p.default_accuracy_m
    error = sigma * math.sqrt(1 / m + 1 / (n - m))
    if shift < max(p.stay_shift_min_m, p.stay_shift_errors * error):
        return [(idx, 0)]
    between_s = ts[idx[m]] - ts[idx[m - 1]]
    if shift > p.stay_shift_accel_ms2 * between_s**2 / 4:
        return [(idx, m)]
    return _split_shifts(idx[:m], track, ts, xs, ys, p) + _split_shifts(
        idx[m:], track, ts, xs, ys, p
    )


def _stay_groups(
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    p: VisitParams,
    first_member: int,
) -> tuple[list[list[int]], bool]:
    """The fixes of each stay, in order; and whether the newest fix, far off, may be noise
    that the next fix will tell (the last stay then stays open)."""
    n = len(track)
    groups: list[list[int]] = []
    cur: list[int] = []
    sx = sy = 0.0  # running sums for the stay's mean position

    def near(j: int) -> bool:
        k = len(cur)
        acc = track[j].accuracy_m or p.default_accuracy_m
        radius = max(p.stay_radius_m, p.stay_radius_accuracies * acc)
        return math.hypot(xs[j] - sx / k, ys[j] - sy / k) <= radius

    tail_pending = False
    i = first_member
    while i < n:
        if not stopped[i]:
            if cur:
                # A short run of moving fixes that stays put, followed by a stopped
                # fix in the same place, is a speed spike: skip it.
                j = i
                while j < n and not stopped[j] and j - i < p.spike_fixes and near(j):
                    j += 1
                if (
                    j < n
                    and j > i
                    and stopped[j]
                    and near(j)
                    and ts[j] - ts[cur[-1]] <= p.max_gap_s
                ):
                    i = j
                    continue
                groups.append(cur)
                cur = []
            i += 1
            continue
        if cur:
            gap = ts[i] - ts[cur[-1]]
            if near(i) and gap <= p.max_parked_gap_s:
                cur.append(i)
                sx += xs[i]
                sy += ys[i]
                i += 1
                continue
            if gap <= p.max_gap_s and i == n - 1:
                tail_pending = True  # the newest fix is far off: wait for the next one
                i += 1
                continue
            if (
                gap <= p.max_gap_s
                and i + 1 < n
                and stopped[i + 1]
                and near(i + 1)
                and ts[i + 1] - ts[cur[-1]] <= p.max_parked_gap_s
            ):
                i += 1  # one wild fix between two in place: noise, not a move
                continue
            groups.append(cur)
        cur = [i]
        sx, sy = xs[i], ys[i]
        i += 1
    if cur:
        groups.append(cur)
    return groups, tail_pending


def _stay_of(
    idx: list[int],
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
    tail_pending: bool,
    settled: int = 0,
) -> _Stay:
    """One stay from its fixes; each end lies halfway to the fix beyond it (capped); its
    position is the median of its fixes from `settled` on."""
    n = len(track)
    first, last = idx[0], idx[-1]
    arrived = ts[first]
    if first > 0:
        arrived -= min(ts[first] - ts[first - 1], p.edge_cap_s) / 2
    departed = ts[last]
    is_open = last == n - 1 or (tail_pending and last == n - 2)
    end_seen = not is_open and ts[last + 1] - ts[last] <= p.max_gap_s
    if not is_open:
        departed += min(ts[last + 1] - ts[last], p.edge_cap_s) / 2
    speeds = [sp for k in idx if (sp := track[k].speed_kmh) is not None]
    return _Stay(
        idx=idx,
        arrived=arrived,
        departed=departed,
        is_open=is_open,
        end_seen=end_seen,
        x=median(xs[k] for k in idx[settled:]),
        y=median(ys[k] for k in idx[settled:]),
        max_speed=max(speeds) if speeds else None,
        settled=settled,
    )


def _match(
    stay: _Stay,
    track: list[Fix],
    xs: list[float],
    ys: list[float],
    sites: SiteIndex,
    p: VisitParams,
) -> None:
    """The nearest site whose fence, widened by the uncertainty of the median, holds it."""
    margin = _median_margin(stay, track, p)
    best: tuple[float, Site] | None = None
    for ps in sites.grid.near(stay.x, stay.y, sites.max_radius_m + margin):
        d = math.hypot(ps.x - stay.x, ps.y - stay.y)
        if d <= ps.site.radius_m + margin and (best is None or d < best[0]):
            best = (d, ps.site)
    if best is not None:
        stay.distance_m, stay.site = best[0], best[1]


def _accuracy(stay: _Stay, track: list[Fix], p: VisitParams) -> float:
    """The median reported accuracy of the stay's fixes (σ of one fix)."""
    accs = [a for k in stay.idx if (a := track[k].accuracy_m) is not None]
    return median(accs) if accs else p.default_accuracy_m


def _median_margin(stay: _Stay, track: list[Fix], p: VisitParams) -> float:
    """How far the stay's median may lie from where the truck stood (2 standard errors)."""
    return median_margin_m(len(stay.idx), _accuracy(stay, track, p), p)


def median_margin_m(
    fixes: int, accuracy_m: float | None = None, p: VisitParams | None = None
) -> float:
    """How far the median of a stay of `fixes` fixes may lie from where the truck stood:
    2 standard errors of fixes of `accuracy_m` (else the default), within 5-25 m."""
    p = p or VisitParams()
    acc = p.default_accuracy_m if accuracy_m is None else accuracy_m
    return min(p.max_match_margin_m, max(p.min_match_margin_m, 2 * acc / math.sqrt(max(1, fixes))))


def _match_named(
    stay: _Stay, evidence: Sequence[DeviceEvent], sites: SiteIndex, p: VisitParams
) -> bool:
    """A stay during which the truck's device named a point (a bin lift, an RFID read
    of its bins) is at that point when its fixes lie within ``drift_reach_m`` of the
    fence, even if they lie nearer another point or in no fence at all: the truck can
    only lift the bins where they stand, its fixes can drift. A stay in the named
    point's own fence, or one naming no point, or several, is left as matched."""
    named = {
        e.point_id
        for e in evidence
        if e.kind in ("bin_lift", "rfid")
        and e.point_id is not None
        # Inside the stay itself: a lift at the stop before, a minute earlier, says
        # nothing about where the truck stands now.
        and stay.arrived <= e.at.timestamp() <= stay.departed
    }
    if len(named) != 1:
        return False
    point = sites.get("point", named.pop())
    if point is None or stay.site is point:
        return False
    sx, sy = sites.proj.xy(point.lat, point.lon)
    d = math.hypot(sx - stay.x, sy - stay.y)
    if d > point.radius_m + p.drift_reach_m:
        return False
    # Its fixes lie beside the named point: a drifted stay there, as sure as one that
    # ran on into the fence (the ledger still asks whether it was the point's turn).
    stay.site, stay.distance_m, stay.confidence = point, d, p.drift_confidence
    return True


def _match_drifted(
    stay: _Stay,
    beside: list[_Stay],
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    sites: SiteIndex,
    p: VisitParams,
) -> None:
    """A stay beside a point (within ``drift_reach_m`` of its fence) that something
    other than its own fixes puts at the point: the fixes drifted while the truck stood
    there (urban canyons). The corroboration, strongest first:

    - it runs straight on into (or out of) a stay in the fence: ``drift_confidence``;
    - the track crossed the inner half of the fence on the way into or out of it, or
      the stay lies off every road, where no truck stands, or it lasted no longer than a
      service there and the truck came to it from the point or left toward it
      (``_served_beside``): ``drift_crossing_confidence``.

    A truck that stands on the street across from the point, and whose track never
    entered the fence, stays unmatched."""
    reach = sites.max_radius_m + p.drift_reach_m
    near = [
        (math.hypot(ps.x - stay.x, ps.y - stay.y), ps)
        for ps in sites.grid.near(stay.x, stay.y, reach)
        if ps.site.kind == "point"
    ]
    near = [(d, ps) for d, ps in near if d <= ps.site.radius_m + p.drift_reach_m]
    if not near:
        return
    first, last = stay.idx[0], stay.idx[-1]
    # The way into and out of the stay itself: a truck that drives through the point
    # a minute after standing beside it is a drive-by, not a drifted stop.
    segments = [
        (k, k + 1)
        for k in (first - 1, last)
        if 0 <= k < len(ts) - 1 and ts[k + 1] - ts[k] <= p.pass_max_gap_s
    ]
    near.sort(key=lambda item: item[0])
    # Where roads are imported: does the stay's median lie on one (where a truck stands)?
    on_road = sites.roads is not None and sites.roads.has_road_near(
        stay.x, stay.y, p.drift_road_halfwidth_m + _median_margin(stay, track, p)
    )
    for d, ps in near:
        # Straight on: no moving fix between the two (at most a wild one standing), so
        # the truck never moved; only its fixes did (a truck that drove on to the next
        # point is not standing beside it).
        if any(
            other.site is ps.site
            and other.confidence == 1.0
            # One fix says too little: noise puts one there now and then.
            and len(other.idx) >= p.drift_settled_fixes
            and (
                (other.idx[0] > last and all(stopped[j] for j in range(last + 1, other.idx[0])))
                or (
                    other.idx[-1] < first
                    and all(stopped[j] for j in range(other.idx[-1] + 1, first))
                )
            )
            for other in beside
        ):
            stay.site, stay.distance_m, stay.confidence = ps.site, d, p.drift_confidence
            return
    for d, ps in near:
        # The drift ended (or began) while the truck stood: its last (or first) fixes lie
        # deep in the fence, too few to make a stay of their own. Noise puts two fixes
        # in a row there for a truck standing 46 m off about once in 10,000 (σ = 15 m).
        if _stood_in_fence(stay, ps, xs, ys, p):
            stay.site, stay.distance_m, stay.confidence = ps.site, d, p.drift_confidence
            return
    # Longer than a drift lasts, every fix beside the point: the truck stood there, and a
    # fix of its way in or out deep in the fence is noise, or the way on through it.
    drifts = stay.departed - stay.arrived <= p.drift_max_s
    for d, ps in near:
        if not drifts:
            break
        # Deep inside the fence (half its radius), so that noise alone rarely fakes it
        # for a truck standing 50 m off.
        crossed = [
            a
            for a, b in segments
            if segment_closest(ps.x, ps.y, xs[a], ys[a], xs[b], ys[b])[0] <= ps.site.radius_m / 2
        ]
        if crossed and not (
            crossed == [last] and on_road and _drove_through(stay, ps, last, ts, xs, ys, p)
        ):
            stay.site, stay.distance_m = ps.site, d
            stay.confidence = p.drift_crossing_confidence
            return
    if sites.roads is not None and not on_road:
        # The nearest point, unless the truck came to the stay from another one within
        # reach, or left toward it: a stop at the end of a dead end whose fixes drifted
        # off the roads lies nearer a neighbour across the block.
        stay.site, stay.distance_m = next(
            (
                (ps.site, d)
                for d, ps in near
                if _came_or_left_toward(stay, ps, d, track, ts, xs, ys, p)
            ),
            (near[0][1].site, near[0][0]),
        )
        stay.confidence = p.drift_crossing_confidence
        return
    for d, ps in near:
        if _served_beside(stay, ps, d, track, ts, xs, ys, p):
            stay.site, stay.distance_m = ps.site, d
            stay.confidence = p.drift_crossing_confidence
            return


def _drift_ended_in(
    stay: _Stay,
    after: _Stay,
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    sites: SiteIndex,
    p: VisitParams,
) -> None:
    """A stay in the outer half of one point's fence that runs straight on (no moving fix
    between) into a stay nearer another point, farther than a truck could drive from
    standing to standing in the time between the two (``stay_shift_accel_ms2``), within
    reach of that fence: the truck never moved. Its fixes drifted into the neighbour's
    fence and settled where it stood — the drift ended, as it does while a truck serves
    a point in an urban canyon — so the first is a drifted stay at the second's point
    (``drift_confidence``); the two then merge into one visit there."""
    here, there = stay.site, after.site
    if (
        here is None
        or there is None
        or here.kind != "point"
        or there.kind != "point"
        or here is there
        or stay.confidence < 1.0
        or after.confidence < 1.0
        # A truck serving a point stands at it: the first stay must lie in the outer
        # half of its fence (where drifted fixes land), the second nearer its point.
        or stay.distance_m is None
        or after.distance_m is None
        or stay.distance_m <= here.radius_m / 2
        or after.distance_m >= stay.distance_m
        or len(after.idx) < p.drift_settled_fixes
    ):
        return
    last, first = stay.idx[-1], after.idx[0]
    if not all(stopped[j] for j in range(last + 1, first)):
        return
    if math.hypot(stay.x - after.x, stay.y - after.y) <= (
        p.stay_shift_accel_ms2 * (ts[first] - ts[last]) ** 2 / 4
    ):
        return
    px, py = sites.proj.xy(there.lat, there.lon)
    d = math.hypot(stay.x - px, stay.y - py)
    if d <= there.radius_m + p.drift_reach_m:
        stay.site, stay.distance_m, stay.confidence = there, d, p.drift_confidence


def _stood_in_fence(
    stay: _Stay, ps: _PSite, xs: list[float], ys: list[float], p: VisitParams
) -> bool:
    """Do the stay's last (or first) ``drift_settled_fixes`` fixes, and not all of its
    fixes, lie within half the point's fence radius?"""
    k = p.drift_settled_fixes
    if len(stay.idx) <= k:
        return False
    inner = ps.site.radius_m / 2
    return any(
        all(math.hypot(xs[j] - ps.x, ys[j] - ps.y) <= inner for j in end)
        for end in (stay.idx[-k:], stay.idx[:k])
    )


def _served_beside(
    stay: _Stay,
    ps: _PSite,
    d: float,
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
) -> bool:
    """Does a stay `d` m from the point look like its service with the fixes drifted:
    no longer than a service there nor than a drift lasts, and the truck came to it
    from the point's side or left it toward the point (``_came_or_left_toward``)? A
    truck idling across the street waits longer, and comes and goes along its own
    street, so its neighbouring fixes lie as far from the point as it, or farther."""
    longest = (
        min(p.drift_service_dwells * ps.site.min_dwell_s, p.drift_max_s) + p.drift_service_slack_s
    )
    if stay.departed - stay.arrived > longest:
        return False
    return _came_or_left_toward(stay, ps, d, track, ts, xs, ys, p)


def _came_or_left_toward(
    stay: _Stay,
    ps: _PSite,
    d: float,
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
) -> bool:
    """Did the truck come to the stay (`d` m from the point) from the point's side, or
    leave it toward the point: the fix just before or after it, seen within
    ``pass_max_gap_s``, lies ``drift_toward_accuracies`` nearer the point than the stay?"""
    first, last = stay.idx[0], stay.idx[-1]
    nearer = d - p.drift_toward_accuracies * _accuracy(stay, track, p)
    return any(
        0 <= k < len(ts)
        and abs(ts[k] - ts[edge]) <= p.pass_max_gap_s
        and math.hypot(xs[k] - ps.x, ys[k] - ps.y) < nearer
        for k, edge in ((first - 1, first), (last + 1, last))
    )


def _drove_through(
    stay: _Stay,
    ps: _PSite,
    last: int,
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
) -> bool:
    """Did the truck, leaving a stay on the road beside the point, drive on through it:
    a fix within a minute after the stay lies on the point's side of it, beyond the fence
    + ``pass_margin_m``? Then its way out crossed the fence because it drove through the
    point, not because the stay's fixes drifted off it (a truck served there leaves from
    the point; one that stood on the street short of it drives through it)."""
    end = bisect.bisect_right(ts, ts[last] + p.pass_stay_adjacent_s, lo=last + 1)
    beyond = ps.site.radius_m + p.pass_margin_m
    return _went_past(stay, ps.x, ps.y, beyond, xs, ys, last + 1, end - 1)


def _merge(stays: list[_Stay], p: VisitParams) -> list[_Stay]:
    out: list[_Stay] = []
    for stay in stays:
        prev = out[-1] if out else None
        same_place = prev is not None and (
            (prev.site is not None and prev.site == stay.site)
            or (
                prev.site is None
                and stay.site is None
                and math.hypot(prev.x - stay.x, prev.y - stay.y) <= p.stay_radius_m
            )
        )
        if prev is not None and same_place and stay.arrived - prev.departed <= p.merge_gap_s:
            # A stay in the fence that alone lasted the site's dwell keeps the visit sure,
            # whatever drifted stay beside it joins it (the truck that served a point and
            # then waited beside it served it); otherwise the least sure part decides.
            sure = any(
                s.confidence == 1.0
                and s.site is not None
                and s.departed - s.arrived >= s.site.min_dwell_s
                for s in (prev, stay)
            )
            n1, n2 = len(prev.idx), len(stay.idx)
            prev.x = (prev.x * n1 + stay.x * n2) / (n1 + n2)
            prev.y = (prev.y * n1 + stay.y * n2) / (n1 + n2)
            prev.idx = prev.idx + stay.idx
            prev.departed = stay.departed
            prev.is_open = stay.is_open
            prev.end_seen = stay.end_seen
            if prev.distance_m is not None and stay.distance_m is not None:
                prev.distance_m = min(prev.distance_m, stay.distance_m)
            speeds = [s for s in (prev.max_speed, stay.max_speed) if s is not None]
            prev.max_speed = max(speeds) if speeds else None
            prev.confidence = 1.0 if sure else min(prev.confidence, stay.confidence)
            continue
        out.append(stay)
    return out


@dataclass(slots=True)
class _FenceRun:
    """Consecutive track segments that come within a point's reach."""

    first_seg: int
    last_seg: int
    closest_m: float
    closest_at: float  # when the track was closest to the point
    max_speed: float  # -1 when no fix gave a speed


def _passes(
    truck_id: str,
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    stays: list[_Stay],
    sites: SiteIndex,
    p: VisitParams,
) -> list[Visit]:
    stays_at: dict[Site, list[_Stay]] = {}
    for stay in stays:
        if stay.site is not None:
            stays_at.setdefault(stay.site, []).append(stay)
    tz = track[0].at.tzinfo if track else None
    out = []
    for site, site_runs in _fence_runs(track, ts, xs, ys, stopped, sites, p).items():
        sx, sy = sites.proj.xy(site.lat, site.lon)
        for run in site_runs:
            settled = _settled_beyond(site, sx, sy, run, ts, xs, ys, stopped, p)
            if settled is None:
                continue
            settled_at, settled_k = settled
            if _stay_explains(
                site, sx, sy, run, settled_at, settled_k, stays, stays_at, ts, xs, ys, p
            ):
                continue
            on_road = (
                None
                if sites.roads is None
                else _road_passes(
                    sites.roads, site, sx, sy, run.first_seg, settled_k, track, ts, xs, ys, p
                )
            )
            if on_road is False or (on_road is None and run.closest_m > site.radius_m):
                continue  # the road skirts the fence; or, on the fixes alone, they never entered it
            when = datetime.fromtimestamp(run.closest_at, tz)
            out.append(
                Visit(
                    truck_id=truck_id,
                    kind="pass",
                    site_kind=site.kind,
                    site_id=site.site_id,
                    arrived_at=when,
                    departed_at=when,
                    dwell_s=0.0,
                    fixes=run.last_seg - run.first_seg + 2,
                    distance_m=round(run.closest_m, 1),
                    speed_kmh=None if run.max_speed < 0 else run.max_speed,
                )
            )
    return out


def _fence_runs(
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    sites: SiteIndex,
    p: VisitParams,
) -> dict[Site, list[_FenceRun]]:
    """Per point, the runs of moving segments that come within its fence plus the margin."""
    reach = sites.max_radius_m + p.pass_margin_m
    runs: dict[Site, list[_FenceRun]] = {}
    for i in range(len(track) - 1):
        if ts[i + 1] - ts[i] > p.pass_max_gap_s or (stopped[i] and stopped[i + 1]):
            continue
        ax, ay, bx, by = xs[i], ys[i], xs[i + 1], ys[i + 1]
        seen: set[Site] = set()
        for ps in sites.grid.in_box(
            min(ax, bx) - reach, min(ay, by) - reach, max(ax, bx) + reach, max(ay, by) + reach
        ):
            site = ps.site
            if site.kind != "point" or site in seen:
                continue
            seen.add(site)
            d, u = segment_closest(ps.x, ps.y, ax, ay, bx, by)
            if d > site.radius_m + p.pass_margin_m:
                continue
            at = ts[i] + u * (ts[i + 1] - ts[i])
            speeds = [s for s in (track[i].speed_kmh, track[i + 1].speed_kmh) if s is not None]
            speed = max(speeds) if speeds else -1.0
            site_runs = runs.setdefault(site, [])
            if site_runs and site_runs[-1].last_seg == i - 1:
                run = site_runs[-1]
                run.last_seg = i
                if d < run.closest_m:
                    run.closest_m, run.closest_at = d, at
                run.max_speed = max(run.max_speed, speed)
            else:
                site_runs.append(_FenceRun(i, i, d, at, speed))
    return runs


def _settled_beyond(
    site: Site,
    sx: float,
    sy: float,
    run: _FenceRun,
    ts: list[float],
    xs: list[float],
    ys: list[float],
    stopped: list[bool],
    p: VisitParams,
) -> tuple[float, int] | None:
    """When (and at which fix) the truck lay clearly beyond the fence after the run.

    A pass is final once a later fix, settled in time, lies clearly beyond the fence, and
    the truck was seen all the way there: no silence on the way long enough to hide a
    stop that would have served the point (dropped fixes as a truck parks, its terminal
    then reporting once a minute, hide none). A silence within a stay — the truck stood
    in the same place on both sides of it, as a stay continues over one
    (``max_parked_gap_s``) — hides none either: a truck that drove through the point and
    parked 90 m on with its ignition off, one fix a minute and one of them lost, stood
    there. None while that has not happened.
    """
    hides_stop_s = max(p.pass_max_gap_s, site.min_dwell_s)
    for k in range(run.last_seg + 1, len(ts)):
        if ts[k] - ts[k - 1] >= hides_stop_s and not (
            ts[k] - ts[k - 1] <= p.max_parked_gap_s
            and stopped[k - 1]
            and stopped[k]
            and math.hypot(xs[k] - xs[k - 1], ys[k] - ys[k - 1]) <= p.stay_radius_m
        ):
            return None
        if ts[k] >= run.closest_at + p.pass_settle_s and (
            math.hypot(xs[k] - sx, ys[k] - sy) > site.radius_m + p.pass_margin_m
        ):
            return ts[k], k
    return None


def _stay_explains(
    site: Site,
    sx: float,
    sy: float,
    run: _FenceRun,
    settled_at: float,
    settled_k: int,
    stays: list[_Stay],
    stays_at: Mapping[Site, list[_Stay]],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
) -> bool:
    """Is the run the way into or out of a stay, so that the stay says what happened?"""
    start = ts[run.first_seg]
    adj = p.pass_stay_adjacent_s
    if any(
        s.arrived - adj <= settled_at and start <= s.departed + adj for s in stays_at.get(site, ())
    ):
        return True
    # The approach to a stop beside the point (drifted fixes, or a truck standing
    # across the street) — one in no fence, or a drifted stay that another point
    # was matched to: not a drive-by; the stay says what happened. Not a stop in no
    # fence beyond the pass's reach (fence + ``pass_margin_m``) that lasted longer than
    # a drift does (``drift_max_s``): no drifted service, and too far for the noise of a
    # truck pulling in beside the point to reach the fence; the truck stood where its
    # fixes were and drove through the point to wait there (judged below).
    if any(
        (s.site is None or s.confidence < 1.0)
        and s.site is not site
        and start <= s.arrived <= settled_at + adj
        and (d_stay := math.hypot(s.x - sx, s.y - sy)) <= site.radius_m + p.drift_reach_m
        and not (
            s.site is None
            and s.departed - s.arrived > p.drift_max_s
            and d_stay > site.radius_m + p.pass_margin_m
        )
        for s in stays
    ):
        return True
    # The way into or out of a stop beside the point (a truck idling across the
    # street, serving a neighbour, or its fixes drifted), or a moving fix in the
    # middle of it: a pass only if a fix on the way lay on the point's side of the
    # stop, clear of the point — it came or went by way of the point, not back or
    # aside (noise on a truck pulling away from 45 m off brings a fix or two near
    # the point) — or came nearer the point than the stop by more than noise
    # explains (a truck that left a neighbour, turned round at the point and came
    # back past the junction has no fix beyond it).
    toward_m = p.came_toward_accuracies * p.default_accuracy_m
    return any(
        s.site is not site
        and s.arrived - adj <= start <= s.departed + adj
        and (d_stay := math.hypot(s.x - sx, s.y - sy)) <= site.radius_m + p.drift_reach_m
        and not _went_past(
            s, sx, sy, site.radius_m + p.pass_margin_m, xs, ys, run.first_seg, settled_k
        )
        and not _came_toward(sx, sy, d_stay - toward_m, xs, ys, run.first_seg, settled_k)
        for s in stays
    )


def _came_toward(
    sx: float, sy: float, within_m: float, xs: list[float], ys: list[float], first: int, last: int
) -> bool:
    """Did a fix from `first` to `last` lie within `within_m` of the point (at sx, sy)?"""
    return any(math.hypot(xs[k] - sx, ys[k] - sy) < within_m for k in range(first, last + 1))


def _went_past(
    stay: _Stay,
    sx: float,
    sy: float,
    beyond_m: float,
    xs: list[float],
    ys: list[float],
    first: int,
    last: int,
) -> bool:
    """Did a fix from `first` to `last` lie on the point's side (at sx, sy) of the stay,
    more than `beyond_m` from the point: nearer the point than the stay, yet clearly
    off it — the truck came or went by way of the point (on, or round a corner there),
    not back the way it came or along its own street?"""
    return any(
        beyond_m < (d := math.hypot(xs[k] - sx, ys[k] - sy))
        and d < math.hypot(xs[k] - stay.x, ys[k] - stay.y)
        for k in range(first, last + 1)
    )


def _road_passes(
    roads: RoadIndex,
    site: Site,
    sx: float,
    sy: float,
    first_seg: int,
    settled_k: int,
    track: list[Fix],
    ts: list[float],
    xs: list[float],
    ys: list[float],
    p: VisitParams,
) -> bool | None:
    """Did the road the truck took come within the point's fence? None when the roads
    cannot say (none near the point, or no route that explains the fixes)."""
    reach = site.radius_m + p.pass_margin_m
    if not roads.has_road_near(sx, sy, reach):
        return None
    # From the last fix outside the reach before the pass (looking back a little).
    a = first_seg
    while (
        a > 0
        and math.hypot(xs[a] - sx, ys[a] - sy) <= reach
        and ts[first_seg] - ts[a - 1] <= p.pass_road_lookback_s
        and ts[a] - ts[a - 1] <= p.pass_max_gap_s
    ):
        a -= 1
    window = range(a, settled_k + 1)
    accs = [acc for k in window if (acc := track[k].accuracy_m) is not None]
    sigma = max(median(accs) if accs else p.default_accuracy_m, p.default_accuracy_m)
    # The distance driven, from the reported speeds (trapezoids), when every fix has one.
    speeds = [v for k in window if (v := track[k].speed_kmh) is not None]
    travelled = (
        sum(
            (speeds[j] + speeds[j + 1]) / 2 / 3.6 * (ts[a + j + 1] - ts[a + j])
            for j in range(len(speeds) - 1)
        )
        if len(speeds) == len(window)
        else None
    )
    pts = [(xs[k], ys[k]) for k in window]
    route = roads.best_route(pts, sigma, travelled)
    if route is None or route.rms_m > p.pass_road_max_misfit * sigma:
        return None
    fence = site.radius_m + p.pass_road_slack_m
    if distance_to_line(sx, sy, route.line) <= fence:
        return True
    # The likeliest road skirts the fence. A truck that turned round at the point (a
    # drive-by into a side street or lane) is nearly as likely on the fixes: then the
    # pass stands.
    via = roads.best_via(pts, sigma, travelled, sx, sy, fence)
    return via is not None and via.score <= route.score + p.pass_road_margin


def _attach_events(
    truck_id: str,
    events: list[DeviceEvent],
    stays: list[_Stay],
    ts: list[float],
    p: VisitParams,
) -> list[Visit]:
    """Attach events to the stays they fall in; return event-only visits."""
    loose: dict[tuple[SiteKind, str], list[DeviceEvent]] = {}
    for event in events:
        at = event.at.timestamp()
        target: tuple[SiteKind, str] | None = None
        if event.kind == "weighbridge" and event.station_id:
            target = ("station", event.station_id)
        elif event.point_id:
            target = ("point", event.point_id)
        containing = [
            s for s in stays if s.arrived - p.event_slack_s <= at <= s.departed + p.event_slack_s
        ]
        if target is not None:
            named = [s for s in containing if s.site and (s.site.kind, s.site.site_id) == target]
            if named:
                named[0].events.append(event)
                continue
            if event.kind == "weighbridge" or not _has_fix_near(ts, at, p.event_gap_s):
                loose.setdefault(target, []).append(event)
            elif containing:
                containing[0].events.append(event)  # kept as evidence, not as a visit
            continue
        if containing:
            containing[0].events.append(event)

    out = []
    for (kind, site_id), evs in loose.items():
        groups: list[list[DeviceEvent]] = []
        for event in evs:
            if groups and (event.at - groups[-1][-1].at).total_seconds() <= p.event_merge_s:
                groups[-1].append(event)
            else:
                groups.append([event])
        for group in groups:
            out.append(
                Visit(
                    truck_id=truck_id,
                    kind="event",
                    site_kind=kind,
                    site_id=site_id,
                    arrived_at=group[0].at,
                    departed_at=group[-1].at,
                    dwell_s=(group[-1].at - group[0].at).total_seconds(),
                    fixes=0,
                    evidence=tuple(group),
                )
            )
    return out


def _has_fix_near(ts: list[float], at: float, within_s: float) -> bool:
    k = bisect.bisect_left(ts, at)
    return any(0 <= j < len(ts) and abs(ts[j] - at) <= within_s for j in (k - 1, k))


def _stay_visit(truck_id: str, s: _Stay, track: list[Fix], tz: Any) -> Visit:
    return Visit(
        truck_id=truck_id,
        kind="stay",
        site_kind=s.site.kind if s.site else None,
        site_id=s.site.site_id if s.site else None,
        arrived_at=datetime.fromtimestamp(s.arrived, tz),
        departed_at=datetime.fromtimestamp(s.departed, tz),
        dwell_s=round(s.departed - s.arrived, 3),
        fixes=len(s.idx),
        distance_m=None if s.distance_m is None else round(s.distance_m, 1),
        speed_kmh=s.max_speed,
        is_open=s.is_open,
        evidence=tuple(s.events),
        end_seen=s.end_seen,
        confidence=s.confidence,
        lat=round(median(track[k].lat for k in s.idx[s.settled :]), 7),
        lon=round(median(track[k].lon for k in s.idx[s.settled :]), 7),
    )
