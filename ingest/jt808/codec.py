"""JT/T 808 frames and messages: pure encoding and decoding, no I/O.

The layouts follow JT/T 808-2013 and JT/T 808-2019 (2011 terminals use the 2013
header). Every integer is big-endian (WORD = 2 bytes, DWORD = 4), numbers such as
the phone number and times are BCD, strings are GBK.

A frame on the wire::

    0x7E | header | body | check code | 0x7E

with 0x7E inside escaped as 0x7D 0x02 and 0x7D as 0x7D 0x01; the check code is the
XOR of every byte of header and body (before escaping). The header:

    2013: msg id WORD | attributes WORD | phone BCD[6]  | serial WORD | [packets WORD, index WORD]
    2019: msg id WORD | attributes WORD | version BYTE | phone BCD[10] | serial WORD | [...]

attributes: bits 0-9 body length, 10-12 encryption, 13 sub-packaged, 14 the 2019
version flag.

Decoding never raises anything but :class:`FrameError` (a reason code, a detail a
person can act on, and the raw bytes), and :class:`FrameReader` turns any byte
stream into frames and errors without ever losing its place: a frame is whatever
lies between two 0x7E, so the next 0x7E always starts afresh.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from typing import cast

from fleet.trucks.terminals import jt808_phone_key

FLAG = 0x7E
ESCAPE = 0x7D
MAX_BODY_BYTES = 1023  # 10 bits of the attributes word
# Largest frame between the flags, escaped: every byte of the longest header (2019,
# sub-packaged: 21), body and check code doubled by escaping.
MAX_FRAME_BYTES = 2 * (21 + MAX_BODY_BYTES + 1)
DEFAULT_DEVICE_UTC_OFFSET_MIN = 8 * 60  # the standard's GMT+8

_ATTR_LENGTH_MASK = 0x03FF
_ATTR_ENCRYPTION_SHIFT = 10
_ATTR_SUBPACKAGE = 1 << 13
_ATTR_VERSION = 1 << 14


class MsgId(IntEnum):
    TERMINAL_RESPONSE = 0x0001
    HEARTBEAT = 0x0002
    LOGOUT = 0x0003
    REGISTER = 0x0100
    AUTH = 0x0102
    LOCATION = 0x0200
    LOCATION_REPLY = 0x0201  # 位置信息查询应答, to 0x8201
    LOCATION_BATCH = 0x0704
    PLATFORM_RESPONSE = 0x8001
    RESEND_REQUEST = 0x8003
    REGISTER_RESPONSE = 0x8100
    SET_PARAMETERS = 0x8103  # 设置终端参数, answered with 0x0001
    QUERY_LOCATION = 0x8201  # 位置信息查询, answered with 0x0201


class Result(IntEnum):
    """Result of the platform general response 0x8001."""

    OK = 0
    FAILURE = 1
    MESSAGE_ERROR = 2  # 消息有误: check code, truncated body, bad field
    NOT_SUPPORTED = 3


class RegisterResult(IntEnum):
    """Result of the register response 0x8100."""

    OK = 0
    VEHICLE_REGISTERED = 1
    NO_SUCH_VEHICLE = 2
    TERMINAL_REGISTERED = 3
    NO_SUCH_TERMINAL = 4


class Reason(StrEnum):
    """Why a frame or a message was refused (``dead_letter.reason``)."""

    BAD_CHECK = "jt808_bad_check"
    BAD_ESCAPE = "jt808_bad_escape"
    TRUNCATED = "jt808_truncated"  # shorter than its header or its declared body
    OVERSIZE = "jt808_oversize"  # no closing 0x7E within MAX_FRAME_BYTES
    NOISE = "jt808_noise"  # bytes before the first 0x7E of a connection
    BAD_HEADER = "jt808_bad_header"  # phone number not BCD, packet index out of range
    UNKNOWN_MESSAGE = "jt808_unknown_message"
    BAD_BODY = "jt808_bad_body"  # body shorter or longer than the message's layout
    BAD_TIME = "jt808_bad_time"  # BCD time that is no date
    BAD_COORDINATE = "jt808_bad_coordinate"  # latitude > 90 or longitude > 180 degrees
    ENCRYPTED = "jt808_encrypted"  # RSA bodies are not supported
    NOT_AUTHENTICATED = "jt808_not_authenticated"
    UNKNOWN_TERMINAL = "jt808_unknown_terminal"


class FrameError(Exception):
    """A frame or message that cannot be accepted. ``header`` is set when the header
    could be read, so that the platform can answer it."""

    def __init__(
        self, reason: Reason, detail: str, raw: bytes = b"", header: Header | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.raw = raw
        self.header = header


# --------------------------------------------------------------------------- frames


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape`; raise FrameError on 0x7D followed by anything but 01/02."""
    if b"\x7d" not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b != ESCAPE:
            out.append(b)
            i += 1
            continue
        nxt = data[i + 1] if i + 1 < n else None
        if nxt == 0x01:
            out.append(0x7D)
        elif nxt == 0x02:
            out.append(0x7E)
        else:
            following = "the end of the frame" if nxt is None else f"0x{nxt:02X}"
            raise FrameError(
                Reason.BAD_ESCAPE, f"0x7D at byte {i} is followed by {following}, not 01 or 02"
            )
        i += 2
    return bytes(out)


