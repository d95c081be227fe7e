"""JT/T 808 location reports (bodies packed here from the standard's layout) become
wire-format fixes that the ingestor's own decoder accepts, field by field."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import wire
from ingest.jt808 import codec, translate

TOPIC = wire.positions_topic("GPS-T1")
NOW = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)


def body(*, status: int, altitude: int = 35, extras: bytes = b"") -> bytes:
    return (
        struct.pack(">IIIIHHH", 0, status, 31_820_410, 117_290_130, altitude, 235, 271)
        + bytes.fromhex("260512162950")  # 2026-05-12 16:29:50 GMT+8
        + extras
    )


def item(item_id: int, value: bytes) -> bytes:
    return bytes([item_id, len(value)]) + value


def through_the_wire(fix: wire.Fix) -> wire.Fix:
    """What the ingestor decodes from the gateway's message."""
    parsed = wire.parse_fixes(TOPIC, wire.encode_fixes(fix), now=NOW)
    assert parsed.rejections == [], parsed.rejections
    (stored,) = parsed.items
    return stored


def test_every_mapped_field_reaches_the_ingestor() -> None:
    """ACC, fix, load 满载 (bits 8-9 = 11), door locked (12), doors 1 and 3 open (13, 15);
    altitude; mileage, fuel, recorder speed, signal, satellites; an unknown item 0xE1."""
    status = 0b11 | (0b11 << 8) | (1 << 12) | (1 << 13) | (1 << 15)
    extras = (
        item(0x01, struct.pack(">I", 102_342))
        + item(0x02, struct.pack(">H", 885))
        + item(0x03, struct.pack(">H", 240))
        + item(0x30, b"\x1b")
        + item(0x31, b"\x0b")
        + item(0xE1, b"\x0a\x0b\x7e")
    )
    loc = codec.decode_location(body(status=status, extras=extras), codec.GMT8)
    fix = translate.fix_of(loc)
    assert fix is not None
    assert through_the_wire(fix) == wire.Fix(
        recorded_at=datetime(2026, 5, 12, 8, 29, 50, tzinfo=UTC),
        lat=31.82041,
        lon=117.29013,
        speed_kmh=23.5,
        heading_deg=271.0,
        odometer_km=10234.2,
        ignition=True,
        load_state="full",
        altitude_m=35.0,
        fuel_l=88.5,
        recorder_speed_kmh=24.0,
        signal_strength=27,
        satellites=11,
        door_locked=True,
        doors_open=(1, 3),
        extra={"jt808_E1": "0a0b7e"},
    )


def test_values_outside_the_wire_bounds_are_kept_raw_instead_of_losing_the_fix() -> None:
    """A recorder speed of 6553.5 km/h and a signal item of the wrong size do not get the
    fix refused: they stay in ``extra`` as the terminal sent them; the altitude word
    0xFFF6 is −10 m."""
    extras = item(0x03, b"\xff\xff") + item(0x30, b"\x01\x02") + item(0x31, b"\x05")
    loc = codec.decode_location(body(status=0b10, altitude=0xFFF6, extras=extras), codec.GMT8)
    fix = translate.fix_of(loc)
    assert fix is not None
    stored = through_the_wire(fix)
    assert stored.recorder_speed_kmh is None and stored.signal_strength is None
    assert stored.satellites == 5 and stored.altitude_m == -10.0
    assert stored.extra == {"jt808_03": "ffff", "jt808_30": "0102"}
    assert stored.ignition is False and stored.doors_open == () and stored.door_locked is False


def test_a_report_without_a_fix_is_no_position() -> None:
    assert translate.fix_of(codec.decode_location(body(status=0b01), codec.GMT8)) is None


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(0, 2**32 - 1),
    altitude=st.integers(0, 0xFFFF),
    items=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=255)), max_size=80).filter(
        lambda xs: 28 + sum(2 + len(v) for _, v in xs) <= codec.MAX_BODY_BYTES
    ),
)
def test_any_located_report_becomes_a_fix_the_ingestor_accepts(
    status: int, altitude: int, items: list[tuple[int, bytes]]
) -> None:
    """Whatever status word, altitude and additional items (any id, any size, more than
    ``extra`` may hold) a terminal sends, the translated fix passes the wire decoder."""
    extras = b"".join(item(k, v) for k, v in items)
    loc = codec.decode_location(
        body(status=status | 0b10, altitude=altitude, extras=extras), codec.GMT8
    )
    fix = translate.fix_of(loc)
    assert fix is not None
    stored = through_the_wire(fix)
    assert stored.lat in (31.82041, -31.82041) and stored.door_locked == bool(status & 1 << 12)
    assert len(stored.extra or {}) <= wire.MAX_EXTRA_ITEMS
