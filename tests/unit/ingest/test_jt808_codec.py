"""JT/T 808 codec: frames built by hand from the standard's layouts (struct.pack and
hex written here, not the codec's encoders), decoded and answered."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808 import codec
from ingest.jt808.codec import FrameError, FrameReader, MsgId, Reason

PHONE = "013912345678"


def xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def stuff(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b == 0x7E:
            out += b"\x7d\x02"
        elif b == 0x7D:
            out += b"\x7d\x01"
        else:
            out.append(b)
    return bytes(out)


def frame2013(msg_id: int, body: bytes, *, serial: int = 1, phone_hex: str = PHONE) -> bytes:
    head = (
        struct.pack(">HH", msg_id, len(body)) + bytes.fromhex(phone_hex) + struct.pack(">H", serial)
    )
    data = head + body
    return b"\x7e" + stuff(data + bytes([xor(data)])) + b"\x7e"


def frame2019(msg_id: int, body: bytes, *, serial: int = 1) -> bytes:
    attributes = (1 << 14) | len(body)
    head = (
        struct.pack(">HHB", msg_id, attributes, 1)
        + bytes.fromhex("00000000013912345678")
        + struct.pack(">H", serial)
    )
    data = head + body
    return b"\x7e" + stuff(data + bytes([xor(data)])) + b"\x7e"


def location_body(
    *,
    alarm: int = 0,
    status: int = 0b11,
    lat: int = 31_820_410,
    lon: int = 117_290_130,
    altitude: int = 35,
    speed: int = 235,
    heading: int = 271,
    time_hex: str = "260512162950",
    extras: bytes = b"",
) -> bytes:
    return (
        struct.pack(">IIIIHHH", alarm, status, lat, lon, altitude, speed, heading)
        + bytes.fromhex(time_hex)
        + extras
    )


def decode(raw: bytes) -> codec.Message:
    return codec.decode_message(codec.decode_frame(raw), codec.GMT8)


# --------------------------------------------------------------------------- frames


def test_heartbeat_2013_header_fields() -> None:
    frame = codec.decode_frame(frame2013(0x0002, b"", serial=0x1234))
    assert frame.header.msg_id == 0x0002
    assert frame.header.phone == PHONE
    assert frame.header.phone_key == "13912345678"
    assert frame.header.serial == 0x1234
    assert frame.header.version is None
    assert decode(frame2013(0x0002, b"")) == codec.Heartbeat()


def test_2019_header_version_flag_and_ten_bcd_bytes() -> None:
    frame = codec.decode_frame(frame2019(0x0002, b"", serial=7))
    assert frame.header.version == 1
    assert frame.header.phone == "00000000013912345678"
    assert frame.header.phone_key == "13912345678"  # one key for both editions
    assert frame.header.serial == 7


def test_escaped_bytes_are_restored_and_flag_never_appears_inside() -> None:
    body = location_body(extras=bytes([0xE1, 3, 0x7E, 0x7D, 0x01]))
    raw = frame2013(0x0200, body, serial=0x7E7D)
    assert raw.count(b"\x7e") == 2  # only the two flags
    assert b"\x7d\x02" in raw and b"\x7d\x01" in raw
    frame = codec.decode_frame(raw)
    assert frame.header.serial == 0x7E7D
    assert frame.body == body


def test_escape_round_trip_of_every_byte_value() -> None:
    data = bytes(range(256)) * 2
    escaped = codec.escape(data)
    assert 0x7E not in escaped
    assert codec.unescape(escaped) == data
    assert escaped == stuff(data)


def test_wrong_check_code_is_refused_with_its_header() -> None:
    raw = bytearray(frame2013(0x0200, location_body(), serial=9))
    raw[-2] ^= 0xFF
    with pytest.raises(FrameError) as err:
        codec.decode_frame(bytes(raw))
    assert err.value.reason is Reason.BAD_CHECK
    assert err.value.header is not None and err.value.header.serial == 9
    assert err.value.raw == bytes(raw)
    assert codec.result_for(err.value.reason) is codec.Result.MESSAGE_ERROR


def test_bad_escape_and_truncated_frames() -> None:
    with pytest.raises(FrameError) as err:
        codec.decode_frame(b"\x7e\x00\x02\x7d\x03\x7e")
    assert err.value.reason is Reason.BAD_ESCAPE
    with pytest.raises(FrameError) as err:
        codec.decode_frame(b"\x7e\x00\x02\x00\x7e")
    assert err.value.reason is Reason.TRUNCATED
    # the header declares 28 body bytes, 10 arrived (check code still right)
    head = struct.pack(">HH", 0x0200, 28) + bytes.fromhex(PHONE) + b"\x00\x01"
    data = head + bytes(10)
    with pytest.raises(FrameError) as err:
        codec.decode_frame(b"\x7e" + data + bytes([xor(data)]) + b"\x7e")
    assert err.value.reason is Reason.TRUNCATED
    assert err.value.header is not None


def test_phone_number_that_is_not_bcd_is_a_bad_header() -> None:
    with pytest.raises(FrameError) as err:
        codec.decode_frame(frame2013(0x0002, b"", phone_hex="0139123456AB"))
    assert err.value.reason is Reason.BAD_HEADER
    assert err.value.header is None  # nothing to answer without a phone number


def test_encoder_matches_the_hand_built_frames() -> None:
    body = location_body()
    assert codec.encode_frame(0x0200, PHONE, 5, body) == frame2013(0x0200, body, serial=5)
    assert codec.encode_frame(0x0002, "13912345678", 3, version=1) == frame2019(
        0x0002, b"", serial=3
    )


# --------------------------------------------------------------------------- sub-packages


def _packets(body: bytes, size: int, first_serial: int) -> list[bytes]:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for i, chunk in enumerate(chunks):
        attributes = (1 << 13) | len(chunk)
        head = (
            struct.pack(">HH", 0x0704, attributes)
            + bytes.fromhex(PHONE)
            + struct.pack(">HHH", first_serial + i, len(chunks), i + 1)
        )
        data = head + chunk
        out.append(b"\x7e" + stuff(data + bytes([xor(data)])) + b"\x7e")
    return out


def test_sub_packages_are_reassembled_in_any_order() -> None:
    items = [location_body(time_hex=f"2605121629{s:02d}") for s in range(10)]
    body = struct.pack(">HB", 10, 1) + b"".join(struct.pack(">H", len(i)) + i for i in items)
    packets = _packets(body, 100, first_serial=40)
    assert len(packets) == 4
    r = codec.Reassembler()
    frames = [codec.decode_frame(p) for p in packets]
    assert frames[2].header.packets == 4 and frames[2].header.index == 3
    results = [r.add(f, now_s=0.0) for f in (frames[3], frames[0], frames[2])]
    assert results == [None, None, None]
    whole = r.add(frames[1], now_s=1.0)
    assert whole is not None and whole.body == body
    batch = codec.decode_message(whole, codec.GMT8)
    assert isinstance(batch, codec.LocationBatch)
    assert batch.kind == 1 and len(batch.locations) == 10
    assert r.incomplete == 0


def test_incomplete_sub_packages_expire_and_are_bounded() -> None:
    r = codec.Reassembler(timeout_s=10, max_messages=2)
    body = bytes(300)
    for first in (0, 100, 200):
        r.add(codec.decode_frame(_packets(body, 100, first)[0]), now_s=0.0)
    assert r.incomplete == 2
    r.expire(now_s=11.0)
    assert r.incomplete == 0


def test_missing_sub_packages_are_asked_for_once_with_0x8003() -> None:
    """Packets 1 and 4 of 4 (serials 40-43) arrive; 10 s later the missing ones are
    asked for once: 0x8003 = first serial 40, count (BYTE in 2013), ids 2 and 3 —
    the layout packed here by hand. Once they come, the message is whole."""
    packets = _packets(bytes(350), 100, first_serial=40)
    frames = [codec.decode_frame(p) for p in packets]
    r = codec.Reassembler(resend_after_s=10)
    assert r.add(frames[0], now_s=0.0) is None
    assert r.add(frames[3], now_s=1.0) is None
    assert r.overdue(now_s=9.9) == []
    (missing,) = r.overdue(now_s=10.0)
    assert r.overdue(now_s=20.0) == []  # asked once
    request = codec.decode_frame(codec.resend_request(missing, serial=7))
    assert request.header.msg_id == 0x8003 and request.header.phone == PHONE
    assert request.body == struct.pack(">HBHH", 40, 2, 2, 3)
    assert r.add(frames[1], now_s=21.0) is None
    whole = r.add(frames[2], now_s=22.0)
    assert whole is not None and whole.body == bytes(350)
    assert whole.part_serials == (40, 41, 42, 43)


def test_0x8003_of_a_2019_terminal_counts_in_a_word() -> None:
    header = codec.Header(0x0704, "00000000013912345678", 11, 100, version=1, packets=3, index=2)
    request = codec.decode_frame(codec.resend_request(codec.Missing(header, 10, (1, 3)), 1))
    assert request.header.version == 1
    assert request.body == struct.pack(">HHHH", 10, 2, 1, 3)


def test_split_packets_round_trip() -> None:
    body = bytes(range(256)) * 10
    r = codec.Reassembler()
    out = None
    for raw in codec.split_packets(0x0704, PHONE, 65534, body):
        out = r.add(codec.decode_frame(raw), 0.0)
    assert out is not None and out.body == body


# --------------------------------------------------------------------------- messages


def test_register_2013_layout() -> None:
    body = (
        struct.pack(">HH", 34, 100)
        + b"ABCDE"
        + b"M-1000".ljust(20, b"\x00")
        + b"T000042"
        + bytes([2])
        + "皖D12345".encode("gbk")
    )
    reg = decode(frame2013(0x0100, body))
    assert reg == codec.Register(34, 100, "ABCDE", "M-1000", "T000042", 2, "皖D12345")


def test_register_2011_and_2019_layouts() -> None:
    body2011 = (
        struct.pack(">HH", 34, 100)
        + b"ABCDE"
        + b"M8".ljust(8, b"\x00")
        + b"T000042"
        + b"\x01"
        + "皖A1".encode("gbk")
    )
    reg = decode(frame2013(0x0100, body2011))
    assert isinstance(reg, codec.Register)
    assert (reg.model, reg.device_id, reg.plate) == ("M8", "T000042", "皖A1")
    body2019 = (
        struct.pack(">HH", 34, 100)
        + b"MAKER".ljust(11, b"\x00")
        + b"MODEL-2019".ljust(30, b"\x00")
        + b"DEVICE-0001".ljust(30, b"\x00")
        + b"\x02"
        + "皖D54321".encode("gbk")
    )
    reg = decode(frame2019(0x0100, body2019))
    assert reg == codec.Register(34, 100, "MAKER", "MODEL-2019", "DEVICE-0001", 2, "皖D54321")


def test_auth_2013_and_2019() -> None:
    assert decode(frame2013(0x0102, b"secret-code")) == codec.Auth("secret-code")
    body = bytes([4]) + b"abcd" + b"860000000000001" + b"V1.2".ljust(20, b"\x00")
    assert decode(frame2019(0x0102, body)) == codec.Auth("abcd", "860000000000001", "V1.2")
    with pytest.raises(FrameError) as err:
        decode(frame2019(0x0102, bytes([30]) + b"abcd"))
    assert err.value.reason is Reason.BAD_BODY


def test_logout_and_terminal_response() -> None:
    assert decode(frame2013(0x0003, b"")) == codec.Logout()
    assert decode(frame2013(0x0001, struct.pack(">HHB", 77, 0x8001, 0))) == codec.TerminalResponse(
        77, 0x8001, 0
    )
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0002, b"\x00"))
    assert err.value.reason is Reason.BAD_BODY


def test_location_fields_time_zone_and_extras() -> None:
    extras = (
        bytes([0x01, 4]) + struct.pack(">I", 102342)  # mileage 10234.2 km
        + bytes([0x02, 2]) + struct.pack(">H", 1234)  # fuel 123.4 L
        + bytes([0x03, 2]) + struct.pack(">H", 240)  # recorder speed 24.0 km/h
        + bytes([0x30, 1, 27])  # signal strength
        + bytes([0x31, 1, 14])  # satellites
        + bytes([0xE1, 3, 1, 2, 3])  # vendor item, kept raw
    )  # fmt: skip
    loc = decode(frame2013(0x0200, location_body(extras=extras)))
    assert isinstance(loc, codec.Location)
    assert (loc.lat, loc.lon) == (31.82041, 117.29013)
    assert loc.altitude_m == 35 and loc.speed_kmh == 23.5 and loc.heading_deg == 271
    assert loc.recorded_at == datetime(2026, 5, 12, 8, 29, 50, tzinfo=UTC)  # GMT+8 → UTC
    assert loc.mileage_km == 10234.2 and loc.fuel_l == 123.4 and loc.recorder_speed_kmh == 24.0
    assert loc.signal_strength == 27 and loc.satellites == 14
    assert loc.unknown_extras == ((0xE1, b"\x01\x02\x03"),)


def test_device_zone_is_a_setting() -> None:
    raw = frame2013(0x0200, location_body())
    loc = codec.decode_message(codec.decode_frame(raw), codec.device_zone(0))
    assert isinstance(loc, codec.Location)
    assert loc.recorded_at == datetime(2026, 5, 12, 16, 29, 50, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bits", "load"),
    [(0b00, "empty"), (0b01, "half"), (0b10, None), (0b11, "full")],
)
def test_load_bits_8_9(bits: int, load: str | None) -> None:
    loc = decode(frame2013(0x0200, location_body(status=0b11 | bits << 8)))
    assert isinstance(loc, codec.Location)
    assert loc.load_state == load


def test_status_bits_acc_fix_hemispheres_doors() -> None:
    status = (1 << 2) | (1 << 3) | (1 << 13) | (1 << 15) | (1 << 17)  # ACC off, no fix
    loc = decode(frame2013(0x0200, location_body(status=status)))
    assert isinstance(loc, codec.Location)
    assert not loc.acc_on and not loc.located
    assert (loc.lat, loc.lon) == (-31.82041, -117.29013)
    assert loc.doors_open == (1, 3, 5)
    on = decode(frame2013(0x0200, location_body(status=0b11)))
    assert isinstance(on, codec.Location) and on.acc_on and on.located and on.doors_open == ()


def test_every_alarm_bit_has_a_name() -> None:
    for bit, name in codec.ALARM_BITS.items():
        loc = decode(frame2013(0x0200, location_body(alarm=1 << bit)))
        assert isinstance(loc, codec.Location)
        assert loc.alarms == (name,)
    loc = decode(frame2013(0x0200, location_body(alarm=0b11)))
    assert isinstance(loc, codec.Location) and loc.alarms == ("emergency", "overspeed")


@pytest.mark.parametrize(
    "time_hex", ["261312162950", "2605121629AA", "260230000000", "260512246000"]
)
def test_invalid_bcd_time(time_hex: str) -> None:
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0200, location_body(time_hex=time_hex)))
    assert err.value.reason is Reason.BAD_TIME
    assert err.value.header is not None and err.value.header.msg_id == MsgId.LOCATION


@pytest.mark.parametrize(("lat", "lon"), [(90_000_001, 0), (0, 180_000_001), (0xFFFFFFFF, 1)])
def test_impossible_coordinate(lat: int, lon: int) -> None:
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0200, location_body(lat=lat, lon=lon)))
    assert err.value.reason is Reason.BAD_COORDINATE


def test_location_cut_short_and_extra_item_cut_short() -> None:
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0200, location_body()[:20]))
    assert err.value.reason is Reason.BAD_BODY
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0200, location_body(extras=bytes([0x01, 4, 0, 0]))))
    assert err.value.reason is Reason.BAD_BODY


@pytest.mark.parametrize("kind", [0, 1])
def test_batch_types(kind: int) -> None:
    items = [location_body(time_hex="260512163000"), location_body(time_hex="260512162950")]
    body = struct.pack(">HB", 2, kind) + b"".join(struct.pack(">H", len(i)) + i for i in items)
    batch = decode(frame2013(0x0704, body))
    assert isinstance(batch, codec.LocationBatch)
    assert batch.kind == kind
    assert [loc.recorded_at.second for loc in batch.locations] == [0, 50]


def test_batch_with_bad_type_or_count() -> None:
    item = location_body()
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0704, struct.pack(">HB", 1, 7) + struct.pack(">H", len(item)) + item))
    assert err.value.reason is Reason.BAD_BODY
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0704, struct.pack(">HB", 2, 0) + struct.pack(">H", len(item)) + item))
    assert err.value.reason is Reason.BAD_BODY


def test_unknown_message_id_is_not_supported() -> None:
    with pytest.raises(FrameError) as err:
        decode(frame2013(0x0900, b"\x01\x02"))
    assert err.value.reason is Reason.UNKNOWN_MESSAGE
    assert codec.result_for(err.value.reason) is codec.Result.NOT_SUPPORTED


def test_platform_general_response_layout() -> None:
    header = codec.decode_frame(frame2013(0x0200, location_body(), serial=0x0102)).header
    raw = codec.platform_response(header, codec.Result.OK, serial=5)
    assert raw == frame2013(0x8001, bytes.fromhex("0102 0200 00"), serial=5)
    header19 = codec.decode_frame(frame2019(0x0002, b"", serial=3)).header
    assert codec.platform_response(header19, codec.Result.MESSAGE_ERROR, 9) == frame2019(
        0x8001, bytes.fromhex("0003 0002 02"), serial=9
    )


def test_register_response_layout() -> None:
    header = codec.decode_frame(frame2013(0x0100, bytes(37), serial=0x0A0B)).header
    ok = codec.register_response(header, codec.RegisterResult.OK, "AUTH123", serial=1)
    assert ok == frame2013(0x8100, bytes.fromhex("0A0B 00") + b"AUTH123", serial=1)
    refused = codec.register_response(header, codec.RegisterResult.NO_SUCH_TERMINAL, "", 2)
    assert refused == frame2013(0x8100, bytes.fromhex("0A0B 04"), serial=2)


def test_location_and_batch_encoders_round_trip() -> None:
    loc = decode(
        frame2013(0x0200, location_body(status=0b11 | 1 << 8 | 1 << 2, extras=bytes([0x30, 1, 9])))
    )
    assert isinstance(loc, codec.Location)
    assert codec.decode_location(codec.encode_location(loc, codec.GMT8), codec.GMT8) == loc
    batch = codec.decode_batch(codec.encode_batch([loc, loc], codec.GMT8, kind=0), codec.GMT8)
    assert batch == codec.LocationBatch(0, (loc, loc))


# --------------------------------------------------------------------------- the stream


def test_reader_splits_frames_at_every_chunk_boundary() -> None:
    stream = (
        frame2013(0x0002, b"")
        + frame2013(0x0200, location_body(extras=b"\xe1\x01\x7e"))
        + frame2019(0x0003, b"")
    )
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        out = [*reader.feed(stream[:cut]), *reader.feed(stream[cut:])]
        assert [type(x) for x in out] == [codec.Frame] * 3, cut
        assert [f.header.msg_id for f in out if isinstance(f, codec.Frame)] == [2, 0x0200, 3]


def test_reader_reports_noise_and_oversize_then_resyncs() -> None:
    reader = FrameReader(max_frame_bytes=100)
    good = frame2013(0x0002, b"")
    out = list(reader.feed(b"GET / HTTP/1.1\r\n" + good + b"x" * 500 + good))
    reasons = [x.reason for x in out if isinstance(x, FrameError)]
    assert reasons == [Reason.NOISE, Reason.OVERSIZE]
    assert sum(isinstance(x, codec.Frame) for x in out) == 2
    assert reader.pending_bytes == 0


VALID = [
    frame2013(0x0002, b"", serial=1),
    frame2013(0x0200, location_body(extras=bytes([0xE1, 2, 0x7E, 0x7D])), serial=2),
    frame2019(0x0704, struct.pack(">HB", 1, 1) + struct.pack(">H", 28) + location_body(), serial=3),
]


@settings(max_examples=400, deadline=None)
@given(
    garbage=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([b"\x7e", b"\x7d", b"\x7d\x02", b"\x7e\x7e", b"\x7e\x00\x02"]),
            st.binary(min_size=2200, max_size=2300),
        ),
        max_size=8,
    ),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_fuzz_garbage_never_raises_and_never_desynchronises(
    garbage: list[bytes], chunk: int
) -> None:
    stream = b"".join(garbage) + b"".join(VALID)
    reader = FrameReader()
    out: list[codec.Frame | FrameError] = []
    for i in range(0, len(stream), chunk):
        out.extend(reader.feed(stream[i : i + chunk]))
    frames = [x for x in out[-len(VALID) :] if isinstance(x, codec.Frame)]
    assert [f.raw for f in frames] == VALID
    for x in out:  # whatever came out of the garbage decodes or is refused, never raises
        if isinstance(x, codec.Frame):
            with contextlib.suppress(FrameError):
                codec.decode_message(x, codec.GMT8)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_fuzz_any_frame_content_decodes_or_is_refused(content: bytes) -> None:
    for raw in (b"\x7e" + content + b"\x7e", b"\x7e" + codec.escape(content) + b"\x7e"):
        try:
            frame = codec.decode_frame(raw)
            codec.decode_message(frame, codec.GMT8)
        except FrameError as exc:
            assert exc.reason in Reason
            if exc.header is not None:  # whatever header is attached can be answered
                codec.platform_response(exc.header, codec.result_for(exc.reason), 1)


@settings(max_examples=500, deadline=None)
@given(
    msg_id=st.sampled_from([int(m) for m in MsgId] + [0x0900]),
    body=st.binary(max_size=400),
    v2019=st.booleans(),
)
def test_fuzz_any_body_of_a_valid_frame_decodes_or_is_refused(
    msg_id: int, body: bytes, v2019: bool
) -> None:
    raw = codec.encode_frame(msg_id, PHONE, 1, body, version=1 if v2019 else None)
    try:
        codec.decode_message(codec.decode_frame(raw), codec.GMT8)
    except FrameError as exc:
        assert exc.header is not None and exc.header.msg_id == msg_id


# --------------------------------------------------------------------------- commands


def test_set_parameters_body_follows_the_standard_layout() -> None:
    """0x8103: count BYTE, then per parameter id DWORD, length BYTE, value."""
    body = codec.encode_parameters([(0x0029, b"\x00\x00\x00\x1e"), (0x0013, b"gw.cn")])
    assert body == bytes.fromhex("0200000029040000001e0000001305") + b"gw.cn"
    assert codec.decode_parameters(body) == [(0x0029, b"\x00\x00\x00\x1e"), (0x0013, b"gw.cn")]
    with pytest.raises(FrameError):
        codec.decode_parameters(body[:-1])  # cut short
    with pytest.raises(ValueError):
        codec.encode_parameters([])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x0029=30", (0x29, b"\x00\x00\x00\x1e")),
        ("41=30", (0x29, b"\x00\x00\x00\x1e")),
        ("0x0031:word=500", (0x31, b"\x01\xf4")),
        ("0x0084:byte=1", (0x84, b"\x01")),
        ("0x0013=gw.example.com", (0x13, b"gw.example.com")),
        ("0x0083=皖A12345", (0x83, "皖A12345".encode("gbk"))),
        ("0x0013:string=12345", (0x13, b"12345")),
    ],
)
def test_a_parameter_is_read_as_id_type_and_value(text: str, expected: tuple[int, bytes]) -> None:
    """Numbers are DWORDs unless typed; anything else a GBK string."""
    assert codec.parse_parameter(text) == expected


@pytest.mark.parametrize(
    "text", ["0x0029", "x=1", "0x0031:word=70000", "0x0031:float=1", "0x0029:byte=-1"]
)
def test_a_bad_parameter_is_refused_with_a_reason(text: str) -> None:
    """No '=', a bad id, a value that does not fit its type, an unknown type."""
    with pytest.raises(ValueError, match=repr(text)):
        codec.parse_parameter(text)


def test_a_location_reply_is_decoded_with_the_serial_it_answers() -> None:
    """0x0201: the query's serial (WORD), then a location body as in 0x0200."""
    body = struct.pack(">H", 0x1234) + location_body()
    reply = decode(frame2013(MsgId.LOCATION_REPLY, body))
    assert isinstance(reply, codec.LocationReply)
    assert reply.reply_serial == 0x1234
    assert reply.location == codec.decode_location(location_body(), codec.GMT8)
    with pytest.raises(FrameError):
        decode(frame2013(MsgId.LOCATION_REPLY, b"\x00"))
