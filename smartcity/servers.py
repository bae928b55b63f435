"""Private PostgreSQL and Mosquitto instances, started from the system binaries on free ports.

Tests, benchmarks and the soak use these when they must stop, restart or reconfigure a
server (fault injection, broker tuning) without touching the shared ones. Each instance is a
context manager: it starts on enter, and on exit stops and removes its data directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

from smartcity.errors import ServiceUnavailableError

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailableError(f"server on port {port} exited with {proc.returncode}")
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise ServiceUnavailableError(f"server did not listen on {host}:{port} in {timeout_s:g} s")


def find_binary(name: str, extra_dirs: tuple[str, ...] = ()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class _Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self._dir = Path(tempfile.mkdtemp(prefix=f"smartcity-{type(self).__name__.lower()}-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's main process (None when stopped); it changes on every restart."""
        return self._proc.pid if self.running and self._proc is not None else None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        """Stop the server (SIGTERM: clean; SIGKILL: crash). Data stays for a restart."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections hang, as with a stalled host."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


# The broker settings the project ships for QoS 1 ingest (in-flight and queue limits above a
# batch); benchmarks, the soak and fault tests run a private broker with them.
TUNED_MOSQUITTO_CONF = (
    Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"
)


class PrivateMosquitto(_Server):
    """A Mosquitto broker of our own: `config` is appended after listener and persistence."""

    @classmethod
    def tuned(cls) -> PrivateMosquitto:
        """A broker with the project's tuned configuration (`TUNED_MOSQUITTO_CONF`)."""
        return cls(TUNED_MOSQUITTO_CONF.read_text())

    def __init__(self, config: str = "", *, persistence: bool = True) -> None:
        super().__init__()
        binary = find_binary("mosquitto", ("/usr/sbin",))
        if binary is None:
            raise ServiceUnavailableError(
                "the mosquitto binary is not installed; install it with 'apt-get install mosquitto'"
            )
        self._binary = binary
        self.config_path = self._dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # Running as root in CI: keep root rather than switch to a user that cannot
            # write this temporary directory.
            "user root" if os.geteuid() == 0 else "",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self._dir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            config,
        ]
        self.config_path.write_text("\n".join(line for line in lines if line) + "\n")

    def start(self) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen(
            [self._binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.host, self.port, START_TIMEOUT_S, self._proc)


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc; empty elsewhere)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command name (which may hold spaces): state, then the parent's pid.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _signal_quietly(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, sig)


_PG_DIRS = tuple(sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin"))[::-1])


class PrivatePostgres(_Server):
    """A PostgreSQL cluster of our own (initdb in a temporary directory, trust auth)."""

    def __init__(self) -> None:
        super().__init__()
        initdb = find_binary("initdb", _PG_DIRS)
        postgres = find_binary("postgres", _PG_DIRS)
        if initdb is None or postgres is None:
            raise ServiceUnavailableError(
                "PostgreSQL server binaries (initdb, postgres) are not installed; "
                "install them with 'apt-get install postgresql'"
            )
        self._initdb, self._postgres = initdb, postgres
        self.data_dir = self._dir / "data"
        # PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailableError(
                    "running as root needs a 'postgres' user to run PostgreSQL as"
                ) from None
            os.chown(self._dir, self._user.pw_uid, self._user.pw_gid)
        self._initialised = False

    @property
    def conninfo(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def start(self) -> None:
        if self.running:
            return
        if not self._initialised:
            subprocess.run(
                [
                    self._initdb,
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=self._demote,
            )
            self._initialised = True
        self._proc = subprocess.Popen(
            [
                self._postgres,
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self._dir}",
                # Test clusters hold nothing worth an fsync; crash safety is not tested on them.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=self._demote,
            start_new_session=True,
        )
        wait_for_port(self.host, self.port, START_TIMEOUT_S, self._proc)
        # The port opens before the server accepts queries; wait for a real connection.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pause(self) -> None:
        """Freeze the postmaster and every backend (SIGSTOP): queries on open connections hang.

        Each backend runs in a process group of its own (PostgreSQL calls setsid() for its
        children), so signalling the postmaster's group would leave them running."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)  # first, so that it forks no new backend
            for pid in _children(self._proc.pid):
                _signal_quietly(pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            for pid in _children(self._proc.pid):
                _signal_quietly(pid, signal.SIGCONT)
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> None:
        """SIGINT is PostgreSQL's fast shutdown: aborts transactions, disconnects clients."""
        super().stop(sig, timeout_s)
