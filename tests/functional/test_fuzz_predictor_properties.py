"""Hypothesis properties of the predictor and of its answers, for BOTH model types.

Each property holds for any loan the API accepts (the strategies span the schema's full ranges, so
they reach the extremes no loan book contains):

* the probability of default is a probability, and the rest of the answer agrees with it;
* a batch answers exactly what the same loans get one by one;
* the order of the keys in the JSON body changes nothing;
* wherever the model is monotone by construction, it stays monotone. The logistic regression is
  (a linear score through Platt's monotone sigmoid): the PD moves with each feature in the
  direction of sign(coefficient) x sign(calibration slope), read from the trained pickle, never
  assumed. The forest is not monotone by construction and is not held to it.

The models come from the training package itself: the session's ``trained_artifacts`` and, for the
other model type, the same pipeline forced to that single candidate (``tests.support.candidates``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from loan_service.application import ServiceApp
from loan_service.artifacts import load_artifacts
from loan_service.predictor import DefaultRiskModel, load_probability_model
from tests.support.candidates import train_candidate
from tests.support.default_book import (
    FEATURES,
    FICO_MAX,
    FICO_MIN,
    MAX_AMOUNT,
    MAX_CREDIT_LINES,
    MAX_YEARS_EMPLOYED,
)
from tests.support.serving_fixtures import build_test_app

PROJECT_CSV: Final = Path(__file__).resolve().parents[2] / "Data" / "Loan_Data.csv"
MODEL_TYPES: Final = ("logistic_regression", "random_forest")
PROPERTY_SETTINGS: Final = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_amount = st.floats(min_value=0.0, max_value=MAX_AMOUNT, allow_nan=False, allow_infinity=False)
LOANS: Final = st.fixed_dictionaries(
    {
        "credit_lines_outstanding": st.integers(0, MAX_CREDIT_LINES),
        "loan_amt_outstanding": _amount,
        "total_debt_outstanding": _amount,
        "income": st.floats(
            min_value=0.0, max_value=MAX_AMOUNT, exclude_min=True, allow_infinity=False
        ),
        "years_employed": st.integers(0, MAX_YEARS_EMPLOYED),
        "fico_score": st.integers(FICO_MIN, FICO_MAX),
    }
)
# Loans like the book's, where a change of one feature actually moves a PD that is not pinned at
# 0 or 1 (the monotonicity property is checked on both kinds of loan).
BOOK_LIKE_LOANS: Final = st.fixed_dictionaries(
    {
        "credit_lines_outstanding": st.integers(0, 5),
        "loan_amt_outstanding": st.floats(0.0, 11_000.0),
        "total_debt_outstanding": st.floats(0.0, 45_000.0),
        "income": st.floats(1_000.0, 150_000.0),
        "years_employed": st.integers(0, 10),
        "fico_score": st.integers(400, 850),
    }
)

_artifact_cache: dict[str, Path] = {}


def artifacts_for(
    model_type: str, trained_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The session's folder when it holds ``model_type``; else one trained for it, once."""
    if model_type not in _artifact_cache:
        manifest = json.loads((trained_artifacts / "manifest.json").read_text())
        if manifest["model"]["name"] == model_type:
            _artifact_cache[model_type] = trained_artifacts
        else:
            out = tmp_path_factory.mktemp(f"forced-{model_type}") / "artifacts"
            train_candidate(model_type, PROJECT_CSV, out, seed=7)
            _artifact_cache[model_type] = out
    return _artifact_cache[model_type]


