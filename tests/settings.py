"""Settings for tests, set the way an operator sets them: by variable name."""

from __future__ import annotations

from typing import Any

from fleet.config import GROUPS, Settings, fields_by_variable


def flat_settings(**values: Any) -> Settings:
    """Settings from values named like their CLEARDAY_* variables, without the
    prefix and in lower case (``ingest_batch_max_rows=10``); the rest from defaults
    and the environment, as for any entry point."""
    fields = fields_by_variable()
    own: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        group, field = fields[f"CLEARDAY_{key.upper()}"]
        if group is None:
            own[field] = value
        else:
            grouped.setdefault(group, {})[field] = value
    groups = {group: GROUPS[group](**kwargs) for group, kwargs in grouped.items()}
    return Settings(**own, **groups)
