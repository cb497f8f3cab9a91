"""The exported model and the manifest's CV scores, against scikit-learn's own public path.

Training fits each fold once and derives both the CV scores and the calibrator from those fold
models (training/cross_fit.py). These tests run the real pipeline into an artifact folder, once
per candidate, and rebuild what ``cross_validate`` and ``CalibratedClassifierCV(ensemble=False)``
make from the same training rows: the pickle must be byte-identical and every CV score equal.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.tree._tree import Tree

from training.candidates import CANDIDATES, Candidate
from training.data import load_loan_book
from training.pipeline import TrainingConfig, prepare_data, run_training
from training.progress import Progress
from training.synthesize import generate_loans, write_loans_csv

SEED = 5


def assert_same_fitted_state(ours: Any, theirs: Any, where: str = "model") -> None:
    """Every fitted attribute equal, recursively, down to each tree node's fields.

    Not pickled bytes: a tree's node records carry padding bytes that numpy leaves uninitialized,
    so two identical forests pickle differently.
    """
    assert type(ours) is type(theirs), where
    if isinstance(ours, Tree):
        assert_same_fitted_state(ours.__getstate__(), theirs.__getstate__(), f"{where}.tree_")
    elif isinstance(ours, np.ndarray):
        assert ours.dtype == theirs.dtype, where
        assert ours.shape == theirs.shape, where
        for field in ours.dtype.names or (None,):
            mine, other = (ours, theirs) if field is None else (ours[field], theirs[field])
            np.testing.assert_array_equal(mine, other, err_msg=f"{where}[{field}]")
    elif isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), where
        for key in ours:
            assert_same_fitted_state(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list | tuple):
        assert len(ours) == len(theirs), where
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_fitted_state(mine, other, f"{where}[{index}]")
    elif hasattr(ours, "__dict__"):
        assert_same_fitted_state(vars(ours), vars(theirs), where)
    else:
        assert ours == theirs, where


@pytest.fixture(scope="module")
def small_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("book") / "loans.csv"
    write_loans_csv(generate_loans(1500, 12), path)
    return path


@pytest.fixture(scope="module", params=CANDIDATES, ids=lambda candidate: candidate.name)
def exported(
    request: pytest.FixtureRequest, small_book: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Candidate, Path, str]:
    """An artifact folder whose only candidate is this one, and the progress it printed."""
    candidate: Candidate = request.param
    out = tmp_path_factory.mktemp(candidate.name) / "artifacts"
    printed = io.StringIO()
    config = TrainingConfig(
        data=small_book, out=out, seed=SEED, track=False, candidates=(candidate,)
    )
    run_training(config, Progress(stream=printed))
    return candidate, out, printed.getvalue()


@pytest.fixture(scope="module")
def training_rows(small_book: Path) -> tuple[np.ndarray, np.ndarray]:
    data = prepare_data(load_loan_book(small_book), SEED)
    return data.train_features, data.train_target


def test_exported_pickle_is_what_calibrated_classifier_cv_fits_on_the_training_rows(
    exported: tuple[Candidate, Path, str], training_rows: tuple[np.ndarray, np.ndarray]
) -> None:
    candidate, folder, _ = exported
    features, target = training_rows
    public: Any = CalibratedClassifierCV(
        candidate.build(SEED),
        method="sigmoid",
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED),
        ensemble=False,
    ).fit(features, target)

    model = joblib.load(folder / "best_model.pkl")

    assert_same_fitted_state(model, public)
    np.testing.assert_array_equal(model.predict_proba(features), public.predict_proba(features))


def test_manifest_cv_scores_are_cross_validate_on_the_training_rows(
    exported: tuple[Candidate, Path, str], training_rows: tuple[np.ndarray, np.ndarray]
) -> None:
    candidate, folder, _ = exported
    features, target = training_rows
    scored = cross_validate(
        candidate.build(SEED),
        features,
        target,
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED),
        scoring={"f1": "f1", "roc_auc": "roc_auc", "brier": "neg_brier_score"},
    )

    cv = json.loads((folder / "manifest.json").read_text())["metrics"][candidate.name]["cv"]

    assert cv == {
        "folds": 5,
        "f1_mean": float(np.mean(scored["test_f1"])),
        "f1_std": float(np.std(scored["test_f1"])),
        "roc_auc_mean": float(np.mean(scored["test_roc_auc"])),
        "roc_auc_std": float(np.std(scored["test_roc_auc"])),
        "brier_mean": float(np.mean(-scored["test_brier"])),
        "brier_std": float(np.std(-scored["test_brier"])),
    }


def test_progress_names_each_of_the_six_fits_once(exported: tuple[Candidate, Path, str]) -> None:
    candidate, _, printed = exported
    fits = [line for line in printed.splitlines() if f"  {candidate.name} " in line]

    assert len(fits) == 6
    assert sum("final model: fitted on 1,200 rows" in line for line in fits) == 1
    for fold in range(1, 6):
        assert sum(f"fold {fold}/5: fitted on 960 rows" in line for line in fits) == 1
    assert "6 fits" in printed
