"""`smartcity demo`: simulator + ingest + API together, stopped together on Ctrl-C."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Annotated

import typer
from rich.console import Console

from smartcity.cli.signals import stop_event
from smartcity.db.migrate import migrate
from smartcity.settings import Settings

# How long a child gets to stop by itself (the ingest flushes and commits) before it is killed.
STOP_GRACE_S = 15.0
READY_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux: if the demo itself is killed (even with -9), the kernel sends SIGTERM to each
    # child, so no process is left behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smartcity", *args],
        env=env,
        # Own process group: the terminal's Ctrl-C reaches only the demo, which then stops
        # the children in order (simulator, ingest, API).
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(c.poll() is not None for c in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own URL
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def demo(
    lamps: Annotated[int, typer.Option(min=1, help="Simulated lamps in Astana.")] = 2000,
    interval: Annotated[
        float, typer.Option(min=1.0, help="Seconds between a lamp's reports.")
    ] = 10.0,
) -> None:
    """Run the whole slice: migrate, then the lighting simulator, the ingest and the API.

    Prints the URLs to open. Ctrl-C stops everything cleanly (the ingest commits what it
    holds) and leaves no process behind.
    """
    settings = Settings()
    console = Console()
    report = migrate(settings)
    console.print(f"database ready (storage mode {report.storage_mode.value})")
    env = dict(os.environ)
    children = [
        ("ingest", _start(["ingest"], env)),
        ("api", _start(["api"], env)),
        (
            "simulator",
            _start(
                ["simulate", "lighting", "--lamps", str(lamps), "--interval", str(interval)], env
            ),
        ),
    ]
    stop = stop_event()
    base = f"http://{settings.api_host}:{settings.api_port}"
    procs = [p for _, p in children]
    if _wait_ready(f"{base}/health", procs, READY_TIMEOUT_S):
        console.print(
            "\n[bold green]smartcity demo is running[/]\n"
            f"  lighting summary  {base}/v1/lighting/summary?city=astana\n"
            f"  API docs          {base}/docs\n"
            f"  ingest metrics    http://127.0.0.1:{settings.ingest_metrics_port}/metrics\n"
            f"Lamps report every {interval:g} s. Press Ctrl-C to stop.\n",
            highlight=False,
        )
    else:
        console.print("[red]a demo process failed to start; stopping the others[/]")
        stop.set()
    exit_code = 0
    while not stop.wait(0.5):
        for name, proc in children:
            if proc.poll() is not None:
                console.print(f"[red]{name} exited with code {proc.returncode}; stopping[/]")
                exit_code = 1
                stop.set()
    # Stop producers first, so the ingest can commit everything already published.
    for name, proc in reversed(children):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{name} did not stop in {STOP_GRACE_S:g} s; killing it[/]")
                proc.kill()
                proc.wait()
    console.print("demo stopped; no process left running")
    raise typer.Exit(exit_code)
