"""The HTTP API through an in-process ASGI client, on a model trained by ``python -m training``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from loan_service.application import ServiceApp
from loan_service.scoring import loans_to_matrix
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES, LoanApplication
from tests.support.loans import MIDDLING_LOAN, RISKY_LOAN, SAFE_LOAN, TYPICAL_LOAN
from tests.support.serving_fixtures import build_test_app

CONTRACT_FIELDS = {
    "probability",
    "prediction",
    "threshold",
    "message",
    "risk_band",
    "grade",
    "reasons",
    "expected_loss",
    "model_version",
    "request_id",
}


@pytest.fixture(scope="module")
def app_and_service(trained_artifacts: Path) -> tuple[ServiceApp, PredictionService]:
    return build_test_app(trained_artifacts)


@pytest.fixture(scope="module")
def service(app_and_service: tuple[ServiceApp, PredictionService]) -> PredictionService:
    return app_and_service[1]


@pytest.fixture(scope="module")
def client(app_and_service: tuple[ServiceApp, PredictionService]) -> Iterator[TestClient]:
    with TestClient(app_and_service[0], raise_server_exceptions=False) as test_client:
        yield test_client


def predict(client: TestClient, loan: dict[str, Any], **headers: str) -> Any:
    response = client.post("/predict", json=loan, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def raw_impacts(service: PredictionService, loan: dict[str, Any]) -> np.ndarray:
    raw = loans_to_matrix([LoanApplication(**loan)])
    impacts: np.ndarray = service.assessor.model.score(raw).impact[0]
    return impacts


# --- /predict ------------------------------------------------------------------------------------
def test_predict_answers_every_contract_field_and_echoes_the_request_id(
    client: TestClient, service: PredictionService
) -> None:
    response = client.post("/predict", json=TYPICAL_LOAN)
    answer = response.json()
    assert set(answer) == CONTRACT_FIELDS
    assert response.headers["x-request-id"] == answer["request_id"]
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["threshold"] == service.bundle.manifest.threshold
    assert answer["model_version"] == service.bundle.manifest.model_version
    assert answer["prediction"] == int(answer["probability"] >= answer["threshold"])


def test_a_valid_client_request_id_is_reused(client: TestClient) -> None:
    response = client.post("/predict", json=TYPICAL_LOAN, headers={"X-Request-ID": "lender-42"})
    assert response.headers["x-request-id"] == "lender-42"
    assert response.json()["request_id"] == "lender-42"


@pytest.mark.parametrize("loan", [RISKY_LOAN, SAFE_LOAN, MIDDLING_LOAN, TYPICAL_LOAN])
def test_decision_message_and_band_agree_with_the_probability(
    client: TestClient, loan: dict[str, Any]
) -> None:
    answer = predict(client, loan)
    high = answer["probability"] >= answer["threshold"]
    assert answer["prediction"] == int(high)
    expected_band = "high" if high else ("medium" if answer["probability"] >= 0.2 else "low")
    assert answer["risk_band"] == expected_band
    message_by_band = {
        "high": "High risk of default",
        "medium": "Moderate risk of default",
        "low": "Low risk of default",
    }
    assert answer["message"] == message_by_band[expected_band]


def test_the_risky_applicant_is_declined_with_credit_lines_and_debt_as_top_reasons(
    client: TestClient,
) -> None:
    """GIVEN 5 credit lines and debt at 62 % of income WHEN scored THEN those two lead."""
    answer = predict(client, RISKY_LOAN)
    assert answer["prediction"] == 1
    assert answer["risk_band"] == "high"
    reasons = answer["reasons"]
    assert 2 <= len(reasons) <= 4
    assert {r["feature"] for r in reasons[:2]} == {
        "credit_lines_outstanding",
        "total_debt_outstanding",
    }
    assert {r["code"] for r in reasons[:2]} == {"CL", "TD"}
    assert reasons[0]["text"] in {"Number of credit lines outstanding", "Total debt outstanding"}
    impacts = [r["impact"] for r in reasons]
    assert impacts == sorted(impacts, reverse=True)
    assert all(impact > 0 for impact in impacts)


def test_the_safe_applicant_gets_no_risk_raising_reasons(
    client: TestClient, service: PredictionService
) -> None:
    """GIVEN every feature on the safe side of the mean THEN moving any of them to the mean
    raises the risk (all impacts negative), so no reason is given."""
    answer = predict(client, SAFE_LOAN)
    assert answer["reasons"] == []
    assert answer["risk_band"] == "low"
    assert (raw_impacts(service, SAFE_LOAN) < 0).all()


def test_reasons_are_the_largest_positive_counterfactual_impacts(
    client: TestClient, service: PredictionService
) -> None:
    impacts = raw_impacts(service, RISKY_LOAN)
    expected = [FEATURES[i] for i in np.argsort(-impacts) if impacts[i] >= 0.1][:4]
    answer = predict(client, RISKY_LOAN)
    assert answer["prediction"] == 1
    assert [r["feature"] for r in answer["reasons"]] == expected
    assert [r["impact"] for r in answer["reasons"]] == [
        round(float(impacts[FEATURES.index(f)]), 3) for f in expected
    ]
    assert all(r["text"] for r in answer["reasons"])


def test_an_approved_applicant_gets_no_adverse_action_reasons(
    client: TestClient, service: PredictionService
) -> None:
    """MIDDLING_LOAN has features that raise its risk, but it is approved: no reasons."""
    impacts = raw_impacts(service, MIDDLING_LOAN)
    answer = predict(client, MIDDLING_LOAN)
    assert answer["prediction"] == 0
    assert (impacts >= 0.1).any()
    assert answer["reasons"] == []


def test_expected_loss_is_pd_times_lgd_times_exposure_in_cents(
    client: TestClient, service: PredictionService
) -> None:
    for loan in (RISKY_LOAN, MIDDLING_LOAN, TYPICAL_LOAN):
        raw = loans_to_matrix([LoanApplication(**loan)])
        probability = float(service.assessor.model.score(raw).probability[0])
        assert probability == pytest.approx(float(service.assessor.model.probability(raw)[0]))
        expected = round(probability * (1 - 0.10) * loan["loan_amt_outstanding"], 2)
        assert predict(client, loan)["expected_loss"] == expected


def test_the_recovery_rate_setting_changes_the_loss_given_default(trained_artifacts: Path) -> None:
    app, _ = build_test_app(trained_artifacts, recovery_rate=0.40)
    with TestClient(app) as other:
        answer = other.post("/predict", json=RISKY_LOAN).json()
    assert answer["probability"] == 1.0
    assert answer["expected_loss"] == round(1.0 * 0.60 * RISKY_LOAN["loan_amt_outstanding"], 2)


def test_an_approval_is_one_model_call_and_a_decline_adds_its_counterfactuals(
    client: TestClient, service: PredictionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = service.assessor.model._model
    calls: list[tuple[str, np.ndarray]] = []

    def spy(name: str) -> None:
        original = getattr(predictor, name)

        def spied(normalized: np.ndarray) -> np.ndarray:
            calls.append((name, normalized.copy()))
            return np.asarray(original(normalized))

        monkeypatch.setattr(predictor, name, spied)

    spy("pair_probabilities")
    spy("class_probabilities")
    spy("log_odds")
    assert predict(client, MIDDLING_LOAN)["prediction"] == 0
    assert [(name, rows.shape) for name, rows in calls] == [("pair_probabilities", (1, 6))]
    calls.clear()
    assert predict(client, RISKY_LOAN)["prediction"] == 1
    assert [(name, rows.shape) for name, rows in calls] == [
        ("pair_probabilities", (1, 6)),
        ("log_odds", (7, 6)),  # the counterfactuals need the log-odds output only
    ]
    applicant, rows = calls[0][1][0], calls[1][1]
    assert np.array_equal(rows[0], applicant)
    for j in range(6):  # row j+1 is the applicant with feature j at its mean (0 once normalized)
        assert rows[j + 1][j] == 0.0
        assert np.array_equal(np.delete(rows[j + 1], j), np.delete(applicant, j))


# --- /predict/batch ------------------------------------------------------------------------------
def test_a_batch_answers_in_order_exactly_as_single_calls_do(client: TestClient) -> None:
    loans = [RISKY_LOAN, SAFE_LOAN, MIDDLING_LOAN, TYPICAL_LOAN, RISKY_LOAN]
    response = client.post("/predict/batch", json={"loans": loans})
    assert response.status_code == 200
    batch = response.json()
    assert set(batch) == {"predictions", "model_version", "request_id"}
    assert response.headers["x-request-id"] == batch["request_id"]
    singles = [predict(client, loan) for loan in loans]
    for item, single in zip(batch["predictions"], singles, strict=True):
        assert item["request_id"] == batch["request_id"]
        assert {k: v for k, v in item.items() if k != "request_id"} == {
            k: v for k, v in single.items() if k != "request_id"
        }


def test_a_batch_of_a_thousand_is_one_model_call_and_one_for_its_declines(
    client: TestClient, service: PredictionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = service.assessor.model._model
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def spy(name: str) -> None:
        original = getattr(predictor, name)

        def spied(normalized: np.ndarray) -> np.ndarray:
            shapes.append((name, normalized.shape))
            return np.asarray(original(normalized))

        monkeypatch.setattr(predictor, name, spied)

    spy("pair_probabilities")
    spy("class_probabilities")
    spy("log_odds")
    loans = [MIDDLING_LOAN] * 998 + [RISKY_LOAN] * 2
    response = client.post("/predict/batch", json={"loans": loans})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1000
    # The declines' counterfactuals fetch log-odds only; a tree ensemble's PD call brings the
    # applicants' own log-odds, so its counterfactual call leaves their rows out.
    if predictor.log_odds_with_pds:
        assert shapes == [("class_probabilities", (1000, 6)), ("log_odds", (12, 6))]
    else:
        assert shapes == [("pair_probabilities", (1000, 6)), ("log_odds", (14, 6))]


# --- errors --------------------------------------------------------------------------------------
def test_a_422_lists_each_invalid_field_with_its_reason(client: TestClient) -> None:
    body = {
        **TYPICAL_LOAN,
        "credit_lines_outstanding": True,
        "income": 0,
        "fico_score": 900,
        "customer_id": 1,
    }
    del body["years_employed"]
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "validation_error"
    assert error["request_id"] == response.headers["x-request-id"]
    by_field = {d["field"]: d for d in error["detail"]}
    assert set(by_field) == {
        "credit_lines_outstanding",
        "income",
        "fico_score",
        "customer_id",
        "years_employed",
    }
    assert by_field["income"]["type"] == "greater_than"
    assert by_field["fico_score"]["msg"] == "Input should be less than or equal to 850"
    assert by_field["years_employed"]["type"] == "missing"
    assert by_field["customer_id"]["type"] == "extra_forbidden"
    assert by_field["credit_lines_outstanding"]["loc"] == ["body", "credit_lines_outstanding"]
    assert "fico_score" in error["message"]


def test_a_batch_422_names_the_loan_by_index(client: TestClient) -> None:
    loans = [TYPICAL_LOAN, TYPICAL_LOAN, {**TYPICAL_LOAN, "income": "lots"}]
    error = client.post("/predict/batch", json={"loans": loans}).json()
    assert [d["field"] for d in error["detail"]] == ["loans[2].income"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"credit_lines_outstanding=1", "application/x-www-form-urlencoded"),
        (b"hello", "text/plain"),
        (b'{"credit_lines_outstanding": 1,', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"income": "\xff"}', "application/json"),
    ],
)
def test_a_body_that_is_not_json_gets_415(
    client: TestClient, content: bytes, content_type: str
) -> None:
    response = client.post("/predict", content=content, headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_an_empty_body_is_a_422_on_the_body(client: TestClient) -> None:
    response = client.post("/predict", content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["detail"]] == ["body"]


def test_a_body_over_one_mebibyte_gets_413(client: TestClient) -> None:
    padding = " " * (1024 * 1024)
    response = client.post(
        "/predict",
        content=f"{{{padding}}}".encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.headers["x-request-id"] == response.json()["request_id"]


def test_a_batch_over_a_thousand_loans_gets_413(client: TestClient) -> None:
    response = client.post("/predict/batch", json={"loans": [TYPICAL_LOAN] * 1001})
    assert response.status_code == 413
    assert response.json()["message"] == "A batch holds at most 1000 loans."


def test_an_empty_batch_is_a_422(client: TestClient) -> None:
    response = client.post("/predict/batch", json={"loans": []})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "loans"


def test_unknown_paths_and_methods_answer_404_and_405_in_the_error_shape(
    client: TestClient,
) -> None:
    missing = client.get("/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong_method = client.get("/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert "/no/such/thing" not in missing.text


def test_an_internal_error_is_a_500_without_trace_path_or_file_name(
    client: TestClient, service: PredictionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(raw: np.ndarray, request_id: str) -> None:
        raise RuntimeError(f"cannot open {service.bundle.onnx_path}")

    monkeypatch.setattr(service.assessor, "assess_matrix", explode)
    response = client.post("/predict", json=TYPICAL_LOAN, headers={"x-request-id": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "The service failed to answer this request; it has been logged.",
        "request_id": "boom-1",
    }
    assert response.headers["x-request-id"] == "boom-1"
    for leak in ("Traceback", "model.onnx", str(service.bundle.directory), ".py", "RuntimeError"):
        assert leak not in response.text


@pytest.mark.parametrize("route", ["hot", "fastapi"])
def test_an_internal_error_is_logged_once_wherever_it_is_raised(
    client: TestClient,
    service: PredictionService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    route: str,
) -> None:
    """GIVEN a failure in a hot route (answered by ``RequestContextMiddleware``) or in one of
    FastAPI's routes (answered by its handler, then raised on through the middleware) WHEN it is
    answered THEN its traceback is logged exactly once, with the request id, and the answer is
    the 500 JSON."""

    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    if route == "hot":
        monkeypatch.setattr(service.assessor, "assess_matrix", explode)
    else:
        monkeypatch.setattr(PredictionService, "health", explode)
    with caplog.at_level(logging.ERROR):
        response = (
            client.post("/predict", json=TYPICAL_LOAN, headers={"x-request-id": "once-1"})
            if route == "hot"
            else client.get("/health", headers={"x-request-id": "once-1"})
        )
    assert (response.status_code, response.json()["error"]) == (500, "internal_error")
    logged = [record for record in caplog.records if record.exc_info is not None]
    assert [(record.getMessage().split()[:3], record.request_id) for record in logged] == [
        (["unhandled", "error", "answering"], "once-1")
    ]


# --- the other endpoints -------------------------------------------------------------------------
def test_health_reports_the_model_and_the_logger(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["runtime"] == "onnx"
    assert health["predictions_served"] >= 0
    assert health["prediction_log"]["state"] == "disabled"


def test_model_shows_the_manifest_public_part_and_nothing_private(
    client: TestClient, service: PredictionService
) -> None:
    info = client.get("/model").json()
    manifest = json.loads((service.bundle.directory / "manifest.json").read_text())
    assert info["model_version"] == manifest["model_version"]
    assert info["model_name"] == manifest["model"]["name"]
    assert info["features"] == list(FEATURES)
    assert info["threshold"] == manifest["threshold"]
    assert set(info["metrics"]) == {"logistic_regression", "random_forest"}
    assert info["created_at"] == manifest["created_at"]
    assert info["risk_bands"] == {"medium_from": 0.2, "high_from": manifest["threshold"]}
    assert info["recovery_rate"] == 0.1
    text = json.dumps(info)
    for private in (*manifest["files"].values(), str(service.bundle.directory)):
        assert private not in text


def test_the_web_page_docs_and_schema_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<form" in page.text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(schema["paths"])
    predict_responses = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422", "500"} <= set(predict_responses)
    loan_schema = schema["components"]["schemas"]["LoanApplication"]
    assert loan_schema["additionalProperties"] is False
    assert loan_schema["properties"]["fico_score"]["maximum"] == 850
