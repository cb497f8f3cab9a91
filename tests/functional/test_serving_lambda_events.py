"""``handler(event, context)`` through every AWS front door, with real event shapes.

The project's own events live in tests/functional/events/ (written for this project); the shared
toolkit shapes in ../shared/events are used too where that folder exists.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from loan_service.lambda_adapter import LambdaHandler
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
from tests.support.lambda_context import FakeLambdaContext
from tests.support.loans import RISKY_LOAN, TYPICAL_LOAN
from tests.support.serving_fixtures import build_test_handler, needs_shared_events


@pytest.fixture(scope="module")
def lambda_handler(trained_artifacts: Path) -> tuple[LambdaHandler, PredictionService]:
    return build_test_handler(trained_artifacts, on_lambda=True, log_stream=io.StringIO())


@pytest.fixture
def handler(lambda_handler: tuple[LambdaHandler, PredictionService]) -> LambdaHandler:
    return lambda_handler[0]


def assert_prediction(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] == 200, response.get("body")
    answer: dict[str, Any] = response_json(response)
    assert {"probability", "prediction", "reasons", "request_id"} <= set(answer)
    assert response_header(response, "x-request-id") == answer["request_id"]
    return answer


@pytest.mark.parametrize("name", PROJECT_EVENTS)
def test_each_front_door_event_as_delivered_gets_a_prediction(
    handler: LambdaHandler, name: str
) -> None:
    """GIVEN the event exactly as AWS delivers it (stage prefix, base64 body and all)."""
    assert_prediction(invoke(handler, load_project_event(name)))


@needs_shared_events
@pytest.mark.parametrize("name", SHARED_EVENTS)
@pytest.mark.parametrize("base64_body", [False, True])
def test_the_shared_toolkit_shapes_get_predictions(
    handler: LambdaHandler, name: str, base64_body: bool
) -> None:
    event = shape_event(
        load_shared_event(name), "POST", "/predict", body=TYPICAL_LOAN, base64_body=base64_body
    )
    assert_prediction(invoke(handler, event))


@needs_shared_events
@pytest.mark.parametrize("name", SHARED_EVENTS)
def test_the_shared_toolkit_shapes_answer_health(handler: LambdaHandler, name: str) -> None:
    response = invoke(handler, shape_event(load_shared_event(name), "GET", "/health", headers={}))
    assert response["statusCode"] == 200
    assert response_json(response)["status"] == "ok"


@pytest.mark.parametrize("name", PROJECT_EVENTS)
def test_base64_bodies_are_decoded_on_every_front_door(handler: LambdaHandler, name: str) -> None:
    event = load_project_event(name)
    path = event.get("rawPath") or event["requestContext"].get("path") or event["path"]
    method_event = shape_event(event, "POST", path, body=TYPICAL_LOAN, base64_body=True)
    if "httpMethod" in event and "path" in event["requestContext"]:  # REST: keep the stage split
        method_event["path"] = event["path"]
    assert_prediction(invoke(handler, method_event))


def test_rest_api_stage_prefix_serves_docs_pointing_at_the_prefixed_schema(
    handler: LambdaHandler,
) -> None:
    """GIVEN a REST API on stage prod: path /docs, the client asked for /prod/docs."""
    event = shape_event(load_project_event("apigw-rest-v1-prod-stage.json"), "GET", "/docs")
    event["requestContext"]["path"] = "/prod/docs"
    docs = invoke(handler, event)
    assert docs["statusCode"] == 200
    assert "'/prod/openapi.json'" in docs["body"] or '"/prod/openapi.json"' in docs["body"]

    schema_event = shape_event(event, "GET", "/openapi.json")
    schema_event["requestContext"]["path"] = "/prod/openapi.json"
    schema = response_json(invoke(handler, schema_event))
    assert schema["servers"] == [{"url": "/prod"}]
    assert "/predict" in schema["paths"]


def test_http_api_stage_prefix_routes_and_redirects_the_bare_stage_to_its_slash(
    handler: LambdaHandler,
) -> None:
    base = load_project_event("apigw-http-v2-prod-stage.json")
    assert (
        response_json(invoke(handler, shape_event(base, "GET", "/prod/health", headers={})))[
            "status"
        ]
        == "ok"
    )
    page = invoke(handler, shape_event(base, "GET", "/prod/", headers={}))
    assert page["statusCode"] == 200
    assert "<form" in page["body"]
    bare = invoke(
        handler, shape_event(base, "GET", "/prod", headers={"host": base["headers"]["host"]})
    )
    assert bare["statusCode"] in (307, 308)
    assert response_header(bare, "location") == "/prod/"  # never the Host the client sent


def test_a_custom_domain_base_path_needs_api_base_path(trained_artifacts: Path) -> None:
    event = load_project_event("apigw-rest-v1-custom-domain.json")
    with_base, _ = build_test_handler(trained_artifacts, api_base_path="/loans")
    assert_prediction(with_base(event, FakeLambdaContext()))
    without_base, _ = build_test_handler(trained_artifacts)
    response = without_base(event, FakeLambdaContext())
    assert response["statusCode"] == 404
    assert response_json(response)["error"] == "not_found"


def test_errors_through_lambda_keep_the_json_shape(handler: LambdaHandler) -> None:
    base = load_project_event("apigw-http-v2-prod-stage.json")
    bad = invoke(handler, shape_event(base, "POST", "/prod/predict", body={"income": True}))
    assert bad["statusCode"] == 422
    assert response_json(bad)["error"] == "validation_error"
    not_json = invoke(
        handler,
        shape_event(
            base, "POST", "/prod/predict", body="x=1", headers={"content-type": "text/plain"}
        ),
    )
    assert not_json["statusCode"] == 415


def test_each_invocation_prints_one_emf_document_and_the_first_a_cold_start(
    trained_artifacts: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    handler, _ = build_test_handler(trained_artifacts, on_lambda=True, log_stream=io.StringIO())
    event = load_project_event("apigw-http-v2-prod-stage.json")
    capsys.readouterr()
    assert_prediction(invoke(handler, event))
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert_prediction(invoke(handler, event))
    second = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]

    assert sum("ColdStart" in doc for doc in first) == 1
    assert not any("ColdStart" in doc for doc in second)
    (metrics,) = [doc for doc in second if "Predictions" in doc]
    assert metrics["Predictions"] == [1.0]
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LoanDefault"
    assert len(metrics["PredictionLatency"]) == 1
    assert "DefaultsPredicted" in metrics


def test_lambda_logs_are_json_with_request_ids_and_the_cold_start_flag(
    trained_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a failing prediction on Lambda THEN one JSON error line carries the Lambda request
    id, our request id and cold_start; successful predictions log nothing."""
    monkeypatch.setattr("aws_lambda_powertools.logging.logger.is_cold_start", True)
    stream = io.StringIO()
    handler, service = build_test_handler(
        trained_artifacts, on_lambda=True, log_stream=stream, service_name="loan-default-logs"
    )
    event = load_project_event("alb-target.json")
    assert_prediction(invoke(handler, event))
    assert stream.getvalue() == ""

    def explode(*_: object) -> None:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(service.assessor, "assess_matrix", explode)
    event["headers"]["x-request-id"] = "alb-req-7"
    assert invoke(handler, event)["statusCode"] == 500
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    (error,) = [r for r in records if r["level"] == "ERROR"]
    assert error["request_id"] == "alb-req-7"
    assert error["function_request_id"] == FakeLambdaContext.aws_request_id
    assert error["cold_start"] is False  # the first invocation above was the cold one
    assert error["service"] == "loan-default-logs"
    assert "simulated failure" in error["exception"]


