"""`smartcity bench …`: the project's benchmarks (see `smartcity.bench`)."""

from __future__ import annotations

import typer

from smartcity.bench import alerts as alerts_bench
from smartcity.bench import api as api_bench
from smartcity.bench import eta as eta_bench
from smartcity.bench import ingest as ingest_bench
from smartcity.bench import query as query_bench

app = typer.Typer(
    help="Benchmarks, measured side by side in one run; results go to docs/benchmarks.md.",
    no_args_is_help=True,
)

# Each benchmark registers its command below, one line each, e.g.
# app.command("ingest")(ingest_bench.command)
app.command("alerts")(alerts_bench.command)
app.command("api")(api_bench.command)
app.command("eta")(eta_bench.command)
app.command("ingest")(ingest_bench.command)
app.command("query")(query_bench.command)
