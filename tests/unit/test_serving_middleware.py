"""Pure ASGI middleware, driven directly with scopes and messages (no server, no FastAPI)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.types import Receive, Send

from loan_service.middleware import (
    ExternalPathMiddleware,
    RequestBodyMiddleware,
    RequestContextMiddleware,
)

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]


def http_scope(
    method: str = "POST",
    path: str = "/predict",
    headers: dict[str, str] | None = None,
    aws_event: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Scope:
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    if aws_event is not None:
        scope["aws.event"] = aws_event
    if request_id is not None:
        scope["state"] = {"request_id": request_id}
    return scope


class EchoApp:
    """Reads the whole body, then answers 200 with what it saw."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen_scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        self.seen_scope = scope
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                await send({"type": "http.response.start", "status": 400, "headers": []})
                await send({"type": "http.response.body", "body": b"disconnected"})
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def run(app: Any, scope: Scope, chunks: list[bytes] | None = None) -> tuple[list[Message], int]:
    """Drive ``app`` once; returns the messages sent and how many receive() calls were made."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks or []) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    sent: list[Message] = []
    receives = 0

    async def receive() -> Message:
        nonlocal receives
        receives += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, receives


def status_of(sent: list[Message]) -> int:
    return int(next(m for m in sent if m["type"] == "http.response.start")["status"])


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def header_of(sent: list[Message], name: bytes) -> bytes | None:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return next((v for k, v in start["headers"] if k == name), None)


# --- request id --------------------------------------------------------------------------------
def test_a_valid_client_request_id_is_reused_and_echoed() -> None:
    app = EchoApp()
    sent, _ = run(
        RequestContextMiddleware(app), http_scope(headers={"x-request-id": "abc-123.X_y"})
    )
    assert header_of(sent, b"x-request-id") == b"abc-123.X_y"
    assert app.seen_scope["state"]["request_id"] == "abc-123.X_y"
    assert app.seen_scope["state"]["started_ns"] > 0


@pytest.mark.parametrize("offered", ["", "has space", "new\nline", "x" * 129, 'quote"d', "é"])
def test_an_unsafe_client_request_id_is_replaced_by_a_fresh_one(offered: str) -> None:
    app = EchoApp()
    scope = http_scope()
    scope["headers"] = [(b"x-request-id", offered.encode())]
    sent, _ = run(RequestContextMiddleware(app), scope)
    minted = header_of(sent, b"x-request-id")
    assert minted is not None
    assert minted != offered.encode()
    assert len(minted) == 32
    assert int(minted, 16) >= 0


def test_each_request_without_an_id_gets_a_different_one() -> None:
    ids = {
        header_of(run(RequestContextMiddleware(EchoApp()), http_scope())[0], b"x-request-id")
        for _ in range(50)
    }
    assert len(ids) == 50


# --- body limit ----------------------------------------------------------------------------------
def test_a_declared_oversized_body_gets_413_without_reading_it_or_calling_the_app() -> None:
    app = EchoApp()
    scope = http_scope(headers={"content-length": str(1024 * 1024 + 1)}, request_id="r1")
    sent, receives = run(RequestBodyMiddleware(app, max_bytes=1024 * 1024), scope)
    assert status_of(sent) == 413
    assert receives == 0
    assert app.calls == 0
    assert json.loads(body_of(sent)) == {
        "error": "payload_too_large",
        "message": "The request body is larger than the 1 MiB limit.",
        "request_id": "r1",
    }


def test_a_streamed_body_over_the_limit_gets_413_and_the_apps_late_answer_is_dropped() -> None:
    app = EchoApp()
    chunks = [b"x" * 600, b"x" * 600, b"x" * 600]
    sent, receives = run(RequestBodyMiddleware(app, max_bytes=1000), http_scope(), chunks)
    assert [status_of(sent)] == [413]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert receives == 2  # stopped at the chunk that crossed the limit


def test_a_body_at_the_limit_passes_through() -> None:
    sent, _ = run(RequestBodyMiddleware(EchoApp(), max_bytes=1000), http_scope(), [b"y" * 1000])
    assert status_of(sent) == 200
    assert body_of(sent) == b"y" * 1000


# --- content type -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/problem+json",
    ],
)
def test_json_bodies_pass(content_type: str) -> None:
    sent, _ = run(
        RequestBodyMiddleware(EchoApp()),
        http_scope(headers={"content-type": content_type}),
        [b"{}"],
    )
    assert status_of(sent) == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "application/jsonp"},
    ],
)
def test_a_body_not_declared_as_json_gets_415_before_the_app_runs(headers: dict[str, str]) -> None:
    app = EchoApp()
    sent, _ = run(
        RequestBodyMiddleware(app),
        http_scope(headers=headers, request_id="r2"),
        [b"a=1"],
    )
    assert status_of(sent) == 415
    assert app.calls == 0
    assert json.loads(body_of(sent))["error"] == "unsupported_media_type"


def test_a_body_without_content_type_reaches_the_app_to_be_parsed_as_json() -> None:
    """AWS's sample events (console templates, ``sam local generate-event``) carry none."""
    app = EchoApp()
    sent, _ = run(RequestBodyMiddleware(app), http_scope(headers={}), [b'{"income": 1}'])
    assert status_of(sent) == 200
    assert app.calls == 1


