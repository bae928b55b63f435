"""The committed JSON Schemas in docs/schemas/ are exactly what the models export."""

from __future__ import annotations

import json

import pytest

from smartcity.models.schemas import PAYLOADS, SCHEMA_DIR, render


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_committed_schema_matches_the_model(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    assert path.exists(), f"{path} is missing; run: python -m smartcity.models.schemas"
    assert path.read_text(encoding="utf-8") == render(name), (
        f"{path.name} differs from the model; run: python -m smartcity.models.schemas"
    )
    assert json.loads(path.read_text(encoding="utf-8"))["$schema"].endswith("2020-12/schema")


def test_every_schema_file_belongs_to_a_payload() -> None:
    stems = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.json")}
    assert stems == set(PAYLOADS)
