"""Types shared by every payload model."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

# Epoch milliseconds beyond this are not a plausible event time (year 2286); reject rather than
# let datetime overflow with an unhelpful message.
_MAX_EPOCH_MS = 9_999_999_999_999


def _parse_event_time(value: Any) -> datetime:
    """Accept RFC 3339 with an offset, or epoch milliseconds; always return aware UTC."""
    if isinstance(value, bool):  # bool is an int in Python; a device sending `true` is a bug
        raise ValueError("ts must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value <= _MAX_EPOCH_MS:
            raise ValueError("ts in epoch milliseconds must be between 0 and 9999999999999")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "ts must be RFC 3339, e.g. 2026-11-23T18:00:00Z, or epoch milliseconds"
            ) from None
        if parsed.tzinfo is None:
            raise ValueError("ts has no UTC offset; add 'Z' or '+05:00'")
        return parsed.astimezone(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("ts has no UTC offset")
        return value.astimezone(UTC)
    raise ValueError("ts must be an RFC 3339 string or epoch milliseconds")


EventTime = Annotated[
    datetime,
    BeforeValidator(_parse_event_time),
    PlainSerializer(lambda dt: dt.isoformat().replace("+00:00", "Z"), return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
            ],
            "description": "Event time: RFC 3339 with offset, or epoch milliseconds (UTC).",
        }
    ),
]
"""When the reading was taken on the device (not when it was received)."""

DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""A device id; it is also a topic level, so no '/', '+' or '#'."""
