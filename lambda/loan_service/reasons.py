"""Adverse-action reasons: which features raised a declined applicant's risk, as stable codes.

Method. For every feature j, the contribution is how much the applicant's calibrated log-odds of
default would fall if that feature alone moved to its reference - a number's training mean, a
category's most frequent training value (``stats.json``'s ``mode``) - with the other features
unchanged: ``logit(x) - logit(x with x_j := reference_j)``. For a logistic model on numbers this
is exactly the feature's scorecard points ``w_j * (x_j - mean_j)``. The log-odds are the model's
own float64 output, taken before the sigmoid (ONNX output ``log_odds``), so they never saturate:
an applicant whose PD is exactly 1.0 in float32 still has finite, distinct contributions.

Reasons are the features whose contribution is at least ``REASON_MIN_LOG_ODDS`` (0.1: the odds of
default at least 10 % higher), largest first, at most ``MAX_REASONS``, and only for declined
applicants (prediction 1): an approved applicant gets no adverse-action reasons. All of it is
array work on one batched model call (each row plus its k counterfactual rows); the words a person
reads are a lookup on the code (``ReasonCatalogue``), done only where a person reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from loan_service.book import BookSchema

MAX_REASONS: Final = 4
REASON_MIN_LOG_ODDS: Final = 0.1
NO_REASON: Final = -1  # padding in a reasons array (fewer reasons than slots)


def top_reasons(
    impact: np.ndarray, max_reasons: int = MAX_REASONS
) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) impacts -> the ``max_reasons`` largest at or above ``REASON_MIN_LOG_ODDS`` per row.

    A stable sort on the negated impacts keeps ties in feature order. Returns (feature indices
    with ``NO_REASON`` padding, impacts with NaN padding), both (n, max_reasons).
    """
    n_rows, n_features = impact.shape
    slots = min(max_reasons, n_features)
    order = np.argsort(-impact, axis=1, kind="stable")[:, :slots]
    chosen = np.take_along_axis(impact, order, axis=1)
    keep = chosen >= REASON_MIN_LOG_ODDS
    reasons = np.full((n_rows, max_reasons), NO_REASON, dtype=np.int16)
    values = np.full((n_rows, max_reasons), np.nan, dtype=np.float64)
    reasons[:, :slots] = np.where(keep, order, NO_REASON)
    values[:, :slots] = np.where(keep, chosen, np.nan)
    return reasons, values


def row_reasons(
    impact: Sequence[float], max_reasons: int = MAX_REASONS
) -> tuple[list[int], list[float]]:
    """``top_reasons`` of ONE row of finite impacts, in Python floats: (feature indices, impacts)
    of its reasons, largest first, without padding.

    For the one applicant of an API request numpy's per-call cost is the whole of the work: the
    array version took ~100k instructions a row (callgrind), this a tenth. The same rule:
    Python's sort is stable with ``reverse=True`` too, so ties keep feature order as the stable
    argsort of the negated impacts does, and the reasons at or above the minimum are a prefix of
    the ranking."""
    ranked = sorted(range(len(impact)), key=impact.__getitem__, reverse=True)[:max_reasons]
    columns = [column for column in ranked if impact[column] >= REASON_MIN_LOG_ODDS]
    return columns, [impact[column] for column in columns]


@dataclass(frozen=True, slots=True)
class ReasonCatalogue:
    """The book's reason codes and adverse-action wording, indexed by feature position."""

    features: tuple[str, ...]
    codes: tuple[str, ...]
    texts: tuple[str, ...]

    @classmethod
    def of(cls, book: BookSchema) -> ReasonCatalogue:
        return cls(
            features=book.feature_names,
            codes=tuple(feature.reason_code for feature in book.features),
            texts=tuple(feature.reason for feature in book.features),
        )

    def code_columns(self, reasons: np.ndarray) -> list[np.ndarray]:
        """One object array of codes per reason slot (None where unused): a lookup, no loop."""
        lookup = np.array([*self.codes, None], dtype=object)  # index -1 -> None
        return [lookup[reasons[:, slot]] for slot in range(reasons.shape[1])]

    def text_of_code(self, code: str) -> str:
        """The adverse-action wording of a code (for files that carry codes only)."""
        return self.texts[self.codes.index(code)]
