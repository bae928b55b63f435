"""The compose deployment's Mosquitto configuration on a real Mosquitto (the Debian binary):
authentication is required, and the ACL lets a device publish only under its own id.

The broker runs the compose files themselves (deploy/compose/mosquitto/mosquitto.conf, its
ACL, and the shared deploy/mosquitto/mosquitto.conf it includes), with only the container
paths and the listener port rewritten for a private instance on a free port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from smartcity import topics
from smartcity.deploy.mqttauth import password_line
from smartcity.servers import PrivateMosquitto, find_binary
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_BROKER = ROOT / "deploy" / "compose" / "mosquitto"
SHARED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"

LAMP, OTHER_LAMP = "ast-lamp-000001", "ast-lamp-000002"
METER, GATEWAY, BUS = "ast-meter-000001", "ast-gw-0001", "ast-bus-0001"
PASSWORDS = {
    LAMP: "lamp-secret-1",
    METER: "meter-secret",
    GATEWAY: "gateway-secret",
    BUS: "bus-secret",
    "smartcity-ingest": "ingest-secret",
    "smartcity-api": "api-secret",
    "smartcity-healthcheck": "health-secret",
}
# Reason codes of MQTT v5 (sections 3.2.2.2, 3.4.2.1); Mosquitto answers a wrong password
# with Not authorized too.
NOT_AUTHORIZED = 0x87
# PUBACK codes below 0x80 mean accepted (0x10: accepted, but nobody subscribes).
FIRST_ERROR = 0x80
TIMEOUT_S = 10.0


class ComposeBroker(PrivateMosquitto):
    """A private Mosquitto running the compose deployment's configuration."""

    def __init__(self) -> None:
        super().__init__()
        conf_d = self._dir / "conf.d"
        conf_d.mkdir()
        shutil.copy(SHARED_CONF, conf_d / "10-smartcity.conf")
        passwd = self._dir / "passwd"
        self._write_passwords(passwd)
        text = (COMPOSE_BROKER / "mosquitto.conf").read_text()
        replacements = {
            "listener 1883": f"listener {self.port} 127.0.0.1",
            "/mosquitto/data/passwd": str(passwd),
            "/mosquitto/config/acl": str(COMPOSE_BROKER / "acl"),
            "/mosquitto/data/": f"{self._dir}/",
            "/mosquitto/config/conf.d": str(conf_d),
        }
        for old, new in replacements.items():
            assert old in text, f"the compose broker config no longer has {old!r}"
            text = text.replace(old, new)
        if os.geteuid() == 0:
            text += "\nuser root\n"  # keep root: the temporary directory is root's
        self.config_path.write_text(text)

    def _write_passwords(self, passwd: Path) -> None:
        tool = find_binary("mosquitto_passwd", ("/usr/bin",))
        if tool is None:
            pytest.fail("mosquitto_passwd is missing; install it with 'apt-get install mosquitto'")
        # Services as the compose entrypoint writes them (mosquitto_passwd), the device as
        # `smartcity deploy add-device` writes it (our own PBKDF2 hashing).
        for i, user in enumerate(u for u in PASSWORDS if u.startswith("smartcity-")):
            create = ["-c"] if i == 0 else []
            subprocess.run(
                [tool, *create, "-b", str(passwd), user, PASSWORDS[user]],
                check=True,
                capture_output=True,
            )
        with passwd.open("a") as f:
            for device in (LAMP, METER, GATEWAY, BUS):
                f.write(password_line(device, PASSWORDS[device]) + "\n")


