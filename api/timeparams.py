"""Time query parameters: aware UTC, within a range the database and arithmetic can hold."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException

# Telemetry is from this century; bounds keep `at − window` arithmetic away from datetime's
# limits (year 1 and 9999), where it would overflow.
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def as_utc(value: datetime, name: str) -> datetime:
    """`value` in UTC (no offset means UTC); 422 if outside 1970–2200."""
    refused = HTTPException(422, f"`{name}` must be between 1970-01-02 and 2200-01-01 (UTC)")
    try:
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise refused from None
    if not EARLIEST <= aware <= LATEST:
        raise refused
    return aware