_U256 = (1 << 256) - 1
_U128 = (1 << 128) - 1
_U64 = (1 << 64) - 1


def check_code(data: bytes) -> int:
    """XOR of every byte (header and body, unescaped). The bytes are read as one
    integer and folded in halves: a handful of big-integer operations instead of a
    Python step per byte (a frame is checked for every report received); the last
    six folds, from 512 bits (a location frame) down, are written out."""
    n = int.from_bytes(data)
    bits = len(data) << 3
    while bits > 512:
        half = (bits + 15) >> 4 << 3  # half the bytes, rounded up
        n = (n >> half) ^ (n & ((1 << half) - 1))
        bits = half
    n = (n >> 256) ^ (n & _U256)
    n = (n >> 128) ^ (n & _U128)
    n = (n >> 64) ^ (n & _U64)
    n = (n >> 32) ^ (n & 0xFFFF_FFFF)
    n = (n >> 16) ^ (n & 0xFFFF)
    return (n >> 8) ^ (n & 0xFF)


def bcd_encode(digits: str, size: int) -> bytes:
    """Digits right-aligned in ``size`` BCD bytes (left-padded with zeros)."""
    if not digits.isdigit() or not digits.isascii() or len(digits) > 2 * size:
        raise ValueError(f"{digits!r} is not at most {2 * size} decimal digits")
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def bcd_decode(data: bytes) -> str | None:
    """The digits of BCD bytes, or None if a nibble is not 0-9."""
    text = data.hex()
    return text if text.isdigit() else None


phone_key = jt808_phone_key

# _HOT_PATH_NOTE: Header, Frame and Location are built for every frame received, so
# they are plain slotted dataclasses: a frozen one costs about 2 µs more to build
# (each field set through object.__setattr__). Nothing changes them after decoding.


@dataclass(slots=True)  # read-only by convention: see _HOT_PATH_NOTE
class Header:
    msg_id: int
    phone: str  # the BCD digits as sent, with their padding
    serial: int
    body_length: int
    version: int | None = None  # protocol version of a 2019 header, else None
    encryption: int = 0
    packets: int = 0  # total sub-packages, 0 when not sub-packaged
    index: int = 0  # 1-based index of this sub-package

    @property
    def is_2019(self) -> bool:
        return self.version is not None

    @property
    def phone_key(self) -> str:
        return phone_key(self.phone)


@dataclass(slots=True)  # read-only by convention: see _HOT_PATH_NOTE
class Frame:
    header: Header
    body: bytes
    raw: bytes  # as received, flags included
    part_serials: tuple[int, ...] = ()  # serial numbers of the sub-packages joined


def _header_size(attributes: int) -> int:
    size = 17 if attributes & _ATTR_VERSION else 12
    return size + 4 if attributes & _ATTR_SUBPACKAGE else size


_HEAD_2013 = struct.Struct(">HH6sH")  # msg id, attributes, phone BCD[6], serial
_HEAD_2019 = struct.Struct(">HHB10sH")  # msg id, attributes, version, phone BCD[10], serial
_PACKETS = struct.Struct(">HH")  # total sub-packages, this one's index


def parse_header(data: bytes) -> Header:
    """The header at the start of unescaped ``data`` (raises FrameError)."""
    if len(data) < 4:
        raise FrameError(Reason.TRUNCATED, f"{len(data)} bytes cannot hold a header")
    attributes = (data[2] << 8) | data[3]
    size = _header_size(attributes)
    if len(data) < size:
        raise FrameError(Reason.TRUNCATED, f"{len(data)} bytes, the header alone needs {size}")
    version: int | None
    if attributes & _ATTR_VERSION:
        msg_id, _, version, phone_bytes, serial = _HEAD_2019.unpack_from(data)
        at = _HEAD_2019.size
    else:
        msg_id, _, phone_bytes, serial = _HEAD_2013.unpack_from(data)
        version, at = None, _HEAD_2013.size
    packets = index = 0
    if attributes & _ATTR_SUBPACKAGE:
        packets, index = _PACKETS.unpack_from(data, at)
    header = Header(
        msg_id,
        bcd_decode(phone_bytes) or "",
        serial,
        attributes & _ATTR_LENGTH_MASK,
        version,
        (attributes >> _ATTR_ENCRYPTION_SHIFT) & 0x7,
        packets,
        index,
    )
    if not header.phone:  # no header to answer: a response goes to a phone number
        raise FrameError(Reason.BAD_HEADER, f"phone number {phone_bytes.hex()} is not BCD")
    if attributes & _ATTR_SUBPACKAGE and not 1 <= index <= packets:
        raise FrameError(
            Reason.BAD_HEADER, f"sub-package {index} of {packets} is out of range", header=header
        )
    return header


def decode_frame(raw: bytes) -> Frame:
    """One frame: ``raw`` with or without its 0x7E flags (raises FrameError, with
    the header attached when it could be read)."""
    content = raw[1:] if raw[:1] == b"\x7e" else raw
    content = content[:-1] if content[-1:] == b"\x7e" else content
    return _decode_content(content, raw)


