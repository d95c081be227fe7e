"""The ClearDay terminal wire format, version 1 (see docs/wire.md).

This module is the one definition of what a GPS terminal sends over MQTT. The
ingestor decodes with it and the simulator encodes with it, so the two cannot
drift apart.

Topics (``{terminal_id}`` is the terminal's MQTT username as well)::

    clearday/v1/trucks/{terminal_id}/positions   QoS 1, a fix or an array of fixes
    clearday/v1/trucks/{terminal_id}/events      QoS 1, an event or an array of events
    clearday/v1/trucks/{terminal_id}/status      QoS 1, retained; also the last will
    clearday/v1/gateways/{gateway_id}/positions  QoS 1, fixes of many trucks, each
                                                 item naming its terminal id (only
                                                 protocol gateways may publish here)

Decoding never raises on input: :func:`parse_message` (and the per-channel
``parse_*`` functions) return a :class:`Parsed` value holding the good items and
one :class:`Rejection` per bad item or bad message, each with a stable
:class:`Reason` code, a detail a person can act on and the raw bytes concerned.
One bad fix in an array does not reject the good ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar, cast

import msgspec

from fleet.positions.models import EventKind

WIRE_VERSION = 1
TOPIC_ROOT = "clearday/v1/trucks"
GATEWAY_TOPIC_ROOT = "clearday/v1/gateways"

# A terminal id is also an MQTT username and one topic level: keep it boring.
TERMINAL_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_TERMINAL_ID_RE = re.compile(TERMINAL_ID_PATTERN)

# Epoch numbers at or above this are milliseconds (1e11 s is the year 5138,
# 1e11 ms is 1973).
EPOCH_MS_THRESHOLD = 100_000_000_000

DEFAULT_MAX_PAYLOAD_BYTES = 262_144
DEFAULT_MAX_FUTURE_S = 300.0
DEFAULT_MAX_PAST_S = 7 * 86_400.0

LoadState = Literal["empty", "half", "full"]
TerminalState = Literal["online", "offline"]


class Channel(StrEnum):
    POSITIONS = "positions"
    EVENTS = "events"
    STATUS = "status"


class Reason(StrEnum):
    """Why a message or an item of it was rejected (``dead_letter.reason``)."""

    OVERSIZE = "oversize"  # payload larger than the configured limit
    BAD_TOPIC = "bad_topic"  # neither a truck's topic nor a gateway's positions topic
    MALFORMED_JSON = "malformed_json"  # not UTF-8 JSON
    BAD_SHAPE = "bad_shape"  # JSON, but not an object or a non-empty array of objects
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"  # e.g. "lat": "31.8"
    OUT_OF_RANGE = "out_of_range"  # e.g. lat 123, heading 400, negative speed
    BAD_VALUE = "bad_value"  # e.g. unknown load_state, NUL in a string
    BAD_TIME = "bad_time"  # unparseable time or no UTC offset
    NULL_ISLAND = "null_island"  # lat = lon = 0: a terminal without a GNSS lock
    TIME_IN_FUTURE = "time_in_future"
    TIME_TOO_OLD = "time_too_old"
    UNKNOWN_TERMINAL = "unknown_terminal"  # no truck has this terminal id
    DB_REJECTED = "db_rejected"  # the database refused the row (last resort)
    DECODER_FAILED = "decoder_failed"  # the decoder itself failed: a bug, kept for a report
    QUARANTINED = "quarantined"  # the ingestor stopped again and again while handling it


class BadMessage(Exception):
    """A message (or one item of it) that cannot be accepted."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- values


def _f(lo: float, hi: float) -> Any:
    return msgspec.Meta(ge=lo, le=hi)


# Bounds of the optional fix fields: a translating gateway leaves out a value beyond
# them (keeping the raw item in ``extra``) rather than have the whole fix refused.
MAX_SPEED_KMH = 400.0
MAX_ODOMETER_KM = 100_000_000.0
ALTITUDE_RANGE_M = (-1000.0, 20_000.0)
MAX_FUEL_L = 100_000.0
MAX_BYTE = 255  # signal strength and satellites: one byte each
DOOR_NUMBERS = (1, 5)
MAX_EXTRA_ITEMS = 64
MAX_EXTRA_KEY_CHARS = 64
MAX_EXTRA_VALUE_CHARS = 1024

