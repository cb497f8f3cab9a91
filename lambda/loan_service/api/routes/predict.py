"""``POST /predict`` and ``POST /predict/batch``: the hot routes, one model call per request.

Like MLflow's scoring server's hot route, these are served as plain Starlette routes
(``RawBodyRoute``): the endpoint reads the raw body and returns a ``Response``. The body is
validated by the loan book's ``LoanApplication`` / ``LoanBatch`` (built from the manifest's schema
at start-up, ``PredictionService.request_models``) in pydantic-core's JSON mode (no ``json.loads``,
no dict in between) and the answer is serialized by pydantic-core in one call (a batch's
predictions are written from the scorer's columns, the same bytes,
``LoanAssessor.answers_json``). FastAPI's body parsing, dependency resolution and
response-model validation cost ~130 us of a ~210 us ``/predict`` here (``bench/serving.py``),
more than the model and its reasons together.

They are still FastAPI routes for the OpenAPI document, which describes both bodies and every
answer: ``openapi_extra`` names the request models (``application.create_app`` adds their schemas
to the components) and ``response_model`` / ``responses`` the answers. An invalid body raises
FastAPI's own ``RequestValidationError``, so every error answer comes from ``errors.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from loan_service.api.deps import request_context_of, service_of
from loan_service.errors import (
    JSON_CONTENT_TYPE,
    NUMBER_TOO_LONG_ERROR,
    capped_validation_error,
    is_number_out_of_range,
)
from loan_service.schemas import (
    BatchPredictionPublic,
    ErrorPublic,
    PredictionPublic,
    ValidationErrorPublic,
)
from loan_service.scoring import loans_to_matrix

PREDICT_PATH: Final = "/predict"
PREDICT_BATCH_PATH: Final = "/predict/batch"
APPLICATION_SCHEMA: Final = "LoanApplication"
BATCH_SCHEMA: Final = "LoanBatch"
"""The request models' names in the OpenAPI components (``build_request_models`` names them)."""

Body = TypeVar("Body", bound=BaseModel)


class RawBodyRoute(APIRoute):
    """Documented from its signature and options like any FastAPI route; served like a plain
    Starlette route: ``endpoint(request) -> Response``, with the app's exception handlers.

    The request it exists for - its method, on its exact path, no root path - is matched and
    handled without FastAPI's general machinery (the path regex, the included-router context
    lookups: a sixth of the app's own work for a ``POST /predict``, callgrind), with the same
    child scope and the same call of ``self.app``; any other request goes to ``APIRoute``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = raw_body_app(endpoint)
        methods = self.methods or set()
        self._method = next(iter(methods)) if len(methods) == 1 else None

    def _is_own(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope["method"] == self._method
            and scope["path"] == self.path
            and not scope.get("root_path")
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self._is_own(scope):
            path_params = dict(scope.get("path_params", {}))
            child = {"endpoint": self.endpoint, "path_params": path_params, "route": self}
            return Match.FULL, child
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._is_own(scope):
            await self.app(scope, receive, send)
            return
        await super().handle(scope, receive, send)


def raw_body_app(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """Starlette's ``request_response`` without its second exception wrapper: what the endpoint
    raises (``RequestValidationError``, ``HTTPException``, anything) reaches the app's
    ``ExceptionMiddleware`` one layer up, which answers it with the same handlers on the same
    scope, so every answer is the same; the hot routes save a wrapper and a closure per request."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


router = APIRouter(tags=["predictions"], route_class=RawBodyRoute)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorPublic, "description": "Body over 1 MiB, or more than 1000 loans."},
    415: {"model": ErrorPublic, "description": "The body is not JSON."},
    422: {"model": ValidationErrorPublic, "description": "Each invalid field and why."},
    500: {"model": ErrorPublic, "description": "Internal error (no details are exposed)."},
}
_MISSING_BODY: Final = [{"type": "missing", "loc": ("body",), "msg": "Field required"}]


def _request_body(name: str) -> dict[str, Any]:
    """The operation's ``requestBody``, as FastAPI writes it for a model body parameter."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}


def _validated(model: type[Body], body: bytes) -> Body:
    """``body`` as ``model`` (pydantic-core's JSON mode), or a ``RequestValidationError`` with the
    first errors located under ``body`` (an empty body is a missing one, as in FastAPI)."""
    if not body:
        raise RequestValidationError(_MISSING_BODY)
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        if is_number_out_of_range(error):
            raise RequestValidationError([NUMBER_TOO_LONG_ERROR]) from None
        raise capped_validation_error(model, body, error) from None


def _json(answer: Any) -> Response:
    return Response(to_json(answer), media_type=JSON_CONTENT_TYPE)


@router.post(
    PREDICT_PATH,
    response_model=PredictionPublic,
    responses=ERROR_RESPONSES,
    summary="Probability of default for one applicant",
    openapi_extra=_request_body(APPLICATION_SCHEMA),
)
async def predict(request: Request) -> Response:
    """PD, decision at the threshold, risk band, grade, up to four reasons for a decline, and the
    expected loss."""
    service = service_of(request)
    loan = _validated(service.request_models.application, await request.body())
    context = request_context_of(request)
    # On Lambda (Mangum puts the event in the scope) each invocation is one request: no company.
    alone = "aws.event" in request.scope
    return _json(await service.predict_one(loan, PREDICT_PATH, context, alone=alone))


@router.post(
    PREDICT_BATCH_PATH,
    response_model=BatchPredictionPublic,
    responses=ERROR_RESPONSES,
    summary="Probabilities of default for up to 1000 applicants",
    openapi_extra=_request_body(BATCH_SCHEMA),
)
async def predict_batch(request: Request) -> Response:
    """Same answer per loan as ``/predict``, in the input order, from ONE model call."""
    service = service_of(request)
    models = service.request_models
    body = await request.body()
    rows = models.batch_rows(body) if models.batch_rows is not None and body else None
    if rows is None:  # not a body the cheaper reader vouches for: LoanBatch reads it, or refuses
        rows = loans_to_matrix(_validated(models.batch, body).loans)
    context = request_context_of(request)
    # ``to_json`` of the ``BatchPredictionAnswer``, byte for byte, with the predictions written
    # from the scorer's columns (``PredictionService.predict_rows_json``).
    body = b'{"predictions":%b,"model_version":%b,"request_id":%b}' % (
        service.predict_rows_json(rows, PREDICT_BATCH_PATH, context),
        to_json(service.model_version),
        to_json(context.request_id),
    )
    return Response(body, media_type=JSON_CONTENT_TYPE)
