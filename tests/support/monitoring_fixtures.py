"""Scored-loan files in the batch scorer's documented shape, made with the real trained model.

The columns: the input columns, then ``probability``, ``prediction``, ``risk_band``, ``grade``,
``expected_loss``, ``reason_1_code`` .. ``reason_4_code`` (the score command's contract). The PD
and grade come from the served model itself (ONNX) and the manifest's master scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loan_service.artifacts import ArtifactBundle, load_artifacts
from loan_service.predictor import DefaultRiskModel, load_probability_model
from loan_service.scoring import risk_band
from tests.support.default_book import FEATURES

REASON_COLUMNS = [f"reason_{n}_code" for n in range(1, 5)]


def bundle_of(artifacts: Path) -> ArtifactBundle:
    return load_artifacts(artifacts, FEATURES)


def scored_frame(artifacts: Path, loans: pd.DataFrame) -> pd.DataFrame:
    """``loans`` (input columns) with the score command's output columns appended."""
    bundle = bundle_of(artifacts)
    assert bundle.master_scale is not None
    model = DefaultRiskModel(load_probability_model(bundle, "onnx"), bundle.stats)
    probability = model.probability(loans[list(FEATURES)].to_numpy(np.float64))
    threshold = bundle.manifest.threshold
    scored = loans.copy()
    scored["probability"] = probability
    scored["prediction"] = (probability >= threshold).astype(np.int64)
    scored["risk_band"] = [risk_band(float(p), threshold) for p in probability]
    scored["grade"] = bundle.master_scale.grade(probability)
    scored["expected_loss"] = probability * scored["loan_amt_outstanding"]
    for column in REASON_COLUMNS:
        scored[column] = ""
    return scored


def write_scored(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path
