"""Scored-loan files in the batch scorer's documented shape, made with the real trained model;
and a small synthetic book with its reference, for the bin and stability tests.

The columns: the input columns, then ``probability``, ``prediction``, ``risk_band``, ``grade``,
``expected_loss``, ``reason_1_code`` .. ``reason_4_code`` (the score command's contract). The PD
and grade come from the served model itself (ONNX) and the manifest's master scale.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
from botocore.stub import Stubber

from loan_service.artifacts import ArtifactBundle, load_artifacts
from loan_service.book import BookSchema
from loan_service.predictor import DefaultRiskModel, load_probability_model
from loan_service.reference_bins import FEATURE_BINS_FIELD, SCORE_BINS_FIELD
from loan_service.scoring import risk_band
from loan_service.stability import Reference
from loan_service.stability_monitor import BinQuery
from tests.support.default_book import FEATURES
from training.reference import build_reference, category_reference, numeric_reference

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


PURPOSES = ("car", "education", "home")
SYNTHETIC_VERSION = "v-bins"


def synthetic_book() -> BookSchema:
    """A small book with a category: two numbers around one category."""
    return BookSchema.from_table(
        {
            "target": {"column": "default", "default_value": 1},
            "features": {
                "income": {"type": "number", "reason_code": "IN", "reason": "Income"},
                "purpose": {
                    "type": "category",
                    "values": list(PURPOSES),
                    "reason_code": "PU",
                    "reason": "Purpose",
                },
                "fico_score": {"type": "integer", "reason_code": "FI", "reason": "FICO"},
            },
        }
    )


def synthetic_reference() -> Reference:
    """A reference built by training's own code for ``synthetic_book``; the purpose bins in
    another order than the book (code must map book values to reference bins, not assume)."""
    rng = np.random.default_rng(7)
    raw = build_reference(
        model_version=SYNTHETIC_VERSION,
        probability=rng.beta(1, 6, 4000),
        grade_shares=[0.5, 0.5],
        features={
            "income": numeric_reference(rng.lognormal(11, 0.4, 4000)),
            "purpose": category_reference(
                rng.choice(PURPOSES, 4000).tolist(), ["home", "car", "education"]
            ),
            "fico_score": numeric_reference(rng.integers(300, 851, 4000).astype(float)),
        },
    )
    return Reference.from_json(raw)


def insights_rows(
    query: BinQuery, documents: list[dict[str, Any]], version: str
) -> list[list[dict[str, str]]]:
    """What ``stats sum(...) by model_version`` answers over these EMF documents: one row, the
    version and every bin's sum as text; a bin no document has is left out (as Insights does)."""
    row = [{"field": "model_version", "value": version}]
    for alias, (feature, index) in query.columns.items():
        field, key = (
            (SCORE_BINS_FIELD, str(index))
            if feature is None
            else (FEATURE_BINS_FIELD, f"{feature}.{index}")
        )
        total = sum(doc[field].get(key, 0) for doc in documents)
        if any(key in doc[field] for doc in documents):
            row.append({"field": alias, "value": str(total)})
    return [row]


INSIGHTS_STATISTICS = {"recordsMatched": 2.0, "recordsScanned": 5210.0, "bytesScanned": 3.1e6}


def stubbed_client(service: str) -> Any:
    """A real boto3 client for a Stubber (its credentials are never used)."""
    return boto3.client(
        service,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def expect_bin_query(
    stubber: Stubber,
    query: BinQuery,
    rows: list[list[dict[str, str]]],
    log_group: str,
    end: datetime,
    *,
    hours: int = 24,
) -> None:
    """StartQuery over the window, then GetQueryResults: Running once, then Complete."""
    stubber.add_response(
        "start_query",
        {"queryId": "12ab3456-12ab-123a-789e-1234567890ab"},
        {
            "logGroupName": log_group,
            "startTime": int(end.timestamp()) - hours * 3600,
            "endTime": int(end.timestamp()),
            "queryString": query.text,
        },
    )
    stubber.add_response(
        "get_query_results",
        {"results": [], "statistics": {"recordsMatched": 0.0}, "status": "Running"},
        {"queryId": "12ab3456-12ab-123a-789e-1234567890ab"},
    )
    stubber.add_response(
        "get_query_results",
        {"results": rows, "statistics": INSIGHTS_STATISTICS, "status": "Complete"},
        {"queryId": "12ab3456-12ab-123a-789e-1234567890ab"},
    )
