"""A truck's display status from its latest fix: pure functions, `now` passed in.

Sites (points, stations, depots) are a district's `fleet.alerts.visits.SiteIndex`, the
one the alerts use, so each lookup checks a handful of candidates. The ledger
(fleet/alerts) decides visits with dwell times and evidence; this is only what the live
map shows at a glance.
"""

from __future__ import annotations

from datetime import datetime

from fleet.alerts.visits import SiteIndex
from fleet.positions.models import TruckStatus

MOVING_KMH = 5.0  # below this a truck counts as stopped


def classify(
    *,
    recorded_at: datetime | None,
    lat: float | None,
    lon: float | None,
    speed_kmh: float | None,
    accuracy_m: float | None,
    now: datetime,
    offline_after_s: float,
    sites: SiteIndex,
) -> tuple[TruckStatus, str | None]:
    """(status, site id) for one truck's latest fix."""
    if recorded_at is None or lat is None or lon is None:
        return TruckStatus.no_data, None
    if (now - recorded_at).total_seconds() > offline_after_s:
        return TruckStatus.offline, None
    if speed_kmh is not None and speed_kmh >= MOVING_KMH:
        return TruckStatus.moving, None
    site = sites.at(lat, lon, accuracy_m=accuracy_m or 0.0)
    if site is None:
        return TruckStatus.stopped, None
    status = {
        "point": TruckStatus.at_point,
        "station": TruckStatus.unloading,
        "depot": TruckStatus.parked,
    }[site.kind]
    return status, site.site_id
