"""Each candidate forced through the real export, then ONNX checked against scikit-learn.

The forest is the hard case: scikit-learn compares ``(float32) x <= (float64) threshold``; a graph
that rounded thresholds to float32 would send a loan sitting exactly on a threshold down the other
branch. The adversarial rows below put one feature of each loan exactly on a threshold its own path
tests, in every tree, so a flipped branch could not hide.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from skl2onnx.common import tree_ensemble

from loan_service.sklearn_model import calibrated_log_odds
from training.candidates import CANDIDATES, RANDOM_FOREST, Candidate
from training.data import LoanBook, load_loan_book
from training.normalization import normalize
from training.onnx_export import (
    PARITY_TOLERANCE,
    convert_to_onnx,
    onnx_outputs,
    onnx_probabilities,
)
from training.pipeline import TrainingConfig, run_training
from training.progress import Progress

pytestmark = pytest.mark.reference_data


@pytest.fixture(scope="module")
def reference_book(reference_csv: Path) -> LoanBook:
    return load_loan_book(reference_csv)


@pytest.fixture(scope="module", params=CANDIDATES, ids=lambda candidate: candidate.name)
def single_candidate_folder(
    request: pytest.FixtureRequest, reference_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Candidate, Path]:
    """An artifact folder whose only candidate - hence the exported model - is this one."""
    candidate: Candidate = request.param
    out = tmp_path_factory.mktemp(candidate.name) / "artifacts"
    config = TrainingConfig(data=reference_csv, out=out, track=False, candidates=(candidate,))
    run_training(config, Progress(quiet=True, stream=io.StringIO()))
    return candidate, out


def test_the_forced_candidate_is_the_exported_model(
    single_candidate_folder: tuple[Candidate, Path],
) -> None:
    candidate, folder = single_candidate_folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["name"] == candidate.name
    assert manifest["model"]["selection_reason"].startswith("only candidate")


def test_exported_graph_outputs_probabilities_and_log_odds_and_no_node_that_feeds_nothing(
    single_candidate_folder: tuple[Candidate, Path],
) -> None:
    import onnx

    _, folder = single_candidate_folder
    graph = onnx.load(folder / "model.onnx").graph

    assert [output.name for output in graph.output] == ["probabilities", "log_odds"]
    consumed = {name for node in graph.node for name in node.input} | {"probabilities", "log_odds"}
    assert all(set(node.output) & consumed for node in graph.node)
    assert "ArgMax" not in {node.op_type for node in graph.node}  # skl2onnx's label branch
    assert {tensor.name for tensor in graph.initializer} <= consumed


def test_onnx_matches_scikit_learn_on_every_reference_loan(
    single_candidate_folder: tuple[Candidate, Path], reference_book: LoanBook
) -> None:
    _, folder = single_candidate_folder
    stats = json.loads((folder / "stats.json").read_text())
    batch = normalize(reference_book.features, stats).astype(np.float32)
    model = joblib.load(folder / "best_model.pkl")

    gap = np.abs(
        onnx_probabilities((folder / "model.onnx").read_bytes(), batch)
        - model.predict_proba(batch)[:, 1]
    )
    _, log_odds = onnx_outputs((folder / "model.onnx").read_bytes(), batch)
    expected_log_odds = calibrated_log_odds(model, batch)

    assert gap.max() <= PARITY_TOLERANCE
    assert np.all(np.isfinite(log_odds))
    assert np.allclose(log_odds, expected_log_odds, rtol=PARITY_TOLERANCE, atol=PARITY_TOLERANCE)


def test_the_calibrators_constants_are_matrices_and_change_no_output_bit(
    single_candidate_folder: tuple[Candidate, Path], reference_book: LoanBook
) -> None:
    """ONNX Runtime broadcasts a rank-0 constant one element at a time: the export stores the
    constants elementwise ops read as [1, 1], which must leave every output bit unchanged."""
    import onnx

    _, folder = single_candidate_folder
    exported = onnx.load(folder / "model.onnx")
    elementwise = {"Add", "Sub", "Mul", "Div"}
    read_elementwise = {
        name for node in exported.graph.node if node.op_type in elementwise for name in node.input
    }
    constants = [t for t in exported.graph.initializer if t.name in read_elementwise]
    assert any(list(t.dims) == [1, 1] for t in constants)  # the Platt a, b and its 1.0
    assert all(t.dims for t in constants)

    scalar = onnx.ModelProto()
    scalar.CopyFrom(exported)
    for tensor in scalar.graph.initializer:
        if list(tensor.dims) == [1, 1] and tensor.name in read_elementwise:
            del tensor.dims[:]
    stats = json.loads((folder / "stats.json").read_text())
    batch = normalize(reference_book.features, stats).astype(np.float32) * np.float32(3.0)
    probability, log_odds = onnx_outputs(exported.SerializeToString(), batch)
    expected_probability, expected_log_odds = onnx_outputs(scalar.SerializeToString(), batch)
    assert np.array_equal(probability, expected_probability)
    assert np.array_equal(log_odds, expected_log_odds)


def loans_on_thresholds(forest: Any, loans: np.ndarray) -> np.ndarray:
    """For each loan, copies with one feature moved exactly onto a threshold of its own path."""
    adversarial = []
    for row_index, loan in enumerate(loans):
        tree = forest.estimators_[row_index % len(forest.estimators_)]
        for node in tree.decision_path(loan[None, :]).indices:
            feature = tree.tree_.feature[node]
            if feature < 0:
                continue
            moved = loan.copy()
            moved[feature] = np.float32(tree.tree_.threshold[node])
            adversarial.append(moved)
    return np.asarray(adversarial, dtype=np.float32)


@pytest.fixture(scope="module")
def forest_on_thresholds(
    single_candidate_folder: tuple[Candidate, Path], reference_book: LoanBook
) -> tuple[Any, np.ndarray]:
    candidate, folder = single_candidate_folder
    if candidate.name != RANDOM_FOREST:
        pytest.skip("thresholds exist only in the forest")
    stats = json.loads((folder / "stats.json").read_text())
    model = joblib.load(folder / "best_model.pkl")
    loans = normalize(reference_book.features[:1000], stats).astype(np.float32)
    return model, loans_on_thresholds(model.calibrated_classifiers_[0].estimator, loans)


def test_onnx_matches_scikit_learn_on_loans_placed_exactly_on_forest_thresholds(
    single_candidate_folder: tuple[Candidate, Path], forest_on_thresholds: tuple[Any, np.ndarray]
) -> None:
    _, folder = single_candidate_folder
    model, batch = forest_on_thresholds

    gap = np.abs(
        onnx_probabilities((folder / "model.onnx").read_bytes(), batch)
        - model.predict_proba(batch)[:, 1]
    )

    assert len(batch) > 3000
    assert gap.max() <= PARITY_TOLERANCE


def test_those_threshold_loans_do_expose_a_graph_with_naively_rounded_thresholds(
    forest_on_thresholds: tuple[Any, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the test above can fail: round thresholds to nearest float32, as a naive exporter
    would, and loans on the thresholds take the other branch."""
    model, batch = forest_on_thresholds
    monkeypatch.setattr(
        tree_ensemble,
        "sklearn_threshold",
        lambda threshold, dtype, mode: np.float64(np.float32(threshold)),
    )

    naive = convert_to_onnx(model).SerializeToString()
    gap = np.abs(onnx_probabilities(naive, batch) - model.predict_proba(batch)[:, 1])

    assert gap.max() > 0.1
