"""The hot path: a valid ``POST /predict`` or ``/predict/batch`` answered without FastAPI's routing.

Measured in process (``bench/serving.py``, the "ASGI" rows): FastAPI spent ~130 us of a ~210 us
``/predict`` on routing, the request object, JSON decoding, dependency resolution and validating
its own answer against the response model - more than the model, its counterfactuals and the
reasons together. This ASGI layer sits innermost in the middleware stack, so request ids, the
stage prefix, the body cap and the JSON content-type check all still apply, and answers what it
can with the same pydantic models and the same ``PredictionService`` call as the routes:

* the body is validated by ``LoanApplication`` / ``LoanBatch`` in pydantic-core's JSON mode;
* the answer is serialized by pydantic-core, as FastAPI serializes the routes' answers.

Anything else - another path or method, a body that does not validate, a body that is not JSON -
goes to FastAPI untouched (the body replayed), so every error answer, the OpenAPI document and the
``/docs`` page come from one place: the routes in ``api/routes/predict.py``. Those routes are the
reference; ``tests/functional/test_serving_fast_lane.py`` sends the same bodies, valid and
invalid, to an app with and without this layer and requires byte-identical answers.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loan_service.schemas import LoanApplication, LoanBatch
from loan_service.service import PredictionService, RequestContext

PREDICT_PATH: Final = "/predict"
PREDICT_BATCH_PATH: Final = "/predict/batch"
_PREDICTION_PATHS: Final = frozenset({PREDICT_PATH, PREDICT_BATCH_PATH})
_JSON_CONTENT_TYPE: Final = (b"content-type", b"application/json")
_validate_loan = LoanApplication.model_validate_json
_validate_batch = LoanBatch.model_validate_json


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` without ``root_path`` (as Starlette computes it)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if rest == "" or rest[0] == "/":
            return rest
    return path


class PredictionFastLane:
    """Answer valid prediction requests directly; hand everything else to ``app`` (FastAPI)."""

    def __init__(self, app: ASGIApp, service: PredictionService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        endpoint = route_path(scope)
        if endpoint not in _PREDICTION_PATHS:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left, or the body cap already answered 413
            return
        try:
            answer = self._answer(endpoint, body, RequestContext.of_scope(scope))
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(answer)), _JSON_CONTENT_TYPE],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _answer(self, endpoint: str, body: bytes, context: RequestContext) -> bytes:
        """The route's answer, serialized; raises ``ValidationError`` for an invalid body."""
        if endpoint == PREDICT_PATH:
            loan = _validate_loan(body)
            return to_json(self.service.predict((loan,), PREDICT_PATH, context)[0])
        batch = _validate_batch(body)
        answer: dict[str, Any] = {
            "predictions": self.service.predict(batch.loans, PREDICT_BATCH_PATH, context),
            "model_version": self.service.model_version,
            "request_id": context.request_id,
        }
        return to_json(answer)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the already-read body once, then listens to the client."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay_receive() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay_receive
