"""The gateway's own entry point, ``python -m ingest.jt808 --host H --port P
--processes N``: what `clearday jt808` runs once it has read its options.

The `clearday` command imports every command group (the web app, the planners with
numpy, scipy and networkx), which a gateway never uses but would keep in memory for as
long as it runs; so `clearday jt808` replaces itself (``os.execv``: the same process
id, signals and output) with this module, which imports only the gateway.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from fleet.config import Settings, refusals
from ingest.jt808.service import EXIT_UNAVAILABLE, GatewayUnavailable, run

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as the `clearday` command's


def command(host: str, port: int, processes: int) -> list[str]:
    """The arguments that run this module with these options."""
    return [
        sys.executable, "-m", "ingest.jt808",
        "--host", host, "--port", str(port), "--processes", str(processes),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="clearday jt808", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        settings = Settings()
        run(settings, host=args.host, port=args.port, processes=args.processes)
    except ValidationError as exc:
        for line in refusals(exc):
            print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)
    except GatewayUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)


if __name__ == "__main__":
    main()
