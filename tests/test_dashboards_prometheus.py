"""The Prometheus the ingest-health dashboard reads: provisioned under the uid its panels use,
run by the compose file with a config that scrapes the ingest and the API where they listen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dashboards.check import load, panels
from dashboards.sql import PROMETHEUS_TYPE, PROMETHEUS_UID
from smartcity.settings import Settings

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
