"""Alerts: list and filter, one alert, acknowledge, clear.

Reading needs a viewer key; acknowledging and clearing need an operator key, and record the
key's name and the time (the lifecycle is in docs/alerts.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.deps import ConnDep, OperatorDep, ViewerDep
from api.timeparams import as_utc
from smartcity.alerts.rules import RULES_BY_NAME, Severity
from smartcity.queries import alerts as q
from smartcity.topics import Domain

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

PAGE_MAX = 500
# Alert ids are PostgreSQL bigints.
_ID_MAX = 2**63 - 1

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an unknown or revoked one (problem+json)."},
    403: {"description": "The key's role is too low (problem+json)."},
    422: {"description": "Malformed parameter (problem+json)."},
}

_EXAMPLE: JsonDict = {
    "alert_id": 17,
    "rule": "lamp_failure",
    "domain": "lighting",
    "device_id": "ast-lamp-000042",
    "city": "astana",
    "severity": "major",
    "state": "acknowledged",
    "message": "lamp is on but draws 0.4 W (≤ 1.5 W): lamp failed",
    "first_occurrence": "2026-11-23T16:00:00Z",
    "last_occurrence": "2026-11-23T16:09:00Z",
    "occurrence_count": 2,
    "raised_at": "2026-11-23T16:00:01Z",
    "acknowledged_at": "2026-11-23T16:12:40Z",
    "acknowledged_by": "op-anna",
    "cleared_at": None,
    "cleared_by": None,
    "clear_reason": None,
}

State = Literal["active", "acknowledged", "cleared"]
AlertIdPath = Annotated[int, Path(ge=1, le=_ID_MAX, description="The alert's id.")]


class Alert(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    alert_id: int
    rule: str
    domain: Domain
    device_id: str
    city: str
    severity: Severity
    state: State
    message: str
    first_occurrence: datetime = Field(description="Event time of the first firing reading.")
    last_occurrence: datetime = Field(description="Event time of the latest firing reading.")
    occurrence_count: int = Field(
        description="How many times the condition began again before the alert cleared."
    )
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None = Field(description="The operator's key name, or `auto`.")
    clear_reason: str | None


class AlertPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EXAMPLE], "next_before_id": None}]}
    )

    items: list[Alert]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null on the last page."
    )


class ClearRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "lamp replaced"}]}
    )

    reason: str = Field(default="cleared by operator", min_length=1, max_length=500)


@router.get("", response_model=AlertPage, responses=_AUTH_RESPONSES)
async def list_alerts(
    conn: ConnDep,
    _caller: ViewerDep,
    city: Annotated[str | None, Query(max_length=64, examples=["astana"])] = None,
    domain: Annotated[Domain | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=64, examples=["lamp_failure"])] = None,
    severity: Annotated[Severity | None, Query(examples=["major"])] = None,
    state: Annotated[State | None, Query(examples=["active"])] = None,
    since: Annotated[
        datetime | None,
        Query(description="Last occurrence at or after.", examples=["2026-11-23T00:00:00Z"]),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="First occurrence before.", examples=["2026-11-24T00:00:00Z"]),
    ] = None,
    before_id: Annotated[int | None, Query(ge=1, le=_ID_MAX, examples=[17])] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100,
) -> AlertPage:
    """Alerts newest first, filtered by city, domain, rule, severity, state and time.

    Pages with `before_id` (the previous page's `next_before_id`). Needs a viewer key.
    """
    if rule is not None and rule not in RULES_BY_NAME:
        raise HTTPException(422, f"unknown rule {rule!r}; rules: {', '.join(RULES_BY_NAME)}")
    f = q.AlertFilter(
        city=city,
        domain=domain.value if domain else None,
        rule=rule,
        severity=severity.value if severity else None,
        state=state,
        since=as_utc(since, "since") if since else None,
        until=as_utc(until, "until") if until else None,
        before_id=before_id,
    )
    rows = await q.list_alerts(conn, f, limit + 1)
    more = len(rows) > limit
    items = [Alert.model_validate(r) for r in rows[:limit]]
    return AlertPage(items=items, next_before_id=items[-1].alert_id if more else None)


@router.get(
    "/{alert_id}",
    response_model=Alert,
    responses={**_AUTH_RESPONSES, 404: {"description": "No such alert (problem+json)."}},
)
async def get_alert(conn: ConnDep, _caller: ViewerDep, alert_id: AlertIdPath) -> Alert:
    """One alert with its whole lifecycle: who acknowledged and cleared it, and when."""
    row = await q.get_alert(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"no alert with id {alert_id}")
    return Alert.model_validate(row)


_ACT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_AUTH_RESPONSES,
    404: {"description": "No such alert (problem+json)."},
    409: {"description": "The alert's state does not allow this step (problem+json)."},
}
_CLEAR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ACT_RESPONSES,
    400: {"description": "The body is not JSON (problem+json)."},
}


async def _after(conn: ConnDep, alert_id: int, done: bool, step: str) -> Alert:
    row = await q.get_alert(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"no alert with id {alert_id}")
    if not done:
        raise HTTPException(409, f"alert {alert_id} is {row['state']}: cannot {step} it")
    return Alert.model_validate(row)


@router.post("/{alert_id}/acknowledge", response_model=Alert, responses=_ACT_RESPONSES)
async def acknowledge(conn: ConnDep, caller: OperatorDep, alert_id: AlertIdPath) -> Alert:
    """Acknowledge an active alert: someone is on it. Records the key's name and the time.

    Needs an operator key; 409 if the alert is already acknowledged or cleared.
    """
    done = await q.acknowledge(conn, alert_id, caller.name)
    return await _after(conn, alert_id, done, "acknowledge")


@router.post("/{alert_id}/clear", response_model=Alert, responses=_CLEAR_RESPONSES)
async def clear(
    conn: ConnDep,
    caller: OperatorDep,
    alert_id: AlertIdPath,
    body: Annotated[ClearRequest | None, Body()] = None,
) -> Alert:
    """Clear an active or acknowledged alert, with an optional reason. Records who and when.

    Needs an operator key; 409 if it is already cleared. The same problem seen again later
    raises a new alert.
    """
    reason = body.reason if body is not None else ClearRequest().reason
    done = await q.clear(conn, alert_id, caller.name, reason)
    return await _after(conn, alert_id, done, "clear")
