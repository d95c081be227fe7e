from __future__ import annotations

from fleet.catalogue import Table

TABLE = Table(name="depot", key="depot_id", columns=("name", "lat", "lon"))
