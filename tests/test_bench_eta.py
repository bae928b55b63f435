"""`smartcity bench eta` at a tiny size: the JSON has its keys and sane values."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from smartcity.bench.eta import run, score
from smartcity.db.connect import with_database
from smartcity.settings import Settings


@pytest.fixture
def bench_db(pg_admin: str) -> Iterator[str]:
    name = f"smartcity_t_eta_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_score_uses_the_transit_app_windows() -> None:
    # 0–3 min: 30 s early to 90 s late; 10–15 min: 90 s early to 270 s late.
    s = score([(60, -30), (60, 90), (60, -31), (60, 91), (700, -90), (700, 270), (700, 271)])
    assert s.buckets["0_3"] == 0.5
    assert s.buckets["10_15"] == pytest.approx(2 / 3)
    assert s.buckets["3_6"] == 0.0  # no samples: counts as 0, never as perfect
    assert s.score == pytest.approx((0.5 + 2 / 3) / 4)


def test_bench_eta_tiny(pg_admin: str, bench_db: str) -> None:
    settings = Settings(_env_file=None, database_url=with_database(pg_admin, "postgres"))  # type: ignore[call-arg]
    result = run(
        settings, routes=2, buses=3, history_days=1, hours=0.75, batch_s=30, sample_s=60,
        seed=7, database=bench_db,
    )  # fmt: skip
    out = result.as_json()
    keys = {"score", "bucket_0_3", "bucket_3_6", "bucket_6_10", "bucket_10_15", "mae_s",
            "baseline_score", "baseline_mae_s", "predictions"}  # fmt: skip
    assert keys <= set(out)
    assert out["predictions"] > 100
    assert out["stop_arrivals"] > 10
    for k in keys - {"predictions", "mae_s", "baseline_mae_s"} | {"within_1sd"}:
        assert 0.0 <= out[k] <= 1.0, k
    # Live tracking beats the timetable even at this size.
    assert out["score"] > out["baseline_score"]
    assert 0 < out["mae_s"] < out["baseline_mae_s"]
