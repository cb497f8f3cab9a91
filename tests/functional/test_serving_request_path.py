"""The one request path: the prediction routes read the raw body, validate it in JSON mode and
answer with pydantic-core bytes; single-loan requests of one loop turn share one model call.

The routes validate in pydantic-core's JSON mode; before, FastAPI decoded the body with
``json.loads`` and validated the document. Hypothesis-generated bodies - valid, damaged, not JSON
at all - must be accepted or refused exactly as that validation of the decoded document does, with
the same fields named, and a valid body must get what the service answers for its loans.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from starlette.routing import Match
from starlette.types import Message, Scope

from loan_service.api.app import DocumentedHotRoute
from loan_service.application import ServiceApp
from loan_service.errors import field_path
from loan_service.prediction_log import PredictionRecord
from loan_service.schemas import MAX_BATCH_LOANS
from loan_service.service import (
    PredictionRequest,
    PredictionService,
    RequestContext,
    SharedModelCallError,
)
from tests.support.default_book import FEATURES, LoanApplication, LoanBatch
from tests.support.loans import RISKY_LOAN, SAFE_LOAN, TYPICAL_LOAN
from tests.support.serving_fixtures import build_test_app

REQUEST_ID = "request-path-test"


@pytest.fixture(scope="module")
def apps(trained_artifacts: Path) -> tuple[ServiceApp, PredictionService]:
    return build_test_app(trained_artifacts)


def http_scope(path: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers
        if headers is not None
        else [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", REQUEST_ID.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def call(
    app: Any, scope: Scope, chunks: list[bytes]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run one request through ``app`` (its whole middleware stack); the body in ``chunks``."""
    return asyncio.run(call_async(app, scope, chunks))


numbers = st.one_of(
    st.integers(min_value=-10, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 300, 850, 851, 299, 5.0, 5.5, 1e9, 1e10, -0.0, 10**30]),
)
field_values = st.one_of(
    numbers, st.booleans(), st.none(), st.text(max_size=4), st.just("5"), st.lists(numbers)
)


@st.composite
def loan_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid loans, with a chance of each kind of damage per field."""
    loan: dict[str, Any] = dict(draw(st.sampled_from([TYPICAL_LOAN, RISKY_LOAN, SAFE_LOAN])))
    for feature in FEATURES:
        action = draw(st.sampled_from(["keep", "keep", "keep", "scale", "replace", "drop"]))
        if action == "scale":
            loan[feature] = type(loan[feature])(loan[feature] * draw(st.integers(0, 3)))
        elif action == "replace":
            loan[feature] = draw(field_values)
        elif action == "drop":
            del loan[feature]
    if draw(st.integers(0, 9)) == 0:
        loan[draw(st.sampled_from(["extra", "Income", "fico"]))] = 1
    return loan


def expected_outcome(
    model: type[BaseModel], body: bytes, service: PredictionService, endpoint: str
) -> tuple[int, Any]:
    """(status, answer or the named fields) as the decoded document's validation decides."""
    try:
        validated = model.model_validate(json.loads(body))
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "too_long" and e["loc"] == ("loans",) for e in errors):
            return 413, None
        return 422, {field_path(("body", *error["loc"])) for error in errors}
    context = RequestContext(REQUEST_ID, 0, 0)
    loans = validated.loans if isinstance(validated, LoanBatch) else [validated]
    answers = service.predict(loans, endpoint, context)
    if isinstance(validated, LoanBatch):
        return 200, {
            "predictions": answers,
            "model_version": service.model_version,
            "request_id": REQUEST_ID,
        }
    return 200, answers[0]


