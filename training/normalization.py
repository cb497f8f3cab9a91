"""Feature statistics from the training rows and the ``(x - mean) / std`` every runtime applies.

stats.json is the contract with serving (CONTRACTS.md): keyed in feature order, population std
(ddof=0, as StandardScaler), plus min/quartiles/max so serving and the report can describe ranges.
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

from training.schema import FEATURES

FeatureStats = dict[str, dict[str, float]]

STAT_KEYS = ("mean", "std", "min", "q25", "q50", "q75", "max")


class ConstantFeatureError(ValueError):
    """A feature has standard deviation 0 on the training rows; it cannot be normalized."""

    def __init__(self, column: str) -> None:
        self.column = column
        super().__init__(
            f"column '{column}': constant within the training split (standard deviation 0); "
            "it cannot be normalized"
        )


def compute_stats(train_features: npt.NDArray[np.float64]) -> FeatureStats:
    """Per-feature statistics of the training rows, in feature order."""
    stats: FeatureStats = {}
    for index, name in enumerate(FEATURES):
        column = train_features[:, index]
        std = float(column.std(ddof=0))
        if std == 0.0:
            raise ConstantFeatureError(name)
        q25, q50, q75 = (float(value) for value in np.quantile(column, [0.25, 0.5, 0.75]))
        stats[name] = {
            "mean": float(column.mean()),
            "std": std,
            "min": float(column.min()),
            "q25": q25,
            "q50": q50,
            "q75": q75,
            "max": float(column.max()),
        }
    return stats


def normalize(features: npt.NDArray[np.float64], stats: FeatureStats) -> npt.NDArray[np.float64]:
    """``(x - mean) / std`` column by column, with the training split's statistics."""
    means = np.array([stats[name]["mean"] for name in FEATURES], dtype=np.float64)
    stds = np.array([stats[name]["std"] for name in FEATURES], dtype=np.float64)
    return (np.asarray(features, dtype=np.float64) - means) / stds


def stats_to_json(stats: FeatureStats) -> str:
    """Stable text (fixed key order, repr floats): same stats give the same bytes."""
    return json.dumps(stats, indent=2) + "\n"
