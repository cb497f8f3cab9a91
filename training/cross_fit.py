"""Cross-fitting: every candidate's fold models and final model, each fitted exactly once.

Cross-validation scores and the Platt calibrator need the same thing: for every training row, a
prediction from a model that never saw that row (an out-of-fold prediction). One model per fold
of a stratified k-fold over the training rows gives exactly that. Both consumers are derived from
these predictions - the scores in :mod:`training.evaluate`, the calibrator in
:mod:`training.calibration` - and one more fit on all training rows gives the model that is
calibrated and exported: k + 1 fits per candidate. (``cross_validate`` followed by
``CalibratedClassifierCV(ensemble=False)`` fitted the same k folds twice: 2k + 1 fits.)

The folds are the ones both of those used - ``StratifiedKFold(k, shuffle=True,
random_state=seed)`` on the training rows - and each fit is the same call on the same rows, so
the scores, the calibrator and the exported model are bit-for-bit what they were.

Parallelism: each fit of each candidate is one task, and :data:`TRAINING_THREADS` threads take
them. Threads rather than processes: saga and the tree builder run in Cython without the GIL,
and threads share the training rows instead of copying them into every worker. Results do not
depend on the thread count or the scheduling (a test proves it):

* A model predicts single-threaded (``n_jobs=None``, and no joblib context reaches the worker
  threads): a forest predicting with several threads adds its trees' votes in whatever order
  the threads finish, so its probabilities would differ in the last bits from run to run.
* A candidate whose fit is bit-for-bit the same with threads (``Candidate.threaded_fit``: the
  forest) fits with :data:`TRAINING_THREADS` threads, and its tasks are queued after the others:
  the last fits running are then forest fits that take over a core as soon as it is free,
  instead of one single-threaded fit finishing alone while the other core idles.
* Single-threaded candidates (saga) run first, largest fit first. Two saga fits side by side
  cost each other ~7 % per epoch (memory bandwidth); a saga fit beside a forest fit slows the
  forest by ~15 % (measured on 640,000 rows), so pairing like with like is also the cheaper way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.candidates import Candidate

FOLDS = 5
"""k of the stratified k-fold behind the cross-validation scores and the calibrator."""

TRAINING_THREADS = max(
    1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
)
"""Fits running at once: one per core this process may use (results do not depend on it)."""

FoldSplits = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]
ScoringPredictions = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]
"""(response, P(class 1), label) of some rows: see :class:`OutOfFold`."""


def fold_splitter(seed: int) -> Any:
    """The stratified k-fold splitter over the training rows (recorded in the calibrated model)."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)


def stratified_folds(target: npt.NDArray[np.int64], seed: int) -> FoldSplits:
    """(fit rows, held-out rows) of each fold, as positions in the training rows."""
    placeholder = np.zeros((target.shape[0], 1))  # the splitter looks at the target only
    return [
        (np.asarray(fit, dtype=np.int64), np.asarray(held_out, dtype=np.int64))
        for fit, held_out in fold_splitter(seed).split(placeholder, target)
    ]


@dataclass(frozen=True)
class OutOfFold:
    """One prediction per training row, each made by the fold model that did not see the row.

    ``response`` is what a calibrator is fitted on, chosen as ``CalibratedClassifierCV`` chooses
    it: ``decision_function`` when the model has one, else P(class 1). ``probability`` and
    ``label`` are ``predict_proba(...)[:, 1]`` and ``predict``: what the cross-validation
    scorers read.
    """

    fold: npt.NDArray[np.int64]
    response: npt.NDArray[np.float64]
    probability: npt.NDArray[np.float64]
    label: npt.NDArray[np.int64]

    def rows_of_fold(self, fold: int) -> npt.NDArray[np.int64]:
        """Positions of the training rows held out (and predicted) in ``fold``."""
        return np.flatnonzero(self.fold == fold).astype(np.int64)

    @property
    def folds(self) -> int:
        """How many folds the predictions came from."""
        return int(self.fold.max()) + 1


@dataclass(frozen=True)
class CrossFit:
    """A candidate's out-of-fold predictions and its model fitted on all training rows."""

    candidate: Candidate
    out_of_fold: OutOfFold
    final_model: Any
    fit_seconds: float
    """Wall time of this candidate's k + 1 fits (and fold predictions), summed."""


@dataclass(frozen=True)
class FitTask:
    """One fit: a candidate on one fold's fit rows, or (``fold`` None) on all training rows."""

    candidate: Candidate
    fold: int | None

    def describe(self) -> str:
        """How progress names this fit."""
        where = "final model" if self.fold is None else f"fold {self.fold + 1}/{FOLDS}"
        return f"{self.candidate.name} {where}"


@dataclass(frozen=True)
class FitDone:
    """A finished fit, as progress reports it."""

    task: FitTask
    fit_rows: int
    predicted_rows: int
    seconds: float
    epochs: int | None
    """Solver epochs (``n_iter_``) of an iterative model: how close it came to ``max_iter``."""


