"""Which reference bin each prediction fell in: counted per window, published in the EMF document.

The scheduled monitoring function (``monitor_handler``) sums these counts over a day of the
function's logs with CloudWatch Logs Insights and computes the score's PSI and each feature's CSI
against the same ``reference.json`` ``loan-default monitor`` uses. Only bin indices leave the
process, never an applicant's values.

The request path pays one ``record`` per request. A block of rows (a batch request, or the
requests one coalesced model call answered) is binned in one ``searchsorted(cuts, x,
side="right")`` per number, the rule of ``loan_service.stability`` (comparing every value with a
NaN-padded matrix of every edge cost three times as much; the tests check the block and one-row
paths agree). A request of a few rows - the single-loan case - waits: its rows are binned with
the others' in one such pass once ``PENDING_ROWS`` have come, or at the next ``take``; fewer than
``VECTORIZED_FROM`` rows (a Lambda invocation's one loan) take ``bisect_right`` per value
instead: each numpy call costs a few microseconds whatever its size, about ten of them bin one
row, and Python's bisect on the same edges costs a fraction of that. Categories arrive as the
book's value index and map through one lookup table to their reference bin. The counts are a flat
list over every variable's bins; ``take`` turns its non-zero entries into the document's field and
resets it.

Two fields, sparse (a bin nobody fell in is absent), flat so they stay cheap to serialize::

    "score_bins": {"3": 1}, "feature_bins": {"fico_score.7": 1, "income.4": 1, ...}

Logs Insights flattens them to fields such as ``feature_bins.fico_score.7``
(``insights_field``); a single-loan invocation adds one field per variable.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import chain
from math import isnan
from operator import itemgetter
from typing import Any, Final

import numpy as np

from loan_service.book import BookSchema
from loan_service.stability import FeatureReference, Reference

SCORE_BINS_FIELD: Final = "score_bins"
FEATURE_BINS_FIELD: Final = "feature_bins"
VECTORIZED_FROM: Final = 16
"""Rows from which one numpy pass is cheaper than bisecting each value (measured here: ~45 us
fixed for the numpy pass, ~3 us a row bisected)."""
PENDING_ROWS: Final = 1024
"""Single-loan requests wait for this many rows (or the next ``take``) and are binned in one
numpy pass: on a server that is a fraction of a microsecond a loan instead of ~8 us bisected on
the request path (a twentieth of the app's work for a ``POST /predict``, callgrind). A Lambda
invocation takes its counts at its end, so its one loan is bisected there, as before."""

BinCounts = dict[str, dict[str, int]]  # the two fields: {field: {key: loans}}


def bin_key(feature: str | None, index: int) -> str:
    """A bin's key inside its field: the index for the score, ``name.index`` for a feature."""
    return str(index) if feature is None else f"{feature}.{index}"


def insights_field(feature: str | None, index: int) -> str:
    """The field Logs Insights discovers for a bin (JSON objects flatten with dots)."""
    field = SCORE_BINS_FIELD if feature is None else FEATURE_BINS_FIELD
    return f"{field}.{bin_key(feature, index)}"


class ReferenceBinCounter:
    """Counts per reference bin of the score and each feature, since the last ``take``."""

    def __init__(self, reference: Reference, book: BookSchema) -> None:
        names = book.feature_names
        missing = [name for name in names if name not in reference.features]
        if missing:
            raise ValueError(f"reference.json has no bins for feature(s) {', '.join(missing)}")
        kinds = [reference.features[name].kind for name in names]
        numeric = [i for i, kind in enumerate(kinds) if kind == "number"]
        categories = [i for i, kind in enumerate(kinds) if kind != "number"]
        # Variable order: the score, the numbers, then the categories (counts are flat in it).
        order = (*numeric, *categories)
        refs: list[FeatureReference] = [
            reference.score,
            *(reference.features[names[i]] for i in order),
        ]
        self.variables: tuple[str | None, ...] = (None, *(names[i] for i in order))
        sizes = [ref.bins for ref in refs]
        self.offsets: tuple[int, ...] = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
        self.bins = sum(sizes)
        self.counts: dict[int, int] = {}  # flat bin -> loans, only the bins someone fell in
        # Few-row requests not binned yet: (their raw rows, their PDs) and how many rows.
        self._pending: list[tuple[np.ndarray, list[float]]] = []
        self._pending_rows = 0
        # Per flat bin: (is it the score's, its key in the field).
        self._label_of_bin = tuple(
            (name is None, bin_key(name, index))
            for name, size in zip(self.variables, sizes, strict=True)
            for index in range(size)
        )
        n_numbers = 1 + len(numeric)
        # One row at a time: (raw column, edges, first bin, missing bin) per number.
        self._score_edges = reference.score.cut_list
        self._numbers = tuple(
            (column, ref.cut_list, self.offsets[k], self.offsets[k] + ref.extra_bin)
            for k, (column, ref) in enumerate(zip(numeric, refs[1:n_numbers], strict=True), 1)
        )
        # Categories: (raw column, global bin per book value index + one for any other code).
        self._categories = tuple(
            (
                column,
                tuple(
                    self.offsets[k] + ref.bin_of_value(value)
                    for value in (*(book.feature(names[column]).values or ()), None)
                ),
            )
            for k, (column, ref) in enumerate(
                zip(categories, refs[n_numbers:], strict=True), n_numbers
            )
        )
        # A block at a time: each number's edges as an array, and the tables as arrays.
        self._numeric_columns = np.asarray(numeric, dtype=np.intp)
        self._number_offsets = np.asarray(self.offsets[:n_numbers], dtype=np.int64)
        self._number_cuts = tuple(np.asarray(r.cuts, dtype=np.float64) for r in refs[:n_numbers])
        self._number_missing = self._number_offsets + np.asarray(sizes[:n_numbers]) - 1
        self._category_columns = np.asarray(categories, dtype=np.intp)
        self._category_sizes = np.asarray([len(t) - 1 for _, t in self._categories], np.int64)
        self._category_bases = np.cumsum([0, *(len(t) for _, t in self._categories)])[:-1]
        self._category_table = np.asarray(
            [b for _, table in self._categories for b in table], dtype=np.int64
        )

    @classmethod
    def of(cls, reference: Reference | None, book: BookSchema) -> ReferenceBinCounter | None:
        """A counter for a folder with ``reference.json``; None for one trained before it."""
        return None if reference is None else cls(reference, book)

    def bin_indices(self, raw: np.ndarray, probability: np.ndarray) -> np.ndarray:
        """(n, variables) flat bin indices, vectorized: score, numbers, categories."""
        values = np.empty((raw.shape[0], len(self._number_cuts)))
        values[:, 0] = probability
        values[:, 1:] = raw[:, self._numeric_columns]
        # The monitor's own rule, one ``searchsorted`` per number (a third of comparing every
        # value with every padded edge); a NaN's bin is set just below.
        bins = np.empty(values.shape, dtype=np.int64)
        for column, cuts in enumerate(self._number_cuts):
            bins[:, column] = np.searchsorted(cuts, values[:, column], side="right")
        bins += self._number_offsets
        missing = np.isnan(values)
        if missing.any():
            bins = np.where(missing, self._number_missing, bins)
        if self._category_columns.size:
            codes = raw[:, self._category_columns]
            valid = (codes >= 0) & (codes < self._category_sizes)
            index = np.where(valid, codes, self._category_sizes).astype(np.int64)
            bins = np.concatenate([bins, self._category_table[index + self._category_bases]], 1)
        return bins

    def row_bins(self, row: Sequence[float], probability: float) -> list[int]:
        """One row's flat bin indices, in the same layout, without numpy calls."""
        bins = [bisect_right(self._score_edges, probability)]
        for column, edges, offset, missing_bin in self._numbers:
            value = row[column]
            bins.append(missing_bin if isnan(value) else offset + bisect_right(edges, value))
        for column, table in self._categories:
            code = row[column]
            bins.append(table[int(code)] if 0 <= code < len(table) - 1 else table[-1])
        return bins

    def record(self, raw: np.ndarray, answers: Sequence[Any]) -> None:
        """Count one request's rows: ``raw`` as scored, the PDs as answered."""
        self.record_probabilities(raw, list(map(itemgetter("probability"), answers)))

    def record_probabilities(self, raw: np.ndarray, probabilities: Sequence[float]) -> None:
        """``record`` for answers kept as columns: the PDs as answered.

        A block is binned at once; a few rows (a single-loan request) wait with the others
        until ``PENDING_ROWS`` have come or the next ``take``, and are then binned together."""
        if len(probabilities) >= VECTORIZED_FROM:
            self._count_block(raw, np.array(probabilities, dtype=np.float64))
            return
        self._pending.append((raw, list(probabilities)))
        self._pending_rows += len(probabilities)
        if self._pending_rows >= PENDING_ROWS:
            self._count_pending()

    def _count_block(self, raw: np.ndarray, probability: np.ndarray) -> None:
        counts = self.counts
        block = np.bincount(self.bin_indices(raw, probability).ravel(), minlength=self.bins)
        hits = np.flatnonzero(block)
        for flat, count in zip(hits.tolist(), block[hits].tolist(), strict=True):
            counts[flat] = counts.get(flat, 0) + count

    def _count_pending(self) -> None:
        pending, self._pending = self._pending, []
        rows, self._pending_rows = self._pending_rows, 0
        if rows >= VECTORIZED_FROM:
            self._count_block(
                np.concatenate([raw for raw, _ in pending]),
                np.fromiter(chain.from_iterable(pd for _, pd in pending), np.float64, rows),
            )
            return
        counts = self.counts
        for raw, probabilities in pending:  # a Lambda invocation: its one loan, bisected
            for row, probability in zip(raw.tolist(), probabilities, strict=True):
                for flat in self.row_bins(row, probability):
                    counts[flat] = counts.get(flat, 0) + 1

    def take(self) -> BinCounts | None:
        """The counts since the last call as the sparse EMF field (None when nothing was counted),
        then zero them."""
        if self._pending:
            self._count_pending()
        if not self.counts:
            return None
        counts, self.counts = self.counts, {}
        score: dict[str, int] = {}
        features: dict[str, int] = {}
        labels = self._label_of_bin
        for flat in sorted(counts):
            is_score, key = labels[flat]
            (score if is_score else features)[key] = counts[flat]
        return {SCORE_BINS_FIELD: score, FEATURE_BINS_FIELD: features}