def _decode_content(content: bytes, raw: bytes) -> Frame:
    """The frame whose escaped bytes between the flags are ``content``."""
    try:
        data = unescape(content)
        if len(data) < 2:
            raise FrameError(Reason.TRUNCATED, f"{len(data)} bytes between the flags")
        payload, code = data[:-1], data[-1]
        header = parse_header(payload)
    except FrameError as exc:
        exc.raw = raw
        raise
    # the header's size: a sub-packaged header that parsed has packets >= 1
    body = payload[(12 if header.version is None else 17) + (4 if header.packets else 0) :]
    if check_code(payload) != code:
        raise FrameError(
            Reason.BAD_CHECK,
            f"check code 0x{code:02X}, the bytes give 0x{check_code(payload):02X}",
            raw,
            header,
        )
    if len(body) != header.body_length:
        reason = Reason.TRUNCATED if len(body) < header.body_length else Reason.BAD_BODY
        raise FrameError(
            reason,
            f"body of {len(body)} bytes, the header declares {header.body_length}",
            raw,
            header,
        )
    return Frame(header, body, raw)


def _attributes(header: Header) -> int:
    attributes = header.body_length | (header.encryption << _ATTR_ENCRYPTION_SHIFT)
    if header.packets:
        attributes |= _ATTR_SUBPACKAGE
    if header.version is not None:
        attributes |= _ATTR_VERSION
    return attributes


def encode_frame(
    msg_id: int,
    phone: str,
    serial: int,
    body: bytes = b"",
    *,
    version: int | None = None,
    packets: int = 0,
    index: int = 0,
) -> bytes:
    """A complete escaped frame with flags; ``version`` set gives a 2019 header."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"a body holds at most {MAX_BODY_BYTES} bytes; split it in packets")
    header = Header(msg_id, phone, serial, len(body), version, 0, packets, index)
    head = struct.pack(">HH", msg_id, _attributes(header))
    if version is not None:
        head += bytes([version]) + bcd_encode(phone, 10)
    else:
        head += bcd_encode(phone, 6)
    head += struct.pack(">H", serial & 0xFFFF)
    if packets:
        head += struct.pack(">HH", packets, index)
    data = head + body
    return b"\x7e" + escape(data + bytes([check_code(data)])) + b"\x7e"


class FrameReader:
    """Splits a TCP byte stream into frames and errors.

    A frame is what lies between two 0x7E; bytes before the first 0x7E are noise; a
    run without 0x7E longer than ``max_frame_bytes`` is refused as oversize and
    skipped up to the next 0x7E. Whatever arrived, the next 0x7E starts afresh, so
    a valid frame that follows garbage is always read.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._in_frame = False  # a 0x7E has been seen: _buf is a frame's content
        self._skipping = 0  # bytes thrown away of an oversize run

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """The frames and errors ``data`` completes, in order."""
        out: list[Frame | FrameError] = []
        parts = data.split(b"\x7e")
        if parts[0] or self._buf or self._skipping or not self._in_frame:
            self._take(parts[0], out)  # continues the run in progress
            if len(parts) == 1:
                return out
            self._flag(out)
        # else: the common read, whole frames after a read that ended with a flag
        limit = self.max_frame_bytes
        for part in parts[1:-1]:  # whole runs between two flags: the common case
            if len(part) > limit:
                out.append(_oversize(part[:limit], limit))
            elif part:
                try:
                    out.append(_decode_content(part, b"\x7e" + part + b"\x7e"))
                except FrameError as exc:
                    out.append(exc)
        if parts[-1]:
            self._take(parts[-1], out)  # starts the next run
        return out

    def _take(self, chunk: bytes, out: list[Frame | FrameError]) -> None:
        if not chunk:
            return
        if self._skipping:
            self._skipping += len(chunk)
            return
        self._buf += chunk
        if len(self._buf) > self.max_frame_bytes:
            raw = bytes(self._buf[: self.max_frame_bytes])
            self._skipping = len(self._buf)
            self._buf.clear()
            out.append(_oversize(raw, self.max_frame_bytes))

    def _flag(self, out: list[Frame | FrameError]) -> None:
        if self._skipping:
            self._skipping = 0
        elif self._buf and not self._in_frame:
            out.append(
                FrameError(
                    Reason.NOISE, f"{len(self._buf)} bytes before the first 0x7E", bytes(self._buf)
                )
            )
        elif self._buf:
            out.append(_frame_or_error(b"\x7e" + bytes(self._buf) + b"\x7e"))
        self._buf.clear()
        self._in_frame = True

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


def _frame_or_error(raw: bytes) -> Frame | FrameError:
    try:
        return decode_frame(raw)
    except FrameError as exc:
        return exc


def _oversize(raw: bytes, limit: int) -> FrameError:
    return FrameError(
        Reason.OVERSIZE, f"no closing 0x7E within {limit} bytes; skipped to the next 0x7E", raw
    )


# --------------------------------------------------------------------------- sub-packages


@dataclass(slots=True)
class _Partial:
    first_seen_s: float
    first_serial: int  # the serial number of packet 1
    header: Header  # of a packet received: where a resend request goes
    parts: dict[int, Frame] = field(default_factory=dict)
    resend_requested: bool = False


@dataclass(frozen=True, slots=True)
class Missing:
    """Packets of a sub-packaged message still missing (to ask for with 0x8003)."""

    header: Header
    first_serial: int
    indexes: tuple[int, ...]


