"""Typed settings, read from the environment (prefix `SMARTCITY_`) and an optional `.env` file.

Build one `Settings` object at each process's entry point and pass it down; nothing in the
project reads the environment anywhere else, so tests can build their own settings freely.
`.env.example` lists every setting with its default.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageModeSetting(StrEnum):
    """Which storage layout `db migrate` creates (see `smartcity.db.storage`)."""

    AUTO = "auto"
    TIMESCALEDB = "timescaledb"
    POSTGRESQL = "postgresql"


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


class Settings(BaseSettings):
    """Every setting of every process; each is documented in `.env.example`."""

    model_config = SettingsConfigDict(
        env_prefix="SMARTCITY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- PostgreSQL / TimescaleDB -------------------------------------------------------------
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/smartcity",
        description="Where the service keeps its data (a libpq URL or key=value string); "
        "`db migrate` creates the database.",
    )
    storage_mode: StorageModeSetting = Field(
        default=StorageModeSetting.AUTO,
        description="auto: TimescaleDB when the extension is available, else plain PostgreSQL.",
    )
    db_pool_min_size: Annotated[int, Field(ge=1)] = 2
    db_pool_max_size: Annotated[int, Field(ge=1)] = 10

    # --- MQTT ----------------------------------------------------------------------------------
    mqtt_host: str = "127.0.0.1"
    mqtt_port: Annotated[int, Field(ge=1, le=65535)] = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_topic_root: str = Field(
        default="city",
        description="First topic level; `city` in production, a unique root per test run.",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    mqtt_keepalive_s: Annotated[int, Field(ge=5)] = 30

    # --- ingest --------------------------------------------------------------------------------
    ingest_client_id: str = Field(
        default="smartcity-ingest",
        description="MQTT client id; the broker keeps this id's persistent session.",
    )
    ingest_batch_rows: Annotated[int, Field(ge=1)] = 5000
    ingest_batch_age_ms: Annotated[int, Field(ge=1)] = 200
    ingest_idle_flush_ms: Annotated[int, Field(ge=0)] = Field(
        default=5,
        description="Flush early when no message arrived for this long: the broker will not send "
        "more until we acknowledge, so waiting out the full batch age only adds latency.",
    )
    ingest_queue_max: Annotated[int, Field(ge=1)] = 20000
    ingest_max_payload_bytes: Annotated[int, Field(ge=64)] = 65536
    ingest_metrics_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9108, description="Prometheus metrics port of the ingest process; 0 disables it."
    )
    ingest_metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the ingest's metrics endpoint listens on; 0.0.0.0 in a container "
        "that Prometheus scrapes from another one (docker-compose.yml).",
    )
    ingest_share_group: str = Field(
        default="smartcity-ingest",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="MQTT shared-subscription group ($share/<group>/...): every worker with this "
        "group gets a share of the feeds. Empty: plain subscriptions (one worker sees all).",
    )
    ingest_max_future_s: Annotated[float, Field(ge=0)] = Field(
        default=300.0,
        description="Readings timestamped further than this ahead of the ingest's clock are "
        "rejected (future_timestamp): device clock skew beyond it is a broken clock.",
    )
    ingest_max_age_days: Annotated[float, Field(gt=0)] = Field(
        default=365.0,
        description="Readings older than this are rejected (too_old): covers concentrators "
        "forwarding stored readings, refuses clocks reset to 1970.",
    )
    ingest_register_tolerance: Annotated[float, Field(ge=0)] = Field(
        default=0.001,
        description="A meter register (energy_import_kwh, volume_m3) may read this much below "
        "the meter's previous reading (by event time) before the reading is rejected "
        "(register_backwards); covers rounding in the device.",
    )

    # --- alerts --------------------------------------------------------------------------------
    alerts_on_ingest: bool = Field(
        default=True,
        description="Evaluate the per-reading alert rules on every batch the ingest commits.",
    )
    alerts_interval_s: Annotated[float, Field(gt=0)] = Field(
        default=10.0,
        description="Seconds between passes of `smartcity alerts run` (offline sweep, delivery).",
    )
    alerts_offline_factor: Annotated[float, Field(ge=1)] = Field(
        default=3.0,
        description="A device is offline after this many expected reporting intervals without "
        "a reading (and back after as many with readings).",
    )
    alerts_max_new_per_rule_per_min: Annotated[int, Field(ge=0)] = Field(
        default=200,
        description="New alerts of one rule in one city per event-time minute; more are held "
        "back (counted in alert_rate.suppressed) and raised by a later reading. 0: no limit.",
    )
    alerts_webhook_urls: str = Field(
        default="",
        description="Comma-separated URLs that get every alert change as a JSON POST "
        "(retried with backoff from an outbox table); empty: no webhooks.",
    )
    alerts_webhook_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="Seconds a webhook receiver has to answer a POST."
    )
    alerts_webhook_backoff_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0,
        description="First retry delay of a failed webhook POST; doubles per attempt, "
        "at most 600 s, ±20 % jitter.",
    )

    # --- API -----------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    api_cors_origins: str = Field(
        default="",
        description="Comma-separated origins allowed by CORS (e.g. https://ops.example.kz); "
        "empty allows none, `*` allows any (without credentials).",
    )
    api_max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=65536, description="Larger request bodies are refused with 413."
    )
    api_stream_queue_max: Annotated[int, Field(ge=1)] = Field(
        default=256,
        description="Live-stream events held per client; a slower client loses the oldest.",
    )
    api_client_id: str = Field(
        default="smartcity-api",
        description="MQTT client id prefix of the API process (a random suffix is added).",
    )
    api_answer_cache_s: Annotated[float, Field(ge=0, le=30)] = Field(
        default=2.0,
        description="Seconds the API reuses a public live answer (a stop's arrivals, a "
        "GTFS-Realtime feed) for everyone who asks; 0 turns the cache off.",
    )

    # --- simulators ----------------------------------------------------------------------------

    # --- storage tiers and rollups -------------------------------------------------------------
    maintain_interval_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="How often `smartcity maintain` refreshes rollups and partitions (the refresh "
        "lag of the rollups is at most this plus the safety lag).",
    )
    rollup_safety_lag_s: Annotated[float, Field(ge=0)] = Field(
        default=30.0,
        description="Rows ingested less than this long ago wait for the next run: ingested_at is "
        "the writer transaction's start, so a transaction still in flight can commit rows older "
        "than the watermark; this must exceed the longest ingest transaction.",
    )
    rollup_lookback_h: Annotated[float, Field(gt=0)] = Field(
        default=168.0,
        description="How far back a register delta looks for a device's previous reading; the "
        "first reading after a longer gap starts the register afresh (delta 0).",
    )
    partitions_ahead_days: Annotated[int, Field(ge=0)] = Field(
        default=2, description="Plain mode: daily partitions created ahead of today."
    )
    retention_raw_days: Annotated[int, Field(ge=0)] = Field(
        default=90, description="Raw readings older than this are dropped (whole days); 0 keeps."
    )
    retention_hourly_days: Annotated[int, Field(ge=0)] = Field(
        default=730, description="Hourly rollups older than this are dropped; 0 keeps them."
    )
    retention_daily_days: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Daily rollups older than this are dropped; 0 keeps them."
    )
    compress_after_days: Annotated[int, Field(ge=1)] = Field(
        default=7, description="TimescaleDB: raw chunks older than this go to the columnstore."
    )

    # --- alerts --------------------------------------------------------------------------------

    # --- transit -------------------------------------------------------------------------------
    transit_on_time_early_s: Annotated[int, Field(ge=0)] = Field(
        default=60, description="A bus arriving at most this early counts as on time."
    )
    transit_on_time_late_s: Annotated[int, Field(ge=0)] = Field(
        default=300, description="A bus arriving at most this late counts as on time."
    )
    transit_rollup_lookback_s: Annotated[float, Field(gt=0)] = Field(
        default=7200.0,
        description="Transit rollups: the longest gap between two buses at a stop still counted "
        "as a headway, and between two stops of a trip still counted as a run (a longer one is "
        "a break in service).",
    )
    transit_eta_sample_pct: Annotated[float, Field(ge=0, le=100)] = Field(
        default=10.0,
        description="Share of trips whose predictions are sampled for ETA accuracy (one per "
        "stop visit and horizon bucket).",
    )
    transit_on_ingest: bool = Field(
        default=True,
        description="Track buses (stop arrivals, predictions) on every batch the ingest commits.",
    )
    transit_stats_reload_s: Annotated[float, Field(gt=0)] = Field(
        default=300.0,
        description="Seconds a tracker keeps the learned segment and dwell times before "
        "reading them again.",
    )

    # --- API security --------------------------------------------------------------------------
    api_rate_limit_per_s: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="Public endpoints: sustained requests per second per client."
    )
    api_rate_limit_burst: Annotated[int, Field(ge=1)] = Field(
        default=30, description="Public endpoints: requests a client may make at once."
    )
    api_trusted_proxies: str = Field(
        default="",
        description="Comma-separated proxy addresses whose X-Forwarded-For is believed; "
        "empty: the client is the TCP peer.",
    )

    # --- logging -------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.CONSOLE

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        try:
            conninfo_to_dict(value)
        except psycopg.ProgrammingError as exc:
            raise ValueError(
                "database_url must be a PostgreSQL URL such as "
                f"postgresql://postgres@127.0.0.1:5432/smartcity ({exc})"
            ) from None
        return value

    @property
    def database_conninfo(self) -> str:
        """The database URL as a libpq connection string for psycopg."""
        return str(self.database_url)
