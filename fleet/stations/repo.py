from __future__ import annotations

from fleet.catalogue import Table

TABLE = Table(
    name="transfer_station",
    key="station_id",
    columns=(
        "name", "lat", "lon", "streams", "opens_at", "closes_at", "tipping_time_s",
        "daily_capacity_kg",
    ),
    casts={"streams": "text[]"},
    contains={"stream": "streams"},
)  # fmt: skip
