"""reference.json: the training split's distributions, the baseline every stability figure uses.

For the score (the PD serving computes) and each number: the training deciles as inner bin
edges (duplicates removed, and an edge at or below the minimum dropped, so no bin is empty by
construction), plus a last bin for missing values. For a category: one bin per value seen in
training (or declared in the schema), plus a last bin for unseen or missing values. Shares are
those of the training rows, computed with the same rule serving and ``monitor`` apply
(``searchsorted(cuts, x, side="right")``, in ``loan_service.stability``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

REFERENCE_FORMAT = 1
DECILES = np.linspace(0.1, 0.9, 9)


def numeric_reference(values: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Deciles as bin edges and the share of ``values`` in each bin (+ an empty missing bin)."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    cuts = np.unique(np.quantile(present, DECILES))
    cuts = cuts[cuts > present.min()]
    counts = np.bincount(np.searchsorted(cuts, present, side="right"), minlength=cuts.size + 1)
    shares = [*(counts / values.size).tolist(), float(np.isnan(values).sum() / values.size)]
    return {
        "type": "number",
        "cuts": cuts.tolist(),
        "shares": shares,
        "min": float(present.min()),
        "max": float(present.max()),
    }


def category_reference(
    values: Sequence[Any], declared: Sequence[str] | None = None
) -> dict[str, Any]:
    """One bin per category (declared ones, else those seen, in sorted order) + unseen/missing."""
    text = np.asarray([None if value is None else str(value) for value in values], dtype=object)
    categories = list(declared) if declared else sorted({v for v in text if v is not None})
    position = {value: index for index, value in enumerate(categories)}
    bins = np.fromiter(
        (position.get(value, len(categories)) for value in text), dtype=np.int64, count=len(text)
    )
    counts = np.bincount(bins, minlength=len(categories) + 1)
    return {"type": "category", "values": categories, "shares": (counts / len(text)).tolist()}


def build_reference(
    *,
    model_version: str,
    probability: npt.NDArray[np.float64],
    grade_shares: Sequence[float],
    features: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """The whole file: ``features`` already built by ``numeric_reference``/``category_reference``,
    in the model's feature order."""
    return {
        "format": REFERENCE_FORMAT,
        "model_version": model_version,
        "rows": int(np.asarray(probability).size),
        "split": "training",
        "score": numeric_reference(probability),
        "grade": {"shares": list(grade_shares)},
        "features": dict(features),
    }
