"""The docker-compose deployment, checked without a Docker engine: the compose file against
the Compose Specification's JSON schema, pinned images, secrets only from .env, the files it
mounts, and Grafana's provisioning."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from dashboards.sql import DATASOURCE_UID, PLUGIN_TYPE
from smartcity.cli import app
from smartcity.deploy import envfile

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec" / "compose-spec.json"
# ${NAME}, ${NAME:?message}, ${NAME:-default}; `$$` is an escaped dollar for the container.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[?-])([^}]*))?\}")


def _compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_compose_text())
    return data


def test_compose_file_validates_against_the_compose_specification_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(_compose())


def test_the_schema_check_can_fail() -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = _compose()
    broken["services"]["db"]["healthcheck"]["retrys"] = 3  # a typo the schema must refuse
    with pytest.raises(jsonschema.ValidationError, match="retrys"):
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_every_image_is_pinned_to_an_explicit_tag() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    services = _compose()["services"]
    for name, service in services.items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        repo, sep, tag = image.rpartition(":")
        assert sep, f"service {name}: image {image!r} has no tag"
        assert "/" not in tag, f"service {name}: image {image!r} has no tag"
        assert tag != "latest", f"service {name}: image {image!r} uses 'latest'"
        assert re.search(r"\d+\.\d+", tag), f"service {name}: {image!r} is not an exact version"
        if repo == "smartcity":
            assert tag == version, f"the project image tag {tag} is not the version {version}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert bases
    assert all(re.search(r":\d+\.\d+\.\d+", b) for b in bases), bases


def test_no_secret_in_the_compose_file_and_every_one_comes_from_init_env() -> None:
    text = _compose_text()
    referenced = {m.group(1) for m in _INTERPOLATION.finditer(text)}
    for m in _INTERPOLATION.finditer(text):
        # Every secret is required (`:?`), so a missing .env stops compose with a message.
        assert m.group(2) == ":?", f"${{{m.group(1)}}} must be written ${{{m.group(1)}:?…}}"
    assert referenced == set(envfile.SECRETS), referenced ^ set(envfile.SECRETS)
    # Nothing that looks like a literal password or token.
    for line in text.splitlines():
        if re.search(r"(PASSWORD|TOKEN|SECRET)\w*:\s*\S", line, flags=re.IGNORECASE):
            assert "${" in line, f"literal secret? {line.strip()}"


def test_anonymous_access_is_off_and_services_authenticate() -> None:
    services = _compose()["services"]
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    broker_conf = (ROOT / "deploy/compose/mosquitto/mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", broker_conf, flags=re.MULTILINE)
    for name in ("ingest", "api", "simulator-lighting"):
        env = services[name]["environment"]
        assert env["SMARTCITY_MQTT_USERNAME"].startswith("smartcity-"), name
        assert "${MQTT_" in env["SMARTCITY_MQTT_PASSWORD"], name


def test_services_have_health_checks_and_start_in_order() -> None:
    services = _compose()["services"]
    for name in ("db", "mqtt", "ingest", "api", "grafana"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    for name in ("ingest", "api"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["mqtt"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    assert services["simulator-lighting"]["profiles"] == ["sim"]
    assert all("profiles" not in s for n, s in services.items() if n != "simulator-lighting")


def test_bind_mounts_exist_and_data_lives_in_named_volumes() -> None:
    compose = _compose()
    named = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                # The device credentials file is created by `smartcity deploy init-env`.
                if source != "./deploy/compose/secrets/devices.passwd":
                    assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} mounts undeclared volume {source}"
    assert {"db-data", "mqtt-data", "grafana-data"} <= named


def test_grafana_provisioning_matches_the_dashboards_and_the_compose_mounts() -> None:
    prov = ROOT / "dashboards" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "smartcity.yaml").read_text())["datasources"]
    assert len(ds) == 1
    assert ds[0]["type"] == PLUGIN_TYPE
    assert ds[0]["uid"] == DATASOURCE_UID
    assert ds[0]["jsonData"]["timescaledb"] is True
    assert ds[0]["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"
    providers = yaml.safe_load((prov / "dashboards" / "smartcity.yaml").read_text())["providers"]
    grafana = _compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./dashboards/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./dashboards/json"] == providers[0]["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards" / "json" / Path(home).name).exists()


def test_init_env_writes_random_private_secrets_and_refuses_to_overwrite(tmp_path: Path) -> None:
    env, devices = tmp_path / ".env", tmp_path / "secrets" / "devices.passwd"
    args = ["deploy", "init-env", "--path", str(env), "--devices", str(devices)]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert env.stat().st_mode & 0o777 == 0o600
    first = envfile.read_env(env)
    assert set(envfile.SECRETS) <= set(first)
    assert len({first[n] for n in envfile.SECRETS}) == len(envfile.SECRETS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", first[n]) for n in envfile.SECRETS)
    assert devices.exists()

    again = runner.invoke(app, args)
    assert again.exit_code != 0
    assert "already exists" in str(again.exception)
    assert envfile.read_env(env) == first

    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert all(envfile.read_env(env)[n] != first[n] for n in envfile.SECRETS)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["deploy"], "init-env"),
        (["deploy", "init-env"], "random secret"),
        (["deploy", "add-device"], "MQTT password"),
        (["dashboards"], "build"),
        (["dashboards", "check"], "round-trip"),
        (["dashboards", "push"], "running Grafana"),
    ],
)
def test_help(args: list[str], expect: str) -> None:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert expect in " ".join(result.output.split())


def test_add_device_issues_a_password_once_and_refuses_a_second(tmp_path: Path) -> None:
    devices = tmp_path / "devices.passwd"
    runner = CliRunner()
    first = runner.invoke(
        app, ["deploy", "add-device", "ast-lamp-000007", "--devices", str(devices)]
    )
    assert first.exit_code == 0, first.output
    password = re.search(r"password: (\S+)", first.output)
    assert password is not None
    line = devices.read_text().strip()
    assert line.startswith("ast-lamp-000007:$7$101$")
    assert password.group(1) not in devices.read_text()  # only the hash is stored
    again = runner.invoke(
        app, ["deploy", "add-device", "ast-lamp-000007", "--devices", str(devices)]
    )
    assert again.exit_code != 0
    assert "already has a credential" in str(again.exception)
    bad = runner.invoke(app, ["deploy", "add-device", "lamp/+", "--devices", str(devices)])
    assert "cannot be an MQTT username" in str(bad.exception)
