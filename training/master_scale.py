"""The master scale: about ten rating grades with PD bounds, derived from the training split.

Method (also in docs/monitoring.md):

1. Candidate bounds: ``GRADES - 1`` bounds evenly spaced in log-odds between the training split's
   5th and 95th percentile PD, clipped to [0.01 %, 99 %] (a bank's scale rarely distinguishes
   below one basis point or above 99 %), each rounded to two significant digits of the PD (of
   1 - PD above one half) so the bounds read like a master scale: 0.01 %, 0.046 %, 0.21 % ...
2. Merge: while a grade holds fewer than ``min_loans`` training loans, the bound between it and
   its smaller neighbour is dropped. Every grade is then populated on the training split.
3. Grade ``g`` holds ``upper[g-2] <= PD < upper[g-1]`` (grade 1 from 0, the top grade to 1):
   grade 1 is the lowest risk, and the bounds - hence the grades' PDs - increase strictly.

Training PDs are the ONNX model's, i.e. exactly what serving computes for the same loans.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

GRADES: Final = 10
LOWEST_BOUND: Final = 1e-4
HIGHEST_BOUND: Final = 0.99
MIN_GRADE_SHARE: Final = 0.002
MIN_GRADE_LOANS: Final = 10
METHOD: Final = (
    f"{GRADES - 1} PD bounds evenly spaced in log-odds between the training split's 5th and 95th "
    f"percentile PD (clipped to [{LOWEST_BOUND:g}, {HIGHEST_BOUND:g}]), rounded to two "
    "significant digits; adjacent grades merged until each holds at least "
    f"max({MIN_GRADE_LOANS}, {MIN_GRADE_SHARE:.1%} of) training loans. "
    "Grade g holds upper[g-2] <= PD < upper[g-1]; grade 1 is the lowest risk."
)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _readable(p: float) -> float:
    """Two significant digits of the PD, or of 1 - PD above one half."""
    if p <= 0.5:
        return float(f"{p:.2g}")
    return 1.0 - float(f"{1.0 - p:.2g}")


def candidate_bounds(probability: npt.NDArray[np.float64], grades: int = GRADES) -> list[float]:
    """Step 1: the log-odds-spaced, rounded candidate bounds (strictly increasing)."""
    low, high = (float(v) for v in np.quantile(probability, [0.05, 0.95]))
    low = min(max(low, LOWEST_BOUND), HIGHEST_BOUND)
    high = min(max(high, LOWEST_BOUND), HIGHEST_BOUND)
    if high <= low:  # a very narrow book: widen around its PD
        low, high = max(low / 4, LOWEST_BOUND), min(high * 4, HIGHEST_BOUND)
    steps = np.linspace(_logit(low), _logit(high), grades - 1)
    bounds = sorted({_readable(1.0 / (1.0 + math.exp(-step))) for step in steps})
    return [bound for bound in bounds if 0.0 < bound < 1.0]


def derive_master_scale(
    probability: npt.NDArray[np.float64],
    target: npt.NDArray[np.int64],
    grades: int = GRADES,
) -> dict[str, Any]:
    """The ``grades`` block of the manifest from the training split's PDs and outcomes."""
    probability = np.asarray(probability, dtype=np.float64)
    min_loans = max(MIN_GRADE_LOANS, math.ceil(MIN_GRADE_SHARE * probability.size))
    bounds = candidate_bounds(probability, grades)
    while True:
        counts = np.bincount(
            np.searchsorted(np.asarray(bounds), probability, side="right"),
            minlength=len(bounds) + 1,
        )
        small = [index for index, count in enumerate(counts) if count < min_loans]
        if not small or not bounds:
            break
        index = small[0]
        if index == 0:
            drop = 0
        elif index == len(bounds):
            drop = index - 1
        else:  # merge into the smaller neighbour
            drop = index - 1 if counts[index - 1] <= counts[index + 1] else index
        del bounds[drop]
    grade_of = np.searchsorted(np.asarray(bounds), probability, side="right")
    edges = [0.0, *bounds, 1.0]
    scale = []
    for index in range(len(bounds) + 1):
        members = grade_of == index
        loans = int(members.sum())
        scale.append(
            {
                "grade": index + 1,
                "pd_from": edges[index],
                "pd_to": edges[index + 1],
                "train_loans": loans,
                "train_share": loans / probability.size,
                "mean_pd": float(probability[members].mean()) if loans else None,
                "train_default_rate": float(target[members].mean()) if loans else None,
            }
        )
    return {"method": METHOD, "upper_bounds": bounds, "scale": scale}
