from __future__ import annotations

from fleet.web.crud import Table

TABLE = Table(name="depot", key="depot_id", columns=("name", "lat", "lon"))
