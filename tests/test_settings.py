"""Settings: defaults, validation, and `.env.example` listing every one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from smartcity.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting_with_its_default() -> None:
    listed: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            listed[name] = value
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name in Settings.model_fields:
        env = f"SMARTCITY_{name.upper()}"
        assert env in listed, f"{env} is missing from .env.example"
        default = getattr(defaults, name)
        shown = "" if default is None else str(getattr(default, "value", default))
        assert listed[env] == shown, f"{env}: .env.example says {listed[env]!r}, default {shown!r}"
    assert set(listed) == {f"SMARTCITY_{n.upper()}" for n in Settings.model_fields}


def test_defaults_point_at_the_local_servers() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.database_conninfo == "postgresql://postgres@127.0.0.1:5432/smartcity"
    assert (s.mqtt_host, s.mqtt_port) == ("127.0.0.1", 1883)


def test_environment_overrides_and_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCITY_INGEST_BATCH_ROWS", "100")
    assert Settings(_env_file=None).ingest_batch_rows == 100  # type: ignore[call-arg]
    monkeypatch.setenv("SMARTCITY_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="log_level"):
        Settings(_env_file=None)  # type: ignore[call-arg]