def outcome(answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> tuple[int, Any]:
    status, _, body = answer
    document = json.loads(body)
    if status == 422:
        return status, {detail["field"] for detail in document["detail"]}
    if status == 413:
        return status, None
    return status, document


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(loan=loan_objects())
def test_predict_accepts_and_refuses_what_the_model_does(
    apps: tuple[ServiceApp, PredictionService], loan: dict[str, Any]
) -> None:
    app, service = apps
    body = json.dumps(loan, allow_nan=True).encode()

    answer = call(app, http_scope("/predict", body), [body])

    assert outcome(answer) == expected_outcome(LoanApplication, body, service, "/predict")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(loans=st.lists(loan_objects(), min_size=0, max_size=4), wrap=st.booleans())
def test_batch_accepts_and_refuses_what_the_model_does(
    apps: tuple[ServiceApp, PredictionService], loans: list[dict[str, Any]], wrap: bool
) -> None:
    app, service = apps
    body = json.dumps({"loans": loans} if wrap else loans, allow_nan=True).encode()

    answer = call(app, http_scope("/predict/batch", body), [body])

    expected = expected_outcome(LoanBatch, body, service, "/predict/batch")
    assert outcome(answer) == expected


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 422),
        (b"{", 415),
        (b"null", 422),
        (b"[]", 422),
        (b'"loan"', 422),
        (b"\xff\xfe{}", 415),
        (json.dumps(TYPICAL_LOAN).encode() + b" trailing", 415),
        (json.dumps({**TYPICAL_LOAN, "fico_score": True}).encode(), 422),
        (json.dumps({**TYPICAL_LOAN, "income": "72000"}).encode(), 422),
        (json.dumps({**TYPICAL_LOAN, "income": 1e999}).replace("Infinity", "1e999").encode(), 422),
        (json.dumps(TYPICAL_LOAN, indent=4, sort_keys=True).encode(), 200),
    ],
    ids=lambda value: value[:30].decode(errors="replace") if isinstance(value, bytes) else None,
)
def test_edge_bodies_get_their_status_in_the_error_shape(
    apps: tuple[ServiceApp, PredictionService], body: bytes, status: int
) -> None:
    answer_status, headers, answer = call(apps[0], http_scope("/predict", body), [body])

    assert answer_status == status
    assert (b"content-type", b"application/json") in headers
    document = json.loads(answer)
    assert document["request_id"] == REQUEST_ID
    assert ("probability" in document) == (status == 200)


def test_a_duplicated_key_counts_once_with_its_last_value(
    apps: tuple[ServiceApp, PredictionService],
) -> None:
    """As ``json.loads`` decides: the last value wins."""
    body = json.dumps(TYPICAL_LOAN)[:-1].encode() + b', "fico_score": 800}'
    reference = json.dumps({**TYPICAL_LOAN, "fico_score": 800}).encode()

    answer = call(apps[0], http_scope("/predict", body), [body])

    assert answer == call(apps[0], http_scope("/predict", reference), [reference])


def test_a_batch_over_the_limit_gets_413(apps: tuple[ServiceApp, PredictionService]) -> None:
    body = json.dumps({"loans": [TYPICAL_LOAN] * (MAX_BATCH_LOANS + 1)}).encode()

    assert call(apps[0], http_scope("/predict/batch", body), [body])[0] == 413


def test_a_body_in_many_chunks_is_read_whole(apps: tuple[ServiceApp, PredictionService]) -> None:
    body = json.dumps(RISKY_LOAN).encode()
    chunks = [body[index : index + 7] for index in range(0, len(body), 7)]

    chunked = call(apps[0], http_scope("/predict", body), chunks)

    assert chunked == call(apps[0], http_scope("/predict", body), [body])
    assert chunked[0] == 200


def test_the_routes_answer_below_a_root_path(apps: tuple[ServiceApp, PredictionService]) -> None:
    body = json.dumps(SAFE_LOAN).encode()
    scope = {**http_scope("/prod/predict", body), "root_path": "/prod"}

    status, _, answer = call(apps[0], scope, [body])

    assert status == 200
    assert json.loads(answer)["prediction"] == 0


