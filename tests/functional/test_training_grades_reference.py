"""Training writes the master scale into the manifest and reference.json beside the model.

Checked on a real ``python -m training`` run: every grade populated on the training split, the
reference shares reproduced by serving's own binning of the training rows, the file hashed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from loan_service.artifacts import load_artifacts
from loan_service.stability import REFERENCE_FILE
from tests.support.default_book import FEATURES
from tests.support.paths import PROJECT_CSV
from training.data import load_loan_book
from training.normalization import compute_stats, normalize
from training.onnx_export import onnx_probabilities
from training.split import stratified_split

SEED = 7  # the trained_artifacts fixture's seed


@pytest.fixture(scope="module")
def training_rows() -> np.ndarray:
    book = load_loan_book(PROJECT_CSV)
    return book.features[stratified_split(book.target, SEED).train]


def test_the_manifest_has_a_populated_monotone_master_scale(trained_artifacts: Path) -> None:
    manifest = json.loads((trained_artifacts / "manifest.json").read_text())
    grades = manifest["grades"]
    scale = grades["scale"]
    assert 5 <= len(scale) <= 10
    assert grades["method"]
    assert all(grade["train_loans"] > 0 for grade in scale)
    assert sum(grade["train_loans"] for grade in scale) == manifest["data"]["train_rows"]
    bounds = grades["upper_bounds"]
    assert bounds == sorted(set(bounds))
    assert [g["pd_to"] for g in scale[:-1]] == bounds


def test_reference_json_is_hashed_and_matches_the_training_split(
    trained_artifacts: Path, training_rows: np.ndarray
) -> None:
    manifest = json.loads((trained_artifacts / "manifest.json").read_text())
    digest = hashlib.sha256((trained_artifacts / REFERENCE_FILE).read_bytes()).hexdigest()
    assert manifest["files"][REFERENCE_FILE] == digest
    bundle = load_artifacts(trained_artifacts, FEATURES)
    reference = bundle.reference
    assert reference is not None
    assert bundle.master_scale is not None
    assert reference.model_version == manifest["model_version"]
    assert reference.rows == training_rows.shape[0]
    assert list(reference.features) == list(FEATURES)
    for index, name in enumerate(FEATURES):
        feature = reference.features[name]
        counts = np.bincount(
            feature.bin_of_numbers(training_rows[:, index]), minlength=feature.bins
        )
        np.testing.assert_allclose(counts / training_rows.shape[0], feature.shares)
        assert feature.low == training_rows[:, index].min()
        assert feature.high == training_rows[:, index].max()
        assert feature.bins <= 11
    # The score reference and the grade shares are those of the served (ONNX) PDs.
    stats = compute_stats(training_rows)
    probability = onnx_probabilities(
        (trained_artifacts / "model.onnx").read_bytes(), normalize(training_rows, stats)
    ).astype(np.float64)
    score = reference.score
    np.testing.assert_allclose(
        np.bincount(score.bin_of_numbers(probability), minlength=score.bins) / probability.size,
        score.shares,
    )
    grades = np.bincount(
        bundle.master_scale.grade(probability), minlength=bundle.master_scale.grades + 1
    )
    np.testing.assert_allclose(grades[1:] / probability.size, reference.grade_shares)
    assert np.all(reference.grade_shares > 0)