@dataclass(frozen=True)
class _TrainingRows:
    """What every fit task reads, and none writes."""

    features: npt.NDArray[np.float64]
    target: npt.NDArray[np.int64]
    folds: FoldSplits
    seed: int
    threads: int


@dataclass(frozen=True)
class _HeldOut:
    fold: int
    rows: npt.NDArray[np.int64]
    predictions: ScoringPredictions


@dataclass(frozen=True)
class _FitOutcome:
    task: FitTask
    model: Any
    held_out: _HeldOut | None
    """The fold's held-out rows and their predictions; None for the final model."""
    done: FitDone


def cross_fit(
    candidates: Sequence[Candidate],
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.int64],
    seed: int,
    *,
    threads: int = TRAINING_THREADS,
    on_fit: Callable[[FitDone], None] | None = None,
) -> list[CrossFit]:
    """Fit every candidate on each fold and on all rows; ``on_fit`` hears of each finished fit.

    ``features`` and ``target`` are the training rows only: nothing here may see the test split.
    """
    rows = _TrainingRows(features, target, stratified_folds(target, seed), seed, max(1, threads))
    outcomes: list[_FitOutcome] = []
    pool = ThreadPoolExecutor(max_workers=rows.threads, thread_name_prefix="fit")
    try:
        pending: set[Future[_FitOutcome]] = {
            pool.submit(_run_fit, task, rows) for task in fit_order(candidates)
        }
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                outcome = future.result()  # re-raises a failed fit here, in the caller's thread
                outcomes.append(outcome)
                if on_fit is not None:
                    on_fit(outcome.done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [_assemble(candidate, outcomes, target.shape[0]) for candidate in candidates]


def fit_order(candidates: Sequence[Candidate]) -> list[FitTask]:
    """The queue: single-threaded candidates first, each candidate's final (largest) fit first."""
    ordered = sorted(candidates, key=lambda candidate: candidate.threaded_fit)  # stable
    return [FitTask(candidate, fold) for candidate in ordered for fold in (None, *range(FOLDS))]


def _run_fit(task: FitTask, rows: _TrainingRows) -> _FitOutcome:
    began = time.perf_counter()
    model = task.candidate.build(rows.seed)
    fit_threads = rows.threads if task.candidate.threaded_fit else None
    features, target = rows.features, rows.target
    if task.fold is None:
        _fit(model, features, target, fit_threads)
        done = FitDone(task, target.shape[0], 0, time.perf_counter() - began, _epochs(model))
        return _FitOutcome(task, model, None, done)
    fit_rows, held_out = rows.folds[task.fold]
    _fit(model, features[fit_rows], target[fit_rows], fit_threads)
    predictions = predict_for_scoring(model, features[held_out])
    seconds = time.perf_counter() - began
    done = FitDone(task, fit_rows.size, held_out.size, seconds, _epochs(model))
    return _FitOutcome(task, model, _HeldOut(task.fold, held_out, predictions), done)


def _fit(
    model: Any,
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.int64],
    threads: int | None,
) -> None:
    """Fit ``model``, with ``threads`` threads if given; it keeps its own ``n_jobs`` afterwards."""
    if threads is None:
        model.fit(features, target)
        return
    own = model.get_params()["n_jobs"]
    model.set_params(n_jobs=threads)
    try:
        model.fit(features, target)
    finally:
        model.set_params(n_jobs=own)


def _epochs(model: Any) -> int | None:
    iterations = getattr(model, "n_iter_", None)
    return None if iterations is None else int(np.max(iterations))


def predict_for_scoring(model: Any, rows: npt.NDArray[np.float64]) -> ScoringPredictions:
    """(response, P(class 1), label) of ``rows``, as the calibrator and the scorers read them."""
    probability = np.asarray(model.predict_proba(rows)[:, 1], dtype=np.float64)
    if hasattr(model, "decision_function"):
        response = np.asarray(model.decision_function(rows), dtype=np.float64)
    else:
        response = probability
    label = np.asarray(model.predict(rows), dtype=np.int64)
    return response, probability, label


def _assemble(candidate: Candidate, outcomes: list[_FitOutcome], rows: int) -> CrossFit:
    fold = np.full(rows, -1, dtype=np.int64)
    response = np.full(rows, np.nan)
    probability = np.full(rows, np.nan)
    label = np.full(rows, -1, dtype=np.int64)
    final_model = None
    seconds = 0.0
    for outcome in outcomes:
        if outcome.task.candidate is not candidate:
            continue
        seconds += outcome.done.seconds
        held_out = outcome.held_out
        if held_out is None:
            final_model = outcome.model
            continue
        fold[held_out.rows] = held_out.fold
        response[held_out.rows], probability[held_out.rows], label[held_out.rows] = (
            held_out.predictions
        )
    if final_model is None or np.any(fold < 0):
        raise RuntimeError(f"{candidate.name}: a fit is missing from the cross-fit")
    return CrossFit(
        candidate=candidate,
        out_of_fold=OutOfFold(fold=fold, response=response, probability=probability, label=label),
        final_model=final_model,
        fit_seconds=seconds,
    )
