"""Back-testing a window whose outcomes are known: discrimination, calibration, grade by grade.

* Discrimination: ROC AUC (Mann-Whitney, ties counted half), Gini = 2 AUC - 1, KS = the largest
  gap between the score's distribution among defaulters and among the others.
* Calibration of the book: Brier score, and Hosmer-Lemeshow over ten PD-ordered groups (chi-square
  with groups - 2 degrees of freedom).
* Per grade, as in the ECB's instructions for validating PD models: H0 "the grade's PD is not
  underestimated", one-sided. The binomial test: p = P(X >= defaults | loans, predicted PD). The
  Jeffreys test: p = the Beta(defaults + 1/2, loans - defaults + 1/2) posterior's CDF at the
  predicted PD, i.e. the posterior probability that the true default rate is at most the PD.
  Traffic light from the Jeffreys p-value: green >= 0.05, amber 0.01 to 0.05, red < 0.01.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

AMBER_BELOW: Final = 0.05
RED_BELOW: Final = 0.01
HOSMER_LEMESHOW_GROUPS: Final = 10

TrafficLight = Literal["green", "amber", "red"]


def traffic_light(p_value: float) -> TrafficLight:
    if p_value < RED_BELOW:
        return "red"
    if p_value < AMBER_BELOW:
        return "amber"
    return "green"


def roc_auc(probability: npt.NDArray[np.float64], outcome: npt.NDArray[np.int8]) -> float:
    """Mann-Whitney U / (n1 n0) with average ranks (ties count one half)."""
    positives = int(outcome.sum())
    negatives = outcome.size - positives
    ranks = stats.rankdata(probability)
    u = float(ranks[outcome == 1].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def ks_statistic(probability: npt.NDArray[np.float64], outcome: npt.NDArray[np.int8]) -> float:
    """max |F_defaulters(s) - F_others(s)| over all scores s (ties moved together)."""
    order = np.argsort(probability, kind="stable")
    sorted_pd = probability[order]
    defaults = outcome[order].astype(np.float64)
    last_of_tie = np.r_[sorted_pd[1:] != sorted_pd[:-1], True]
    cum_defaults = np.cumsum(defaults)[last_of_tie] / defaults.sum()
    cum_others = np.cumsum(1.0 - defaults)[last_of_tie] / (defaults.size - defaults.sum())
    return float(np.max(np.abs(cum_defaults - cum_others)))


def hosmer_lemeshow(
    probability: npt.NDArray[np.float64], outcome: npt.NDArray[np.int8]
) -> dict[str, float | int]:
    """Statistic, degrees of freedom and p-value over PD-ordered groups of equal size."""
    order = np.argsort(probability, kind="stable")
    groups = [g for g in np.array_split(order, HOSMER_LEMESHOW_GROUPS) if g.size]
    return hosmer_lemeshow_from_groups(
        np.array([g.size for g in groups]),
        np.array([float(probability[g].sum()) for g in groups]),
        np.array([float(outcome[g].sum()) for g in groups]),
    )


def hosmer_lemeshow_from_groups(
    sizes: np.ndarray, expected: np.ndarray, observed: np.ndarray
) -> dict[str, float | int]:
    """The statistic from each group's loans, PD sum and defaults (groups in PD order)."""
    statistic = 0.0
    for n, expected_defaults, observed_defaults in zip(
        sizes.tolist(), expected.tolist(), observed.tolist(), strict=True
    ):
        mean_pd = expected_defaults / n
        variance = n * mean_pd * (1.0 - mean_pd)
        if variance > 0:
            statistic += (observed_defaults - expected_defaults) ** 2 / variance
    dof = max(len(sizes) - 2, 1)
    return {
        "statistic": statistic,
        "dof": dof,
        "p_value": float(stats.chi2.sf(statistic, dof)),
        "groups": len(sizes),
    }


def binomial_p(loans: int, defaults: int, pd: float) -> float:
    """One-sided: P(X >= defaults) for X ~ Binomial(loans, pd)."""
    return float(stats.binom.sf(defaults - 1, loans, pd))


def jeffreys_p(loans: int, defaults: int, pd: float) -> float:
    """Posterior Beta(d + 1/2, n - d + 1/2) CDF at the PD (the ECB's Jeffreys test)."""
    return float(stats.beta.cdf(pd, defaults + 0.5, loans - defaults + 0.5))


def backtest(
    probability: npt.NDArray[np.float64],
    grade: npt.NDArray[np.int64],
    outcome: npt.NDArray[np.int8],
    grades: int,
) -> dict[str, Any]:
    """The ``backtest`` block of monitor.json for loans with known outcomes, in memory (the
    ``monitor`` command streams the same figures: ``outcome_join``)."""
    defaults = int(outcome.sum())
    both_classes = 0 < defaults < outcome.size
    size = grades + 1
    return backtest_block(
        loans=int(outcome.size),
        defaults=defaults,
        probability_sum=float(probability.sum()),
        brier_sum=float(np.sum((probability - outcome) ** 2)),
        roc_auc=roc_auc(probability, outcome) if both_classes else None,
        ks=ks_statistic(probability, outcome) if both_classes else None,
        hosmer_lemeshow=hosmer_lemeshow(probability, outcome),
        grade_loans=np.bincount(grade, minlength=size),
        grade_defaults=np.bincount(grade, weights=outcome, minlength=size).astype(np.int64),
        grade_probability_sum=np.bincount(grade, weights=probability, minlength=size),
    )


def backtest_block(
    *,
    loans: int,
    defaults: int,
    probability_sum: float,
    brier_sum: float,
    roc_auc: float | None,
    ks: float | None,
    hosmer_lemeshow: dict[str, float | int],
    grade_loans: np.ndarray,
    grade_defaults: np.ndarray,
    grade_probability_sum: np.ndarray,
) -> dict[str, Any]:
    """The block from the window's totals; ``grade_*`` are indexed by grade (index 0 unused)."""
    per_grade: list[dict[str, Any]] = []
    for g in range(1, grade_loans.size):
        grade_n = int(grade_loans[g])
        if not grade_n:
            continue
        grade_d = int(grade_defaults[g])
        predicted = float(grade_probability_sum[g]) / grade_n
        jeffreys = jeffreys_p(grade_n, grade_d, predicted)
        per_grade.append(
            {
                "grade": g,
                "loans": grade_n,
                "defaults": grade_d,
                "predicted_pd": predicted,
                "observed_rate": grade_d / grade_n,
                "binomial_p": binomial_p(grade_n, grade_d, predicted),
                "jeffreys_p": jeffreys,
                "verdict": traffic_light(jeffreys),
            }
        )
    return {
        "loans": loans,
        "defaults": defaults,
        "observed_rate": defaults / loans,
        "predicted_pd": probability_sum / loans,
        "roc_auc": roc_auc,
        "gini": None if roc_auc is None else 2.0 * roc_auc - 1.0,
        "ks": ks,
        "brier": brier_sum / loans,
        "hosmer_lemeshow": hosmer_lemeshow,
        "grades": per_grade,
        "verdict": _worst_light([entry["verdict"] for entry in per_grade]),
    }


def _worst_light(lights: list[TrafficLight]) -> TrafficLight:
    order: tuple[TrafficLight, ...] = ("green", "amber", "red")
    return max(lights, key=order.index, default="green")