class Reassembler:
    """Joins sub-packaged frames of one connection into one frame.

    Packets of a message share its id and total and carry consecutive serial numbers,
    so ``serial - index`` names the message. Bounded: at most ``max_messages``
    incomplete messages, each dropped ``timeout_s`` after its first packet (the
    terminal resends what was not acknowledged as complete).
    """

    def __init__(
        self, *, timeout_s: float = 60.0, max_messages: int = 8, resend_after_s: float = 10.0
    ) -> None:
        self.timeout_s = timeout_s
        self.max_messages = max_messages
        self.resend_after_s = resend_after_s
        self._partial: dict[tuple[int, int, int], _Partial] = {}

    def add(self, frame: Frame, now_s: float) -> Frame | None:
        """The whole message once ``frame`` completes it, else None."""
        h = frame.header
        if not h.packets:
            return frame
        self.expire(now_s)
        key = (h.msg_id, h.packets, (h.serial - h.index) & 0xFFFF)
        partial = self._partial.get(key)
        if partial is None:
            if len(self._partial) >= self.max_messages:
                oldest = min(self._partial, key=lambda k: self._partial[k].first_seen_s)
                del self._partial[oldest]
            first_serial = (h.serial - h.index + 1) & 0xFFFF
            partial = self._partial[key] = _Partial(now_s, first_serial, h)
        partial.parts[h.index] = frame
        if len(partial.parts) < h.packets:
            return None
        del self._partial[key]
        parts = [partial.parts[i] for i in range(1, h.packets + 1)]
        body = b"".join(p.body for p in parts)
        first = parts[0].header
        whole = Header(h.msg_id, h.phone, h.serial, len(body), first.version, first.encryption)
        serials = tuple(p.header.serial for p in parts)
        return Frame(whole, body, b"".join(p.raw for p in parts), serials)

    def overdue(self, now_s: float) -> list[Missing]:
        """Messages incomplete for ``resend_after_s``, each reported once: the packets
        to ask the terminal for again (0x8003, :func:`resend_request`)."""
        out: list[Missing] = []
        for p in self._partial.values():
            if not p.resend_requested and now_s - p.first_seen_s >= self.resend_after_s:
                p.resend_requested = True
                total = p.header.packets
                missing = tuple(i for i in range(1, total + 1) if i not in p.parts)
                out.append(Missing(p.header, p.first_serial, missing))
        return out

    def expire(self, now_s: float) -> None:
        for key in [k for k, p in self._partial.items() if now_s - p.first_seen_s > self.timeout_s]:
            del self._partial[key]

    @property
    def incomplete(self) -> int:
        return len(self._partial)


def split_packets(
    msg_id: int,
    phone: str,
    first_serial: int,
    body: bytes,
    *,
    packet_bytes: int = MAX_BODY_BYTES,
    version: int | None = None,
) -> list[bytes]:
    """A long body as sub-packaged frames with consecutive serial numbers."""
    chunks = [body[i : i + packet_bytes] for i in range(0, len(body), packet_bytes)] or [b""]
    n = len(chunks)
    return [
        encode_frame(
            msg_id,
            phone,
            (first_serial + i) & 0xFFFF,
            chunk,
            version=version,
            packets=n,
            index=i + 1,
        )
        for i, chunk in enumerate(chunks)
    ]


# --------------------------------------------------------------------------- messages


class Status:
    """Bits of the location status word."""

    ACC_ON = 1 << 0
    LOCATED = 1 << 1
    SOUTH = 1 << 2
    WEST = 1 << 3
    LOAD_SHIFT = 8  # bits 8-9: 00 empty 空车, 01 half 半载, 10 reserved, 11 full 满载
    DOOR_LOCKED = 1 << 12
    DOOR_SHIFT = 13  # bits 13-17: doors 1-5 open (front, middle, back, driver, other)


ALARM_BITS: dict[int, str] = {
    0: "emergency",
    1: "overspeed",
    2: "fatigue_driving",
    3: "danger_warning",
    4: "gnss_module_fault",
    5: "gnss_antenna_disconnected",
    6: "gnss_antenna_short_circuit",
    7: "power_undervoltage",
    8: "power_cut",
    9: "display_fault",
    10: "tts_fault",
    11: "camera_fault",
    12: "ic_card_fault",
    13: "overspeed_warning",
    14: "fatigue_warning",
    18: "driving_overtime_today",
    19: "parking_overtime",
    20: "area_in_out",
    21: "route_in_out",
    22: "route_time_abnormal",
    23: "route_deviation",
    24: "vss_fault",
    25: "fuel_abnormal",
    26: "vehicle_stolen",
    27: "illegal_ignition",
    28: "illegal_displacement",
    29: "collision_warning",
    30: "rollover_warning",
    31: "illegal_door_open",
}

LOAD_STATES: dict[int, str | None] = {0: "empty", 1: "half", 2: None, 3: "full"}

