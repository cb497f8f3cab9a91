"""The Lambda handler on what AWS's tooling really sends: sample POSTs without Content-Type,
keep-warm pings, events it does not serve, malformed HTTP events; and the gateway's request id.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from loan_service.lambda_adapter import LambdaHandler, UnsupportedEventError
from loan_service.service import PredictionService
from tests.support.events import (
    PROJECT_EVENTS,
    SHARED_EVENTS,
    invoke,
    load_project_event,
    load_shared_event,
    response_header,
    response_json,
    shape_event,
)
from tests.support.loans import TYPICAL_LOAN
from tests.support.serving_fixtures import build_test_handler, lines, needs_shared_events

SCHEDULED_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-28T09:15:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/loan-default-keep-warm"],
    "detail": {},
}
S3_EVENT: dict[str, Any] = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "eu-west-1",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "loans"}, "object": {"key": "book.csv", "size": 1024}},
        }
    ]
}
SQS_EVENT: dict[str, Any] = {
    "Records": [
        {
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": json.dumps(TYPICAL_LOAN),
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:loans",
        }
    ]
}
EVENTBRIDGE_EVENT: dict[str, Any] = {
    "version": "0",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "detail": {"bucket": {"name": "loans"}},
}


@pytest.fixture(scope="module")
def lambda_handler(trained_artifacts: Path) -> tuple[LambdaHandler, PredictionService, io.StringIO]:
    stream = io.StringIO()
    # Powertools keeps one handler per service name: a name of its own gets this stream, as JSON.
    handler, service = build_test_handler(
        trained_artifacts, on_lambda=True, log_stream=stream, service_name="loan-default-refusals"
    )
    return handler, service, stream


@pytest.fixture
def handler(lambda_handler: tuple[LambdaHandler, PredictionService, io.StringIO]) -> LambdaHandler:
    return lambda_handler[0]


@pytest.fixture
def log_stream(
    lambda_handler: tuple[LambdaHandler, PredictionService, io.StringIO],
) -> io.StringIO:
    stream = lambda_handler[2]
    stream.seek(0)
    stream.truncate()
    return stream


def without_content_type(event: dict[str, Any], path: str) -> dict[str, Any]:
    """A POST as ``sam local generate-event`` and the console's templates write it: no headers
    beyond what the shape has, and no Content-Type at all."""
    return shape_event(event, "POST", path, body=TYPICAL_LOAN, headers={})


@pytest.mark.parametrize("name", PROJECT_EVENTS)
def test_project_events_without_content_type_get_predictions(
    handler: LambdaHandler, name: str
) -> None:
    event = load_project_event(name)
    path = event.get("rawPath") or event["requestContext"].get("path") or event["path"]
    shaped = without_content_type(event, path)
    if "httpMethod" in event and "path" in event["requestContext"]:
        shaped["path"] = event["path"]
    response = invoke(handler, shaped)
    assert response["statusCode"] == 200, response.get("body")
    assert 0.0 <= response_json(response)["probability"] <= 1.0


@needs_shared_events
@pytest.mark.parametrize("name", SHARED_EVENTS)
def test_shared_sample_events_without_content_type_get_predictions(
    handler: LambdaHandler, name: str
) -> None:
    response = invoke(handler, without_content_type(load_shared_event(name), "/predict"))
    assert response["statusCode"] == 200, response.get("body")


def test_a_keep_warm_ping_is_answered_without_the_app(
    lambda_handler: tuple[LambdaHandler, PredictionService, io.StringIO], log_stream: io.StringIO
) -> None:
    handler, service, _ = lambda_handler
    served = service.observability.counters.total_predictions
    for ping in (SCHEDULED_EVENT, {"keep_warm": True}):
        assert invoke(handler, ping) == {"status": "warm", "model_version": service.model_version}
    assert service.observability.counters.total_predictions == served
    assert list(lines(log_stream)) == []


@pytest.mark.parametrize(
    ("event", "described"),
    [
        ({}, "an empty object"),
        (None, "null"),
        ([1, 2], "list"),
        (S3_EVENT, "an S3 event"),
        (SQS_EVENT, "an SQS event"),
        (EVENTBRIDGE_EVENT, "an EventBridge event"),
    ],
)
def test_events_it_does_not_serve_are_refused_with_one_structured_line(
    handler: LambdaHandler, log_stream: io.StringIO, event: Any, described: str
) -> None:
    with pytest.raises(UnsupportedEventError, match=described) as refused:
        invoke(handler, event)
    assert "serves HTTP requests" in str(refused.value)
    (line,) = list(lines(log_stream))
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["event_kind"] == "unsupported"
    assert described in record["message"]
    assert "book.csv" not in line
    assert "credit_lines" not in line


def malformed_events() -> list[tuple[str, dict[str, Any]]]:
    v2 = load_project_event("apigw-http-v2-prod-stage.json")
    v1 = load_project_event("apigw-rest-v1-prod-stage.json")
    alb = load_project_event("alb-target.json")
    bad_base64 = [
        (f"bad-base64-{name}", {**event, "body": "%%%not base64%%%", "isBase64Encoded": True})
        for name, event in (("v2", v2), ("v1", v1), ("alb", alb))
    ]
    no_context = [
        (f"no-request-context-{name}", {k: v for k, v in event.items() if k != "requestContext"})
        for name, event in (("v2", v2), ("v1", v1))
    ]
    v2_no_http = json.loads(json.dumps(v2))
    del v2_no_http["requestContext"]["http"]
    return [*bad_base64, *no_context, ("v2-without-http-block", v2_no_http)]


@pytest.mark.parametrize(("name", "event"), malformed_events(), ids=lambda value: str(value)[:30])
def test_malformed_http_events_get_a_400_in_the_json_error_shape(
    handler: LambdaHandler, log_stream: io.StringIO, name: str, event: dict[str, Any]
) -> None:
    response = invoke(handler, event)
    assert response["statusCode"] == 400
    answer = response_json(response)
    assert answer["error"] == "bad_request"
    assert answer["message"].startswith("The HTTP event could not be read")
    assert response_header(response, "x-request-id") == answer["request_id"]
    if "elb" in event.get("requestContext", {}):
        assert response["statusDescription"] == "400 Bad Request"
    (line,) = list(lines(log_stream))
    assert json.loads(line)["event_kind"] == "malformed_http"


def test_the_gateway_request_id_seeds_the_service_request_id(handler: LambdaHandler) -> None:
    event = shape_event(
        load_project_event("apigw-http-v2-prod-stage.json"),
        "POST",
        "/prod/predict",
        body=TYPICAL_LOAN,
        headers={"content-type": "application/json", "x-request-id": "client-chosen"},
    )
    event["requestContext"]["requestId"] = "Bq7Y9zQuDoEEM8z="
    response = invoke(handler, event)
    assert response_json(response)["request_id"] == "Bq7Y9zQuDoEEM8z="
    assert response_header(response, "x-request-id") == "Bq7Y9zQuDoEEM8z="
