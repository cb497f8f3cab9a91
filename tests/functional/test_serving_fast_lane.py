"""The prediction fast lane answers exactly what the FastAPI routes answer, byte for byte.

``loan_service.fast_lane`` answers valid ``POST /predict`` and ``/predict/batch`` requests without
FastAPI's routing; everything else goes to FastAPI. The routes are the reference: the same bodies -
valid, invalid, not JSON at all - are sent through the full middleware stack of an app with the
fast lane and of one without it, and the status, headers and body must be identical.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from loan_service.application import create_app
from loan_service.fast_lane import PredictionFastLane, SharedModelCallError
from loan_service.schemas import FEATURES, MAX_BATCH_LOANS, LoanApplication
from loan_service.service import PredictionRequest, PredictionService, RequestContext
from tests.serving_fixtures import (
    RISKY_LOAN,
    SAFE_LOAN,
    TYPICAL_LOAN,
    build_test_app,
    make_settings,
)

REQUEST_ID = "fast-lane-test"


@pytest.fixture(scope="module")
def apps(trained_artifacts: Path) -> tuple[FastAPI, FastAPI, PredictionService]:
    """(with the fast lane, routes only, the one service both share)."""
    with_fast_lane, service = build_test_app(trained_artifacts)
    routes_only = create_app(make_settings(trained_artifacts), service=service, fast_lane=False)
    return with_fast_lane, routes_only, service


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


def both(
    apps: tuple[FastAPI, FastAPI, PredictionService], path: str, body: bytes
) -> tuple[tuple[int, list[tuple[bytes, bytes]], bytes], ...]:
    with_fast_lane, routes_only, _ = apps
    return tuple(call(app, http_scope(path, body), [body]) for app in (with_fast_lane, routes_only))


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


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(loan=loan_objects())
def test_predict_answers_match_the_routes_for_valid_and_invalid_loans(
    apps: tuple[FastAPI, FastAPI, PredictionService], loan: dict[str, Any]
) -> None:
    body = json.dumps(loan, allow_nan=True).encode()

    fast, reference = both(apps, "/predict", body)

    assert fast == reference


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(loans=st.lists(loan_objects(), min_size=0, max_size=4), wrap=st.booleans())
def test_batch_answers_match_the_routes_for_valid_and_invalid_batches(
    apps: tuple[FastAPI, FastAPI, PredictionService], loans: list[dict[str, Any]], wrap: bool
) -> None:
    body = json.dumps({"loans": loans} if wrap else loans, allow_nan=True).encode()

    fast, reference = both(apps, "/predict/batch", body)

    assert fast == reference


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"loan"',
        b"\xff\xfe{}",
        b'{"credit_lines_outstanding": 1, "credit_lines_outstanding": 2}',
        json.dumps(TYPICAL_LOAN).encode() + b" trailing",
        json.dumps({**TYPICAL_LOAN, "fico_score": True}).encode(),
        json.dumps({**TYPICAL_LOAN, "income": "72000"}).encode(),
        json.dumps({**TYPICAL_LOAN, "income": 1e999}).replace("Infinity", "1e999").encode(),
        json.dumps(TYPICAL_LOAN, indent=4, sort_keys=True).encode(),
    ],
    ids=lambda body: body[:30].decode(errors="replace"),
)
def test_predict_edge_bodies_match_the_routes(
    apps: tuple[FastAPI, FastAPI, PredictionService], body: bytes
) -> None:
    fast, reference = both(apps, "/predict", body)

    assert fast == reference


def test_a_batch_over_the_limit_gets_the_routes_413(
    apps: tuple[FastAPI, FastAPI, PredictionService],
) -> None:
    body = json.dumps({"loans": [TYPICAL_LOAN] * (MAX_BATCH_LOANS + 1)}).encode()

    fast, reference = both(apps, "/predict/batch", body)

    assert fast == reference
    assert fast[0] == 413


def test_a_full_batch_matches_the_routes(apps: tuple[FastAPI, FastAPI, PredictionService]) -> None:
    loans = [RISKY_LOAN, SAFE_LOAN, TYPICAL_LOAN] * (MAX_BATCH_LOANS // 3)
    body = json.dumps({"loans": loans}).encode()

    fast, reference = both(apps, "/predict/batch", body)

    assert fast == reference
    assert fast[0] == 200
    assert len(json.loads(fast[2])["predictions"]) == len(loans)


def test_a_body_in_many_chunks_is_read_whole(
    apps: tuple[FastAPI, FastAPI, PredictionService],
) -> None:
    body = json.dumps(RISKY_LOAN).encode()
    chunks = [body[index : index + 7] for index in range(0, len(body), 7)]
    with_fast_lane, routes_only, _ = apps

    fast = call(with_fast_lane, http_scope("/predict", body), chunks)
    reference = call(routes_only, http_scope("/predict", body), [body])

    assert fast == reference
    assert fast[0] == 200


# ---- The lane itself, around a stand-in for FastAPI --------------------------------------------


class RecordingApp:
    """Stands in for FastAPI: records what reached it and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_a_valid_prediction_is_answered_without_reaching_fastapi(
    apps: tuple[FastAPI, FastAPI, PredictionService],
) -> None:
    inner = RecordingApp()
    lane = PredictionFastLane(inner, apps[2])
    body = json.dumps(RISKY_LOAN).encode()

    status, _, answer = call(lane, http_scope("/predict", body), [body])

    assert status == 200
    assert json.loads(answer)["prediction"] == 1
    assert inner.bodies == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict", json.dumps({**TYPICAL_LOAN, "fico_score": 900}).encode()),
        ("POST", "/predict/batch", b'{"loans": []}'),
        ("POST", "/predict/", json.dumps(TYPICAL_LOAN).encode()),
        ("POST", "/health", b"{}"),
        ("GET", "/predict", b""),
    ],
)
def test_everything_else_reaches_fastapi_with_the_body_intact(
    apps: tuple[FastAPI, FastAPI, PredictionService], method: str, path: str, body: bytes
) -> None:
    inner = RecordingApp()
    lane = PredictionFastLane(inner, apps[2])

    status, _, _ = call(lane, {**http_scope(path, body), "method": method}, [body])

    assert status == 299
    assert inner.bodies == [body]