Lat = Annotated[float, _f(-90.0, 90.0)]
Lon = Annotated[float, _f(-180.0, 180.0)]
SpeedKmh = Annotated[float, _f(0.0, MAX_SPEED_KMH)]
AltitudeM = Annotated[float, _f(*ALTITUDE_RANGE_M)]
FuelL = Annotated[float, _f(0.0, MAX_FUEL_L)]
ByteCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTE)]
DoorNumber = Annotated[int, msgspec.Meta(ge=DOOR_NUMBERS[0], le=DOOR_NUMBERS[1])]
DoorNumbers = Annotated[tuple[DoorNumber, ...], msgspec.Meta(max_length=DOOR_NUMBERS[1])]
ExtraKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EXTRA_KEY_CHARS)]
ExtraValue = Annotated[str, msgspec.Meta(max_length=MAX_EXTRA_VALUE_CHARS)]
FixExtra = Annotated[dict[ExtraKey, ExtraValue], msgspec.Meta(max_length=MAX_EXTRA_ITEMS)]
HeadingDeg = Annotated[float, _f(0.0, 360.0)]
AccuracyM = Annotated[float, _f(0.0, 1_000_000.0)]
OdometerKm = Annotated[float, _f(0.0, MAX_ODOMETER_KM)]
WeightKg = Annotated[float, _f(0.0, 1_000_000.0)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# Epoch seconds or milliseconds; bounded so a conversion cannot overflow.
EpochNumber = Annotated[float, _f(-1e15, 1e15)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Fix(msgspec.Struct, frozen=True, omit_defaults=True):
    """One position fix. ``recorded_at`` is the device time (timezone-aware).

    The fields after ``seq`` are what vehicle terminals (JT/T 808) report beside the
    position: altitude, fuel, the tachograph's speed, radio signal, satellites in
    view, doors, and ``extra``, vendor items kept as text (hex for raw bytes).
    """

    recorded_at: datetime
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    odometer_km: float | None = None
    ignition: bool | None = None
    load_state: LoadState | None = None
    seq: int | None = None
    altitude_m: float | None = None
    fuel_l: float | None = None
    recorder_speed_kmh: float | None = None
    signal_strength: int | None = None
    satellites: int | None = None
    door_locked: bool | None = None
    doors_open: tuple[int, ...] | None = None  # door numbers 1-5
    extra: dict[str, str] | None = None


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A device event: a bin lift, an RFID bin tag read, or a weighbridge ticket.

    ``extra`` holds any other fields the terminal sent (vendor data); it is stored
    with the event as JSON.
    """

    recorded_at: datetime
    kind: EventKind
    point_id: str | None = None
    station_id: str | None = None
    rfid_tag: str | None = None
    weight_kg: float | None = None
    lat: float | None = None
    lon: float | None = None
    extra: dict[str, Any] | None = None


class Status(msgspec.Struct, frozen=True, omit_defaults=True):
    """A terminal's online/offline state; ``at`` is when it changed, if known."""

    state: TerminalState
    at: datetime | None = None


# What actually comes over the wire: times may be epoch numbers too.
WireTime = AwareDatetime | EpochNumber


class _FixWire(msgspec.Struct):
    recorded_at: WireTime
    lat: Lat
    lon: Lon
    speed_kmh: SpeedKmh | None = None
    heading_deg: HeadingDeg | None = None
    accuracy_m: AccuracyM | None = None
    odometer_km: OdometerKm | None = None
    ignition: bool | None = None
    load_state: LoadState | None = None
    seq: Seq | None = None
    altitude_m: AltitudeM | None = None
    fuel_l: FuelL | None = None
    recorder_speed_kmh: SpeedKmh | None = None
    signal_strength: ByteCount | None = None
    satellites: ByteCount | None = None
    door_locked: bool | None = None
    doors_open: DoorNumbers | None = None
    extra: FixExtra | None = None


class _GatewayFixWire(_FixWire, kw_only=True):
    """An item of a gateway's batch: a fix and the terminal it belongs to."""

    terminal_id: str


class _EventWire(msgspec.Struct):
    recorded_at: WireTime
    kind: EventKind
    point_id: ShortText | None = None
    station_id: ShortText | None = None
    rfid_tag: ShortText | None = None
    weight_kg: WeightKg | None = None
    lat: Lat | None = None
    lon: Lon | None = None


class _StatusWire(msgspec.Struct):
    state: TerminalState
    at: WireTime | None = None


_EVENT_FIELDS: tuple[str, ...] = _EventWire.__struct_fields__
_EVENT_FIELD_SET = frozenset(_EVENT_FIELDS)


@dataclass(frozen=True, slots=True)
class Limits:
    """Acceptance limits applied while decoding."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_future_s: float = DEFAULT_MAX_FUTURE_S
    max_past_s: float = DEFAULT_MAX_PAST_S


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class TopicRef:
    """What a topic names: a truck's channel, or (``gateway_id`` set, ``terminal_id``
    None) a gateway's positions topic."""

    channel: Channel
    terminal_id: str | None
    gateway_id: str | None = None


class TerminalFix(NamedTuple):
    """A fix of a gateway's batch with the terminal it belongs to; ``element`` is its
    place in the message's array (0 for a single object)."""

    terminal_id: str
    fix: Fix
    element: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected message (``index`` None) or one rejected item of an array."""

    reason: Reason
    detail: str
    raw: bytes
    index: int | None = None


T = TypeVar("T")


class Parsed(Generic[T]):
    """The outcome of decoding one message: accepted items and rejections.

    ``channel`` and ``terminal_id`` are None when the topic itself was bad. A
    gateway's batch has ``gateway_id`` set, ``terminal_id`` None, and
    :class:`TerminalFix` items.
    """

    __slots__ = ("channel", "gateway_id", "items", "rejections", "terminal_id")

    def __init__(
        self,
        channel: Channel | None,
        terminal_id: str | None,
        items: list[T],
        rejections: list[Rejection],
        gateway_id: str | None = None,
    ) -> None:
        self.channel = channel
        self.terminal_id = terminal_id
        self.items = items
        self.rejections = rejections
        self.gateway_id = gateway_id

    def __repr__(self) -> str:
        source = f"gateway={self.gateway_id!r}" if self.gateway_id else repr(self.terminal_id)
        return (
            f"Parsed({self.channel}, {source}, items={self.items!r}, "
            f"rejections={self.rejections!r})"
        )


# --------------------------------------------------------------------------- topics


def _check_terminal_id(terminal_id: str) -> str:
    if not _TERMINAL_ID_RE.fullmatch(terminal_id):
        raise ValueError(f"invalid terminal id {terminal_id!r}: must match {TERMINAL_ID_PATTERN}")
    return terminal_id


def is_valid_terminal_id(terminal_id: str) -> bool:
    return _TERMINAL_ID_RE.fullmatch(terminal_id) is not None


def topic(channel: Channel, terminal_id: str) -> str:
    return f"{TOPIC_ROOT}/{_check_terminal_id(terminal_id)}/{channel.value}"


def positions_topic(terminal_id: str) -> str:
    return topic(Channel.POSITIONS, terminal_id)


def events_topic(terminal_id: str) -> str:
    return topic(Channel.EVENTS, terminal_id)


def status_topic(terminal_id: str) -> str:
    return topic(Channel.STATUS, terminal_id)


def gateway_positions_topic(gateway_id: str) -> str:
    """Where a protocol gateway publishes the fixes of many trucks (the gateway's
    broker account, or its client id; the same characters as a terminal id)."""
    if not _TERMINAL_ID_RE.fullmatch(gateway_id):
        raise ValueError(
            f"invalid gateway id {gateway_id!r} (a topic level): must match {TERMINAL_ID_PATTERN}"
        )
    return f"{GATEWAY_TOPIC_ROOT}/{gateway_id}/{Channel.POSITIONS.value}"


def subscription_filters(share_group: str | None = None) -> list[str]:
    """The topic filters the ingestor subscribes to; with ``share_group`` they are
    MQTT 5 shared subscriptions (``$share/{group}/...``) so N ingestors split the load.
    """
    filters = [f"{TOPIC_ROOT}/+/{c.value}" for c in Channel]
    filters.append(f"{GATEWAY_TOPIC_ROOT}/+/{Channel.POSITIONS.value}")
    if share_group:
        if any(ch in share_group for ch in "/+#"):
            raise ValueError(f"invalid share group {share_group!r}")
        filters = [f"$share/{share_group}/{f}" for f in filters]
    return filters


_TOPIC_PREFIX = TOPIC_ROOT + "/"
_GATEWAY_PREFIX = GATEWAY_TOPIC_ROOT + "/"
_CHANNELS = {c.value: c for c in Channel}


def parse_topic(topic_name: str) -> TopicRef:
    """Split a topic into channel and terminal id (or gateway id); raise
    BadMessage(BAD_TOPIC)."""
    if topic_name.startswith(_TOPIC_PREFIX):
        rest = topic_name[len(_TOPIC_PREFIX) :].split("/")
        if len(rest) == 2 and rest[1] in _CHANNELS and _TERMINAL_ID_RE.fullmatch(rest[0]):
            return TopicRef(_CHANNELS[rest[1]], rest[0])
    elif topic_name.startswith(_GATEWAY_PREFIX):
        rest = topic_name[len(_GATEWAY_PREFIX) :].split("/")
        if len(rest) == 2 and rest[1] == Channel.POSITIONS and _TERMINAL_ID_RE.fullmatch(rest[0]):
            return TopicRef(Channel.POSITIONS, None, rest[0])
    raise BadMessage(
        Reason.BAD_TOPIC,
        f"topic {topic_name[:200]!r} is not {TOPIC_ROOT}/<terminal_id>/<positions|events|status> "
        f"nor {GATEWAY_TOPIC_ROOT}/<gateway_id>/positions",
    )


# --------------------------------------------------------------------------- decoding

_fix_decoder = msgspec.json.Decoder(list[_FixWire] | _FixWire)
_one_fix_decoder = msgspec.json.Decoder(_FixWire)
_gateway_fix_decoder = msgspec.json.Decoder(list[_GatewayFixWire] | _GatewayFixWire)
_one_gateway_fix_decoder = msgspec.json.Decoder(_GatewayFixWire)
_event_decoder = msgspec.json.Decoder(_EventWire)
_status_decoder = msgspec.json.Decoder(_StatusWire)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
# RecursionError: JSON nested deeper than msgspec's limit (about 1000 levels);
# MemoryError: a payload that does not fit in memory once decoded.
_DECODE_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeError,
    RecursionError,
    MemoryError,
)


def classify(exc: Exception) -> Reason:
    """Map a decoding error (one of ``_DECODE_ERRORS``) to a Reason."""
    if isinstance(exc, RecursionError):
        return Reason.BAD_SHAPE
    if isinstance(exc, MemoryError):
        return Reason.OVERSIZE
    if not isinstance(exc, msgspec.ValidationError):
        return Reason.MALFORMED_JSON
    msg = str(exc)
    if msg.startswith("Object missing required field"):
        return Reason.MISSING_FIELD
    if "datetime" in msg and ("RFC3339" in msg or "timezone" in msg):
        return Reason.BAD_TIME
    if msg.startswith("Expected `str` of length"):
        return Reason.BAD_VALUE
    if "out of range" in msg or " >= " in msg or " <= " in msg:
        return Reason.OUT_OF_RANGE
    if msg.startswith("Expected `") and " - at `$" not in msg:
        return Reason.BAD_SHAPE  # the top level is of the wrong kind
    if msg.startswith("Expected `"):
        return Reason.WRONG_TYPE
    return Reason.BAD_VALUE  # invalid enum value and the like


def _detail(exc: Exception) -> str:
    if isinstance(exc, UnicodeError):
        return "payload is not valid UTF-8"
    if isinstance(exc, RecursionError):
        return (
            "JSON nested too deeply (over about 1000 levels); a message is an object "
            "or an array of objects"
        )
    if isinstance(exc, MemoryError):
        return "decoding this payload ran out of memory; send fewer fixes per message"
    return str(exc)[:500]


def _failure(exc: Exception) -> tuple[Reason, str]:
    """Reason and detail for an exception that escaped the decoding code."""
    if isinstance(exc, _DECODE_ERRORS):
        return classify(exc), _detail(exc)
    return Reason.DECODER_FAILED, (
        f"the decoder failed with {type(exc).__name__}: {str(exc)[:300]}; this is a "
        "bug in the ingestor: report it with this dead letter's payload"
    )


def _to_datetime(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        return value
    if not math.isfinite(value):
        raise BadMessage(Reason.BAD_TIME, f"time {value!r} is not a finite number")
    seconds = value / 1000.0 if abs(value) >= EPOCH_MS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise BadMessage(Reason.BAD_TIME, f"epoch time {value!r} is out of range") from exc


class Window:
    """The accepted device-time window around ``now`` (build one per batch)."""

    __slots__ = ("earliest", "latest")

    def __init__(self, now: datetime, limits: Limits = DEFAULT_LIMITS) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.earliest = now - timedelta(seconds=limits.max_past_s)
        self.latest = now + timedelta(seconds=limits.max_future_s)

    def check(self, at: datetime, what: str = "recorded_at") -> None:
        if at > self.latest:
            raise BadMessage(
                Reason.TIME_IN_FUTURE,
                f"{what} {at.isoformat()} is later than the accepted {self.latest.isoformat()}",
            )
        if at < self.earliest:
            raise BadMessage(
                Reason.TIME_TOO_OLD,
                f"{what} {at.isoformat()} is earlier than the accepted {self.earliest.isoformat()}",
            )


def _fix_from_wire(w: _FixWire, window: Window) -> Fix:
    if w.lat == 0.0 and w.lon == 0.0:
        raise BadMessage(Reason.NULL_ISLAND, "lat = lon = 0 (terminal without a position lock)")
    at = _to_datetime(w.recorded_at)
    window.check(at)
    if w.extra is not None and any("\x00" in k or "\x00" in v for k, v in w.extra.items()):
        # PostgreSQL's jsonb refuses \u0000; refuse it here with a reason instead.
        raise BadMessage(Reason.BAD_VALUE, "`extra` contains a NUL character")
    return Fix(
        recorded_at=at,
        lat=w.lat,
        lon=w.lon,
        speed_kmh=w.speed_kmh,
        heading_deg=w.heading_deg,
        accuracy_m=w.accuracy_m,
        odometer_km=w.odometer_km,
        ignition=w.ignition,
        load_state=w.load_state,
        seq=w.seq,
        altitude_m=w.altitude_m,
        fuel_l=w.fuel_l,
        recorder_speed_kmh=w.recorder_speed_kmh,
        signal_strength=w.signal_strength,
        satellites=w.satellites,
        door_locked=w.door_locked,
        doors_open=w.doors_open,
        extra=w.extra,
    )


def _split_array(payload: bytes) -> list[msgspec.Raw] | Rejection | None:
    """Raw elements of a JSON array; None if the payload is a single value;
    a Rejection if it is not JSON at all."""
    try:
        return _raw_list_decoder.decode(payload)
    except msgspec.ValidationError:
        return None
    except (msgspec.DecodeError, UnicodeError, RecursionError, MemoryError) as exc:
        return Rejection(classify(exc), _detail(exc), payload)


def _event_from_raw(raw: bytes, window: Window) -> Event:
    try:
        w = _event_decoder.decode(raw)
    except _DECODE_ERRORS as exc:
        raise BadMessage(classify(exc), _detail(exc)) from exc
    at = _to_datetime(w.recorded_at)
    window.check(at)
    if w.kind == "rfid" and w.rfid_tag is None:
        raise BadMessage(Reason.MISSING_FIELD, "an rfid event needs `rfid_tag`")
    if w.kind == "weighbridge" and w.weight_kg is None:
        raise BadMessage(Reason.MISSING_FIELD, "a weighbridge event needs `weight_kg`")
    if (w.lat is None) != (w.lon is None):
        raise BadMessage(Reason.MISSING_FIELD, "`lat` and `lon` come together")
    for name in ("point_id", "station_id", "rfid_tag"):
        value = getattr(w, name)
        if value is not None and "\x00" in value:
            raise BadMessage(Reason.BAD_VALUE, f"`{name}` contains a NUL character")
    extra: dict[str, Any] | None = None
    try:
        obj = _any_decoder.decode(raw)  # vendor fields are untyped: 1e999 fails only here
    except _DECODE_ERRORS as exc:
        raise BadMessage(classify(exc), _detail(exc)) from exc
    if isinstance(obj, dict) and len(obj) > len(_EVENT_FIELD_SET.intersection(obj)):
        extra = {k: v for k, v in obj.items() if k not in _EVENT_FIELD_SET}
        # PostgreSQL's jsonb refuses \u0000; refuse it here with a reason instead.
        if b"\\u0000" in _encoder.encode(extra):
            raise BadMessage(Reason.BAD_VALUE, "extra fields contain a NUL character")
    return Event(
        recorded_at=at,
        kind=w.kind,
        point_id=w.point_id,
        station_id=w.station_id,
        rfid_tag=w.rfid_tag,
        weight_kg=w.weight_kg,
        lat=w.lat,
        lon=w.lon,
        extra=extra,
    )


def _truck_fix(w: _FixWire, window: Window, index: int) -> Fix:
    return _fix_from_wire(w, window)


def _terminal_fix(w: _GatewayFixWire, window: Window, index: int) -> TerminalFix:
    if not _TERMINAL_ID_RE.fullmatch(w.terminal_id):
        raise BadMessage(
            Reason.BAD_VALUE,
            f"terminal_id {w.terminal_id[:100]!r} does not match {TERMINAL_ID_PATTERN}",
        )
    return TerminalFix(w.terminal_id, _fix_from_wire(w, window), index)


class _FixShape(NamedTuple):
    """How the items of a positions message are decoded: a truck's fixes, or a
    gateway's fixes that each name their terminal."""

    any_decoder: msgspec.json.Decoder[Any]  # an object or an array of them
    one_decoder: msgspec.json.Decoder[Any]  # one object
    make: Callable[[Any, Window, int], Any]  # wire item, window, index -> item


_TRUCK_FIXES = _FixShape(_fix_decoder, _one_fix_decoder, _truck_fix)
_GATEWAY_FIXES = _FixShape(_gateway_fix_decoder, _one_gateway_fix_decoder, _terminal_fix)


def _decode_fixes(out: Parsed[Any], payload: bytes, window: Window, shape: _FixShape) -> None:
    """Fill ``out`` from a positions payload: one object or a non-empty array of them;
    each bad item is a rejection with its own bytes, the good ones are kept."""
    try:
        decoded = shape.any_decoder.decode(payload)
    except _DECODE_ERRORS:
        _decode_fixes_one_by_one(out, payload, window, shape)
        return
    make = shape.make
    if not isinstance(decoded, list):
        try:
            out.items.append(make(decoded, window, 0))
        except BadMessage as exc:
            out.rejections.append(Rejection(exc.reason, exc.detail, payload))
        return
    if not decoded:
        out.rejections.append(Rejection(Reason.BAD_SHAPE, "empty array", payload))
        return
    items = out.items
    failed: list[tuple[int, BadMessage]] | None = None
    for i, w in enumerate(decoded):
        try:
            items.append(make(w, window, i))
        except BadMessage as exc:
            if failed is None:
                failed = []
            failed.append((i, exc))
    if failed:
        # Rare: keep the exact bytes of each rejected element.
        elements = _split_array(payload)
        n = len(decoded)
        for i, bad in failed:
            raw = bytes(elements[i]) if isinstance(elements, list) else payload
            out.rejections.append(Rejection(bad.reason, f"fix {i} of {n}: {bad.detail}", raw, i))


def _decode_fixes_one_by_one(
    out: Parsed[Any], payload: bytes, window: Window, shape: _FixShape
) -> None:
    """Slow path: typed decoding failed somewhere; decode element by element."""
    elements = _split_array(payload)
    if isinstance(elements, Rejection):
        out.rejections.append(elements)
        return
    if elements is None:  # a single value that is not a valid item
        try:
            out.items.append(shape.make(shape.one_decoder.decode(payload), window, 0))
        except _DECODE_ERRORS as exc:
            out.rejections.append(Rejection(classify(exc), _detail(exc), payload))
        except BadMessage as exc:
            out.rejections.append(Rejection(exc.reason, exc.detail, payload))
        return
    if not elements:
        out.rejections.append(Rejection(Reason.BAD_SHAPE, "empty array", payload))
        return
    n = len(elements)
    for i, el in enumerate(elements):
        raw = bytes(el)
        try:
            out.items.append(shape.make(shape.one_decoder.decode(raw), window, i))
        except _DECODE_ERRORS as exc:
            reason = classify(exc)
            if reason is Reason.BAD_SHAPE:
                reason = Reason.WRONG_TYPE  # an array element that is not an object
            out.rejections.append(Rejection(reason, f"fix {i} of {n}: {_detail(exc)}", raw, i))
        except BadMessage as exc:
            out.rejections.append(Rejection(exc.reason, f"fix {i} of {n}: {exc.detail}", raw, i))


def array_elements(payload: bytes) -> list[bytes] | None:
    """The exact bytes of each element of a JSON array payload; None when the payload
    is not an array (an object, or not JSON)."""
    elements = _split_array(payload)
    return [bytes(e) for e in elements] if isinstance(elements, list) else None


class Decoder:
    """Decodes messages of every channel; the ingestor keeps one.

    ``parse(topic, payload, window)`` never raises on input. Build the
    :class:`Window` once per batch with :meth:`window`.
    """

    _TOPIC_CACHE_MAX = 200_000

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._topics: dict[str, TopicRef] = {}

    def window(self, now: datetime | None = None) -> Window:
        return Window(now if now is not None else datetime.now(UTC), self.limits)

    def topic(self, topic_name: str) -> TopicRef:
        """parse_topic with a cache (a fleet has a bounded set of topics)."""
        ref = self._topics.get(topic_name)
        if ref is None:
            ref = parse_topic(topic_name)
            if len(self._topics) >= self._TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic_name] = ref
        return ref

    def parse(
        self, topic_name: str, payload: bytes, window: Window
    ) -> Parsed[Fix] | Parsed[TerminalFix] | Parsed[Event] | Parsed[Status]:
        """Decode one message. Never raises on input: whatever the payload makes the
        decoding code do ends in a :class:`Rejection` of the message."""
        try:
            return self._parse(topic_name, payload, window)
        except Exception as exc:  # a decoder bug must cost one message, not the stream
            ref = self._topics.get(topic_name)
            return Parsed(
                ref.channel if ref else None,
                ref.terminal_id if ref else None,
                [],
                [Rejection(*_failure(exc), payload)],
                ref.gateway_id if ref else None,
            )

    def _parse(
        self, topic_name: str, payload: bytes, window: Window
    ) -> Parsed[Fix] | Parsed[TerminalFix] | Parsed[Event] | Parsed[Status]:
        try:
            ref = self.topic(topic_name)
        except BadMessage as exc:
            return Parsed(None, None, [], [Rejection(exc.reason, exc.detail, payload)])
        if len(payload) > self.limits.max_payload_bytes:
            return Parsed(
                ref.channel,
                ref.terminal_id,
                [],
                [
                    Rejection(
                        Reason.OVERSIZE,
                        f"payload of {len(payload)} bytes exceeds the limit of "
                        f"{self.limits.max_payload_bytes} bytes",
                        payload,
                    )
                ],
                ref.gateway_id,
            )
        if ref.gateway_id is not None:
            return self._gateway_fixes(ref.gateway_id, payload, window)
        terminal_id = cast(str, ref.terminal_id)  # a truck's topic
        if ref.channel is Channel.POSITIONS:
            return self._fixes(terminal_id, payload, window)
        if ref.channel is Channel.EVENTS:
            return self._events(terminal_id, payload, window)
        return self._status(terminal_id, payload, window)

    def _fixes(self, terminal_id: str, payload: bytes, window: Window) -> Parsed[Fix]:
        out: Parsed[Fix] = Parsed(Channel.POSITIONS, terminal_id, [], [])
        _decode_fixes(out, payload, window, _TRUCK_FIXES)
        return out

    def _gateway_fixes(
        self, gateway_id: str, payload: bytes, window: Window
    ) -> Parsed[TerminalFix]:
        out: Parsed[TerminalFix] = Parsed(Channel.POSITIONS, None, [], [], gateway_id)
        _decode_fixes(out, payload, window, _GATEWAY_FIXES)
        return out

    def _events(self, terminal_id: str, payload: bytes, window: Window) -> Parsed[Event]:
        out: Parsed[Event] = Parsed(Channel.EVENTS, terminal_id, [], [])
        elements = _split_array(payload)
        if isinstance(elements, Rejection):
            out.rejections.append(elements)
            return out
        if elements is None:
            try:
                out.items.append(_event_from_raw(payload, window))
            except BadMessage as exc:
                out.rejections.append(Rejection(exc.reason, exc.detail, payload))
            return out
        if not elements:
            out.rejections.append(Rejection(Reason.BAD_SHAPE, "empty array", payload))
            return out
        n = len(elements)
        for i, el in enumerate(elements):
            raw = bytes(el)
            try:
                out.items.append(_event_from_raw(raw, window))
            except BadMessage as exc:
                reason = Reason.WRONG_TYPE if exc.reason is Reason.BAD_SHAPE else exc.reason
                out.rejections.append(Rejection(reason, f"event {i} of {n}: {exc.detail}", raw, i))
        return out

    def _status(self, terminal_id: str, payload: bytes, window: Window) -> Parsed[Status]:
        out: Parsed[Status] = Parsed(Channel.STATUS, terminal_id, [], [])
        try:
            w = _status_decoder.decode(payload)
            at = None
            if w.at is not None:
                at = _to_datetime(w.at)
                window.check(at, "at")
            out.items.append(Status(state=w.state, at=at))
        except _DECODE_ERRORS as exc:
            out.rejections.append(Rejection(classify(exc), _detail(exc), payload))
        except BadMessage as exc:
            out.rejections.append(Rejection(exc.reason, exc.detail, payload))
        return out