# Additional items of a location report decoded into fields; others are kept raw.
EXTRA_MILEAGE = 0x01  # DWORD, 1/10 km
EXTRA_FUEL = 0x02  # WORD, 1/10 L
EXTRA_RECORDER_SPEED = 0x03  # WORD, 1/10 km/h
EXTRA_SIGNAL = 0x30  # BYTE, wireless signal strength
EXTRA_SATELLITES = 0x31  # BYTE, GNSS satellites in view
# item -> (size in bytes, divisor to its unit; None: a count, kept an int)
EXTRA_ITEMS: dict[int, tuple[int, float | None]] = {
    EXTRA_MILEAGE: (4, 10.0),
    EXTRA_FUEL: (2, 10.0),
    EXTRA_RECORDER_SPEED: (2, 10.0),
    EXTRA_SIGNAL: (1, None),
    EXTRA_SATELLITES: (1, None),
}
# status bits 13-17 -> the numbers of the doors open (a table: one lookup per report)
DOORS_OPEN: tuple[tuple[int, ...], ...] = tuple(
    tuple(d + 1 for d in range(5) if bits >> d & 1) for bits in range(32)
)


def extra_value(item: int, value: bytes) -> float | int | None:
    """The decoded value of an additional item of :data:`EXTRA_ITEMS`, or None when
    its size is not the standard's."""
    size, divisor = EXTRA_ITEMS[item]
    if len(value) != size:
        return None
    number = int.from_bytes(value)
    return number if divisor is None else number / divisor


@dataclass(slots=True)  # read-only by convention: see _HOT_PATH_NOTE
class Location:
    """A location report (0x0200 body, also each item of 0x0704)."""

    alarm: int
    status: int
    lat: float  # WGS-84 degrees, signed by the hemisphere bits
    lon: float
    altitude_m: int
    speed_kmh: float
    heading_deg: int
    recorded_at: datetime  # timezone-aware, in the terminal's zone
    extras: tuple[tuple[int, bytes], ...] = ()  # additional items, in order

    @property
    def acc_on(self) -> bool:
        return bool(self.status & Status.ACC_ON)

    @property
    def located(self) -> bool:
        return bool(self.status & Status.LOCATED)

    @property
    def load_state(self) -> str | None:
        return LOAD_STATES[(self.status >> Status.LOAD_SHIFT) & 0b11]

    @property
    def door_locked(self) -> bool:
        return bool(self.status & Status.DOOR_LOCKED)

    @property
    def doors_open(self) -> tuple[int, ...]:
        """Numbers (1-5) of the doors reported open."""
        return DOORS_OPEN[self.status >> Status.DOOR_SHIFT & 0b11111]

    @property
    def alarms(self) -> tuple[str, ...]:
        return tuple(name for bit, name in ALARM_BITS.items() if self.alarm >> bit & 1)

    def _extra(self, item: int) -> float | int | None:
        """The first value of ``item`` of the standard's size, decoded."""
        for key, value in self.extras:
            if key == item:
                decoded = extra_value(item, value)
                if decoded is not None:
                    return decoded
        return None

    @property
    def mileage_km(self) -> float | None:
        return self._extra(EXTRA_MILEAGE)

    @property
    def fuel_l(self) -> float | None:
        return self._extra(EXTRA_FUEL)

    @property
    def recorder_speed_kmh(self) -> float | None:
        return self._extra(EXTRA_RECORDER_SPEED)

    @property
    def signal_strength(self) -> int | None:
        return cast(int | None, self._extra(EXTRA_SIGNAL))

    @property
    def satellites(self) -> int | None:
        return cast(int | None, self._extra(EXTRA_SATELLITES))

    @property
    def unknown_extras(self) -> tuple[tuple[int, bytes], ...]:
        return tuple(
            (k, v) for k, v in self.extras if k not in EXTRA_ITEMS or len(v) != EXTRA_ITEMS[k][0]
        )


@dataclass(frozen=True, slots=True)
class LocationBatch:
    """0x0704: several location reports; kind 0 normal batch, 1 blind-zone make-up (补报)."""

    kind: int
    locations: tuple[Location, ...]


@dataclass(frozen=True, slots=True)
class Register:
    province: int
    city: int
    manufacturer: str
    model: str
    device_id: str
    plate_color: int
    plate: str


@dataclass(frozen=True, slots=True)
class Auth:
    code: str
    imei: str = ""
    software_version: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class TerminalResponse:
    reply_serial: int
    reply_id: int
    result: int


@dataclass(frozen=True, slots=True)
class LocationReply:
    """0x0201, the answer to a 0x8201 position query."""

    reply_serial: int
    location: Location


Message = (
    Location
    | LocationBatch
    | Register
    | Auth
    | Heartbeat
    | Logout
    | TerminalResponse
    | LocationReply
)


def _text(data: bytes) -> str:
    """A fixed-size or trailing GBK string without its zero padding."""
    return data.rstrip(b"\x00").decode("gbk", "replace").strip()


# The value of each BCD byte, or -1 when a nibble is not a digit.
_BCD_BYTE = tuple(
    (b >> 4) * 10 + (b & 0xF) if b >> 4 <= 9 and b & 0xF <= 9 else -1 for b in range(256)
)


def bcd_time(data: bytes, tz: timezone) -> datetime:
    if len(data) != 6:
        raise FrameError(Reason.BAD_TIME, f"time {data.hex()} is not 6 BCD bytes")
    bcd = _BCD_BYTE
    yy, mo, dd, hh, mi, ss = (
        bcd[data[0]],
        bcd[data[1]],
        bcd[data[2]],
        bcd[data[3]],
        bcd[data[4]],
        bcd[data[5]],
    )
    if min(yy, mo, dd, hh, mi, ss) < 0:
        raise FrameError(Reason.BAD_TIME, f"time {data.hex()} is not 6 BCD bytes")
    try:
        return datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=tz)
    except ValueError as exc:
        raise FrameError(
            Reason.BAD_TIME, f"time {data.hex()} (YYMMDDhhmmss) is no date: {exc}"
        ) from None


