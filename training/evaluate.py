"""Held-out metrics, cross-validation scores on the training rows, and the selection rule.

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

from training.cross_fit import OutOfFold
from training.schema import DECISION_THRESHOLD

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
    out_of_fold: OutOfFold, target: npt.NDArray[np.int64]
) -> dict[str, float | int]:
    """Per-fold F1, ROC AUC and Brier of the fold models (training rows only), mean and spread.

    Each fold is scored on its held-out rows exactly as ``cross_validate`` scores them with the
    ``"f1"``, ``"roc_auc"`` and ``"neg_brier_score"`` scorers: F1 of ``predict``, ROC AUC of the
    decision function (P(class 1) for a model without one), Brier of P(class 1). The predictions
    are the cross-fit's, so the calibrator and these scores come from the same fold models.
    """
    from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score

    per_fold: dict[str, list[float]] = {"f1": [], "roc_auc": [], "brier": []}
    for fold in range(out_of_fold.folds):
        rows = out_of_fold.rows_of_fold(fold)
        truth = target[rows]
        per_fold["f1"].append(float(f1_score(truth, out_of_fold.label[rows])))
        per_fold["roc_auc"].append(float(roc_auc_score(truth, out_of_fold.response[rows])))
        per_fold["brier"].append(float(brier_score_loss(truth, out_of_fold.probability[rows])))
    summary: dict[str, float | int] = {"folds": out_of_fold.folds}
    for name, scores in per_fold.items():
        values = np.asarray(scores, dtype=np.float64)
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
