"""`smartcity alerts run`: the scheduled rules and delivery, one pass every interval.

Each pass sweeps the `offline` rule (it needs the clock, not a reading) and the transit rules
(`transit.py`: they read the bus tracker's state and stop arrivals), publishes every
undelivered alert change, and queues and POSTs webhook deliveries (`webhooks.py`). Several
loops may run: the sweep is idempotent (one open alert per device + rule) and delivery locks
what it publishes (SKIP LOCKED). A failed pass (database or
broker down) is logged and retried on the next one; nothing is lost, since what was not
delivered stays undelivered in the table.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx2
import psycopg
import structlog

from smartcity.alerts import delivery, offline, transit, webhooks
from smartcity.settings import Settings

log = structlog.get_logger("smartcity.alerts.loop")


def one_pass(
    conn: psycopg.Connection[tuple[object, ...]], settings: Settings, publish: delivery.Publish
) -> tuple[int, int, int]:
    """(offline and transit alerts raised or repeated, cleared, changes published)."""
    now = datetime.now(UTC)
    raised, cleared = offline.sweep(conn, now, settings.alerts_offline_factor)
    buses = transit.sweep(conn, now, max_new_per_min=settings.alerts_max_new_per_rule_per_min)
    raised += len(buses.raised) + len(buses.repeated)
    cleared += len(buses.cleared)
    published = delivery.deliver_pending(conn, settings.mqtt_topic_root, publish)
    return raised, cleared, published


def webhook_urls(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.alerts_webhook_urls.split(",") if u.strip()]


def webhook_pass(
    conn: psycopg.Connection[tuple[object, ...]], settings: Settings, client: httpx2.Client
) -> tuple[int, int, int]:
    """(changes queued, POSTs delivered, POSTs failed and rescheduled)."""
    urls = webhook_urls(settings)
    queued = webhooks.enqueue(conn, urls)
    backoff = webhooks.Backoff(base_s=settings.alerts_webhook_backoff_s)
    delivered, failed = webhooks.send_due(conn, client, backoff)
    return queued, delivered, failed


def run(settings: Settings, stop: threading.Event) -> None:
    """Pass after pass until `stop` is set."""
    log.info("alerts loop started", interval_s=settings.alerts_interval_s)
    while not stop.is_set():
        try:
            with (
                psycopg.connect(settings.database_conninfo, autocommit=True) as conn,
                delivery.MqttPublisher(settings.mqtt_host, settings.mqtt_port) as publish,
                httpx2.Client(timeout=settings.alerts_webhook_timeout_s) as client,
            ):
                while not stop.is_set():
                    raised, cleared, published = one_pass(conn, settings, publish)
                    if raised or cleared or published:
                        log.info("alerts pass", raised=raised, cleared=cleared, sent=published)
                    queued, posted, failed = webhook_pass(conn, settings, client)
                    if queued or posted or failed:
                        log.info("webhooks", queued=queued, delivered=posted, retrying=failed)
                    stop.wait(settings.alerts_interval_s)
        except Exception:
            log.exception("alerts pass failed; retrying", in_s=settings.alerts_interval_s)
            stop.wait(settings.alerts_interval_s)
    log.info("alerts loop stopped")
