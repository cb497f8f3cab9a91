"""The hot path: a valid ``POST /predict`` or ``/predict/batch`` answered without FastAPI's routing.

Measured in process (``bench/serving.py``, the "ASGI" rows): FastAPI spent ~130 us of a ~210 us
``/predict`` on routing, the request object, JSON decoding, dependency resolution and validating
its own answer against the response model - more than the model, its counterfactuals and the
reasons together. This ASGI layer sits innermost in the middleware stack, so request ids, the
stage prefix, the body cap and the JSON content-type check all still apply, and answers what it
can with the same pydantic models and the same ``PredictionService`` call as the routes:

* the body is validated by ``LoanApplication`` / ``LoanBatch`` in pydantic-core's JSON mode;
* the answer is serialized by pydantic-core, as FastAPI serializes the routes' answers.

Single-loan requests that are ready in the same event-loop turn share ONE model call
(``PredictionCoalescer``). Under load a uvicorn worker reads several requests per turn; an ONNX
Runtime call there cost ~40 us of CPU, not the ~11 us of a warm loop, because the rest of the
request evicts its code and data from the caches between calls - sharing it is the cheapest
prediction. A request coming alone waits one loop turn (a few us) and is answered alone.

Anything else - another path or method, a body that does not validate, a body that is not JSON -
goes to FastAPI untouched (the body replayed), so every error answer, the OpenAPI document and the
``/docs`` page come from one place: the routes in ``api/routes/predict.py``. Those routes are the
reference; ``tests/functional/test_serving_fast_lane.py`` sends the same bodies, valid and
invalid, to an app with and without this layer and requires byte-identical answers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loan_service.errors import (
    MAX_ERROR_DETAILS,
    capped_validation_errors,
    validation_error_payload,
)
from loan_service.schemas import LoanApplication, LoanBatch
from loan_service.scoring import PredictionItem
from loan_service.service import PredictionRequest, PredictionService, RequestContext

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


class SharedModelCallError(RuntimeError):
    """The model call a request shared with others failed (the cause is chained)."""


class PredictionCoalescer:
    """Requests submitted in the same event-loop turn are scored together, in one model call.

    The first request of a turn schedules the call with ``call_soon``; requests whose tasks run
    before it (uvicorn starts one task per request it read in that turn) join. Each request is
    still answered, timed and logged as itself (``PredictionService.predict_together``).
    """

    def __init__(self, service: PredictionService) -> None:
        self.service = service
        self._waiting: list[tuple[PredictionRequest, asyncio.Future[list[PredictionItem]]]] = []

    async def predict(self, request: PredictionRequest) -> list[PredictionItem]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[PredictionItem]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._answer_waiting)
        self._waiting.append((request, answer))
        return await answer

    def _answer_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            answers = self.service.predict_together([request for request, _ in waiting])
        except Exception as exc:  # every request of the call fails, each with its own error
            for _, answer in waiting:
                if not answer.done():
                    error = SharedModelCallError("the shared model call failed")
                    error.__cause__ = exc
                    answer.set_exception(error)
            return
        for (_, answer), items in zip(waiting, answers, strict=True):
            if not answer.done():  # a cancelled request is simply not answered
                answer.set_result(items)


class PredictionFastLane:
    """Answer valid prediction requests directly; hand everything else to ``app`` (FastAPI)."""

    def __init__(self, app: ASGIApp, service: PredictionService) -> None:
        self.app = app
        self.service = service
        self.coalescer = PredictionCoalescer(service)

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
        context = RequestContext.of_scope(scope)
        try:
            answer = await self._answer(endpoint, body, context)
        except ValidationError as error:
            if error.error_count() <= MAX_ERROR_DETAILS:
                await self.app(scope, _replay(body, receive), send)
                return
            # Many errors (80,000 unknown keys, say): FastAPI would build every one of them
            # (~1 s); answer the same capped 422 from a pruned copy instead.
            model = LoanApplication if endpoint == PREDICT_PATH else LoanBatch
            details, total = capped_validation_errors(model, body, error)
            payload = validation_error_payload(details, total, context.request_id)
            await _send_json(send, 422, to_json(payload))
            return
        await _send_json(send, 200, answer)

    async def _answer(self, endpoint: str, body: bytes, context: RequestContext) -> bytes:
        """The route's answer, serialized; raises ``ValidationError`` for an invalid body."""
        if endpoint == PREDICT_PATH:
            loan = _validate_loan(body)
            request = PredictionRequest((loan,), PREDICT_PATH, context)
            return to_json((await self.coalescer.predict(request))[0])
        batch = _validate_batch(body)
        answer: dict[str, Any] = {
            "predictions": self.service.predict(batch.loans, PREDICT_BATCH_PATH, context),
            "model_version": self.service.model_version,
            "request_id": context.request_id,
        }
        return to_json(answer)


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), _JSON_CONTENT_TYPE],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
