"""The original design kept as the benchmark's yardstick is a real, working predictor.

A ratio against a broken or trivial reference would mean nothing: the reference model must be
trained on the loan book (scaler + random forest), answer with the original system's four fields,
and give the answers its own pickles give.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bench.reference_app import create_app
from bench.reference_model import ReferenceModel, train_reference_model
from tests.support.loans import RISKY_LOAN, SAFE_LOAN, TYPICAL_LOAN
from training.schema import FEATURES

PROJECT_CSV = Path(__file__).resolve().parents[2] / "Data" / "Loan_Data.csv"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceModel:
    return train_reference_model(PROJECT_CSV, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def client(reference: ReferenceModel) -> FlaskClient:
    return create_app(reference.directory).test_client()


def test_the_reference_is_a_scaler_and_a_forest_that_learned_the_book(
    reference: ReferenceModel,
) -> None:
    with reference.scaler_path.open("rb") as handle:
        scaler = pickle.load(handle)
    with reference.model_path.open("rb") as handle:
        model = pickle.load(handle)
    assert type(scaler).__name__ == "StandardScaler"
    assert type(model).__name__ == "RandomForestClassifier"
    assert model.n_estimators == 100
    assert reference.held_out_accuracy > 0.95


@pytest.mark.parametrize("loan", [TYPICAL_LOAN, RISKY_LOAN, SAFE_LOAN])
def test_the_reference_answers_the_original_fields_as_its_pickles_say(
    client: FlaskClient, reference: ReferenceModel, loan: dict[str, Any]
) -> None:
    response = client.post("/predict", json=loan)
    assert response.status_code == 200
    answer = response.get_json()
    assert set(answer) == {"probability", "prediction", "threshold", "message"}
    with reference.scaler_path.open("rb") as handle:
        scaler = pickle.load(handle)
    with reference.model_path.open("rb") as handle:
        model = pickle.load(handle)
    expected = model.predict_proba(scaler.transform([[loan[name] for name in FEATURES]]))[0, 1]
    assert answer["probability"] == pytest.approx(float(expected))
    assert answer["prediction"] == int(expected >= answer["threshold"])


def test_the_reference_tells_a_risky_applicant_from_a_safe_one(client: FlaskClient) -> None:
    risky = client.post("/predict", json=RISKY_LOAN).get_json()
    safe = client.post("/predict", json=SAFE_LOAN).get_json()
    assert risky["probability"] > safe["probability"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"income": 1}'],
    ids=["not-json", "not-an-object", "missing-features"],
)
def test_the_reference_refuses_a_bad_body_with_400(client: FlaskClient, body: bytes) -> None:
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400
