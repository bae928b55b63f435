"""`smartcity deploy …`: secrets and device credentials for the docker-compose deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smartcity.deploy import envfile, mqttauth

app = typer.Typer(
    help="Prepare the docker-compose deployment (see docs/deploy.md).", no_args_is_help=True
)

# Where docker-compose.yml mounts the device credentials from (relative to the repository).
DEVICES_FILE = Path("deploy/compose/secrets/devices.passwd")


@app.command("init-env")
def init_env(
    path: Annotated[Path, typer.Option(help="The env file docker compose reads.")] = Path(".env"),
    devices: Annotated[
        Path, typer.Option(help="Device credentials file mounted into the broker.")
    ] = DEVICES_FILE,
    force: Annotated[
        bool, typer.Option(help="Replace an existing file (every secret changes).")
    ] = False,
) -> None:
    """Write .env with a random secret for every password the compose file needs (mode 0600).

    Refuses to overwrite an existing .env unless --force. Also creates an empty device
    credentials file if there is none (add devices with 'smartcity deploy add-device').
    """
    envfile.write_env(path, force=force)
    if not devices.exists():
        devices.parent.mkdir(parents=True, exist_ok=True)
        devices.write_text("# device_id:$7$… lines, one per device (smartcity deploy add-device)\n")
        devices.chmod(0o600)
    console = Console()
    console.print(f"wrote {path} with {len(envfile.SECRETS)} random secrets (mode 0600)")
    console.print(f"device credentials: {devices}")
    console.print("next: docker compose up -d")


@app.command("add-device")
def add_device(
    device_id: Annotated[str, typer.Argument(help="The device id; it is the MQTT username.")],
    devices: Annotated[Path, typer.Option(help="Device credentials file.")] = DEVICES_FILE,
) -> None:
    """Issue an MQTT password for a device and print it once (only its hash is stored).

    The broker's ACL lets the device publish only topics that carry its id. Restart the
    broker to load new credentials: docker compose restart mqtt.
    """
    password = mqttauth.add_device(devices, device_id)
    Console().print(
        f"username: {device_id}\npassword: {password}\n"
        f"(stored as a hash in {devices}; restart the broker: docker compose restart mqtt)",
        highlight=False,
    )
