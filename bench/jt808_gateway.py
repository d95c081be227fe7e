"""The JT/T 808 gateway's own CPU per location report, without sockets (issue 18).

    .venv/bin/python bench/jt808_gateway.py [--reports 2000] [--repeats 300]

One authenticated connection of the real ``Gateway`` receives 0x0200 frames through
``Session.data_received``: decoding, translating, encoding the fixes, the real
``Publisher`` building its PUBLISH packets, and the answers, on uvloop as in the
service, all of it but the system calls. The broker link drops what is written and
answers at once with a PUBACK for every message in flight (read by the publisher's
own packet reader), the terminal's transport drops the answers, so the figure is the
gateway's Python work alone, which bench/jt808.py cannot resolve on a loaded machine.
``gateway_us_per_report_*`` is the fastest of ``--repeats`` rounds of 200 reports (the
least disturbed by other work on the machine), ``gateway_cpu_us_per_report_*`` the
process's CPU time over all rounds per report (garbage collections included, and
whatever the machine's other work costs it in caches), each for one report per read
(a terminal that waits for each answer) and for ten (a terminal catching up). The
process freezes its start-up objects out of garbage collection as the service does.
The last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.config import MqttTarget, Settings  # noqa: E402
from ingest import mqttpacket as mp  # noqa: E402
from ingest import wire  # noqa: E402
from ingest.jt808 import codec, repo  # noqa: E402
from ingest.jt808.broker import Publisher, _Link, _Session  # noqa: E402
from ingest.jt808.gateway import Gateway, GatewayConfig, Registry  # noqa: E402
from ingest.jt808.service import freeze_imports, loop_runner  # noqa: E402

ROUND = 200  # reports per timed round
PHONE = "13800001234"


class AckingBroker:
    """The publisher's broker connection: every write is answered at once with a
    PUBACK for each message in flight, read by the publisher's own packet reader."""

    def __init__(self, publisher: Publisher, link: _Link) -> None:
        self.publisher, self.link = publisher, link

    def write(self, data: bytes) -> None:
        session = self.publisher._session
        assert session is not None
        self.link.data_received(
            b"".join(PUBACK_HEAD + mid.to_bytes(2, "big") for mid in session.inflight)
        )


PUBACK_HEAD = bytes((mp.PUBACK, 2))  # success: the packet id alone


def connected_publisher() -> Publisher:
    publisher = Publisher(MqttTarget("mqtt://127.0.0.1:1883"), "bench")
    publisher._loop = asyncio.get_running_loop()
    link = _Link(publisher)
    link.connection_made(AckingBroker(publisher, link))  # type: ignore[arg-type]
    publisher._session = _Session(link)
    return publisher


class NullTransport:
    """The terminal's side: drops the answers, counting them."""

    answers = 0

    def write(self, data: bytes) -> None:
        self.answers += data.count(b"\x7e") // 2

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


async def us_per_report(data: list[bytes], *, per_read: int, repeats: int) -> tuple[float, float]:
    """(fastest round, mean CPU) in µs per report."""
    gateway = Gateway(
        GatewayConfig.from_settings(Settings()),
        Registry(None, ""),  # type: ignore[arg-type]
        connected_publisher(),
    )
    session = gateway.connection()
    terminal = NullTransport()
    session.connection_made(terminal)  # type: ignore[arg-type]
    # authenticated, as on_auth leaves it
    header = codec.decode_frame(data[0]).header
    session.phone, session.phone_digits = PHONE, header.phone
    session.terminal = repo.Terminal(PHONE, "T1", "bench-1")
    session.positions_topic = "clearday/v1/bench-1/positions"
    session.events_topic = "clearday/v1/bench-1/events"
    session.item_prefix = wire.gateway_item_prefix("bench-1")
    session.responder = codec.Responder(header)
    session.auth_header = header
    session.checked_at = time.monotonic()
    rounds = len(data) // ROUND
    best = float("inf")
    cpu_started = time.process_time()
    for r in range(repeats):
        chunk = data[(r % rounds) * ROUND : (r % rounds + 1) * ROUND]
        reads = [b"".join(chunk[i : i + per_read]) for i in range(0, ROUND, per_read)]
        started = time.perf_counter()
        for read in reads:
            session.data_received(read)
        await asyncio.sleep(0)  # the loop turn's end: the gateway's batch goes out
        await asyncio.sleep(0)  # the next: the answers to their PUBACKs
        best = min(best, (time.perf_counter() - started) / ROUND)
    cpu_s = time.process_time() - cpu_started
    if terminal.answers != repeats * ROUND:
        raise RuntimeError(f"{terminal.answers} answers to {repeats * ROUND} reports")
    return best * 1e6, cpu_s / (repeats * ROUND) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    data = frames(max(args.reports, ROUND))
    freeze_imports()
    out: dict[str, float] = {}
    with loop_runner() as runner:
        for n in (1, 10):
            best, cpu = runner.run(us_per_report(data, per_read=n, repeats=args.repeats))
            out[f"gateway_us_per_report_{n}_per_read"] = round(best, 2)
            out[f"gateway_cpu_us_per_report_{n}_per_read"] = round(cpu, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
