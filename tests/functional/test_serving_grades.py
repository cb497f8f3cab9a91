"""Every answer carries its master-scale grade: API (single and batch) and the model's page data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from loan_service.application import ServiceApp
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES
from tests.support.loans import RISKY_LOAN, SAFE_LOAN
from tests.support.paths import PROJECT_CSV
from tests.support.serving_fixtures import build_test_app


@pytest.fixture(scope="module")
def app_and_service(trained_artifacts: Path) -> tuple[ServiceApp, PredictionService]:
    return build_test_app(trained_artifacts)


@pytest.fixture(scope="module")
def client(app_and_service: tuple[ServiceApp, PredictionService]) -> Iterator[TestClient]:
    with TestClient(app_and_service[0]) as test_client:
        yield test_client


def test_single_answers_carry_the_grade_of_their_pd(
    client: TestClient, app_and_service: tuple[ServiceApp, PredictionService]
) -> None:
    scale = app_and_service[1].bundle.master_scale
    assert scale is not None
    safe = client.post("/predict", json=SAFE_LOAN).json()
    risky = client.post("/predict", json=RISKY_LOAN).json()
    assert safe["grade"] == 1
    assert risky["grade"] == scale.grades
    assert set(safe) >= {"probability", "prediction", "risk_band", "expected_loss", "grade"}


def test_batch_grades_equal_the_master_scale_lookup_and_rise_with_the_pd(
    client: TestClient, app_and_service: tuple[ServiceApp, PredictionService]
) -> None:
    service = app_and_service[1]
    scale = service.bundle.master_scale
    assert scale is not None
    loans = pd.read_csv(PROJECT_CSV, nrows=1000)[list(FEATURES)]
    body = {"loans": loans.to_dict(orient="records")}
    answers = client.post("/predict/batch", json=body).json()["predictions"]
    grades = np.array([answer["grade"] for answer in answers])
    probability = service.assessor.scorer.score(loans.to_numpy(np.float64), "none").probability
    np.testing.assert_array_equal(grades, scale.grade(probability))
    order = np.argsort(probability, kind="stable")
    assert np.all(np.diff(grades[order]) >= 0)
    assert len(set(grades.tolist())) >= 5


def test_the_model_endpoint_publishes_the_master_scale(client: TestClient) -> None:
    grades = client.get("/model").json()["grades"]
    assert grades["scale"][0]["grade"] == 1
    assert len(grades["upper_bounds"]) == len(grades["scale"]) - 1