def test_an_empty_post_without_content_type_reaches_the_app_for_its_422() -> None:
    sent, _ = run(RequestBodyMiddleware(EchoApp()), http_scope(headers={"content-length": "0"}))
    assert status_of(sent) == 200


def test_get_requests_are_not_checked_for_content_type() -> None:
    sent, _ = run(RequestBodyMiddleware(EchoApp()), http_scope(method="GET", path="/health"))
    assert status_of(sent) == 200


# --- external path ------------------------------------------------------------------------------
def rewritten(scope: Scope, base_path: str = "") -> Scope:
    app = EchoApp()
    run(ExternalPathMiddleware(app, base_path=base_path), scope)
    return app.seen_scope


def test_http_api_named_stage_becomes_the_root_path() -> None:
    event = {
        "version": "2.0",
        "requestContext": {"stage": "prod", "http": {"path": "/prod/predict"}},
    }
    seen = rewritten(http_scope(path="/prod/predict", aws_event=event))
    assert (seen["root_path"], seen["path"]) == ("/prod", "/prod/predict")


def test_rest_api_stage_comes_from_the_client_path_in_the_request_context() -> None:
    """REST APIs strip the stage from ``path`` but the client asked for /prod/predict."""
    event = {"httpMethod": "POST", "requestContext": {"stage": "prod", "path": "/prod/predict"}}
    seen = rewritten(http_scope(path="/predict", aws_event=event))
    assert (seen["root_path"], seen["path"]) == ("/prod", "/prod/predict")


def test_a_custom_domain_base_path_is_stripped_and_the_stage_is_not_invented() -> None:
    event = {"httpMethod": "POST", "requestContext": {"stage": "prod", "path": "/loans/predict"}}
    seen = rewritten(http_scope(path="/loans/predict", aws_event=event), base_path="/loans")
    assert (seen["root_path"], seen["path"]) == ("/loans", "/loans/predict")


def test_a_base_path_followed_by_the_stage_strips_both() -> None:
    event = {"httpMethod": "GET", "requestContext": {"stage": "prod", "path": "/loans/prod/health"}}
    seen = rewritten(http_scope(method="GET", path="/loans/prod/health", aws_event=event), "/loans")
    assert seen["root_path"] == "/loans/prod"


@pytest.mark.parametrize("stage", ["$default", None])
def test_default_stages_albs_and_function_urls_are_left_alone(stage: str | None) -> None:
    event: dict[str, Any] = (
        {"requestContext": {"stage": stage}} if stage else {"requestContext": {"elb": {}}}
    )
    scope = http_scope(path="/predict", aws_event=event)
    seen = rewritten(scope)
    assert (seen["root_path"], seen["path"]) == ("", "/predict")


def test_a_prefix_must_match_whole_segments() -> None:
    event = {"version": "2.0", "requestContext": {"stage": "pro", "http": {"path": "/prod/x"}}}
    seen = rewritten(http_scope(path="/prod/x", aws_event=event))
    assert seen["root_path"] == ""


def test_outside_lambda_only_the_configured_base_path_applies() -> None:
    seen = rewritten(http_scope(path="/loans/predict"), base_path="/loans")
    assert (seen["root_path"], seen["path"]) == ("/loans", "/loans/predict")
    untouched = rewritten(http_scope(path="/predict"))
    assert untouched["root_path"] == ""


class FailingApp:
    def __init__(self, after_start: bool) -> None:
        self.after_start = after_start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.after_start:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("/var/task/artifacts/model.onnx is gone")


def test_an_exception_escaping_the_app_becomes_a_logged_500_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = http_scope(headers={"x-request-id": "req-500"})
    with caplog.at_level("ERROR", logger="loan_service.middleware"):
        sent, _ = run(RequestContextMiddleware(FailingApp(after_start=False)), scope)
    assert status_of(sent) == 500
    assert header_of(sent, b"x-request-id") == b"req-500"
    body = json.loads(body_of(sent))
    assert body == {
        "error": "internal_error",
        "message": "The service failed to answer this request; it has been logged.",
        "request_id": "req-500",
    }
    assert "model.onnx" not in json.dumps(body)


def test_an_exception_after_the_response_started_sends_no_second_start() -> None:
    sent, _ = run(RequestContextMiddleware(FailingApp(after_start=True)), http_scope())
    assert [m["type"] for m in sent] == ["http.response.start"]