def encode_bcd_time(at: datetime, tz: timezone) -> bytes:
    local = at.astimezone(tz)
    return bcd_encode(local.strftime("%y%m%d%H%M%S"), 6)


_LOCATION_FIXED = struct.Struct(">IIIIHHH")  # alarm status lat lon altitude speed heading
_LOCATION_HEAD = struct.Struct(">IIIIHHH6s")  # the same, and the BCD time


def decode_location(body: bytes, tz: timezone) -> Location:
    n, fixed = len(body), _LOCATION_HEAD.size
    if n < fixed:
        raise FrameError(Reason.BAD_BODY, f"a location report needs {fixed} bytes, got {n}")
    alarm, status, lat_u, lon_u, altitude, speed, heading, time_bcd = _LOCATION_HEAD.unpack_from(
        body
    )
    if lat_u > 90_000_000 or lon_u > 180_000_000:
        raise FrameError(
            Reason.BAD_COORDINATE,
            f"latitude {lat_u / 1e6} / longitude {lon_u / 1e6} degrees are impossible",
        )
    recorded_at = bcd_time(time_bcd, tz)
    extras: list[tuple[int, bytes]] = []
    i = fixed
    while i < n:
        if i + 2 > n:
            raise FrameError(Reason.BAD_BODY, f"additional item cut short at byte {i}")
        item, size = body[i], body[i + 1]
        end = i + 2 + size
        if end > n:
            raise FrameError(
                Reason.BAD_BODY, f"additional item 0x{item:02X} of {size} bytes cut short"
            )
        extras.append((item, bytes(body[i + 2 : end])))
        i = end
    return Location(
        alarm,
        status,
        -lat_u / 1e6 if status & Status.SOUTH else lat_u / 1e6,
        -lon_u / 1e6 if status & Status.WEST else lon_u / 1e6,
        altitude if altitude < 0x8000 else altitude - 0x10000,
        speed / 10.0,
        heading,
        recorded_at,
        tuple(extras),
    )


def encode_location(loc: Location, tz: timezone) -> bytes:
    status = loc.status
    status = status | Status.SOUTH if loc.lat < 0 else status & ~Status.SOUTH
    status = status | Status.WEST if loc.lon < 0 else status & ~Status.WEST
    body = _LOCATION_FIXED.pack(
        loc.alarm,
        status,
        round(abs(loc.lat) * 1e6),
        round(abs(loc.lon) * 1e6),
        loc.altitude_m & 0xFFFF,
        round(loc.speed_kmh * 10),
        loc.heading_deg,
    ) + encode_bcd_time(loc.recorded_at, tz)
    for item, value in loc.extras:
        body += bytes([item, len(value)]) + value
    return body


def decode_batch(body: bytes, tz: timezone) -> LocationBatch:
    if len(body) < 3:
        raise FrameError(
            Reason.BAD_BODY, f"a batch needs 3 bytes before its items, got {len(body)}"
        )
    count, kind = struct.unpack_from(">HB", body)
    if kind not in (0, 1):
        raise FrameError(
            Reason.BAD_BODY, f"batch type {kind} is neither 0 (normal) nor 1 (blind zone)"
        )
    locations: list[Location] = []
    i = 3
    for n in range(count):
        if i + 2 > len(body):
            raise FrameError(Reason.BAD_BODY, f"batch of {count} ends after {n} items")
        (size,) = struct.unpack_from(">H", body, i)
        if i + 2 + size > len(body):
            raise FrameError(Reason.BAD_BODY, f"item {n} of {size} bytes is cut short")
        locations.append(decode_location(body[i + 2 : i + 2 + size], tz))
        i += 2 + size
    if i != len(body):
        raise FrameError(Reason.BAD_BODY, f"{len(body) - i} bytes after the {count} items")
    return LocationBatch(kind, tuple(locations))


def encode_batch(locations: list[Location], tz: timezone, *, kind: int = 1) -> bytes:
    body = struct.pack(">HB", len(locations), kind)
    for loc in locations:
        item = encode_location(loc, tz)
        body += struct.pack(">H", len(item)) + item
    return body


# Fixed-size fields of the register body by edition: manufacturer, model, device id.
_REGISTER_LAYOUTS = {2019: (11, 30, 30), 2013: (5, 20, 7), 2011: (5, 8, 7)}


def decode_register(body: bytes, header: Header) -> Register:
    if header.is_2019:
        layout = _REGISTER_LAYOUTS[2019]
    elif len(body) >= 4 + sum(_REGISTER_LAYOUTS[2013]) + 1:
        layout = _REGISTER_LAYOUTS[2013]
    else:
        layout = _REGISTER_LAYOUTS[2011]
    m, mo, d = layout
    fixed = 4 + m + mo + d + 1
    if len(body) < fixed:
        raise FrameError(Reason.BAD_BODY, f"a register body needs {fixed} bytes, got {len(body)}")
    province, city = struct.unpack_from(">HH", body)
    return Register(
        province=province,
        city=city,
        manufacturer=_text(body[4 : 4 + m]),
        model=_text(body[4 + m : 4 + m + mo]),
        device_id=_text(body[4 + m + mo : 4 + m + mo + d]),
        plate_color=body[fixed - 1],
        plate=_text(body[fixed:]),
    )


