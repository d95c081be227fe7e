"""JT/T 808 location reports in ClearDay's wire format (ingest/wire.py); pure.

A location with a GNSS fix becomes a :class:`wire.Fix`: ACC → ``ignition``, load bits
8-9 → ``load_state``, door bits 12-17 → ``door_locked`` / ``doors_open``, altitude,
and the additional items mileage (0x01) → ``odometer_km``, fuel (0x02), recorder
speed (0x03), signal strength (0x30) and satellites (0x31). Every other additional
item, and one whose value lies outside the wire format's bounds, goes into ``extra``
as hex under ``jt808_<id>``. A report without a fix (status bit 1 clear: the terminal
repeats its last position) is no position and becomes no fix. Alarm bits that were
not set in the previous report become one ``alarm`` event carrying their names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from ingest import wire
from ingest.jt808 import codec
from ingest.jt808.codec import ALARM_BITS, Location

# Fixes per MQTT message: keeps a long blind-zone upload far below the ingestor's
# payload limit (about 300 bytes of JSON per fix).
MAX_FIXES_PER_MESSAGE = 500

# Additional items carried as fix fields: item -> the Fix field, the item's size and
# divisor (codec.EXTRA_ITEMS), and the bounds the wire format accepts.
_BOUNDS: dict[int, tuple[str, float, float]] = {
    codec.EXTRA_MILEAGE: ("odometer_km", 0.0, wire.MAX_ODOMETER_KM),
    codec.EXTRA_FUEL: ("fuel_l", 0.0, wire.MAX_FUEL_L),
    codec.EXTRA_RECORDER_SPEED: ("recorder_speed_kmh", 0.0, wire.MAX_SPEED_KMH),
    codec.EXTRA_SIGNAL: ("signal_strength", 0, wire.MAX_BYTE),
    codec.EXTRA_SATELLITES: ("satellites", 0, wire.MAX_BYTE),
}
_ITEM_FIELDS: dict[int, tuple[str, int, float | None, float, float]] = {
    item: (name, *codec.EXTRA_ITEMS[item], lo, hi) for item, (name, lo, hi) in _BOUNDS.items()
}
_ALTITUDE_LO_M, _ALTITUDE_HI_M = wire.ALTITUDE_RANGE_M


def fix_of(loc: Location) -> wire.Fix | None:
    """The fix of one location report, or None without a GNSS fix. Called for every
    report, so the status word is read here bit by bit rather than through the
    Location's properties, and the additional items in one pass: the first value of
    an item of the standard's size decides it (a field when within the bounds; else
    the item stays raw)."""
    status = loc.status
    if not status & codec.Status.LOCATED:
        return None
    fields: dict[str, Any] = {}
    extras = loc.extras
    if extras:
        refused: set[int] = set()  # items decided out of bounds
        for item, value in extras:
            spec = _ITEM_FIELDS.get(item)
            if spec is None:
                continue
            name, size, divisor, lo, hi = spec
            if len(value) != size or name in fields or item in refused:
                continue
            number = int.from_bytes(value)
            decoded = number if divisor is None else number / divisor
            if lo <= decoded <= hi:
                fields[name] = decoded
            else:
                refused.add(item)
        if len(fields) != len(extras):  # some item is not a field: kept raw
            carried = {item for item, spec in _ITEM_FIELDS.items() if spec[0] in fields}
            raw = [(k, v) for k, v in extras if k not in carried][: wire.MAX_EXTRA_ITEMS]
            if raw:
                fields["extra"] = {f"jt808_{k:02X}": v.hex() for k, v in raw}
    altitude_m = loc.altitude_m
    return wire.Fix(
        recorded_at=loc.recorded_at,
        lat=loc.lat,
        lon=loc.lon,
        speed_kmh=loc.speed_kmh,
        heading_deg=float(loc.heading_deg),
        ignition=bool(status & codec.Status.ACC_ON),
        # a string: no typing work per call
        load_state=cast(
            "wire.LoadState | None", codec.LOAD_STATES[status >> codec.Status.LOAD_SHIFT & 0b11]
        ),
        altitude_m=float(altitude_m) if _ALTITUDE_LO_M <= altitude_m <= _ALTITUDE_HI_M else None,
        door_locked=bool(status & codec.Status.DOOR_LOCKED),
        doors_open=codec.DOORS_OPEN[status >> codec.Status.DOOR_SHIFT & 0b11111],
        **fields,
    )


def fixes_of(locations: Iterable[Location]) -> list[wire.Fix]:
    """Fixes in device-time order, whatever order the reports came in."""
    fixes = [f for f in map(fix_of, locations) if f is not None]
    if len(fixes) > 1:
        fixes.sort(key=_recorded_at)
    return fixes


def _recorded_at(item: wire.Fix | Location) -> datetime:
    return item.recorded_at


def alarm_events(
    locations: Sequence[Location], previous_alarm: int
) -> tuple[list[wire.Event], int]:
    """``alarm`` events for alarm bits raised since ``previous_alarm`` (the last
    report's alarm word), and the alarm word to remember."""
    events: list[wire.Event] = []
    last = previous_alarm
    if len(locations) == 1 and not (locations[0].alarm | previous_alarm):
        return events, 0  # the common report: no alarm before, none now
    for loc in sorted(locations, key=_recorded_at):
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
