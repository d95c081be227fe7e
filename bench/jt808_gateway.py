"""The JT/T 808 gateway's own CPU per location report, without sockets (issue 18).

    .venv/bin/python bench/jt808_gateway.py [--reports 2000] [--repeats 300]

One authenticated connection of the real ``Gateway`` receives 0x0200 frames through
``Session.data_received``: decoding, translating, encoding the fixes, publishing and
building the answers, all of it but the system calls. The publisher acknowledges at
once and the transport drops what is written, so the figure is the gateway's Python
work alone, which bench/jt808.py cannot resolve on a loaded machine. Each figure is
the fastest of ``--repeats`` rounds of 200 reports (the least disturbed by other work
on the machine), for one report per read (a terminal that waits for each answer) and
for ten (a terminal catching up). The last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.config import Settings  # noqa: E402
from ingest.jt808 import codec, repo  # noqa: E402
from ingest.jt808.gateway import Gateway, GatewayConfig, Registry  # noqa: E402

ROUND = 200  # reports per timed round
PHONE = "13800001234"


class AckingPublisher:
    """Acknowledges every message at once (the broker's PUBACK without a broker)."""

    def publish(
        self, topic: str, payload: bytes, done: Callable[[bool], None], *, retain: bool = False
    ) -> None:
        done(True)

    def publish_all(
        self, messages: Sequence[tuple[str, bytes]], done: Callable[[bool], None]
    ) -> None:
        done(True)


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def frames(count: int) -> list[bytes]:
    zone = codec.device_zone(codec.DEFAULT_DEVICE_UTC_OFFSET_MIN)
    base = datetime.now(UTC) - timedelta(hours=1)
    return [
        codec.encode_frame(
            codec.MsgId.LOCATION,
            PHONE,
            k + 1,
            codec.encode_location(
                codec.Location(
                    alarm=0,
                    status=codec.Status.LOCATED | codec.Status.ACC_ON,
                    lat=31.8 + k * 1e-5,
                    lon=117.3,
                    altitude_m=10,
                    speed_kmh=20.0,
                    heading_deg=90,
                    recorded_at=base + timedelta(seconds=k),
                    extras=((codec.EXTRA_MILEAGE, (102342 + k).to_bytes(4, "big")),),
                ),
                zone,
            ),
        )
        for k in range(count)
    ]


async def us_per_report(data: list[bytes], *, per_read: int, repeats: int) -> float:
    gateway = Gateway(
        GatewayConfig.from_settings(Settings()), Registry(None, ""), AckingPublisher()
    )  # type: ignore[arg-type]
    session = gateway.connection()
    session.connection_made(NullTransport())  # type: ignore[arg-type]
    # authenticated, as on_auth leaves it
    session.phone = PHONE
    session.terminal = repo.Terminal(PHONE, "T1", "bench-1")
    session.positions_topic = "clearday/v1/bench-1/positions"
    session.events_topic = "clearday/v1/bench-1/events"
    header = codec.decode_frame(data[0]).header
    session.responder = codec.Responder(header)
    session.auth_header = header
    session.checked_at = time.monotonic()
    rounds = len(data) // ROUND
    best = float("inf")
    for r in range(repeats):
        chunk = data[(r % rounds) * ROUND : (r % rounds + 1) * ROUND]
        reads = [b"".join(chunk[i : i + per_read]) for i in range(0, ROUND, per_read)]
        started = time.perf_counter()
        for read in reads:
            session.data_received(read)
        gateway.flush_answers()  # the end of the loop turn
        best = min(best, (time.perf_counter() - started) / ROUND)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    data = frames(max(args.reports, ROUND))
    out = {
        f"gateway_us_per_report_{n}_per_read": round(
            asyncio.run(us_per_report(data, per_read=n, repeats=args.repeats)), 2
        )
        for n in (1, 10)
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
