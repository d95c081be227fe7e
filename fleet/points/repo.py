from __future__ import annotations

from fleet.catalogue import Table

TABLE = Table(
    name="collection_point",
    key="point_id",
    columns=(
        "name", "lat", "lon", "stream", "daily_amount_kg", "service_time_s", "window_start",
        "window_end", "geofence_radius_m", "min_dwell_s", "clearance_deadline", "access_class",
        "has_bins", "schedule",
    ),
    casts={"stream": "text"},
    filters=("stream", "access_class"),
)  # fmt: skip
