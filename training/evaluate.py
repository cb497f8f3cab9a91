"""Held-out metrics, cross-validation on the training rows, and the selection rule.

Model selection is a business rule worth testing on its own: the higher held-out F1 at the
decision threshold wins; on a tie the simpler model wins, and the reason is written down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.schema import DECISION_THRESHOLD

CV_FOLDS = 5

Metrics = dict[str, Any]


def held_out_metrics(
    target: npt.NDArray[np.int64],
    probability: npt.NDArray[np.float64],
    threshold: float = DECISION_THRESHOLD,
) -> Metrics:
    """Every figure the manifest promises, from P(default) on the test rows."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    predicted = (probability >= threshold).astype(np.int64)
    (tn, fp), (fn, tp) = confusion_matrix(target, predicted, labels=[0, 1]).tolist()
    return {
        "f1": float(f1_score(target, predicted, zero_division=0.0)),
        "precision": float(precision_score(target, predicted, zero_division=0.0)),
        "recall": float(recall_score(target, predicted, zero_division=0.0)),
        "accuracy": float(accuracy_score(target, predicted)),
        "roc_auc": float(roc_auc_score(target, probability)),
        "pr_auc": float(average_precision_score(target, probability)),
        "brier": float(brier_score_loss(target, probability)),
        "log_loss": float(log_loss(target, probability, labels=[0, 1])),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "threshold": threshold,
    }


def cross_validation_scores(
    estimator: Any,
    features: npt.NDArray[np.float64],
    target: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, float | int]:
    """Stratified k-fold on the training rows only: how stable the candidate is, fold to fold."""
    from sklearn.model_selection import StratifiedKFold, cross_validate

    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    scores = cross_validate(
        estimator,
        features,
        target,
        cv=folds,
        scoring={"f1": "f1", "roc_auc": "roc_auc", "brier": "neg_brier_score"},
    )
    summary: dict[str, float | int] = {"folds": CV_FOLDS}
    for name in ("f1", "roc_auc", "brier"):
        values = np.asarray(scores[f"test_{name}"], dtype=np.float64)
        if name == "brier":
            values = -values
        summary[f"{name}_mean"] = float(values.mean())
        summary[f"{name}_std"] = float(values.std(ddof=0))
    return summary


@dataclass(frozen=True)
class Contender:
    """What the selection rule needs to know about one candidate."""

    name: str
    complexity: int
    f1: float


@dataclass(frozen=True)
class Selection:
    """The winner and the sentence that says why."""

    name: str
    reason: str


def select_model(
    contenders: Sequence[Contender], threshold: float = DECISION_THRESHOLD
) -> Selection:
    """Highest held-out F1 wins; an F1 tie goes to the simpler model (lower complexity)."""
    if not contenders:
        raise ValueError("no candidates to choose from")
    best_f1 = max(contender.f1 for contender in contenders)
    tied = [c for c in contenders if math.isclose(c.f1, best_f1, rel_tol=0.0, abs_tol=1e-12)]
    winner = min(tied, key=lambda contender: contender.complexity)
    others = [c for c in contenders if c.name != winner.name]
    against = ", ".join(f"{c.name} {c.f1:.4f}" for c in others)
    if len(tied) > 1:
        reason = (
            f"tie on held-out F1 at threshold {threshold} ({winner.f1:.4f}); "
            f"chose the simpler model, {winner.name}"
        )
    elif others:
        reason = (
            f"highest held-out F1 at threshold {threshold}: {winner.name} {winner.f1:.4f} "
            f"vs {against}"
        )
    else:
        reason = f"only candidate ({winner.name}, held-out F1 {winner.f1:.4f})"
    return Selection(name=winner.name, reason=reason)
