"""Every error answer is JSON of one shape, and none shows a stack trace, a path or a file name.

Handlers log the exception (with the request id) server-side and answer with a fixed message.
Validation errors list each field with pydantic's reason but never echo the offending input.

Every error answer is small, whatever the request: a 422 lists at most ``MAX_ERROR_DETAILS``
errors (with ``detail_total``, how many there were), and every name it echoes from the request (an
unknown key, say) is cut to ``MAX_ECHOED_CHARS``. A body of 80,000 unknown keys gets a 422 of a
few KB, not of 9 MB (which Lambda, with its 6 MB response limit, would turn into a 502).

This module is the answers' shapes and imports no FastAPI: the hot routes answer an invalid body
with it before FastAPI is loaded. FastAPI's own handlers (404, 405, ...) are ``api/errors.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import pydantic_core
from pydantic import BaseModel, ValidationError

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
MAX_ERROR_DETAILS: Final = 20
MAX_ECHOED_CHARS: Final = 64
MAX_MESSAGE_CHARS: Final = 200
TRUNCATION_MARK: Final = "..."
NUMBER_TOO_LONG_MESSAGE: Final = (
    "A number in the body has more than 4300 digits; no field takes such a value."
)


def error_code(status: int) -> str:
    return ERROR_CODES.get(status, "client_error" if status < 500 else "internal_error")


def error_payload(status: int, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"error": error_code(status), "message": message, "request_id": request_id, **extra}


def error_body(status: int, message: str, request_id: str, **extra: Any) -> bytes:
    """The error's JSON, as every answer without FastAPI writes it (the middleware's, the hot
    routes', the Lambda adapter's): the bytes of Starlette's ``JSONResponse`` of it."""
    payload = error_payload(status, message, request_id, **extra)
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def clip(text: str, limit: int = MAX_ECHOED_CHARS) -> str:
    """``text`` cut to ``limit`` characters (the cut marked), so no echo grows with the request."""
    return text if len(text) <= limit else text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


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
    """The first ``MAX_ERROR_DETAILS`` errors: location, field and reason, each name clipped;
    the rejected input value is never echoed."""
    details = []
    for error in errors[:MAX_ERROR_DETAILS]:
        loc = [part if isinstance(part, int) else clip(str(part)) for part in error.get("loc", ())]
        details.append(
            {
                "loc": loc,
                "field": clip(field_path(loc), 2 * MAX_ECHOED_CHARS),
                "msg": clip(str(error.get("msg", "invalid value")), MAX_MESSAGE_CHARS),
                "type": clip(str(error.get("type", "value_error"))),
            }
        )
    return details


def invalid_request_message(details: Sequence[dict[str, Any]], total: int) -> str:
    """``Invalid request: check income, fico_score.``; ``(and 79,980 more errors)`` past the cap."""
    fields = ", ".join(dict.fromkeys(detail["field"] for detail in details))
    more = total - len(details)
    suffix = f" (and {more:,} more error{'s' if more != 1 else ''})" if more > 0 else ""
    return f"Invalid request: check {fields}{suffix}."


def _prune_unknown_keys(data: Any, model: type[BaseModel], budget: list[int]) -> Any:
    """``data`` with only the first ``budget[0]`` unknown keys (over the whole body) kept, walking
    into list-of-model fields: it fails validation the same way, minus most of the extras."""
    if not isinstance(data, dict):
        return data
    pruned: dict[str, Any] = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            if budget[0] > 0:
                budget[0] -= 1
                pruned[key] = value
            continue
        item_model = _list_item_model(field.annotation)
        if item_model is not None and isinstance(value, list):
            pruned[key] = [_prune_unknown_keys(item, item_model, budget) for item in value]
        else:
            pruned[key] = value
    return pruned


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    args = getattr(annotation, "__args__", ())
    if getattr(annotation, "__origin__", None) is list and args:
        item = args[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


NUMBER_TOO_LONG_ERROR: Final = {
    "type": "number_too_long",
    "loc": ("body",),
    "msg": NUMBER_TOO_LONG_MESSAGE,
}


def is_number_out_of_range(error: ValidationError) -> bool:
    """pydantic-core's JSON parser refuses a number it cannot hold (an integer of 5000 digits)
    as invalid JSON; the body IS JSON, just with a value no field accepts."""
    if error.error_count() != 1:
        return False
    (problem,) = error.errors(include_url=False, include_input=False)
    return problem["type"] == "json_invalid" and "number out of range" in problem["msg"]


class InvalidBody(Exception):
    """A body the route's model refuses: its first ``MAX_ERROR_DETAILS`` errors, located under
    ``body`` (pydantic's dicts), and how many it had. ``answer`` says how it is answered."""

    def __init__(self, errors: Sequence[Any], total: int | None = None) -> None:
        super().__init__("invalid request body")
        self.errors = list(errors)
        self.total = len(self.errors) if total is None else total

    def answer(self) -> tuple[int, str, dict[str, Any]]:
        """(status, message, extra fields): 415 when the body is not JSON, 413 for a batch over
        the limit, else 422 with each field."""
        if any(error.get("type") == "json_invalid" for error in self.errors):
            return 415, NOT_JSON_MESSAGE, {}
        if any(_is_batch_too_long(error) for error in self.errors):
            return 413, TOO_MANY_LOANS_MESSAGE, {}
        details = validation_details(self.errors)
        message = invalid_request_message(details, self.total)
        return 422, message, {"detail": details, "detail_total": self.total}


def capped_validation_error(
    model: type[BaseModel], body: bytes, error: ValidationError
) -> InvalidBody:
    """The first ``MAX_ERROR_DETAILS`` errors of ``body`` and how many it had, quickly.

    ``error.errors()`` builds a dict per error: ~0.9 s for 80,000 unknown keys here, ten times
    the validation itself. Past the cap, the body is parsed again, all but the first few unknown
    keys are dropped, and only that small remainder's errors are built (``error_count`` is free).
    """
    total = error.error_count()
    if total > MAX_ERROR_DETAILS:
        try:
            pruned = _prune_unknown_keys(
                pydantic_core.from_json(body, cache_strings=False), model, [MAX_ERROR_DETAILS]
            )
            model.model_validate(pruned)
        except ValidationError as smaller:
            error = smaller
        except ValueError:
            pass
    errors = error.errors(include_url=False, include_input=False, include_context=False)
    located = [{**item, "loc": ("body", *item["loc"])} for item in errors[:MAX_ERROR_DETAILS]]
    return InvalidBody(located, total)


def _is_batch_too_long(error: Any) -> bool:
    loc = tuple(error.get("loc", ()))
    return error.get("type") == "too_long" and loc == ("body", "loans")
