"""Drive-by (pass) detection on noisy tracks, with and without the district's roads.

Trucks drive random trips across a generated district (the simulator's city: every
collection point is a node of the road graph), each the fastest path from one point to
another by way of a third, turning round there when the way on lies back the way it
came (as a simulated truck that drives by a point does); each trip becomes fixes every
`--interval` seconds with Gaussian noise σ = `--noise-m` per axis and `--dropout` of
them lost. A trip truly passes a point when its road enters the point's geofence. The
visit detector (`fleet.alerts.visits.detect`) reports passes from the fixes alone and
from the fixes judged on the road network; both are scored against the truth.

No database or broker: this isolates the detector. The end-to-end alert figures are
`bench/alerts.py`.

    .venv/bin/python bench/passes.py [--trips 400] [--seed 1]

The last stdout line is one JSON object:
    {"fixes_only": {"precision": …, "recall": …}, "with_roads": {…}, "trips": …, …}
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.alerts.visits import Fix, Site, SiteIndex, VisitParams, detect  # noqa: E402
from simulator.city import City, generate  # noqa: E402
from simulator.geo import point_segment_distance_m  # noqa: E402
from simulator.roads import NoPath, RoadNetwork  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
M_PER_DEG_LAT = 111_320.0


def road_rows(city: City) -> list[dict[str, Any]]:
    """The city's directed edges in the shape of the `road` table's rows."""
    rows = []
    for u, v in city.graph.edges:
        (lat1, lon1), (lat2, lon2) = city.node_latlon(u), city.node_latlon(v)
        rows.append(
            {
                "from_node": u,
                "to_node": v,
                "oneway": True,
                "coordinates": [[lon1, lat1], [lon2, lat2]],
            }
        )
    return rows


END_M = 150.0  # the first and last stretch of each trip, not scored


def split_ends(
    line: list[tuple[float, float]], end_m: float
) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[tuple[float, float]]]:
    """The polyline's first `end_m`, the middle, and its last `end_m` (node-aligned)."""
    cum = [0.0]
    for u, v in itertools.pairwise(line):
        cum.append(cum[-1] + point_segment_distance_m(*v, *u, *u))  # |uv|
    total = cum[-1]
    i = next((k for k, c in enumerate(cum) if c >= end_m), len(line) - 1)
    j = next((k for k in range(len(cum) - 1, -1, -1) if total - cum[k] >= end_m), 0)
    return line[: i + 1], line[i : j + 1] if j > i else [], line[j:]


def trip_fixes(
    line: list[tuple[float, float]], rng: random.Random, args: argparse.Namespace
) -> list[Fix]:
    """Fixes along a polyline of (lat, lon) driven at a steady speed."""
    speed_kmh = rng.uniform(20.0, 40.0)
    step_m = speed_kmh / 3.6 * args.interval
    lat0 = line[0][0]
    kx = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)
    out = []
    travelled = 0.0
    next_at = 0.0
    k = 0
    for (la1, lo1), (la2, lo2) in itertools.pairwise(line):
        seg = math.hypot((lo2 - lo1) * kx, (la2 - la1) * M_PER_DEG_LAT)
        while next_at <= travelled + seg:
            f = 0.0 if seg == 0 else (next_at - travelled) / seg
            lat = la1 + f * (la2 - la1) + rng.gauss(0, args.noise_m) / M_PER_DEG_LAT
            lon = lo1 + f * (lo2 - lo1) + rng.gauss(0, args.noise_m) / kx
            if rng.random() >= args.dropout:
                at = t0 + timedelta(seconds=k * args.interval)
                accuracy = round(args.noise_m * rng.uniform(0.8, 1.6), 1)
                speed = speed_kmh * (1 + rng.gauss(0, 0.03))  # as the simulator's terminals
                out.append(Fix(at, lat, lon, round(speed, 1), accuracy))
            k += 1
            next_at += step_m
        travelled += seg
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--trips", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise-m", type=float, default=15.0)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between fixes")
    ap.add_argument(
        "--small-share", type=float, default=0.3, help="trips by small trucks (narrow lanes)"
    )
    args = ap.parse_args()

    started = time.monotonic()
    city = generate(n_points=args.points, n_trucks=12, seed=args.seed, district="bench")
    net = RoadNetwork(city)
    sites = [Site("point", p.id, p.lat, p.lon, p.geofence_radius_m, 120.0) for p in city.points]
    fixes_only = SiteIndex(sites)
    with_roads = SiteIndex(sites, roads=road_rows(city))
    params = VisitParams()
    rng = random.Random(args.seed)
    nodes = [p.node for p in city.points]
    score = {"fixes_only": [0, 0, 0], "with_roads": [0, 0, 0]}  # tp, fp, fn
    timing = {"fixes_only": 0.0, "with_roads": 0.0}
    via_score = {"fixes_only": [0, 0], "with_roads": [0, 0]}  # seen, missed
    point_of = {p.node: p.id for p in city.points}
    trips = 0
    while trips < args.trips:
        # From a to b by way of the point at p, as a simulated truck drives a plan; when
        # b lies back the way it came, it turns round at the point (a drive-by into a
        # dead-end lane, too, for small trucks).
        a, via, b = rng.sample(nodes, 3)
        narrow_ok = rng.random() < args.small_share
        try:
            path = net.path(a, via, narrow_ok=narrow_ok) + net.path(via, b, narrow_ok=narrow_ok)[1:]
        except NoPath:
            continue
        trips += 1
        line = [city.node_latlon(n) for n in path]
        # A trip starts and ends moving, so near its ends a pass cannot be told (there
        # is no approach, or no fix clearly beyond the fence): those points are not scored.
        head, core, tail = split_ends(line, END_M)
        if len(core) < 2:
            trips -= 1
            continue
        truth, near_ends = set(), set()
        for p in city.points:
            if p.node in (a, b) or any(
                point_segment_distance_m(p.lat, p.lon, *u, *v) <= p.geofence_radius_m + END_M / 2
                for part in (head, tail)
                for u, v in itertools.pairwise(part)
            ):
                near_ends.add(p.id)
            elif any(
                point_segment_distance_m(p.lat, p.lon, *u, *v) <= p.geofence_radius_m
                for u, v in itertools.pairwise(core)
            ):
                truth.add(p.id)
        fixes = trip_fixes(line, rng, args)
        for name, index in (("fixes_only", fixes_only), ("with_roads", with_roads)):
            t = time.perf_counter()
            found = detect("T", fixes, [], index, params)
            timing[name] += time.perf_counter() - t
            seen = {v.site_id for v in found.visits if v.kind == "pass"} - near_ends
            s = score[name]
            s[0] += len(seen & truth)
            s[1] += len(seen - truth)
            s[2] += len(truth - seen)
            via_id = point_of[via]
            if via_id in truth:  # the point the trip was planned through
                via_score[name][0 if via_id in seen else 1] += 1
    result: dict[str, Any] = {}
    for name, (tp, fp, fn) in score.items():
        result[name] = {
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "true_passes": tp + fn,
            "false_passes": fp,
            "missed_passes": fn,
            "via_recall": round(via_score[name][0] / max(1, sum(via_score[name])), 4),
            "via_missed": via_score[name][1],
            "detect_s": round(timing[name], 2),
        }
    result.update(
        trips=trips,
        points=args.points,
        seed=args.seed,
        noise_m=args.noise_m,
        dropout=args.dropout,
        interval_s=args.interval,
        wall_s=round(time.monotonic() - started, 1),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