def encode_register(reg: Register, *, edition: int = 2013) -> bytes:
    m, mo, d = _REGISTER_LAYOUTS[edition]
    return (
        struct.pack(">HH", reg.province, reg.city)
        + reg.manufacturer.encode("gbk").ljust(m, b"\x00")[:m]
        + reg.model.encode("gbk").ljust(mo, b"\x00")[:mo]
        + reg.device_id.encode("gbk").ljust(d, b"\x00")[:d]
        + bytes([reg.plate_color])
        + reg.plate.encode("gbk")
    )


def decode_auth(body: bytes, header: Header) -> Auth:
    if not header.is_2019:
        return Auth(_text(body))
    if not body or len(body) < 1 + body[0] + 15 + 20:
        raise FrameError(Reason.BAD_BODY, f"a 2019 auth body of {len(body)} bytes is too short")
    n = body[0]
    return Auth(
        _text(body[1 : 1 + n]),
        _text(body[1 + n : 16 + n]),
        _text(body[16 + n : 36 + n]),
    )


def encode_auth(auth: Auth, *, edition: int = 2013) -> bytes:
    code = auth.code.encode("gbk")
    if edition != 2019:
        return code
    return (
        bytes([len(code)])
        + code
        + auth.imei.encode().ljust(15, b"\x00")[:15]
        + auth.software_version.encode().ljust(20, b"\x00")[:20]
    )


def _empty(body: bytes, what: str) -> None:
    if body:
        raise FrameError(Reason.BAD_BODY, f"{what} has an empty body, got {len(body)} bytes")


def decode_message(frame: Frame, tz: timezone) -> Message:
    """The message a (whole, not sub-packaged) frame carries; raises FrameError."""
    h, body = frame.header, frame.body
    try:
        if h.encryption:
            raise FrameError(
                Reason.ENCRYPTED, f"encrypted bodies (mode {h.encryption}) are not supported"
            )
        if h.msg_id == MsgId.LOCATION:
            return decode_location(body, tz)
        if h.msg_id == MsgId.LOCATION_BATCH:
            return decode_batch(body, tz)
        if h.msg_id == MsgId.HEARTBEAT:
            _empty(body, "a heartbeat")
            return Heartbeat()
        if h.msg_id == MsgId.LOGOUT:
            _empty(body, "a logout")
            return Logout()
        if h.msg_id == MsgId.REGISTER:
            return decode_register(body, h)
        if h.msg_id == MsgId.AUTH:
            return decode_auth(body, h)
        if h.msg_id == MsgId.LOCATION_REPLY:
            if len(body) < 2:
                raise FrameError(Reason.BAD_BODY, "a location reply starts with a WORD serial")
            (reply_serial,) = struct.unpack_from(">H", body)
            return LocationReply(reply_serial, decode_location(body[2:], tz))
        if h.msg_id == MsgId.TERMINAL_RESPONSE:
            if len(body) != 5:
                raise FrameError(
                    Reason.BAD_BODY, f"a terminal response has 5 bytes, got {len(body)}"
                )
            serial, reply_id, result = struct.unpack(">HHB", body)
            return TerminalResponse(serial, reply_id, result)
        raise FrameError(Reason.UNKNOWN_MESSAGE, f"message id 0x{h.msg_id:04X} is not supported")
    except FrameError as exc:
        exc.raw, exc.header = frame.raw, h
        raise


def result_for(reason: Reason) -> Result:
    """The 0x8001 result that answers a refused message."""
    if reason in (Reason.UNKNOWN_MESSAGE, Reason.ENCRYPTED):
        return Result.NOT_SUPPORTED
    if reason in (Reason.NOT_AUTHENTICATED, Reason.UNKNOWN_TERMINAL):
        return Result.FAILURE
    return Result.MESSAGE_ERROR


_RESPONSE_TAIL = struct.Struct(">HHHB")  # serial | reply serial, reply id, result
_RESPONSE_BODY_BYTES = 5


class Responder:
    """0x8001 answers to the terminal of ``header``, its header bytes built once: a
    connection answers every location it receives."""

    __slots__ = ("_check", "_head")

    def __init__(self, header: Header) -> None:
        attributes = _RESPONSE_BODY_BYTES
        if header.version is not None:
            attributes |= _ATTR_VERSION
            phone = bytes([header.version]) + bcd_encode(header.phone, 10)
        else:
            phone = bcd_encode(header.phone, 6)
        self._head = struct.pack(">HH", MsgId.PLATFORM_RESPONSE, attributes) + phone
        self._check = check_code(self._head)

    def answer(self, reply_serial: int, reply_id: int, result: int, serial: int) -> bytes:
        tail = _RESPONSE_TAIL.pack(serial, reply_serial, reply_id, result)
        words = serial ^ reply_serial ^ reply_id  # the check code of the tail, by arithmetic
        code = self._check ^ (words >> 8) ^ (words & 0xFF) ^ result
        return b"\x7e" + escape(self._head + tail + bytes((code,))) + b"\x7e"

    def ok(self, reply_serial: int, reply_id: int, serial: int) -> bytes:
        return self.answer(reply_serial, reply_id, Result.OK, serial)


