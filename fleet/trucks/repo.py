from __future__ import annotations

from fleet.web.crud import Table

TABLE = Table(
    name="truck",
    key="truck_id",
    columns=(
        "plate", "truck_type", "capacity_kg", "streams", "depot_id", "terminal_id",
        "shift_start", "shift_end", "max_route_duration_s", "break_duration_s",
        "break_earliest", "break_latest", "can_enter_narrow",
    ),
    casts={"streams": "text[]"},
    search=("plate", "terminal_id"),
    filters=("truck_type", "depot_id"),
    contains={"stream": "streams"},
)  # fmt: skip
