"""``POST /predict`` and ``POST /predict/batch``: the hot routes, one model call per request.

Like MLflow's scoring server's hot route, each endpoint takes the raw body and answers bytes. The
body is validated by the loan book's ``LoanApplication`` / ``LoanBatch`` (built from the
manifest's schema at start-up, ``PredictionService.request_models``) in pydantic-core's JSON mode
(no ``json.loads``, no dict in between) and the answer is serialized by pydantic-core in one call
(a batch's predictions are written from the scorer's columns, the same bytes,
``LoanAssessor.answers_json``).

``main.app`` (``application.ServiceApp``) hands a request for one of them to it straight after
the middleware: FastAPI's body parsing, dependency resolution, response-model validation and its
exception and exit-stack layers are not on this path; they cost more than the model and its
reasons together (``bench/serving.py``). Nothing here imports FastAPI, so a Lambda function's
first prediction does not wait for it to load. FastAPI documents these routes from ``HOT_ROUTES``
(``api/app.py``): both bodies and every answer are in ``/openapi.json``. An invalid body is
answered in the shape of every other error (``loan_service.errors``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.types import ASGIApp, Receive, Scope, Send

from loan_service.errors import (
    NUMBER_TOO_LONG_ERROR,
    InvalidBody,
    capped_validation_error,
    error_body,
    is_number_out_of_range,
)
from loan_service.middleware import send_json
from loan_service.schemas import (
    BatchPredictionPublic,
    ErrorPublic,
    PredictionPublic,
    ValidationErrorPublic,
)
from loan_service.scoring import loans_to_matrix
from loan_service.service import PredictionService, RequestContext

PREDICT_PATH: Final = "/predict"
PREDICT_BATCH_PATH: Final = "/predict/batch"
APPLICATION_SCHEMA: Final = "LoanApplication"
BATCH_SCHEMA: Final = "LoanBatch"
"""The request models' names in the OpenAPI components (``build_request_models`` names them)."""

Body = TypeVar("Body", bound=BaseModel)
Endpoint = Callable[[PredictionService, Scope, bytes], Awaitable[bytes]]

ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    413: {"model": ErrorPublic, "description": "Body over 1 MiB, or more than 1000 loans."},
    415: {"model": ErrorPublic, "description": "The body is not JSON."},
    422: {"model": ValidationErrorPublic, "description": "Each invalid field and why."},
    500: {"model": ErrorPublic, "description": "Internal error (no details are exposed)."},
}
_MISSING_BODY: Final = [{"type": "missing", "loc": ("body",), "msg": "Field required"}]


def _validated(model: type[Body], body: bytes) -> Body:
    """``body`` as ``model`` (pydantic-core's JSON mode), or ``InvalidBody`` with the first
    errors located under ``body`` (an empty body is a missing one, as in FastAPI)."""
    if not body:
        raise InvalidBody(_MISSING_BODY)
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        if is_number_out_of_range(error):
            raise InvalidBody([NUMBER_TOO_LONG_ERROR]) from None
        raise capped_validation_error(model, body, error) from None


async def predict(service: PredictionService, scope: Scope, body: bytes) -> bytes:
    """PD, decision at the threshold, risk band, grade, up to four reasons for a decline, and the
    expected loss."""
    loan = _validated(service.request_models.application, body)
    context = RequestContext.of_scope(scope)
    # On Lambda (Mangum puts the event in the scope) each invocation is one request: no company.
    alone = "aws.event" in scope
    return to_json(await service.predict_one(loan, PREDICT_PATH, context, alone=alone))


async def predict_batch(service: PredictionService, scope: Scope, body: bytes) -> bytes:
    """Same answer per loan as ``/predict``, in the input order, from ONE model call."""
    models = service.request_models
    rows = models.batch_rows(body) if models.batch_rows is not None and body else None
    if rows is None:  # not a body the cheaper reader vouches for: LoanBatch reads it, or refuses
        rows = loans_to_matrix(_validated(models.batch, body).loans)
    context = RequestContext.of_scope(scope)
    # ``to_json`` of the ``BatchPredictionAnswer``, byte for byte, with the predictions written
    # from the scorer's columns (``PredictionService.predict_rows_json``).
    return b'{"predictions":%b,"model_version":%b,"request_id":%b}' % (
        service.predict_rows_json(rows, PREDICT_BATCH_PATH, context),
        to_json(service.model_version),
        to_json(context.request_id),
    )


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client is gone (or the body cap answered)."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the usual case: the body in one message
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class HotRoute:
    """A ``POST`` route that reads its raw body: what answers it, and what documents it."""

    path: str
    endpoint: Endpoint
    summary: str
    request_schema: str
    response_model: type[BaseModel]

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.endpoint.__doc__ or "")

    def bind(self, service: PredictionService) -> ASGIApp:
        """The ASGI app that answers this route for ``service``: the endpoint's bytes with 200,
        an invalid body with its error answer; anything else it raises reaches
        ``RequestContextMiddleware``, which logs it once and answers 500."""
        endpoint = self.endpoint

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            body = await read_body(receive)
            if body is None:
                return
            try:
                answer = await endpoint(service, scope, body)
            except InvalidBody as invalid:
                status, message, extra = invalid.answer()
                request_id = RequestContext.of_scope(scope).request_id
                await send_json(send, status, error_body(status, message, request_id, **extra))
                return
            await send_json(send, 200, answer)

        return app


HOT_ROUTES: Final = (
    HotRoute(
        PREDICT_PATH,
        predict,
        summary="Probability of default for one applicant",
        request_schema=APPLICATION_SCHEMA,
        response_model=PredictionPublic,
    ),
    HotRoute(
        PREDICT_BATCH_PATH,
        predict_batch,
        summary="Probabilities of default for up to 1000 applicants",
        request_schema=BATCH_SCHEMA,
        response_model=BatchPredictionPublic,
    ),
)