def platform_response(header: Header, result: Result, serial: int) -> bytes:
    """0x8001 answering the message ``header`` with ``result``."""
    return Responder(header).answer(header.serial, header.msg_id, result, serial)


def resend_request(missing: Missing, serial: int) -> bytes:
    """0x8003 补传分包请求: the first packet's serial, the count (BYTE; WORD in 2019)
    and the missing packet indexes (WORD each)."""
    h = missing.header
    count = struct.pack(">H" if h.is_2019 else ">B", len(missing.indexes))
    body = (
        struct.pack(">H", missing.first_serial)
        + count
        + b"".join(struct.pack(">H", i) for i in missing.indexes)
    )
    return encode_frame(MsgId.RESEND_REQUEST, h.phone, serial, body, version=h.version)


def register_response(header: Header, result: RegisterResult, auth_code: str, serial: int) -> bytes:
    """0x8100: the auth code follows only a successful result."""
    body = struct.pack(">HB", header.serial, result)
    if result is RegisterResult.OK:
        body += auth_code.encode("gbk")
    return encode_frame(MsgId.REGISTER_RESPONSE, header.phone, serial, body, version=header.version)


def device_zone(utc_offset_min: int) -> timezone:
    return timezone(timedelta(minutes=utc_offset_min))


GMT8 = device_zone(DEFAULT_DEVICE_UTC_OFFSET_MIN)  # terminals' time unless set otherwise


# --------------------------------------------------------------------------- commands

# Value types of terminal parameters (终端参数); the standard names one per parameter id.
PARAMETER_TYPES: dict[str, tuple[str, int]] = {
    "byte": (">B", 1),
    "word": (">H", 2),
    "dword": (">I", 4),
}
MAX_PARAMETERS = 255  # the count is one BYTE
MAX_PARAMETER_BYTES = 255  # each value's length is one BYTE


def parse_parameter(text: str) -> tuple[int, bytes]:
    """``ID[:TYPE]=VALUE`` (ID decimal or 0x hex; TYPE byte, word, dword or string;
    without TYPE a number is a DWORD and anything else a GBK string) → (id, value)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: expected ID[:TYPE]=VALUE, e.g. 0x0029=30")
    ident, _, kind = key.strip().partition(":")
    try:
        param = int(ident, 0)
    except ValueError:
        raise ValueError(f"{text!r}: parameter id {ident!r} is not a number") from None
    if not 0 <= param <= 0xFFFFFFFF:
        raise ValueError(f"{text!r}: a parameter id is a DWORD")
    kind = kind.strip().lower() or ("dword" if value.strip().isdigit() else "string")
    if kind == "string":
        raw = value.encode("gbk")
        if len(raw) > MAX_PARAMETER_BYTES:
            raise ValueError(f"{text!r}: a value holds at most {MAX_PARAMETER_BYTES} bytes")
        return param, raw
    if kind not in PARAMETER_TYPES:
        raise ValueError(f"{text!r}: type {kind!r} is not byte, word, dword or string")
    fmt, size = PARAMETER_TYPES[kind]
    try:
        number = int(value.strip(), 0)
        return param, struct.pack(fmt, number)
    except (ValueError, struct.error):
        raise ValueError(f"{text!r}: {value!r} is not a {kind} ({size} bytes unsigned)") from None


def encode_parameters(items: Sequence[tuple[int, bytes]]) -> bytes:
    """0x8103 body: the count (BYTE), then per parameter its id (DWORD), the value's
    length (BYTE) and the value."""
    if not 1 <= len(items) <= MAX_PARAMETERS:
        raise ValueError(f"0x8103 sets 1 to {MAX_PARAMETERS} parameters, got {len(items)}")
    out = bytearray([len(items)])
    for param, value in items:
        if len(value) > MAX_PARAMETER_BYTES:
            raise ValueError(f"parameter 0x{param:04X}: at most {MAX_PARAMETER_BYTES} bytes")
        out += struct.pack(">IB", param, len(value)) + value
    return bytes(out)


def decode_parameters(body: bytes) -> list[tuple[int, bytes]]:
    """The parameters of a 0x8103 body (what a terminal reads)."""
    if not body:
        raise FrameError(Reason.BAD_BODY, "a parameter setting has at least its count")
    items, i = [], 1
    for _ in range(body[0]):
        if i + 5 > len(body):
            raise FrameError(Reason.BAD_BODY, f"parameter cut short at byte {i}")
        param, size = struct.unpack_from(">IB", body, i)
        if i + 5 + size > len(body):
            raise FrameError(Reason.BAD_BODY, f"parameter 0x{param:04X} cut short")
        items.append((param, bytes(body[i + 5 : i + 5 + size])))
        i += 5 + size
    if i != len(body):
        raise FrameError(Reason.BAD_BODY, f"{len(body) - i} bytes after the last parameter")
    return items


def encode_location_reply(reply_serial: int, loc: Location, tz: timezone) -> bytes:
    """0x0201 body: the query's serial, then a 0x0200 body."""
    return struct.pack(">H", reply_serial) + encode_location(loc, tz)


def encode_terminal_response(reply_serial: int, reply_id: int, result: int) -> bytes:
    """0x0001 body (终端通用应答)."""
    return struct.pack(">HHB", reply_serial, reply_id, result)
