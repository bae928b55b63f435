"""`smartcity demo`: reaches a state where lamps report through the API, and Ctrl-C leaves no
process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from smartcity.servers import free_port
from smartcity.settings import Settings
from tests.helpers import wait_until


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _lamps_reporting(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
            return int(json.load(resp)["totals"]["lamps_reporting"])
    except OSError:
        return 0


@pytest.mark.slow
def test_demo_serves_reporting_lamps_and_ctrl_c_stops_everything(settings: Settings) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "SMARTCITY_DATABASE_URL": settings.database_conninfo,
        "SMARTCITY_MQTT_HOST": settings.mqtt_host,
        "SMARTCITY_MQTT_PORT": str(settings.mqtt_port),
        "SMARTCITY_MQTT_TOPIC_ROOT": settings.mqtt_topic_root,
        "SMARTCITY_INGEST_CLIENT_ID": settings.ingest_client_id,
        "SMARTCITY_INGEST_METRICS_PORT": str(free_port()),
        "SMARTCITY_API_PORT": str(api_port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "demo", "--lamps", "200", "--interval", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{api_port}/v1/lighting/summary?city=astana"
        wait_until(lambda: _lamps_reporting(url) > 0, timeout_s=60, what="lamps reporting")
        children = _children(proc.pid)
        assert len(children) == 3  # simulator, ingest, API
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "/v1/lighting/summary" in text
    assert "/docs" in text
    assert not [pid for pid in children if _alive(pid)], "demo left processes behind"
