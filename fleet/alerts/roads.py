"""Which road a truck took past a collection point: pure, no database.

A pass is first found on the straight segments between noisy fixes. With σ = 15 m a
truck on the next street, 36 m from a point, can look closer to it than one that
drove right through it, so the fixes alone cannot tell the two apart. Where the
district's roads are known, the detector asks instead which road the truck drove
between a fix before the point and a fix after it: the shortest road route between
the two, each snapped to a road in its direction of travel, that best explains the
fixes between them. The route is exact geometry: the truck went past the point if it
enters the point's fence — or if a route by the point (turning round there, as a truck
does at a point down a side street) explains the fixes as well.

Roads are the `road` rows (``from_node``, ``to_node``, ``oneway``, ``coordinates``
as [[lon, lat], …]); distances are metres in the caller's projection.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleet.alerts.cache import Cache
from fleet.alerts.geo import GridIndex, Projection, segment_closest

XY = tuple[float, float]

# Polylines are indexed in pieces no longer than this, so that "near here" is a grid
# lookup with a small widening.
PIECE_M = 40.0
# Without reported speeds: route length beyond the straight line costs one unit of
# log-likelihood per this many metres: trucks take the direct way, and a U-turn onto a
# side street to touch the point and come back is a detour the fixes would have to
# demand.
DETOUR_SCALE_M = 50.0
# With reported speeds, the distance the truck really drove between the two ends is
# known (their integral over time), and a route is held to it: one unit per this many
# metres off. That tells a truck that turned round at a point 50 m down a side street
# from one that turned at the corner, which the fixes' positions alone cannot.
TRAVELLED_SCALE_M = 30.0
# Candidates per end of the window (nearest roads in the direction of travel), and
# for the place a route must go by.
SNAP_CANDIDATES = 4
VIA_CANDIDATES = 4
# Fits an index remembers. The worker re-detects the last quarter hour or more of a
# track on every tick, and so asks again for the fits of the same passes; a fit is a
# pure function of the index and its arguments, and costs milliseconds.
FITS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class _Edge:
    u: int
    v: int
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    cum: tuple[float, ...]  # distance along the edge at each vertex

    @property
    def length_m(self) -> float:
        return self.cum[-1]

    def at(self, offset_m: float) -> XY:
        k = max(0, min(len(self.cum) - 2, bisect.bisect_right(self.cum, offset_m) - 1))
        span = self.cum[k + 1] - self.cum[k]
        t = 0.0 if span == 0 else (offset_m - self.cum[k]) / span
        return (
            self.xs[k] + t * (self.xs[k + 1] - self.xs[k]),
            self.ys[k] + t * (self.ys[k + 1] - self.ys[k]),
        )

    def between(self, start_m: float, end_m: float) -> list[XY]:
        """The polyline from `start_m` to `end_m` along the edge (start ≤ end)."""
        out = [self.at(start_m)]
        out += [
            (self.xs[k], self.ys[k]) for k in range(len(self.cum)) if start_m < self.cum[k] < end_m
        ]
        out.append(self.at(end_m))
        return out


@dataclass(frozen=True, slots=True)
class _Piece:
    x: float  # midpoint, for the grid
    y: float
    edge: int
    seg: int  # vertex index where the piece's segment starts
    ax: float
    ay: float
    bx: float
    by: float


@dataclass(frozen=True, slots=True)
class Snap:
    edge: int
    offset_m: float
    distance_m: float


@dataclass(frozen=True, slots=True)
class Route:
    line: tuple[XY, ...]
    length_m: float
    score: float  # lower is better: misfit of the fixes plus detour
    rms_m: float  # root mean square distance of the fixes to the route
    start: Snap
    end: Snap


class RoadIndex:
    """The district's roads as directed edges in metres, gridded for snapping."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], proj: Projection) -> None:
        self.edges: list[_Edge] = []
        self.out: dict[int, list[int]] = {}
        pieces: list[_Piece] = []
        for row in rows:
            coords = row["coordinates"]
            pts = [proj.xy(float(c[1]), float(c[0])) for c in coords]
            if len(pts) < 2:
                continue
            u, v = int(row["from_node"]), int(row["to_node"])
            self._add(u, v, pts, pieces)
            if not row["oneway"]:
                self._add(v, u, pts[::-1], pieces)
        self._grid: GridIndex[_Piece] = GridIndex(pieces, cell_m=100.0)
        self._fits: Cache[tuple[Any, ...], Route | None] = Cache(ttl_s=None, max_entries=FITS_KEPT)

    def _remembered(self, key: tuple[Any, ...], fit: Callable[[], Route | None]) -> Route | None:
        """The fit stored under `key` (the arguments), or `fit()` stored now."""
        if key in self._fits:
            return self._fits.get(key)
        route: Route | None = fit()
        self._fits.put(key, route)
        return route

    def _add(self, u: int, v: int, pts: list[XY], pieces: list[_Piece]) -> None:
        xs = [pts[0][0]]
        ys = [pts[0][1]]
        # Long straight segments are split so that every piece is short.
        for (ax, ay), (bx, by) in itertools.pairwise(pts):
            n = max(1, math.ceil(math.hypot(bx - ax, by - ay) / PIECE_M))
            for k in range(1, n + 1):
                xs.append(ax + (bx - ax) * k / n)
                ys.append(ay + (by - ay) * k / n)
        cum = [0.0]
        for k in range(1, len(xs)):
            cum.append(cum[-1] + math.hypot(xs[k] - xs[k - 1], ys[k] - ys[k - 1]))
        if cum[-1] <= 0:
            return
        index = len(self.edges)
        self.edges.append(_Edge(u, v, tuple(xs), tuple(ys), tuple(cum)))
        self.out.setdefault(u, []).append(index)
        for k in range(len(xs) - 1):
            pieces.append(
                _Piece(
                    (xs[k] + xs[k + 1]) / 2,
                    (ys[k] + ys[k + 1]) / 2,
                    index,
                    k,
                    xs[k],
                    ys[k],
                    xs[k + 1],
                    ys[k + 1],
                )
            )

    @property
    def empty(self) -> bool:
        return not self.edges

    def has_road_near(self, x: float, y: float, within_m: float) -> bool:
        return any(
            segment_closest(x, y, p.ax, p.ay, p.bx, p.by)[0] <= within_m
            for p in self._grid.near(x, y, within_m + PIECE_M)
        )

    def snaps(self, x: float, y: float, within_m: float, heading: XY | None) -> list[Snap]:
        """The nearest position on each directed edge within `within_m`; with a heading
        (a movement vector), only edges that run the same way (less than 90° off)."""
        best: dict[int, Snap] = {}
        for p in self._grid.near(x, y, within_m + PIECE_M):
            d, t = segment_closest(x, y, p.ax, p.ay, p.bx, p.by)
            if d > within_m:
                continue
            if heading is not None and (
                (p.bx - p.ax) * heading[0] + (p.by - p.ay) * heading[1] <= 0
            ):
                continue
            edge = self.edges[p.edge]
            offset = edge.cum[p.seg] + t * (edge.cum[p.seg + 1] - edge.cum[p.seg])
            old = best.get(p.edge)
            if old is None or d < old.distance_m:
                best[p.edge] = Snap(p.edge, offset, d)
        return sorted(best.values(), key=lambda s: s.distance_m)[:SNAP_CANDIDATES]

    def route(self, a: Snap, b: Snap, cutoff_m: float) -> list[XY] | None:
        """The shortest road route from `a` to `b` as a polyline, or None beyond `cutoff_m`."""
        ea, eb = self.edges[a.edge], self.edges[b.edge]
        if a.edge == b.edge and b.offset_m >= a.offset_m:
            return ea.between(a.offset_m, b.offset_m)
        start_cost = ea.length_m - a.offset_m
        # Dijkstra over nodes from the head of a's edge to the tail of b's edge.
        dist: dict[int, float] = {ea.v: start_cost}
        via: dict[int, int] = {}  # node -> edge that reached it
        heap = [(start_cost, ea.v)]
        target = eb.u
        while heap:
            d, node = heapq.heappop(heap)
            if d > dist.get(node, math.inf):
                continue
            if node == target:
                break
            if d + b.offset_m > cutoff_m:
                return None
            for k in self.out.get(node, ()):
                e = self.edges[k]
                nd = d + e.length_m
                if nd < dist.get(e.v, math.inf):
                    dist[e.v] = nd
                    via[e.v] = k
                    heapq.heappush(heap, (nd, e.v))
        if target not in dist or dist[target] + b.offset_m > cutoff_m:
            return None
        chain: list[int] = []
        node = target
        while node != ea.v:
            k = via[node]
            chain.append(k)
            node = self.edges[k].u
        line = ea.between(a.offset_m, ea.length_m)
        for k in reversed(chain):
            e = self.edges[k]
            line += list(zip(e.xs, e.ys, strict=True))
        line += eb.between(0.0, b.offset_m)
        return line

    def best_route(
        self, pts: Sequence[XY], sigma_m: float, travelled_m: float | None = None
    ) -> Route | None:
        """The road route from the first to the last of `pts` (fixes in order) that
        best explains all of them — and `travelled_m`, the distance driven between them
        when the terminal reports speed — or None when no road is near both ends."""
        return self._remembered(
            ("route", tuple(pts), sigma_m, travelled_m),
            lambda: self._best_route(pts, sigma_m, travelled_m),
        )

    def _best_route(
        self, pts: Sequence[XY], sigma_m: float, travelled_m: float | None
    ) -> Route | None:
        if len(pts) < 2:
            return None
        straight, cutoff = _span(pts)
        best: Route | None = None
        starts, ends = self._ends(pts, sigma_m)
        for a in starts:
            for b in ends:
                line = self.route(a, b, cutoff)
                if line is None:
                    continue
                route = _scored(line, pts, sigma_m, straight, travelled_m, a, b)
                if best is None or route.score < best.score:
                    best = route
        return best

    def _ends(self, pts: Sequence[XY], sigma_m: float) -> tuple[list[Snap], list[Snap]]:
        """Where a route explaining `pts` may begin and end: the snaps of the first fix
        and of the last, on roads running the way the truck moved."""
        reach = max(40.0, 3.0 * sigma_m)
        starts = self.snaps(*pts[0], reach, _heading(pts, forward=True))
        ends = self.snaps(*pts[-1], reach, _heading(pts, forward=False))
        return starts, ends

    def best_via(
        self,
        pts: Sequence[XY],
        sigma_m: float,
        travelled_m: float | None,
        x: float,
        y: float,
        within_m: float,
    ) -> Route | None:
        """The route that best explains `pts` (as ``best_route``) among those that go by
        the place (x, y), on a road within `within_m` of it — turning round there if need
        be. Its ends are chosen afresh: the likeliest route may begin on another road (a
        truck that came up a side street and turned round at the point is explained
        worst by a route that begins on the street it turned into)."""
        return self._remembered(
            ("via", tuple(pts), sigma_m, travelled_m, x, y, within_m),
            lambda: self._best_via(pts, sigma_m, travelled_m, x, y, within_m),
        )

    def _best_via(
        self,
        pts: Sequence[XY],
        sigma_m: float,
        travelled_m: float | None,
        x: float,
        y: float,
        within_m: float,
    ) -> Route | None:
        straight, cutoff = _span(pts)
        starts, ends = self._ends(pts, sigma_m)
        best: Route | None = None
        for c in self.snaps(x, y, within_m, None)[:VIA_CANDIDATES]:
            tails = [(b, self.route(c, b, cutoff)) for b in ends]
            for a in starts:
                head = self.route(a, c, cutoff)
                for b, tail in tails:
                    if head is None or tail is None:
                        continue
                    via = _scored(head + tail[1:], pts, sigma_m, straight, travelled_m, a, b)
                    if best is None or via.score < best.score:
                        best = via
        return best