def test_the_emf_document_counts_each_loan_in_its_reference_bins(
    trained_artifacts: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the scheduled monitoring function sums: per variable, one count per loan, in the bin
    ``loan-default monitor`` would put it (its own rule, ``FeatureReference.bin_of_value``)."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    handler, service = build_test_handler(
        trained_artifacts, on_lambda=True, log_stream=io.StringIO()
    )
    loans = [TYPICAL_LOAN, RISKY_LOAN, TYPICAL_LOAN]
    base = load_project_event("apigw-http-v2-prod-stage.json")
    capsys.readouterr()
    answer = invoke(
        handler, shape_event(base, "POST", "/prod/predict/batch", body={"loans": loans})
    )
    assert answer["statusCode"] == 200, answer
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    (document,) = [doc for doc in documents if "Predictions" in doc]

    reference = service.bundle.reference
    assert reference is not None
    score: dict[str, int] = {}
    for item in response_json(answer)["predictions"]:
        key = str(reference.score.bin_of_value(item["probability"]))
        score[key] = score.get(key, 0) + 1
    features: dict[str, int] = {}
    for loan in loans:
        for name, value in loan.items():
            key = f"{name}.{reference.features[name].bin_of_value(value)}"
            features[key] = features.get(key, 0) + 1
    assert document["score_bins"] == score
    assert document["feature_bins"] == features
    assert document["model_version"] == service.model_version
