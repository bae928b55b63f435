"""`smartcity ingest` and `smartcity api`: the long-running services."""

from __future__ import annotations

from typing import Annotated

import typer

from smartcity import logs
from smartcity.cli.signals import stop_event
from smartcity.settings import Settings

# Seconds a stopping API waits for open requests (live streams) before it closes them.
API_SHUTDOWN_GRACE_S = 5


def ingest(
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing the feeds (MQTT shared subscription); each has its "
            "own client id (SMARTCITY_INGEST_CLIENT_ID-<n>) and persistent session.",
        ),
    ] = 1,
    worker: Annotated[
        int | None,
        typer.Option(hidden=True, help="Run as worker <n> of a supervisor (internal)."),
    ] = None,
) -> None:
    """Subscribe to the device feeds and store every reading exactly once.

    QoS 1 with a persistent session: a message is acknowledged to the broker only after its
    rows are committed, so a crash loses nothing. Bad messages go to `dead_letters` with a
    reason. Prometheus metrics on SMARTCITY_INGEST_METRICS_PORT (default 9108; worker n of
    --workers uses that port + n). Stops cleanly on Ctrl-C / SIGTERM (flushes, commits,
    acknowledges). To spread workers over hosts, run `smartcity ingest` on each host with a
    distinct SMARTCITY_INGEST_CLIENT_ID and the same SMARTCITY_INGEST_SHARE_GROUP.
    """
    settings = Settings()
    logs.configure(settings)
    if workers > 1 and worker is None:
        from smartcity.cli.workers import supervise

        supervise(workers, settings)
        return
    _run_ingest_worker(settings, worker)


def _run_ingest_worker(settings: Settings, worker: int | None) -> None:
    from prometheus_client import start_http_server

    from ingest.metrics import IngestMetrics
    from ingest.pipeline import Pipeline, tune_gc
    from smartcity.cli.workers import stop_with_parent

    stop = stop_event()
    if worker is not None:
        settings = settings.model_copy(
            update={
                "ingest_client_id": f"{settings.ingest_client_id}-{worker}",
                "ingest_metrics_port": settings.ingest_metrics_port + worker
                if settings.ingest_metrics_port
                else 0,
            }
        )
        stop_with_parent(stop)
    metrics = IngestMetrics()
    if settings.ingest_metrics_port:
        start_http_server(
            settings.ingest_metrics_port,
            addr=settings.ingest_metrics_host,
            registry=metrics.registry,
        )
    pipeline = Pipeline(settings, metrics)
    tune_gc()
    pipeline.run(stop)


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