def _span(pts: Sequence[XY]) -> tuple[float, float]:
    """The straight line from the first fix to the last, and the longest route between
    them worth searching."""
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    straight = math.hypot(x1 - x0, y1 - y0)
    return straight, 2.0 * straight + 400.0


def _scored(
    line: list[XY],
    pts: Sequence[XY],
    sigma_m: float,
    straight_m: float,
    travelled_m: float | None,
    start: Snap,
    end: Snap,
) -> Route:
    sq = [distance_to_line(x, y, line) ** 2 for x, y in pts]
    length = sum(math.hypot(q[0] - p[0], q[1] - p[1]) for p, q in itertools.pairwise(line))
    if travelled_m is None:
        off = max(0.0, length - straight_m) / DETOUR_SCALE_M
    else:
        off = abs(length - travelled_m) / TRAVELLED_SCALE_M
    score = sum(sq) / (2 * sigma_m * sigma_m) + off
    return Route(tuple(line), length, score, math.sqrt(sum(sq) / len(sq)), start, end)


def _heading(pts: Sequence[XY], *, forward: bool) -> XY | None:
    """Movement at one end of the window: to the first fix at least 20 m away."""
    order = range(1, len(pts)) if forward else range(len(pts) - 2, -1, -1)
    ox, oy = pts[0] if forward else pts[-1]
    for k in order:
        dx, dy = pts[k][0] - ox, pts[k][1] - oy
        if math.hypot(dx, dy) >= 20.0:
            return (dx, dy) if forward else (-dx, -dy)
    return None


def distance_to_line(x: float, y: float, line: Sequence[XY]) -> float:
    if len(line) == 1:
        return math.hypot(x - line[0][0], y - line[0][1])
    return min(
        segment_closest(x, y, a[0], a[1], b[0], b[1])[0] for a, b in itertools.pairwise(line)
    )