def test_the_lane_routes_on_the_path_below_the_root_path(
    apps: tuple[FastAPI, FastAPI, PredictionService],
) -> None:
    inner = RecordingApp()
    lane = PredictionFastLane(inner, apps[2])
    body = json.dumps(SAFE_LOAN).encode()
    scope = {**http_scope("/prod/predict", body), "root_path": "/prod"}

    status, _, _ = call(lane, scope, [body])

    assert status == 200
    assert inner.bodies == []


def test_a_client_that_leaves_mid_body_gets_no_answer(
    apps: tuple[FastAPI, FastAPI, PredictionService],
) -> None:
    inner = RecordingApp()
    lane = PredictionFastLane(inner, apps[2])
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"income": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(lane(http_scope("/predict", b""), receive, send))

    assert sent == []
    assert inner.bodies == []


# ---- Requests ready in the same loop turn share one model call ---------------------------------


class CountingBlocks:
    """Wraps ``DefaultRiskModel.blocks``: counts calls and the rows each call scored."""

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
    apps: tuple[FastAPI, FastAPI, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN six /predict requests started in the same event-loop turn WHEN they are answered
    THEN the model was called once for all six, and each answer is what the routes give that
    loan alone, with its own request id."""
    with_fast_lane, routes_only, service = apps
    loans = loan_variants(6)
    bodies = [json.dumps(loan).encode() for loan in loans]
    expected = [
        call(routes_only, scope_with_id(body, index), [body]) for index, body in enumerate(bodies)
    ]
    counting = CountingBlocks(service.assessor.model.blocks)
    monkeypatch.setattr(service.assessor.model, "blocks", counting)

    async def all_at_once() -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
        return await asyncio.gather(
            *(
                call_async(with_fast_lane, scope_with_id(body, index), [body])
                for index, body in enumerate(bodies)
            )
        )

    answers = asyncio.run(all_at_once())

    assert counting.rows_per_call == [6]
    assert answers == expected


def test_each_request_of_a_shared_call_is_counted_and_logged_as_itself(
    apps: tuple[FastAPI, FastAPI, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, service = apps
    recorded: list[tuple[Any, ...]] = []
    monkeypatch.setattr(service.prediction_log, "record", recorded.append)
    counting = CountingBlocks(service.assessor.model.blocks)
    monkeypatch.setattr(service.assessor.model, "blocks", counting)
    before = service.observability.counters.total_predictions
    lane = PredictionFastLane(RecordingApp(), service)
    bodies = [json.dumps(loan).encode() for loan in loan_variants(3)]

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(
                call_async(lane, scope_with_id(body, index), [body])
                for index, body in enumerate(bodies)
            )
        )

    asyncio.run(all_at_once())

    assert counting.rows_per_call == [3]
    assert service.observability.counters.total_predictions == before + 3
    assert sorted(record[2] for record in recorded) == ["shared-0", "shared-1", "shared-2"]
    assert {record[3] for record in recorded} == {"/predict"}
    assert all(record[4].shape == (1, len(FEATURES)) for record in recorded)


def test_a_failed_shared_call_fails_every_request_in_it_with_the_cause_chained(
    apps: tuple[FastAPI, FastAPI, PredictionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, service = apps
    lane = PredictionFastLane(RecordingApp(), service)
    cause = FloatingPointError("the model returned a probability outside [0, 1]")

    def explode(_raw: Any) -> Any:
        raise cause

    monkeypatch.setattr(service.assessor.model, "blocks", explode)
    requests = [
        PredictionRequest((LoanApplication.model_validate(loan),), "/predict", context(index))
        for index, loan in enumerate(loan_variants(3))
    ]

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(lane.coalescer.predict(request) for request in requests), return_exceptions=True
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
