"""`smartcity ingest` and `smartcity api`: the long-running services."""

from __future__ import annotations

from typing import Annotated

import typer

from smartcity import logs
from smartcity.cli.signals import stop_event
from smartcity.settings import Settings

# Seconds a stopping API waits for open requests (live streams) before it closes them.
API_SHUTDOWN_GRACE_S = 5


def ingest() -> None:
    """Subscribe to the device feeds and store every reading exactly once.

    QoS 1 with a persistent session: a message is acknowledged to the broker only after its
    rows are committed, so a crash loses nothing. Bad messages go to `dead_letters` with a
    reason. Prometheus metrics on SMARTCITY_INGEST_METRICS_PORT (default 9108).
    Stops cleanly on Ctrl-C / SIGTERM (flushes, commits, acknowledges).
    """
    from prometheus_client import start_http_server

    from ingest.metrics import IngestMetrics
    from ingest.pipeline import Pipeline

    settings = Settings()
    logs.configure(settings)
    metrics = IngestMetrics()
    if settings.ingest_metrics_port:
        start_http_server(settings.ingest_metrics_port, addr="127.0.0.1", registry=metrics.registry)
    Pipeline(settings, metrics).run(stop_event())


def api(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default SMARTCITY_API_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default SMARTCITY_API_PORT).")
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs). Stops cleanly on Ctrl-C / SIGTERM."""
    import uvicorn

    from api.app import create_app

    settings = Settings()
    logs.configure(settings)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
        # Live-stream (SSE) clients never end their requests; without a limit a shutdown
        # would wait for them forever.
        timeout_graceful_shutdown=API_SHUTDOWN_GRACE_S,
    )
