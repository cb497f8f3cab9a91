"""FastAPI's error handlers: every answer FastAPI or Starlette gives on their own (404, 405, a
body they could not read) in the one JSON shape of ``loan_service.errors``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loan_service.errors import (
    FASTAPI_BODY_PARSE_ERROR,
    INTERNAL_ERROR_MESSAGE,
    NOT_JSON_MESSAGE,
    NUMBER_TOO_LONG_MESSAGE,
    REQUEST_ID_HEADER,
    InvalidBody,
    error_payload,
    invalid_request_message,
)

_log = logging.getLogger(__name__)


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def _json_error(request: Request, status: int, message: str, **extra: Any) -> JSONResponse:
    request_id = request_id_of(request)
    return JSONResponse(
        error_payload(status, message, request_id, **extra),
        status_code=status,
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own validation errors, answered as the hot routes answer an invalid body."""
    assert isinstance(exc, RequestValidationError)
    status, message, extra = InvalidBody(exc.errors()).answer()
    return _json_error(request, status, message, **extra)


def _number_too_long(exc: BaseException) -> bool:
    """Python's ``json`` refuses integers over 4300 digits with a plain ``ValueError`` (not a
    decode error): the body IS JSON, just with a value no field accepts."""
    cause = exc.__cause__
    return (
        isinstance(cause, ValueError)
        and not isinstance(cause, UnicodeError)
        and "digits" in str(cause)
    )


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """404, 405 and friends in the common shape, with a message that names no internals."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
        if _number_too_long(exc):
            detail = [
                {
                    "loc": ["body"],
                    "field": "body",
                    "msg": NUMBER_TOO_LONG_MESSAGE,
                    "type": "number_too_long",
                }
            ]
            return _json_error(
                request, 422, invalid_request_message(detail, 1), detail=detail, detail_total=1
            )
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

    Starlette's error middleware calls this, answers, and raises the error on to
    ``RequestContextMiddleware``, which answers and logs what the hot routes raise: the flag in
    the request's state tells it this one is logged already."""
    request.state.error_logged = True
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
