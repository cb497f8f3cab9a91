"""The ONNX path and the scikit-learn fallback give the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loan_service.application import build_service
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES
from tests.support.paths import LAMBDA_ROOT
from tests.support.serving_fixtures import make_settings


@pytest.fixture(scope="module")
def onnx_service(trained_artifacts: Path) -> PredictionService:
    return build_service(make_settings(trained_artifacts, model_runtime="onnx"), LAMBDA_ROOT)


@pytest.fixture(scope="module")
def sklearn_service(trained_artifacts: Path) -> PredictionService:
    return build_service(make_settings(trained_artifacts, model_runtime="sklearn"), LAMBDA_ROOT)


@pytest.fixture(scope="module")
def loan_rows() -> np.ndarray:
    """The project's synthetic book (always present) plus edge rows."""
    frame = pd.read_csv(Path(__file__).resolve().parents[2] / "Data" / "Loan_Data.csv")
    rows = frame[list(FEATURES)].to_numpy(dtype=np.float64)[:3000]
    edges = np.array([[0, 0, 0, 1, 0, 300], [50, 1e6, 1e6, 1e6, 60, 850]], dtype=np.float64)
    return np.vstack([rows, edges])


def test_the_runtimes_report_themselves(
    onnx_service: PredictionService, sklearn_service: PredictionService
) -> None:
    assert onnx_service.health().runtime == "onnx"
    assert sklearn_service.health().runtime == "sklearn"


def test_both_runtimes_give_the_same_answers(
    onnx_service: PredictionService, sklearn_service: PredictionService, loan_rows: np.ndarray
) -> None:
    onnx_answers = onnx_service.assessor.assess_matrix(loan_rows, "parity")
    sklearn_answers = sklearn_service.assessor.assess_matrix(loan_rows, "parity")
    threshold = onnx_service.assessor.threshold
    probabilities = np.array([a["probability"] for a in onnx_answers])
    assert np.allclose(probabilities, [a["probability"] for a in sklearn_answers], atol=1e-5)
    clear = np.abs(probabilities - threshold) > 1e-4
    for keep, ours, theirs in zip(clear, onnx_answers, sklearn_answers, strict=True):
        if not keep:
            continue
        same = ("prediction", "risk_band", "message")
        assert [ours[k] for k in same] == [theirs[k] for k in same]
        assert ours["expected_loss"] == pytest.approx(theirs["expected_loss"], abs=0.05)


def test_both_runtimes_give_the_same_reasons_where_the_model_is_not_saturated(
    onnx_service: PredictionService, sklearn_service: PredictionService, loan_rows: np.ndarray
) -> None:
    """Away from PD 0 or 1 (where float32 and float64 saturate differently) and away from ties,
    the reasons and their order agree."""
    onnx_scores = onnx_service.assessor.model.score(loan_rows)
    sklearn_scores = sklearn_service.assessor.model.score(loan_rows)
    moderate = (onnx_scores.probability > 1e-6) & (onnx_scores.probability < 1 - 1e-6)
    assert moderate.sum() > 50
    onnx_impacts = onnx_scores.impact[moderate]
    sklearn_impacts = sklearn_scores.impact[moderate]
    assert np.allclose(onnx_impacts, sklearn_impacts, atol=1e-2)
    top = np.sort(onnx_impacts, axis=1)[:, ::-1]
    separated = (np.diff(-top[:, :4], axis=1) > 0.05).all(axis=1)
    onnx_order = np.argsort(-onnx_impacts, axis=1)[:, :3][separated]
    sklearn_order = np.argsort(-sklearn_impacts, axis=1)[:, :3][separated]
    assert separated.sum() > 50
    assert (onnx_order == sklearn_order).all()
