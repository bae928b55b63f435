"""MQTT topic names: built and parsed in one place (see DESIGN.md, "Topics").

    {root}/{city}/lighting/{lamp_id}/telemetry
    {root}/{city}/lighting/{lamp_id}/cmd
    {root}/{city}/metering/{meter_id}/reading
    {root}/{city}/metering/gateway/{gw_id}/senml
    {root}/{city}/transit/{vehicle_id}/position
    {root}/{city}/{domain}/{device_id}/status
    {root}/{city}/alerts/{severity}/{rule}

`root` is `city` in production; tests give each run its own root so that they never see each
other's messages on a shared broker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# One topic level naming a city or a device: letters, digits, '-', '_', '.'; never MQTT
# wildcards or separators, which would let a device id escape its own topic.
_LEVEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Domain(StrEnum):
    LIGHTING = "lighting"
    METERING = "metering"
    TRANSIT = "transit"


class Feed(StrEnum):
    """What a message on a topic carries; each feed has its own decoder in ingest."""

    LAMP_TELEMETRY = "lamp_telemetry"
    METER_READING = "meter_reading"
    GATEWAY_SENML = "gateway_senml"
    VEHICLE_POSITION = "vehicle_position"
    DEVICE_STATUS = "device_status"


def is_valid_level(value: str) -> bool:
    """True if `value` may stand as one topic level (a city slug or a device id)."""
    return bool(_LEVEL.match(value))


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A parsed inbound topic."""

    city: str
    domain: Domain
    device_id: str
    feed: Feed


def lamp_telemetry(root: str, city: str, lamp_id: str) -> str:
    return f"{root}/{city}/lighting/{lamp_id}/telemetry"


def lamp_command(root: str, city: str, lamp_id: str) -> str:
    return f"{root}/{city}/lighting/{lamp_id}/cmd"


def meter_reading(root: str, city: str, meter_id: str) -> str:
    return f"{root}/{city}/metering/{meter_id}/reading"


def gateway_senml(root: str, city: str, gateway_id: str) -> str:
    return f"{root}/{city}/metering/gateway/{gateway_id}/senml"


def vehicle_position(root: str, city: str, vehicle_id: str) -> str:
    return f"{root}/{city}/transit/{vehicle_id}/position"


def device_status(root: str, city: str, domain: Domain, device_id: str) -> str:
    return f"{root}/{city}/{domain}/{device_id}/status"


def alert(root: str, city: str, severity: str, rule: str) -> str:
    return f"{root}/{city}/alerts/{severity}/{rule}"


_FEED_FILTERS: dict[Feed, str] = {
    Feed.LAMP_TELEMETRY: "{root}/+/lighting/+/telemetry",
    Feed.METER_READING: "{root}/+/metering/+/reading",
    Feed.GATEWAY_SENML: "{root}/+/metering/gateway/+/senml",
    Feed.VEHICLE_POSITION: "{root}/+/transit/+/position",
    Feed.DEVICE_STATUS: "{root}/+/+/+/status",
}


def subscription(root: str, feed: Feed) -> str:
    """The topic filter that receives `feed`."""
    return _FEED_FILTERS[feed].format(root=root)


_SUFFIX_FEEDS: dict[tuple[Domain, str], Feed] = {
    (Domain.LIGHTING, "telemetry"): Feed.LAMP_TELEMETRY,
    (Domain.METERING, "reading"): Feed.METER_READING,
    (Domain.TRANSIT, "position"): Feed.VEHICLE_POSITION,
}


def parse_inbound(root: str, topic: str) -> TopicInfo | None:
    """Parse an inbound device topic; None if it is not one the ingest understands."""
    parts = topic.split("/")
    if len(parts) == 6 and parts[0] == root and parts[2:4] == [Domain.METERING, "gateway"]:
        if parts[5] != "senml" or not (is_valid_level(parts[1]) and is_valid_level(parts[4])):
            return None
        return TopicInfo(parts[1], Domain.METERING, parts[4], Feed.GATEWAY_SENML)
    if len(parts) != 5 or parts[0] != root:
        return None
    _, city, domain_s, device_id, suffix = parts
    if not (is_valid_level(city) and is_valid_level(device_id)):
        return None
    try:
        domain = Domain(domain_s)
    except ValueError:
        return None
    if suffix == "status":
        return TopicInfo(city, domain, device_id, Feed.DEVICE_STATUS)
    feed = _SUFFIX_FEEDS.get((domain, suffix))
    if feed is None:
        return None
    return TopicInfo(city, domain, device_id, feed)
