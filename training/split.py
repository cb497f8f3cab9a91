"""The stratified train/test split, made before anything is fitted.

It is a pure function of (target, seed), so a test can recompute exactly which rows were used for
training and prove that stats.json, calibration and cross-validation saw nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TEST_FRACTION = 0.2
"""Held-out share: 2,000 of 10,000 loans, ~370 defaults - enough for a stable F1."""


@dataclass(frozen=True)
class Split:
    """Sorted row positions of the training and the held-out test rows."""

    train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]


def stratified_split(
    target: npt.NDArray[np.int64], seed: int, test_fraction: float = TEST_FRACTION
) -> Split:
    """Split row positions so both parts keep the default rate of the whole book."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(target.shape[0], dtype=np.int64)
    train, test = train_test_split(
        positions, test_size=test_fraction, stratify=target, random_state=seed, shuffle=True
    )
    return Split(train=np.sort(train), test=np.sort(test))
