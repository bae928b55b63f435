"""The private-server harness itself: start, restart and stop real instances."""

from __future__ import annotations

import threading

import psycopg
import pytest

from simulators.publish import Publisher
from smartcity.servers import PrivateMosquitto, PrivatePostgres, port_open
from smartcity.settings import Settings


@pytest.mark.slow
def test_private_mosquitto_accepts_publishes_and_survives_a_restart() -> None:
    with PrivateMosquitto("max_inflight_messages 1000") as broker:
        settings = Settings(_env_file=None, mqtt_host=broker.host, mqtt_port=broker.port)  # type: ignore[call-arg]
        with Publisher(settings, client_id="harness") as pub:
            pub.publish("probe/x", b"1")
            assert pub.flush(10)
        broker.restart()
        assert port_open(broker.host, broker.port)
    assert not port_open(broker.host, broker.port)


@pytest.mark.slow
def test_private_postgres_runs_queries_and_restarts() -> None:
    with PrivatePostgres() as pg:
        with psycopg.connect(pg.conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        pg.restart()
        with psycopg.connect(pg.conninfo) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


@pytest.mark.slow
def test_paused_postgres_holds_queries_on_open_connections_until_resumed() -> None:
    with PrivatePostgres() as pg, psycopg.connect(pg.conninfo, autocommit=True) as conn:
        answered = threading.Event()

        def query() -> None:
            conn.execute("SELECT 1")
            answered.set()

        pg.pause()
        thread = threading.Thread(target=query, daemon=True)
        thread.start()
        try:
            assert not answered.wait(1.0), "a paused server answered"
        finally:
            pg.resume()
        assert answered.wait(10), "the resumed server did not answer"
        thread.join(10)