def _expect(
    channel: Channel,
    topic_name: str,
    payload: bytes,
    now: datetime | None,
    limits: Limits,
    *,
    gateway: bool = False,
) -> Parsed[Any]:
    decoder = Decoder(limits)
    parsed = decoder.parse(topic_name, payload, decoder.window(now))
    if parsed.channel is not None and (
        parsed.channel is not channel or (parsed.gateway_id is not None) != gateway
    ):
        wanted = "gateway's positions" if gateway else f"truck's {channel.value}"
        return Parsed(
            parsed.channel,
            parsed.terminal_id,
            [],
            [
                Rejection(
                    Reason.BAD_TOPIC,
                    f"expected a {wanted} topic, got {topic_name[:200]!r}",
                    payload,
                )
            ],
            parsed.gateway_id,
        )
    return parsed


def parse_fixes(
    topic_name: str,
    payload: bytes,
    *,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Parsed[Fix]:
    """Decode a positions message: one fix object or an array of them.

    Never raises on input; every bad fix (or the whole message) becomes a
    :class:`Rejection`. Fixes come back with ``recorded_at`` timezone-aware.
    """
    return _expect(Channel.POSITIONS, topic_name, payload, now, limits)


def parse_gateway_fixes(
    topic_name: str,
    payload: bytes,
    *,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Parsed[TerminalFix]:
    """Decode a gateway's positions message: an array of fix objects (or one), each
    with the ``terminal_id`` it belongs to. Never raises on input; a bad item is a
    rejection of that item alone."""
    return _expect(Channel.POSITIONS, topic_name, payload, now, limits, gateway=True)


def parse_events(
    topic_name: str,
    payload: bytes,
    *,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Parsed[Event]:
    """Decode an events message: one event object or an array of them."""
    return _expect(Channel.EVENTS, topic_name, payload, now, limits)


def parse_status(
    topic_name: str,
    payload: bytes,
    *,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Parsed[Status]:
    """Decode a status message (one object). ``at`` is optional; when present it
    must lie in the accepted time window."""
    return _expect(Channel.STATUS, topic_name, payload, now, limits)


def parse_message(
    topic_name: str,
    payload: bytes,
    *,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Parsed[Fix] | Parsed[TerminalFix] | Parsed[Event] | Parsed[Status]:
    """Decode any ClearDay message, dispatching on the topic's channel."""
    decoder = Decoder(limits)
    return decoder.parse(topic_name, payload, decoder.window(now))


# --------------------------------------------------------------------------- encoding


def _require_aware(at: datetime | None, what: str) -> None:
    if at is not None and at.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")


def encode_fixes(fixes: Fix | Iterable[Fix]) -> bytes:
    """Encode one fix as an object, or several (a blind-zone batch) as an array."""
    if isinstance(fixes, Fix):
        _require_aware(fixes.recorded_at, "Fix.recorded_at")
        return _encoder.encode(fixes)
    batch = list(fixes)
    if not batch:
        raise ValueError("encode_fixes needs at least one fix")
    for f in batch:
        _require_aware(f.recorded_at, "Fix.recorded_at")
    return _encoder.encode(batch)


def gateway_item_prefix(terminal_id: str) -> bytes:
    """The start of a gateway batch item of this terminal, ``{"terminal_id":"…",``
    (a gateway computes it once per connection)."""
    return b'{"terminal_id":"' + _check_terminal_id(terminal_id).encode() + b'",'


def encode_gateway_fix(prefix: bytes, fix: Fix) -> bytes:
    """One item of a gateway's batch: the fix's object with the terminal id of
    ``prefix`` (:func:`gateway_item_prefix`) as its first field. A fix always encodes
    as a non-empty object, and a terminal id needs no escaping, so the id is spliced
    in rather than encoding a copy of the fix."""
    _require_aware(fix.recorded_at, "Fix.recorded_at")
    return prefix + _encoder.encode(fix)[1:]


def encode_gateway_batch(items: list[bytes]) -> bytes:
    """The payload of a gateway's batch: the items of :func:`encode_gateway_fix` as
    one array."""
    if not items:
        raise ValueError("a gateway batch needs at least one item")
    return b"[" + b",".join(items) + b"]"


def _event_obj(event: Event) -> dict[str, Any]:
    _require_aware(event.recorded_at, "Event.recorded_at")
    obj: dict[str, Any] = dict(event.extra or {})
    for name in _EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            obj[name] = value
    return obj


def encode_events(events: Event | Iterable[Event]) -> bytes:
    """Encode one event as an object, or several as an array; ``extra`` fields are
    written at the top level of each event object."""
    if isinstance(events, Event):
        return _encoder.encode(_event_obj(events))
    batch = [_event_obj(e) for e in events]
    if not batch:
        raise ValueError("encode_events needs at least one event")
    return _encoder.encode(batch)


def encode_status(state: TerminalState, at: datetime | None = None) -> bytes:
    """Encode a status message. A last-will payload is fixed at connect time, so
    it is usually sent without ``at``."""
    _require_aware(at, "Status.at")
    return _encoder.encode(Status(state=state, at=at))
