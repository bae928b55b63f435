"""Errors as RFC 9457 `application/problem+json`, never with stack traces or secrets.

HTTPException (ours and FastAPI's)  → its status, with its headers (WWW-Authenticate,
                                      Retry-After) kept
RequestValidationError              → 422 with `errors` (location and message only)
PoolTimeout, OperationalError,
BrokerUnavailableError              → 503 with Retry-After: the database or broker is down
anything else                       → 500; logged with its type, the response says nothing
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("api")

PROBLEM_JSON = "application/problem+json"
# A database restart or broker blip usually clears within seconds; ask clients to wait this long.
UNAVAILABLE_RETRY_AFTER_S = 5


class BrokerUnavailableError(Exception):
    """The MQTT broker cannot be reached (the API's lamp commands need it)."""


def problem(
    status: int,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, _title(exc.status_code), str(exc.detail), headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only where and what: the rejected input itself is not echoed (it may hold a secret).
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return problem(
        422,
        "Invalid request",
        "Some parameters are missing or malformed; see `errors` and fix them.",
        errors=errors,
    )


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    which = "MQTT broker" if isinstance(exc, BrokerUnavailableError) else "database"
    log.warning("dependency unavailable", dependency=which, error_type=type(exc).__name__)
    return problem(
        503,
        "Service Unavailable",
        f"The {which} is not reachable right now; retry later.",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


async def _bad_value(_request: Request, exc: Exception) -> JSONResponse:
    # SQLSTATE class 22: a value from the request that the database cannot hold, such as a
    # NUL character in a text parameter or a number out of range. The request is at fault,
    # not the server; the value itself is not echoed.
    log.info("request value refused by the database", error_type=type(exc).__name__)
    return problem(
        422,
        "Invalid request",
        "A parameter holds a value that cannot be stored or compared (for example a NUL "
        "character or a number out of range); remove it and retry.",
    )


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", error_type=type(exc).__name__)
    return problem(500, "Internal Server Error", "The server failed; the error has been logged.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeout, _unavailable)
    app.add_exception_handler(psycopg.OperationalError, _unavailable)
    app.add_exception_handler(BrokerUnavailableError, _unavailable)
    app.add_exception_handler(psycopg.DataError, _bad_value)
    app.add_exception_handler(Exception, _unexpected)
