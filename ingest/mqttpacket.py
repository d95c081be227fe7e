"""MQTT control packets as bytes (MQTT 3.1.1 and 5): the few the gateway's publisher
and the benchmarks' raw publishers write themselves, and a splitter for what a broker
sends back. Pure, no I/O.
"""

from __future__ import annotations

import struct

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

QOS1 = 0x02  # PUBLISH flag bits 1-2
RETAIN = 0x01

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

MAX_REMAINING_LENGTH = 268_435_455  # four length bytes

_U16 = struct.Struct("!H")


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    if 0 <= n < 0x4000:  # one or two bytes: every PUBLISH of a location
        return bytes((n,)) if n < 0x80 else bytes((n & 0x7F | 0x80, n >> 7))
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{n} does not fit an MQTT variable byte integer")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str) -> bytes:
    """A UTF-8 string with its two-byte length."""
    b = s.encode()
    return _U16.pack(len(b)) + b


def binary(b: bytes) -> bytes:
    return _U16.pack(len(b)) + b


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect(
    client_id: str,
    *,
    username: str | None,
    password: str | None,
    keepalive_s: int,
    version: int = 5,
    clean: bool = True,
) -> bytes:
    """CONNECT without a will; MQTT 5 (``version`` 5) sends no properties."""
    flags = 0x02 if clean else 0x00
    payload = string(client_id)
    if username is not None:
        flags |= 0x80
        payload += string(username)
        if password is not None:
            flags |= 0x40
            payload += binary(password.encode())
    variable = string("MQTT") + bytes([version, flags]) + _U16.pack(keepalive_s)
    if version == 5:
        variable += b"\x00"  # no properties
    return packet(CONNECT, variable + payload)


def publish_qos1(
    topic: bytes, packet_id: int, payload: bytes, *, retain: bool = False, version: int = 5
) -> bytes:
    """A QoS 1 PUBLISH; ``topic`` is already UTF-8 with its two-byte length
    (:func:`string`), as a publisher caches it per topic."""
    props = b"\x00" if version == 5 else b""
    body_len = len(topic) + 2 + len(props) + len(payload)
    first = PUBLISH | QOS1 | (RETAIN if retain else 0)
    return b"".join((bytes([first]), varint(body_len), topic, _U16.pack(packet_id), props, payload))


class PacketSplitter:
    """Cuts a byte stream into whole packets: ``feed`` returns (first byte, body) pairs
    and keeps an incomplete tail for the next call. A remaining length over
    ``max_packet_bytes`` or a malformed length raises ValueError (the connection is
    beyond repair)."""

    def __init__(self, max_packet_bytes: int = 1 << 20) -> None:
        self.max_packet_bytes = max_packet_bytes
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, bytes]] = []
        pos, n = 0, len(buf)
        while pos + 2 <= n:
            length = buf[pos + 1]
            if length < 0x80 and length <= self.max_packet_bytes:  # every PUBACK
                end = pos + 2 + length
                if end > n:
                    break
                out.append((buf[pos], buf[pos + 2 : end]))
                pos = end
                continue
            length = shift = 0
            i = pos + 1
            while True:
                if i >= n:
                    self._buf = buf[pos:]
                    return out
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ValueError("malformed remaining length")
            if length > self.max_packet_bytes:
                raise ValueError(f"a packet of {length} bytes is over the limit")
            end = i + length
            if end > n:
                break
            out.append((buf[pos], buf[i:end]))
            pos = end
        self._buf = buf[pos:]
        return out
