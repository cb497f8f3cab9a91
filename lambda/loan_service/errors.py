"""Every error answer is JSON of one shape, and none shows a stack trace, a path or a file name.

Handlers log the exception (with the request id) server-side and answer with a fixed message.
Validation errors list each field with pydantic's reason but never echo the offending input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loan_service.schemas import MAX_BATCH_LOANS

REQUEST_ID_HEADER: Final = "x-request-id"
JSON_CONTENT_TYPE: Final = "application/json"

ERROR_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}
INTERNAL_ERROR_MESSAGE: Final = "The service failed to answer this request; it has been logged."
NOT_JSON_MESSAGE: Final = "The request body must be JSON (Content-Type: application/json)."
TOO_LARGE_MESSAGE: Final = "The request body is larger than the 1 MiB limit."
TOO_MANY_LOANS_MESSAGE: Final = f"A batch holds at most {MAX_BATCH_LOANS} loans."
FASTAPI_BODY_PARSE_ERROR: Final = "There was an error parsing the body"

_log = logging.getLogger(__name__)


def error_code(status: int) -> str:
    return ERROR_CODES.get(status, "client_error" if status < 500 else "internal_error")


def error_payload(status: int, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"error": error_code(status), "message": message, "request_id": request_id, **extra}


def error_body(status: int, message: str, request_id: str) -> bytes:
    """Pre-serialized body for the pure ASGI middleware, which answers without FastAPI."""
    return json.dumps(error_payload(status, message, request_id)).encode()


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def _json_error(request: Request, status: int, message: str, **extra: Any) -> JSONResponse:
    request_id = request_id_of(request)
    return JSONResponse(
        error_payload(status, message, request_id, **extra),
        status_code=status,
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )


def field_path(loc: Sequence[str | int]) -> str:
    """``('body', 'loans', 3, 'income')`` -> ``loans[3].income``; the body itself is ``body``."""
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    if not parts:
        return "body"
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Each error's location, field and reason; the rejected input value is never echoed."""
    details = []
    for error in errors:
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        details.append(
            {
                "loc": loc,
                "field": field_path(loc),
                "msg": str(error.get("msg", "invalid value")),
                "type": str(error.get("type", "value_error")),
            }
        )
    return details


def _is_batch_too_long(error: Any) -> bool:
    loc = tuple(error.get("loc", ()))
    return error.get("type") == "too_long" and loc == ("body", "loans")


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with every field; 415 when the body is not JSON; 413 for a batch over the limit."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return _json_error(request, 415, NOT_JSON_MESSAGE)
    if any(_is_batch_too_long(error) for error in errors):
        return _json_error(request, 413, TOO_MANY_LOANS_MESSAGE)
    details = validation_details(errors)
    fields = ", ".join(dict.fromkeys(detail["field"] for detail in details))
    return _json_error(request, 422, f"Invalid request: check {fields}.", detail=details)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """404, 405 and friends in the common shape, with a message that names no internals."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
        # FastAPI's answer to a JSON-typed body it cannot decode (e.g. invalid UTF-8): the body
        # is not JSON, which the contract answers with 415.
        return _json_error(request, 415, NOT_JSON_MESSAGE)
    message = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if status == 404:
        message = "No such endpoint. See /docs for the API."
    elif status == 405:
        message = f"{request.method} is not allowed here. See /docs for the API."
    response = _json_error(request, status, message)
    if exc.headers:
        for name, value in exc.headers.items():
            response.headers.setdefault(name, value)
    return response


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Log the traceback server-side; answer 500 with a fixed message.

    ``RequestContextMiddleware`` answers errors escaping the routes; this handler covers what
    fails outside it (Starlette's outermost error middleware)."""
    _log.error(
        "unhandled error answering %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request_id_of(request)},
    )
    return _json_error(request, 500, INTERNAL_ERROR_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