class Client:
    """A paho MQTT v5 client that records PUBACK reason codes and received messages."""

    def __init__(self, broker: ComposeBroker, username: str | None, password: str | None):
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"acl-test-{username}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.acks: dict[int, int] = {}
        self.received: list[str] = []
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, timeout_s=TIMEOUT_S, what="CONNACK")

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self.connack = rc

    def _on_publish(
        self, _c: object, _u: object, mid: int, rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.acks[mid] = rc.value

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.received.append(msg.topic)

    def _on_subscribe(self, _c: object, _u: object, _m: int, codes: list[ReasonCode], _p: object):  # type: ignore[no-untyped-def]
        self.granted = [c.value for c in codes]
        self.subscribed.set()

    def publish(self, topic: str) -> int:
        """Publish QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, b'{"probe": true}', qos=1)
        wait_until(lambda: info.mid in self.acks, timeout_s=TIMEOUT_S, what=f"PUBACK of {topic}")
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def broker() -> Iterator[ComposeBroker]:
    with ComposeBroker() as b:
        yield b


@pytest.fixture
def clients(broker: ComposeBroker) -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for c in opened:
        c.close()


def _client(
    broker: ComposeBroker, opened: list[Client], user: str | None, password: str | None = None
) -> Client:
    c = Client(broker, user, password if password is not None else PASSWORDS.get(user or ""))
    opened.append(c)
    return c


@pytest.mark.slow
def test_a_device_may_publish_its_own_topics_and_not_another_devices(
    broker: ComposeBroker, clients: list[Client]
) -> None:
    ingest = _client(broker, clients, "smartcity-ingest")
    # The ingest's shared subscription, as its workers make it.
    ingest.client.subscribe("$share/ingest/city/#", qos=1)
    assert ingest.subscribed.wait(TIMEOUT_S)
    assert ingest.granted == [1], "the ingest may not subscribe to the feeds"

    lamp = _client(broker, clients, LAMP)
    assert lamp.connack is not None
    assert lamp.connack.value == 0
    own = topics.lamp_telemetry("city", "astana", LAMP)
    foreign = topics.lamp_telemetry("city", "astana", OTHER_LAMP)
    foreign_cmd = topics.lamp_command("city", "astana", OTHER_LAMP)

    assert lamp.publish(foreign) == NOT_AUTHORIZED
    assert lamp.publish(foreign_cmd) == NOT_AUTHORIZED
    status = topics.device_status("city", "astana", topics.Domain.LIGHTING, LAMP)
    assert lamp.publish(status) < FIRST_ERROR
    assert lamp.publish(own) < FIRST_ERROR
    # The refused messages were published first; once the allowed ones arrived, the refused
    # ones would have too (one publisher's messages keep their order).
    wait_until(lambda: own in ingest.received, timeout_s=TIMEOUT_S, what="the lamp's reading")
    assert foreign not in ingest.received
    assert foreign_cmd not in ingest.received


@pytest.mark.slow
@pytest.mark.parametrize(
    ("device", "own", "foreign"),
    [
        (
            METER,
            topics.meter_reading("city", "astana", METER),
            topics.meter_reading("city", "astana", "ast-meter-000002"),
        ),
        (
            GATEWAY,
            topics.gateway_senml("city", "aktobe", GATEWAY),
            topics.gateway_senml("city", "aktobe", "ast-gw-0002"),
        ),
        (
            BUS,
            topics.vehicle_position("city", "shymkent", BUS),
            topics.vehicle_position("city", "shymkent", "ast-bus-0002"),
        ),
        (
            BUS,
            topics.device_status("city", "shymkent", topics.Domain.TRANSIT, BUS),
            topics.device_status("city", "shymkent", topics.Domain.TRANSIT, "ast-bus-0002"),
        ),
    ],
)
def test_every_feed_is_limited_to_the_devices_own_id(
    broker: ComposeBroker, clients: list[Client], device: str, own: str, foreign: str
) -> None:
    client = _client(broker, clients, device)
    assert client.publish(own) < FIRST_ERROR
    assert client.publish(foreign) == NOT_AUTHORIZED


@pytest.mark.slow
def test_only_the_api_may_command_lamps(broker: ComposeBroker, clients: list[Client]) -> None:
    api = _client(broker, clients, "smartcity-api")
    assert api.publish(topics.lamp_command("city", "astana", LAMP)) < FIRST_ERROR
    ingest = _client(broker, clients, "smartcity-ingest")
    assert ingest.publish(topics.lamp_command("city", "astana", LAMP)) == NOT_AUTHORIZED


@pytest.mark.slow
def test_anonymous_and_wrong_passwords_are_refused(
    broker: ComposeBroker, clients: list[Client]
) -> None:
    anonymous = _client(broker, clients, None)
    assert anonymous.connack is not None
    assert anonymous.connack.value == NOT_AUTHORIZED
    wrong = _client(broker, clients, LAMP, "not-the-password")
    assert wrong.connack is not None
    assert wrong.connack.value == NOT_AUTHORIZED


@pytest.mark.slow
def test_the_compose_health_check_command_passes_with_its_own_user(broker: ComposeBroker) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"]["mqtt"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    # Compose turns `$$` into `$`; the private broker listens on its own port.
    shell = command.replace("$$", "$").replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {broker.port}")
    env = {
        "PATH": os.environ["PATH"],
        "MQTT_HEALTHCHECK_PASSWORD": PASSWORDS["smartcity-healthcheck"],
    }
    ok = subprocess.run(["sh", "-c", shell], env=env, capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    env["MQTT_HEALTHCHECK_PASSWORD"] = "wrong"
    refused = subprocess.run(
        ["sh", "-c", shell], env=env, capture_output=True, timeout=30, check=False
    )
    assert refused.returncode != 0