@pytest.fixture(scope="module", params=MODEL_TYPES)
def model_artifacts(
    request: pytest.FixtureRequest,
    trained_artifacts: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    return artifacts_for(request.param, trained_artifacts, tmp_path_factory)


@pytest.fixture(scope="module")
def client(model_artifacts: Path) -> Iterator[TestClient]:
    app: ServiceApp = build_test_app(model_artifacts)[0]
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def logistic_artifacts(trained_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return artifacts_for("logistic_regression", trained_artifacts, tmp_path_factory)


def answer_without_request_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "request_id"}


def post_text(client: TestClient, path: str, text: str) -> Any:
    response = client.post(path, content=text, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def test_both_model_types_are_really_served(client: TestClient, model_artifacts: Path) -> None:
    manifest = json.loads((model_artifacts / "manifest.json").read_text())
    served = client.get("/model").json()
    assert served["model_name"] == manifest["model"]["name"]
    assert served["model_name"] in MODEL_TYPES


@PROPERTY_SETTINGS
@given(loan=LOANS)
def test_the_answer_is_a_probability_and_everything_in_it_agrees(
    client: TestClient, loan: dict[str, Any]
) -> None:
    answer = post_text(client, "/predict", json.dumps(loan))
    probability, threshold = answer["probability"], answer["threshold"]
    assert 0.0 <= probability <= 1.0
    assert answer["prediction"] == (1 if probability >= threshold else 0)
    assert (answer["risk_band"] == "high") == (answer["prediction"] == 1)
    assert 0.0 <= answer["expected_loss"] <= loan["loan_amt_outstanding"] + 0.005
    assert len(answer["reasons"]) <= 4
    if answer["prediction"] == 0:
        assert answer["reasons"] == []  # no adverse action for an approved applicant
    else:
        assert answer["reasons"], "every decline has its principal reasons"
    impacts = [reason["impact"] for reason in answer["reasons"]]
    assert impacts == sorted(impacts, reverse=True)
    assert all(impact > 0 for impact in impacts)


@PROPERTY_SETTINGS
@given(loans=st.lists(LOANS, min_size=1, max_size=12))
def test_a_batch_answers_exactly_what_the_same_loans_get_one_by_one(
    client: TestClient, loans: list[dict[str, Any]]
) -> None:
    batch = post_text(client, "/predict/batch", json.dumps({"loans": loans}))["predictions"]
    singles = [post_text(client, "/predict", json.dumps(loan)) for loan in loans]
    assert [answer_without_request_id(a) for a in batch] == [
        answer_without_request_id(a) for a in singles
    ]


@PROPERTY_SETTINGS
@given(loan=LOANS, order=st.permutations(FEATURES))
def test_the_order_of_the_json_keys_changes_nothing(
    client: TestClient, loan: dict[str, Any], order: list[str]
) -> None:
    canonical = post_text(client, "/predict", json.dumps(loan))
    reordered = post_text(client, "/predict", json.dumps({name: loan[name] for name in order}))
    assert answer_without_request_id(reordered) == answer_without_request_id(canonical)


@PROPERTY_SETTINGS
@given(loans=st.lists(LOANS, min_size=1, max_size=50))
def test_the_predictor_gives_probabilities_for_any_rows_and_scores_agree_with_them(
    model_artifacts: Path, loans: list[dict[str, Any]]
) -> None:
    model = _risk_model(model_artifacts)
    raw = np.array([[loan[name] for name in FEATURES] for loan in loans], dtype=np.float64)
    probability = model.probability(raw)
    scored = model.score(raw)
    assert np.all(np.isfinite(probability))
    assert np.all((probability >= 0.0) & (probability <= 1.0))
    np.testing.assert_array_equal(scored.probability, probability)
    assert np.all(np.isfinite(scored.impact))


@PROPERTY_SETTINGS
@given(loans=st.lists(LOANS, min_size=1, max_size=8), data=st.data())
def test_a_few_rows_impacts_in_floats_are_the_array_impacts_exactly(
    model_artifacts: Path, loans: list[dict[str, Any]], data: st.DataObject
) -> None:
    """``row_impacts`` (the API's few rows) against ``impacts``, bit for bit, with and without
    the applicants' own log-odds from the PD call (a tree ensemble's path, and a linear one's)."""
    model = _risk_model(model_artifacts)
    raw = np.array([[loan[name] for name in FEATURES] for loan in loans], dtype=np.float64)
    normalized = model.normalized(raw)
    rows = data.draw(st.lists(st.integers(0, len(loans) - 1), min_size=1, unique=True))
    applicants = model.block_scores(normalized)[1]
    if applicants is None:
        applicants = model.class_probabilities(normalized)[:, 2]
    for given_odds in (None, applicants):
        arrays = model.impacts(normalized[rows], None if given_odds is None else given_odds[rows])
        assert model.row_impacts(normalized, rows, given_odds) == arrays.tolist()


_models: dict[Path, DefaultRiskModel] = {}


def _risk_model(artifacts: Path) -> DefaultRiskModel:
    if artifacts not in _models:
        bundle = load_artifacts(artifacts, FEATURES)
        _models[artifacts] = DefaultRiskModel(load_probability_model(bundle, "onnx"), bundle.stats)
    return _models[artifacts]


def monotone_directions(artifacts: Path) -> dict[str, int]:
    """+1 / -1 per feature from the trained logistic regression: sign(w_j) x sign(dPD/dscore).

    scikit-learn's Platt calibrator maps a score s to expit(-(a s + b)), so the PD rises with s
    when a < 0. Both numbers are read from ``best_model.pkl``, the estimator ONNX was made from.
    """
    import joblib

    from training.calibration import base_estimator

    calibrated = joblib.load(artifacts / "best_model.pkl")
    coefficients = np.asarray(base_estimator(calibrated).coef_, dtype=np.float64).ravel()
    slope = float(calibrated.calibrated_classifiers_[0].calibrators[0].a_)
    assert slope != 0.0
    score_direction = 1 if slope < 0 else -1
    return {
        name: int(np.sign(weight)) * score_direction
        for name, weight in zip(FEATURES, coefficients, strict=True)
    }


def test_the_monotone_model_is_the_logistic_regression_with_a_direction_for_every_feature(
    logistic_artifacts: Path,
) -> None:
    manifest = json.loads((logistic_artifacts / "manifest.json").read_text())
    assert manifest["model"]["name"] == "logistic_regression"
    directions = monotone_directions(logistic_artifacts)
    assert set(directions) == set(FEATURES)
    assert all(direction in (-1, 1) for direction in directions.values()), directions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    loan=st.one_of(BOOK_LIKE_LOANS, LOANS),
    feature=st.sampled_from(FEATURES),
    fractions=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_the_logistic_regression_pd_is_monotone_in_every_feature_in_its_trained_direction(
    logistic_artifacts: Path,
    loan: dict[str, Any],
    feature: str,
    fractions: tuple[float, float],
) -> None:
    """GIVEN a loan and two values of one feature (the others fixed), WHEN both are scored,
    THEN the PD moves in the direction the trained coefficients say, or not at all."""
    directions = monotone_directions_cached(logistic_artifacts)
    column = FEATURES.index(feature)
    low_value, high_value = sorted(_value_in_range(feature, loan, f) for f in fractions)
    rows = np.array([[loan[name] for name in FEATURES]] * 2, dtype=np.float64)
    rows[0, column], rows[1, column] = low_value, high_value
    low_pd, high_pd = _risk_model(logistic_artifacts).probability(rows)
    assert directions[feature] * (high_pd - low_pd) >= 0.0, (feature, low_value, high_value)


_directions: dict[Path, dict[str, int]] = {}


def monotone_directions_cached(artifacts: Path) -> dict[str, int]:
    if artifacts not in _directions:
        _directions[artifacts] = monotone_directions(artifacts)
    return _directions[artifacts]


def _value_in_range(feature: str, loan: dict[str, Any], fraction: float) -> float:
    """A value of ``feature`` between 0.5x and 2x the loan's own (integers stay integral)."""
    base = float(loan[feature])
    low, high = base * 0.5, max(base * 2.0, base + 10.0)
    value = low + (high - low) * fraction
    if feature in ("credit_lines_outstanding", "years_employed", "fico_score"):
        value = float(round(value))
    return value
