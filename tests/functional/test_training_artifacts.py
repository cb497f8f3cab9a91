"""The artifact folder written by ``python -m training`` on the reference data, checked against
the contract: manifest and hashes, quality bars, ONNX parity, no leakage, the report.

``reference_artifacts`` (tests/conftest.py) is the end-to-end run: the real CLI on
../shared/data/Loan_Data.csv into a temp folder, once per session.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import onnxruntime
import pytest
from sklearn.metrics import roc_auc_score

from training.candidates import CANDIDATES
from training.data import LoanBook, load_loan_book
from training.manifest import REQUIRED_KEYS
from training.normalization import compute_stats, normalize
from training.onnx_export import onnx_probabilities
from training.report import INDEX_FILE, PLOT_FILES
from training.schema import FEATURES
from training.split import stratified_split

pytestmark = pytest.mark.reference_data

REFERENCE_SHA256 = "4ae85430e2bec22a7839dcbdd8b9fb1f3117a4d5cf40b568a0960ebab99fd347"
METRIC_KEYS = {"f1", "precision", "recall", "roc_auc", "pr_auc", "brier", "log_loss"}


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def read_stats(folder: Path) -> dict[str, dict[str, float]]:
    return json.loads((folder / "stats.json").read_text())


@pytest.fixture(scope="module")
def reference_book(reference_csv: Path) -> LoanBook:
    return load_loan_book(reference_csv)


def test_manifest_has_every_contract_key_with_the_contract_shapes(
    reference_artifacts: Path,
) -> None:
    manifest = read_manifest(reference_artifacts)

    assert [key for key in REQUIRED_KEYS if key not in manifest] == []
    assert manifest["schema_version"] == 1
    assert re.fullmatch(r"\d{8}\.\d{6}-[0-9a-f]{8}", manifest["model_version"])
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset().total_seconds() == 0
    assert manifest["features"] == list(FEATURES)
    assert manifest["target"] == "default"
    assert manifest["threshold"] == 0.5
    assert manifest["seed"] == 42
    model = manifest["model"]
    assert model["name"] in {candidate.name for candidate in CANDIDATES}
    assert model["selection_reason"]
    assert model["calibration"]["method"] == "sigmoid"
    assert "penalty" not in model["params"]
    assert manifest["mlflow_run_id"] is None
    assert manifest["mlflow"]["status"] == "disabled"
    assert {"python", "scikit-learn", "numpy", "onnx", "skl2onnx", "onnxruntime", "mlflow"} <= set(
        manifest["versions"]
    )


def test_manifest_holds_held_out_and_cv_metrics_for_both_candidates(
    reference_artifacts: Path,
) -> None:
    metrics = read_manifest(reference_artifacts)["metrics"]

    assert set(metrics) == {candidate.name for candidate in CANDIDATES}
    for name, figures in metrics.items():
        assert set(figures) >= METRIC_KEYS, name
        (tn, fp), (fn, tp) = figures["confusion_matrix"]
        assert tn + fp + fn + tp == 2000, name
        assert figures["cv"]["folds"] == 5
        assert {"f1_mean", "f1_std", "roc_auc_mean", "brier_mean"} <= set(figures["cv"])
        assert {"f1", "brier"} <= set(figures["uncalibrated"])


def test_manifest_describes_the_data_it_was_trained_on(reference_artifacts: Path) -> None:
    data = read_manifest(reference_artifacts)["data"]
    assert data["sha256"] == REFERENCE_SHA256
    assert (data["rows"], data["train_rows"], data["test_rows"]) == (10_000, 8_000, 2_000)
    assert data["default_rate"] == pytest.approx(0.1851)
    assert data["train_default_rate"] == pytest.approx(data["test_default_rate"], abs=0.001)


def test_manifest_file_hashes_match_the_files_and_skip_the_report(
    reference_artifacts: Path,
) -> None:
    files = read_manifest(reference_artifacts)["files"]
    assert set(files) == {
        "best_model.pkl",
        "model.onnx",
        "stats.json",
        "reference.json",
        "golden_loans.json",
    }
    for name, digest in files.items():
        assert hashlib.sha256((reference_artifacts / name).read_bytes()).hexdigest() == digest


def test_the_chosen_model_meets_the_done_when_bars_on_the_reference_data(
    reference_artifacts: Path,
) -> None:
    manifest = read_manifest(reference_artifacts)
    chosen = manifest["metrics"][manifest["model"]["name"]]
    assert chosen["f1"] >= 0.97
    assert chosen["roc_auc"] >= 0.995
    assert chosen["brier"] <= 0.01
    assert manifest["model"]["calibration"]["brier_calibrated"] == chosen["brier"]


def test_onnx_and_scikit_learn_agree_within_1e_5_on_the_whole_reference_dataset(
    reference_artifacts: Path, reference_book: LoanBook
) -> None:
    normalized = normalize(reference_book.features, read_stats(reference_artifacts))
    batch = normalized.astype(np.float32)
    model = joblib.load(reference_artifacts / "best_model.pkl")

    expected = model.predict_proba(batch)[:, 1]
    actual = onnx_probabilities((reference_artifacts / "model.onnx").read_bytes(), batch)

    assert batch.shape == (10_000, 6)
    assert np.max(np.abs(actual - expected)) <= 1e-5


def test_onnx_graph_has_the_contract_input_and_outputs_and_no_zipmap(
    reference_artifacts: Path,
) -> None:
    path = reference_artifacts / "model.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    outputs = {output.name: output for output in session.get_outputs()}

    assert (graph_input.name, graph_input.type) == ("input", "tensor(float)")
    assert graph_input.shape[1] == 6
    assert outputs["probabilities"].type == "tensor(float)"
    assert outputs["probabilities"].shape[1] == 2
    assert "ZipMap" not in {node.op_type for node in onnx.load(path).graph.node}


def test_pickle_takes_normalized_float32_or_float64_rows_and_serves_single_threaded(
    reference_artifacts: Path,
) -> None:
    model = joblib.load(reference_artifacts / "best_model.pkl")
    rows = np.zeros((3, 6))
    for dtype in (np.float32, np.float64):
        probabilities = model.predict_proba(rows.astype(dtype))
        assert probabilities.shape == (3, 2)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    base = model.calibrated_classifiers_[0].estimator
    assert base.get_params().get("n_jobs") is None


def test_stats_json_is_computed_from_exactly_the_training_rows(
    reference_artifacts: Path, reference_book: LoanBook
) -> None:
    split = stratified_split(reference_book.target, seed=42)
    from_training_rows = json.loads(json.dumps(compute_stats(reference_book.features[split.train])))
    from_all_rows = compute_stats(reference_book.features)

    stats = read_stats(reference_artifacts)

    assert stats == from_training_rows
    assert stats["income"]["mean"] != from_all_rows["income"]["mean"]
    assert list(stats) == list(FEATURES)


def test_report_has_every_plot_and_a_page_comparing_the_candidates(
    reference_artifacts: Path,
) -> None:
    report = reference_artifacts / "report"
    manifest = read_manifest(reference_artifacts)
    for file in PLOT_FILES.values():
        content = (report / file).read_bytes()
        assert content.startswith(b"\x89PNG\r\n\x1a\n"), file
        assert len(content) > 5_000, file

    page = (report / INDEX_FILE).read_text()

    for candidate in CANDIDATES:
        assert candidate.name in page
    assert f"Chosen: {manifest['model']['name']}" in page
    assert manifest["model"]["selection_reason"] in page
    assert manifest["model_version"] in page
    assert "10,000 loans" in page
    for file in PLOT_FILES.values():
        assert f'src="{file}"' in page


def test_a_model_trained_on_the_synthetic_file_ranks_the_reference_loans_well(
    trained_artifacts: Path, reference_book: LoanBook
) -> None:
    normalized = normalize(reference_book.features, read_stats(trained_artifacts))
    model = joblib.load(trained_artifacts / "best_model.pkl")
    onnx_bytes = (trained_artifacts / "model.onnx").read_bytes()

    sklearn_auc = roc_auc_score(reference_book.target, model.predict_proba(normalized)[:, 1])
    onnx_auc = roc_auc_score(reference_book.target, onnx_probabilities(onnx_bytes, normalized))

    assert sklearn_auc >= 0.98
    assert onnx_auc >= 0.98
