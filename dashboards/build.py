"""Dashboards as JSON: generated from the Python definitions, committed under `json/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import sql
from dashboards.registry import DASHBOARDS

# The committed JSON, which Grafana's dashboard provider (provisioning/dashboards/) loads.
JSON_DIR = Path(__file__).resolve().parent / "json"


def sdk_runtime() -> None:
    """Teach the SDK's runtime every panel type and our SQL queries (idempotent)."""
    register_default_plugins()
    sql.register()


def to_dict(dashboard: dm.Dashboard) -> dict[str, Any]:
    """The JSON object Grafana stores for `dashboard`."""
    data: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return data


def render(data: dict[str, Any]) -> str:
    """Stable text: sorted keys and a final newline, so the committed files diff cleanly."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    sdk_runtime()
    return {f"{name}.json": render(to_dict(build())) for name, build in DASHBOARDS.items()}


def write(directory: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard's JSON into `directory`; remove JSON of dashboards we dropped."""
    directory.mkdir(parents=True, exist_ok=True)
    generated = generate()
    for stale in directory.glob("*.json"):
        if stale.name not in generated:
            stale.unlink()
    written = []
    for name, text in generated.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of committed files that differ from what `write` would produce (or are extra)."""
    generated = generate()
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    names = sorted(set(generated) | set(committed))
    return [n for n in names if generated.get(n) != committed.get(n)]
