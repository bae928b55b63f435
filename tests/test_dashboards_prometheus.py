"""The Prometheus the ingest-health dashboard reads: provisioned under the uid its panels use,
run by the compose file with a config that scrapes the ingest and the API where they listen."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from dashboards.check import load, panels
from dashboards.sql import PROMETHEUS_TYPE, PROMETHEUS_UID
from simulators.lighting import LampFleet
from smartcity import topics
from smartcity.bench.mqttload import AckedPublisher
from smartcity.cities import get_city
from smartcity.servers import free_port
from smartcity.settings import Settings
from tests.helpers import count_rows, running_ingest, wait_until

ROOT = Path(__file__).resolve().parent.parent


def _yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def test_the_dashboards_read_the_provisioned_prometheus() -> None:
    sources = _yaml("dashboards/provisioning/datasources/prometheus.yaml")["datasources"]
    assert [(s["type"], s["uid"]) for s in sources] == [(PROMETHEUS_TYPE, PROMETHEUS_UID)]
    assert sources[0]["url"] == "http://prometheus:9090"
    refs = [
        ref
        for data in load().values()
        for panel in panels(data)
        for ref in [panel.get("datasource")]
        + [t.get("datasource") for t in panel.get("targets", [])]
        if ref and ref.get("type") == PROMETHEUS_TYPE
    ]
    assert refs, "no panel reads Prometheus"
    assert {r["uid"] for r in refs} == {PROMETHEUS_UID}


def test_compose_runs_prometheus_scraping_the_ingest_and_the_api() -> None:
    compose = _yaml("docker-compose.yml")
    services = compose["services"]
    prometheus = services["prometheus"]
    assert "ports" not in prometheus  # inside the compose network only
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("./"))
    config_path = next(k for k, v in mounts.items() if v == "/etc/prometheus/prometheus.yml")
    assert f"--config.file={mounts[config_path]}" in prometheus["command"]
    assert "prometheus-data" in compose["volumes"]
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing; install it with 'apt-get install prometheus'")
    checked = subprocess.run(
        [promtool, "check", "config", str(ROOT / config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = _yaml(config_path.removeprefix("./"))
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    port = Settings.model_fields["ingest_metrics_port"].default
    assert targets["smartcity-ingest"] == [f"ingest:{port}"]
    # The ingest's endpoint must listen beyond its own container's loopback.
    listen = services["ingest"]["environment"]["SMARTCITY_INGEST_METRICS_HOST"]
    assert listen == "0.0.0.0"  # noqa: S104 - every interface of the ingest container
    api_command = services["api"]["command"]
    api_port = api_command[api_command.index("--port") + 1]
    assert targets["smartcity-api"] == [f"api:{api_port}"]


# Grafana's $__rate_interval is at least four scrape intervals; the test scrapes every second.
RATE_INTERVAL = "15s"


def _prometheus_exprs() -> dict[str, str]:
    """Legend → PromQL of every Prometheus target, as Grafana would send it."""
    return {
        f"{panel['title']}: {t['legendFormat']}": t["expr"].replace(
            "$__rate_interval", RATE_INTERVAL
        )
        for data in load().values()
        for panel in panels(data)
        for t in panel.get("targets", [])
        if (t.get("datasource") or {}).get("type") == PROMETHEUS_TYPE
    }


def _query(base: str, expr: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own server
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@contextmanager
def _prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """A Prometheus of this test's own (Debian's binary) scraping `target` every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the prometheus binary is missing; install it with 'apt-get install prometheus'"
        )
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "smartcity-ingest", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(f"{base}/-/ready") or proc.poll() is not None,
            timeout_s=30,
            what="Prometheus to be ready",
        )
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own server
            return True
    except OSError:
        return False


def _has_values(base: str, expr: str) -> bool:
    """The query returns at least one series, and no value is NaN (a quantile of no data)."""
    result = _query(base, expr)
    return bool(result) and all(not math.isnan(float(r["value"][1])) for r in result)


@pytest.mark.slow
def test_the_prometheus_panels_show_a_running_ingest(settings: Settings, tmp_path: Path) -> None:
    """Every PromQL query of the dashboards, run by a real Prometheus scraping a running
    ingest's metrics endpoint, returns values once readings (and a bad one) went through."""
    from prometheus_client import start_http_server

    port = free_port()
    with running_ingest(settings) as pipeline:
        server, thread = start_http_server(
            port, addr="127.0.0.1", registry=pipeline.metrics.registry
        )
        try:
            with _prometheus(tmp_path, f"127.0.0.1:{port}") as base:
                # A scrape before the readings, so rates have a sample to rise from.
                wait_until(
                    lambda: bool(_query(base, "up == 1")),
                    timeout_s=30,
                    what="Prometheus to scrape the ingest",
                )
                now = datetime.now(UTC)
                fleet = LampFleet(get_city("astana"), 5, 1)
                messages = [
                    (
                        topics.lamp_telemetry(settings.mqtt_topic_root, "astana", lamp.lamp_id),
                        orjson.dumps(fleet.reading(i, now)),
                    )
                    for i, lamp in enumerate(fleet.lamps)
                ]
                bad = topics.lamp_telemetry(settings.mqtt_topic_root, "astana", "ast-lamp-999999")
                with AckedPublisher(
                    settings.mqtt_host, settings.mqtt_port, f"pub-{settings.mqtt_topic_root}"
                ) as pub:
                    for topic, payload in [*messages, (bad, b"{not json")]:
                        pub.publish(topic, payload)
                    assert pub.flush(), "the broker did not acknowledge every message"
                wait_until(
                    lambda: count_rows(settings, "lighting_readings") == len(messages),
                    timeout_s=30,
                    what="the readings to be committed",
                )
                exprs = _prometheus_exprs()
                assert len(exprs) >= 6
                for legend, expr in exprs.items():
                    wait_until(
                        lambda expr=expr: _has_values(base, expr),  # type: ignore[misc]
                        timeout_s=30,
                        what=f"{legend!r} ({expr}) to return values",
                    )
                by_feed = _query(base, exprs[next(k for k in exprs if k.endswith("{{feed}}"))])
                assert {r["metric"]["feed"] for r in by_feed} == {"lamp_telemetry"}
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
