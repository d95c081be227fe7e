"""JT/T 808 location reports in ClearDay's wire format (ingest/wire.py); pure.

A location with a GNSS fix becomes a :class:`wire.Fix` (ACC → ``ignition``, load bits
8-9 → ``load_state``, mileage item 0x01 → ``odometer_km``). A report without a fix
(status bit 1 clear: the terminal repeats its last position) is no position and
becomes no fix. Alarm bits that were not set in the previous report become one
``alarm`` event carrying their names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from ingest import wire
from ingest.jt808.codec import ALARM_BITS, Location

# Fixes per MQTT message: keeps a long blind-zone upload far below the ingestor's
# payload limit (about 200 bytes of JSON per fix).
MAX_FIXES_PER_MESSAGE = 500


def fix_of(loc: Location) -> wire.Fix | None:
    if not loc.located:
        return None
    return wire.Fix(
        recorded_at=loc.recorded_at,
        lat=loc.lat,
        lon=loc.lon,
        speed_kmh=loc.speed_kmh,
        heading_deg=float(loc.heading_deg),
        odometer_km=loc.mileage_km,
        ignition=loc.acc_on,
        load_state=cast(wire.LoadState | None, loc.load_state),
    )


def fixes_of(locations: Iterable[Location]) -> list[wire.Fix]:
    """Fixes in device-time order, whatever order the reports came in."""
    fixes = [f for f in map(fix_of, locations) if f is not None]
    fixes.sort(key=lambda f: f.recorded_at)
    return fixes


def alarm_events(
    locations: Iterable[Location], previous_alarm: int
) -> tuple[list[wire.Event], int]:
    """``alarm`` events for alarm bits raised since ``previous_alarm`` (the last
    report's alarm word), and the alarm word to remember."""
    events: list[wire.Event] = []
    last = previous_alarm
    for loc in sorted(locations, key=lambda x: x.recorded_at):
        raised = loc.alarm & ~last
        last = loc.alarm
        if not raised:
            continue
        names = [name for bit, name in ALARM_BITS.items() if raised >> bit & 1]
        events.append(
            wire.Event(
                recorded_at=loc.recorded_at,
                kind="alarm",
                lat=loc.lat if loc.located else None,
                lon=loc.lon if loc.located else None,
                extra={"alarms": names, "alarm_word": loc.alarm, "source": "jt808"},
            )
        )
    return events, last


def chunks(fixes: list[wire.Fix], size: int = MAX_FIXES_PER_MESSAGE) -> list[list[wire.Fix]]:
    return [fixes[i : i + size] for i in range(0, len(fixes), size)]
