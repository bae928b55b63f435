"""Schemathesis against the live OpenAPI schema of a running API (uvicorn on 127.0.0.1, its own
database and topic root): every operation, with generated valid and invalid input, answers
without a server error and as its schema says (status codes, content types, bodies, headers).

The live vehicle stream is left out here: it never ends, so a generated request would wait
forever; test_api_live covers it through the real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hyp_settings
from schemathesis import APIOperation, Case

from api.app import create_app
from ingest.decode import decode
from ingest.writer import Batch, BatchWriter
from simulators.lighting import LampFleet
from smartcity import topics
from smartcity.cities import get_city
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import make_key, serving
from tests.helpers import wait_until
from tests.transitdata import import_sim_feed

AnyCase = Case[APIOperation[Any, Any, Any, Any]]
NIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)


def _fill(settings: Settings) -> None:
    fleet = LampFleet(get_city("astana"), 50, seed=1)
    batch = Batch.empty()
    for i in range(50):
        topic = topics.lamp_telemetry("city", "astana", fleet.lamps[i].lamp_id)
        out = decode(
            topics.parse_inbound("city", topic),
            orjson.dumps(fleet.reading(i, NIGHT)),
            max_payload_bytes=65536,
        )
        batch.rows.setdefault("lighting_readings", []).extend(out.rows["lighting_readings"])
        batch.sightings.extend(out.sightings)
    with BatchWriter(settings.database_conninfo) as writer:
        writer.write(batch)


@pytest.fixture
def admin_key(settings: Settings) -> str:
    return make_key(settings, Role.ADMIN, "schemathesis")


# The schema as create_app builds it; the fixture checks that the running API serves the same.
SCHEMA_DOC = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
# 422 is a fine answer to schema-valid input in three cases the schema cannot express: a cursor
# this API did not issue, `from` after `to` or a range too long, times outside 1970–2200 (and an
# expiry not within the next 7 days).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422"]}
        }
    }
)
schema = schemathesis.openapi.from_dict(SCHEMA_DOC, config=CONFIG).exclude(path="/v1/live/vehicles")


@pytest.fixture
def live_api(settings: Settings, tmp_path: Path) -> Iterator[str]:
    _fill(settings)
    import_sim_feed(settings, tmp_path, routes=2)  # stops s0001 …: the examples' s0042 exists
    # The rate limit is tested elsewhere; here it would turn most requests into 429s.
    unlimited = settings.model_copy(update={"api_rate_limit_burst": 1_000_000})
    with serving(create_app(unlimited)) as base:
        wait_until(
            lambda: httpx2.get(f"{base}/ready").status_code == 200,
            timeout_s=15,
            what="the API to be ready",
        )
        assert httpx2.get(f"{base}/openapi.json").json() == SCHEMA_DOC
        yield base


@pytest.mark.slow
@schema.parametrize()
@hyp_settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_conforms(case: AnyCase, live_api: str, admin_key: str) -> None:
    case.call_and_validate(
        base_url=live_api, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
    )


def _has_example(doc: dict[str, Any], node: dict[str, Any]) -> bool:
    if "example" in node or "examples" in node:
        return True
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _has_example(doc, doc["components"]["schemas"][name])
    return any(_has_example(doc, sub) for sub in node.get("anyOf", []) if isinstance(sub, dict))


def test_every_operation_is_described_with_examples() -> None:
    operations = [
        (method, path, op)
        for path, item in SCHEMA_DOC["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) >= 12
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        assert len(op.get("description", "")) > 40, f"{where} has no description"
        success = next(v for k, v in op["responses"].items() if k.startswith("2"))
        contents = success.get("content", {})
        assert contents, f"{where}: no success content"
        for media in contents.values():
            assert _has_example(SCHEMA_DOC, media) or _has_example(
                SCHEMA_DOC, media.get("schema", {})
            ), f"{where}: no example of its answer"
        for param in op.get("parameters", []):
            if param["in"] in ("query", "path") and param["name"] not in ("domain", "status"):
                schema = param.get("schema", {})
                has = "example" in param or "examples" in param or _has_example(SCHEMA_DOC, schema)
                assert has or "enum" in schema or schema.get("type") == "integer", (
                    f"{where}: parameter {param['name']} has no example"
                )
        if "requestBody" in op:
            body = op["requestBody"]["content"]["application/json"]["schema"]
            assert _has_example(SCHEMA_DOC, body), f"{where}: no example body"
