"""`smartcity ingest --workers N`: a small supervisor of N ingest worker processes.

Each worker is `smartcity ingest --worker n`, a process of its own (the hot path is CPU-bound
Python, so processes, not threads, use several cores). The supervisor forwards SIGINT/SIGTERM,
waits for every worker to flush and exit, and restarts a worker that dies (after a capped,
jittered delay) — a dead worker's unacknowledged messages wait in its persistent session and
are redelivered when it is back. Workers exit by themselves if the supervisor disappears.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import structlog

from smartcity.cli.signals import stop_event
from smartcity.settings import Settings

log = structlog.get_logger("ingest.workers")

_RESTART_MIN_S = 1.0
_RESTART_MAX_S = 30.0
_STOP_TIMEOUT_S = 60.0
_PARENT_POLL_S = 1.0


def _spawn(n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "smartcity", "ingest", "--worker", str(n)])


def supervise(workers: int, settings: Settings) -> None:
    """Run `workers` ingest workers until SIGINT/SIGTERM, then stop them cleanly."""
    stop = stop_event()
    log.info("starting ingest workers", workers=workers, share_group=settings.ingest_share_group)
    procs = {n: _spawn(n) for n in range(workers)}
    delays = dict.fromkeys(procs, _RESTART_MIN_S)
    try:
        while not stop.wait(0.5):
            for n, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                wait_s = random.uniform(delays[n] / 2, delays[n])
                log.error("ingest worker exited; restarting", worker=n, code=code, in_s=wait_s)
                if stop.wait(wait_s):
                    break
                delays[n] = min(delays[n] * 2, _RESTART_MAX_S)
                procs[n] = _spawn(n)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for n, proc in procs.items():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("ingest worker did not stop; killing it", worker=n)
                proc.kill()
                proc.wait()
    log.info("ingest workers stopped")


def stop_with_parent(stop: threading.Event) -> None:
    """Set `stop` when the supervisor that started this worker is gone (e.g. kill -9)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(_PARENT_POLL_S):
            if os.getppid() != parent:
                log.warning("supervisor gone; stopping this worker")
                stop.set()

    threading.Thread(target=watch, name="ingest-parent-watch", daemon=True).start()
