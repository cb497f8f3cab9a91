"""Feature statistics from the training rows and the ``(x - mean) / std`` every runtime applies.

stats.json is the contract with serving: keyed in feature order, population std (ddof=0, as
StandardScaler), plus min/quartiles/max so serving and the report can describe ranges. A category
has no mean: its entry holds ``type = "category"``, its ``values`` (in encoding order), the share
of training rows with each value (``frequencies``) and the most frequent one (``mode``, the
reference its reasons are measured against). Its index enters the model unnormalized.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from loan_service.book import BookSchema
from training.schema import DEFAULT_BOOK

FeatureStats = dict[str, dict[str, Any]]

STAT_KEYS = ("mean", "std", "min", "q25", "q50", "q75", "max")


class ConstantFeatureError(ValueError):
    """A feature has standard deviation 0 on the training rows; it cannot be normalized."""

    def __init__(self, column: str) -> None:
        self.column = column
        super().__init__(
            f"column '{column}': constant within the training split (standard deviation 0); "
            "it cannot be normalized"
        )


def compute_stats(
    train_features: npt.NDArray[np.float64], book: BookSchema = DEFAULT_BOOK
) -> FeatureStats:
    """Per-feature statistics of the training rows, in feature order."""
    stats: FeatureStats = {}
    for index, feature in enumerate(book.features):
        name = feature.name
        column = train_features[:, index]
        if feature.is_category:
            values = feature.values or ()
            counts = np.bincount(column.astype(np.int64), minlength=len(values))
            stats[name] = {
                "type": "category",
                "values": list(values),
                "frequencies": {
                    value: float(count) / column.shape[0]
                    for value, count in zip(values, counts, strict=True)
                },
                "mode": values[int(np.argmax(counts))],
            }
            continue
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


def normalize(
    features: npt.NDArray[np.float64], stats: FeatureStats, book: BookSchema = DEFAULT_BOOK
) -> npt.NDArray[np.float64]:
    """``(x - mean) / std`` column by column, with the training split's statistics; a category's
    index is left as it is."""
    means = np.array(
        [0.0 if f.is_category else stats[f.name]["mean"] for f in book.features], dtype=np.float64
    )
    stds = np.array(
        [1.0 if f.is_category else stats[f.name]["std"] for f in book.features], dtype=np.float64
    )
    return (np.asarray(features, dtype=np.float64) - means) / stds


def stats_to_json(stats: FeatureStats) -> str:
    """Stable text (fixed key order, repr floats): same stats give the same bytes."""
    return json.dumps(stats, indent=2) + "\n"
