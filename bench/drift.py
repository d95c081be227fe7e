"""Drifted services against trucks idling beside a point: where the visit detector puts them.

Simulated days of a generated district (the simulator's city, greedy plans, fixes every
10 s with σ = `--noise-m`, `--dropout` of them lost, no blind zones) in which two of
every three planned points carry a street fault, alternately:

- ``drift``: the truck serves the point while its fixes sit 41-76 m off for the first
  2-3 minutes of the stop (urban canyon). A stay at the point at least its minimum
  dwell long (in the fence, or a drifted stay placed there) is right: the ledger then
  clears it or calls it unverifiable. None is wrong: the point is judged missed.
- ``idle_beside``: the truck stands 46-59 m short of the point for 5-8 minutes and turns
  back. Any stay placed at the point is wrong (the point becomes unverifiable, not
  missed).

No database or broker, no events (no lift sensors): this isolates the detector
(`fleet.alerts.visits.detect`) on the fixes and the roads. The end-to-end alert figures
are `bench/alerts.py`.

    .venv/bin/python bench/drift.py [--days 8] [--points 300]

The last stdout line is one JSON object:
    {"drift": {"services": …, "unplaced": …, "by_confidence": {…}},
     "idle_beside": {"stops": …, "placed": …, "by_confidence": {…}}, …}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passes import road_rows  # noqa: E402

from fleet.alerts.visits import Fix, Site, SiteIndex, detect  # noqa: E402
from simulator.city import generate  # noqa: E402
from simulator.faults import Fault  # noqa: E402
from simulator.plans import greedy_plan  # noqa: E402
from simulator.roads import RoadNetwork  # noqa: E402
from simulator.trucks import DaySpec, SimDay, TerminalConfig  # noqa: E402

FIRST_DATE = date(2026, 12, 4)
KINDS = ("drift", "idle_beside")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--trucks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise-m", type=float, default=15.0)
    ap.add_argument("--dropout", type=float, default=0.05)
    args = ap.parse_args()

    started = time.monotonic()
    city = generate(n_points=args.points, n_trucks=args.trucks, seed=args.seed, district="bench")
    net = RoadNetwork(city)
    plan = greedy_plan(city, net=net)
    sites = [
        Site("point", p.id, p.lat, p.lon, p.geofence_radius_m, p.min_dwell_s) for p in city.points
    ]
    sites += [Site("station", s.id, s.lat, s.lon, 50.0, 60.0) for s in city.stations]
    sites += [Site("depot", d.id, d.lat, d.lon, 60.0, 60.0) for d in city.depots]
    index = SiteIndex(sites, roads=road_rows(city))
    min_dwell_s = {p.id: p.min_dwell_s for p in city.points}
    truck_of = {t.terminal_id: t.id for t in city.trucks}
    planned = [
        (route.truck_id, stop.ref_id)
        for route in plan.routes
        for stop in route.stops
        if stop.kind == "point" and stop.ref_id is not None
    ]
    placed: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    for day in range(args.days):
        # Day k: drift at the points k, k + 3, …; idle beside at k + 1, k + 4, …
        fault_of = {
            point_id: KINDS[(n + day) % 3]
            for n, (_, point_id) in enumerate(planned)
            if (n + day) % 3 < 2
        }
        spec = DaySpec(
            city=city, plan=plan, service_date=FIRST_DATE + timedelta(days=day),
            seed=args.seed * 1000 + day,
            terminal=TerminalConfig(
                fix_interval_s=10.0, noise_m=args.noise_m, dropout_prob=args.dropout,
                signal_losses_per_day=0.0,
            ),
            faults=tuple(Fault(kind, point_id=p) for p, kind in fault_of.items()),
        )  # fmt: skip
        fixes: dict[str, list[Fix]] = defaultdict(list)
        for em in SimDay(spec, net=net).emissions():
            fixes[truck_of[em.terminal_id]] += [
                Fix(f.recorded_at, f.lat, f.lon, f.speed_kmh, f.accuracy_m) for f in em.fixes
            ]
        stays: dict[tuple[str, str], list[float]] = defaultdict(list)
        for truck_id, track in fixes.items():
            for v in detect(truck_id, track, [], index).visits:
                at_fault = v.kind == "stay" and v.site_id in fault_of
                if at_fault and v.dwell_s >= min_dwell_s[v.site_id or ""]:
                    stays[truck_id, v.site_id or ""].append(v.confidence)
        for truck_id, point_id in planned:
            if point_id in fault_of:
                found = stays.get((truck_id, point_id))
                placed[fault_of[point_id]][str(max(found)) if found else "none"] += 1
    drift, idle = placed["drift"], placed["idle_beside"]
    print(
        json.dumps(
            {
                "drift": {
                    "services": drift.total(),
                    "unplaced": drift["none"],
                    "by_confidence": dict(sorted(drift.items())),
                },
                "idle_beside": {
                    "stops": idle.total(),
                    "placed": idle.total() - idle["none"],
                    "by_confidence": dict(sorted(idle.items())),
                },
                "days": args.days,
                "points": args.points,
                "trucks": args.trucks,
                "noise_m": args.noise_m,
                "dropout": args.dropout,
                "wall_s": round(time.monotonic() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
