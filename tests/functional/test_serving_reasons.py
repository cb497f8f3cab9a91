"""Adverse-action reasons: every decline has its principal reasons (codes, wording from the
schema), even where the probability saturates at exactly 1.0; approved applicants get none."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from loan_service.reasons import MAX_REASONS
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES, REASON_CODES
from tests.support.serving_fixtures import build_test_app
from training.schema import DEFAULT_BOOK

SATURATED_DECLINE = {
    "credit_lines_outstanding": 5,
    "loan_amt_outstanding": 8000,
    "total_debt_outstanding": 30000,
    "income": 20000,
    "years_employed": 0,
    "fico_score": 400,
}
"""PD exactly 1.0 in float32: every counterfactual's probability is 1.0 as well."""


@pytest.fixture(scope="module")
def served(trained_artifacts: Path) -> tuple[TestClient, PredictionService]:
    app, service = build_test_app(trained_artifacts)
    return TestClient(app), service


def grid() -> list[dict[str, Any]]:
    """Loans spanning the valid ranges: each feature at its bounds and in between."""
    levels = {
        "credit_lines_outstanding": [0, 2, 5, 1000],
        "loan_amt_outstanding": [0.0, 5000.0, 1e9],
        "total_debt_outstanding": [0.0, 20000.0, 1e9],
        "income": [1e-320, 1000.0, 70000.0, 1e9],
        "years_employed": [0, 5, 100],
        "fico_score": [300, 600, 850],
    }
    return [
        dict(zip(FEATURES, values, strict=True)) for values in itertools.product(*levels.values())
    ]


def test_the_saturated_decline_has_its_principal_reasons(
    served: tuple[TestClient, PredictionService],
) -> None:
    client, _ = served
    answer = client.post("/predict", json=SATURATED_DECLINE).json()

    assert answer["probability"] == 1.0
    assert answer["prediction"] == 1
    reasons = answer["reasons"]
    assert 1 <= len(reasons) <= MAX_REASONS
    impacts = [reason["impact"] for reason in reasons]
    assert impacts == sorted(impacts, reverse=True)
    assert all(math.isfinite(impact) and impact > 0 for impact in impacts)
    for reason in reasons:
        spec = DEFAULT_BOOK.feature(reason["feature"])
        assert reason["code"] == spec.reason_code
        assert reason["text"] == spec.reason


def test_every_decline_on_a_grid_spanning_the_valid_ranges_has_reasons_and_no_inf_or_nan(
    served: tuple[TestClient, PredictionService],
) -> None:
    client, _ = served
    loans = grid()
    declined = approved = 0
    for start in range(0, len(loans), 1000):
        response = client.post("/predict/batch", json={"loans": loans[start : start + 1000]})
        assert response.status_code == 200
        text = response.text
        assert "inf" not in text.lower().replace("info", "")
        assert "nan" not in text.lower()
        for answer in response.json()["predictions"]:
            if answer["prediction"] == 1:
                declined += 1
                assert 1 <= len(answer["reasons"]) <= MAX_REASONS, answer
                impacts = [reason["impact"] for reason in answer["reasons"]]
                assert impacts == sorted(impacts, reverse=True)
                assert all(REASON_CODES[r["feature"]] == r["code"] for r in answer["reasons"])
            else:
                approved += 1
                assert answer["reasons"] == []
    assert declined > 100
    assert approved > 100


def test_contributions_are_log_odds_differences_against_the_reference(
    served: tuple[TestClient, PredictionService],
) -> None:
    """Each impact equals logit(loan) - logit(loan with that feature at its training mean),
    both from the model's float64 log-odds output."""
    client, service = served
    answer = client.post("/predict", json=SATURATED_DECLINE).json()
    model = service.assessor.model
    raw = np.array([[float(SATURATED_DECLINE[name]) for name in FEATURES]])

    def log_odds(rows: np.ndarray) -> float:
        return float(model.class_probabilities(model.normalize(rows).astype(np.float32))[0, 2])

    base = log_odds(raw)
    for reason in answer["reasons"]:
        column = FEATURES.index(reason["feature"])
        moved = raw.copy()
        moved[0, column] = service.bundle.stats.mean[column]
        expected = base - log_odds(moved)
        assert reason["impact"] == pytest.approx(expected, abs=2e-3)


def test_model_publishes_the_schema_with_codes_and_wording(
    served: tuple[TestClient, PredictionService],
) -> None:
    client, _ = served
    schema = client.get("/model").json()["schema"]
    assert [feature["name"] for feature in schema["features"]] == list(FEATURES)
    assert json.dumps(schema) == json.dumps(DEFAULT_BOOK.to_manifest())