def test_a_client_that_leaves_mid_body_is_not_scored(
    apps: tuple[ServiceApp, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, service = apps
    counting = CountingCalls(service.assessor.model.block_scores)
    monkeypatch.setattr(service.assessor.model, "block_scores", counting)
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"income": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(http_scope("/predict", b""), receive, send))

    assert counting.rows_per_call == []
    assert not any(message.get("status") == 200 for message in sent)


# ---- Requests ready in the same loop turn share one model call ---------------------------------


class CountingCalls:
    """Wraps ``DefaultRiskModel.block_scores`` (the PD call every request makes): counts calls and
    the rows each call scored."""

    def __init__(self, blocks: Any) -> None:
        self.blocks = blocks
        self.rows_per_call: list[int] = []

    def __call__(self, raw: Any) -> Any:
        self.rows_per_call.append(int(raw.shape[0]))
        return self.blocks(raw)


def loan_variants(count: int) -> list[dict[str, Any]]:
    return [
        {**base, "income": base["income"] + 1000.0 * index}
        for index, base in enumerate(([RISKY_LOAN, SAFE_LOAN, TYPICAL_LOAN] * count)[:count])
    ]


def test_requests_arriving_together_share_one_model_call_and_get_their_own_answers(
    apps: tuple[ServiceApp, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN six /predict requests started in the same event-loop turn WHEN they are answered
    THEN the model was called once for all six, and each answer is what that loan gets when it
    comes alone, with its own request id."""
    app, service = apps
    loans = loan_variants(6)
    bodies = [json.dumps(loan).encode() for loan in loans]
    expected = [call(app, scope_with_id(body, index), [body]) for index, body in enumerate(bodies)]
    counting = CountingCalls(service.assessor.model.block_scores)
    monkeypatch.setattr(service.assessor.model, "block_scores", counting)

    async def all_at_once() -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
        return await asyncio.gather(
            *(
                call_async(app, scope_with_id(body, index), [body])
                for index, body in enumerate(bodies)
            )
        )

    answers = asyncio.run(all_at_once())

    assert counting.rows_per_call == [6]
    assert answers == expected


@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/predict/", "/predictions", "/"])
@pytest.mark.parametrize("method", ["POST", "GET", "PUT"])
@pytest.mark.parametrize("prefix", ["", "/prod"])
def test_main_app_hands_a_request_to_a_hot_route_exactly_when_fastapi_would(
    apps: tuple[ServiceApp, PredictionService],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    method: str,
    prefix: str,
) -> None:
    """``ServiceApp.dispatch`` matches the hot routes itself (method, path under the root path),
    before FastAPI: it must pick the route FastAPI's own router picks, and leave to FastAPI every
    request FastAPI routes elsewhere (a redirect, a 405, another route, a 404)."""
    app, _ = apps
    scope = {**http_scope(prefix + path, b"{}"), "method": method, "root_path": prefix}
    reached: list[str] = []

    def recorder(name: str) -> Any:
        async def record(scope: Scope, receive: Any, send: Any) -> None:
            reached.append(name)

        return record

    fastapi_choice = next(
        (
            route.path
            for route in app.api.router.routes
            if isinstance(route, DocumentedHotRoute) and route.matches(dict(scope))[0] is Match.FULL
        ),
        "FastAPI",
    )
    monkeypatch.setattr(app, "hot_apps", {name: recorder(name) for name in app.hot_apps})
    monkeypatch.setattr(app, "_api", recorder("FastAPI"))

    asyncio.run(app.dispatch(scope, receive_nothing, send_nothing))

    assert reached == [fastapi_choice]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_fastapi_routed_to_a_documented_hot_route_answers_as_main_app_does(
    apps: tuple[ServiceApp, PredictionService], path: str
) -> None:
    """GIVEN the FastAPI application reached on its own (``main.app`` never hands it a hot
    route's request) WHEN it routes a valid body to a documented hot route THEN the bound hot
    route answers it, with the body ``main.app`` gives."""
    app, _ = apps
    body = json.dumps({"loans": [TYPICAL_LOAN]} if path == "/predict/batch" else TYPICAL_LOAN)
    scope = {**scope_with_id(body.encode(), 0), "path": path, "raw_path": path.encode()}

    through_main = call(app, dict(scope), [body.encode()])
    through_fastapi = call(app.api, dict(scope), [body.encode()])

    assert (through_fastapi[0], through_fastapi[2]) == (200, through_main[2])


async def receive_nothing() -> Message:
    return {"type": "http.disconnect"}


async def send_nothing(message: Message) -> None:
    raise AssertionError(f"nothing may be sent: {message}")


def test_a_lambda_invocation_is_scored_at_once_with_the_same_answer(
    apps: tuple[ServiceApp, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN the scope of a Lambda invocation (Mangum's ``aws.event`` in it), which is the only
    request its event loop ever runs, WHEN it is answered THEN it never waits in the coalescer,
    and its answer is byte for byte the one a server's request gets."""
    app, service = apps
    body = json.dumps(TYPICAL_LOAN).encode()
    expected = call(app, scope_with_id(body, 0), [body])
    counting = CountingCalls(service.assessor.model.block_scores)
    monkeypatch.setattr(service.assessor.model, "block_scores", counting)
    queued: list[PredictionRequest] = []
    monkeypatch.setattr(service.coalescer, "predict", queued.append)
    scope = {**scope_with_id(body, 0), "aws.event": {}}

    answer = call(app, scope, [body])

    assert (queued, counting.rows_per_call) == ([], [1])
    assert answer == expected


def test_each_request_of_a_shared_call_is_counted_and_logged_as_itself(
    apps: tuple[ServiceApp, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, service = apps
    recorded: list[PredictionRecord] = []
    monkeypatch.setattr(service.prediction_log, "record", recorded.append)
    counting = CountingCalls(service.assessor.model.block_scores)
    monkeypatch.setattr(service.assessor.model, "block_scores", counting)
    before = service.observability.counters.total_predictions
    bodies = [json.dumps(loan).encode() for loan in loan_variants(3)]

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(
                call_async(app, scope_with_id(body, index), [body])
                for index, body in enumerate(bodies)
            )
        )

    asyncio.run(all_at_once())

    assert counting.rows_per_call == [3]
    assert service.observability.counters.total_predictions == before + 3
    assert sorted(record.request_id for record in recorded) == ["shared-0", "shared-1", "shared-2"]
    assert {record.endpoint for record in recorded} == {"/predict"}
    assert all(record.raw.shape == (1, len(FEATURES)) for record in recorded)


def test_a_failed_shared_call_fails_every_request_in_it_with_the_cause_chained(
    apps: tuple[ServiceApp, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, service = apps
    cause = FloatingPointError("the model returned a probability outside [0, 1]")

    def explode(_normalized: Any) -> Any:
        raise cause

    monkeypatch.setattr(service.assessor.model, "block_scores", explode)
    requests = [
        PredictionRequest((LoanApplication.model_validate(loan),), "/predict", context(index))
        for index, loan in enumerate(loan_variants(3))
    ]

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(service.coalescer.predict(request) for request in requests), return_exceptions=True
        )

    outcomes = asyncio.run(all_at_once())

    assert [type(outcome) for outcome in outcomes] == [SharedModelCallError] * 3
    assert all(outcome.__cause__ is cause for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 3


def scope_with_id(body: bytes, index: int) -> Scope:
    scope = http_scope("/predict", body)
    scope["headers"] = [
        (name, f"shared-{index}".encode() if name == b"x-request-id" else value)
        for name, value in scope["headers"]
    ]
    # What RequestContextMiddleware stamps, for calls that bypass it.
    scope["state"] = {"request_id": f"shared-{index}", "started_ns": 0, "started_wall_ns": 0}
    return scope


def context(index: int) -> RequestContext:
    return RequestContext(request_id=f"shared-{index}", started_ns=0, started_wall_ns=0)


async def call_async(
    app: Any, scope: Scope, chunks: list[bytes]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of one request; the body arrives in ``chunks``."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start["headers"]), body
