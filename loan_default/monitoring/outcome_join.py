"""The back-test's join and statistics, streamed: memory does not grow with the window.

Neither side is held in memory. Both are hash-partitioned by loan id into temporary Arrow IPC
files - the outcomes CSV block by block, the scored loans batch by batch, each with its row number
in the scored file - so a loan and its outcome always land in the same bucket, and the join runs
one bucket at a time. There are 16 buckets, more for an outcomes file of more than 16 million rows
(about ``BUCKET_ROWS`` outcomes a bucket, up to 256 million). The matched (PD, outcome, row)
tuples are spilled once more, into files by PD range: cut from a histogram of the window's PDs
over the top bits of their IEEE-754 pattern (which order like the values), so a range holds about
``RANGE_ROWS`` loans and one PD value never straddles two ranges.

Read in ascending PD order, each range sorted by (PD, row) - exactly the global order of a stable
sort - gives everything exactly, with running totals across ranges: ROC AUC as pairs (defaulter
above repayer, ties one half) from the defaulters and repayers at each distinct PD; KS as the
largest gap of the two cumulative distributions at each distinct PD; Hosmer-Lemeshow over the
ten groups ``array_split`` would make of the sorted loans. Counts, sums and per-grade figures
add up in the join. ``backtest.backtest_block`` words the result, as for the in-memory path.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import ipc

from loan_default.monitoring.backtest import (
    HOSMER_LEMESHOW_GROUPS,
    backtest_block,
    hosmer_lemeshow_from_groups,
)
from loan_default.monitoring.window import MonitorInputError

MIN_BUCKETS: Final = 16
MAX_BUCKETS: Final = 256  # two open files each, well under the usual 1024 descriptors
BUCKET_ROWS: Final = 1 << 20  # outcomes per bucket aimed at, from the file's size
CSV_BYTES_PER_ROW: Final = 8  # a short id, a comma, 0/1 and a newline: never fewer
RANGE_ROWS: Final = 1 << 20
KEY_SHIFT: Final = 45  # float64 bits >> 45: the exponent and 7 mantissa bits, monotone for >= 0
KEYS: Final = (int(np.float64(1.0).view(np.int64)) >> KEY_SHIFT) + 1


class JoinInputError(MonitorInputError):
    """The outcomes cannot be joined (one line; ``monitor`` exits 2)."""


def bucket_count(outcomes_bytes: int) -> int:
    """Buckets for an outcomes file of this size: each holds at most about ``BUCKET_ROWS``."""
    rows = outcomes_bytes // CSV_BYTES_PER_ROW
    return int(min(MAX_BUCKETS, max(MIN_BUCKETS, -(-rows // BUCKET_ROWS))))


def _buckets_of(ids: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Each id's bucket: the integer modulo ``buckets``, or Python's hash of the text (the same
    process hashes both sides)."""
    if pa.types.is_integer(ids.type):
        values = np.asarray(pc.cast(ids, pa.int64()).to_numpy(zero_copy_only=False))
        return np.mod(values, buckets)
    return np.fromiter(
        (hash(value) % buckets for value in ids.to_pylist()), dtype=np.int64, count=len(ids)
    )


class Spill:
    """Arrow IPC files by partition in a temporary folder; each partition keeps write order."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self._writers: dict[int, ipc.RecordBatchFileWriter] = {}

    def path(self, part: int) -> Path:
        return self.folder / f"{self.name}-{part}.arrow"

    def write(self, parts: np.ndarray, table: pa.Table) -> None:
        order = np.argsort(parts, kind="stable")
        ordered = table.take(pa.array(order))
        sorted_parts = parts[order]
        edges = np.flatnonzero(np.r_[True, sorted_parts[1:] != sorted_parts[:-1], True])
        for start, end in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            part = int(sorted_parts[start])
            writer = self._writers.get(part)
            if writer is None:
                writer = ipc.new_file(str(self.path(part)), table.schema)
                self._writers[part] = writer
            writer.write_table(ordered.slice(start, end - start))

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def read(self, part: int) -> pa.Table | None:
        path = self.path(part)
        if not path.is_file():
            return None
        with pa.memory_map(str(path)) as source:
            return ipc.open_file(source).read_all()


@dataclass
class OutcomeJoin:
    """The outcomes side, spilled at construction; the scored side is added batch by batch."""

    path: Path
    id_column: str
    target_column: str
    id_type: pa.DataType = field(init=False)
    outcomes: int = field(init=False, default=0)
    buckets: int = field(init=False, default=MIN_BUCKETS)
    _folder: Path = field(init=False)
    _outcome_spill: Spill = field(init=False)
    _scored_spill: Spill = field(init=False)
    _pd_keys: np.ndarray = field(init=False)
    _scored_rows: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="loan-default-backtest-"))
        self._outcome_spill = Spill(self._folder, "outcomes")
        self._scored_spill = Spill(self._folder, "scored")
        self._pd_keys = np.zeros(KEYS, dtype=np.int64)
        try:
            self._spill_outcomes()
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        self._outcome_spill.close()
        self._scored_spill.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _spill_outcomes(self) -> None:
        import pyarrow.csv as pacsv

        path = self.path
        if not path.is_file():
            raise JoinInputError(f"outcomes file {path} does not exist")
        self.buckets = bucket_count(path.stat().st_size)
        try:
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20))
        except pa.ArrowInvalid as exc:
            raise JoinInputError(f"outcomes file {path} is not readable CSV: {exc}") from exc
        missing = [c for c in (self.id_column, self.target_column) if c not in reader.schema.names]
        if missing:
            raise JoinInputError(f"outcomes file {path} lacks the column(s) {', '.join(missing)}")
        self.id_type = reader.schema.field(self.id_column).type
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise JoinInputError(f"outcomes file {path} is not readable CSV: {exc}") from exc
            self._add_outcomes(batch)
        self._outcome_spill.close()
        if self.outcomes == 0:
            raise JoinInputError(f"outcomes file {path} has no rows")

    def _add_outcomes(self, batch: pa.RecordBatch) -> None:
        ids = batch.column(self.id_column)
        if ids.null_count:
            raise JoinInputError(
                f"outcomes file {self.path}: column {self.id_column} has empty ids"
            )
        target = batch.column(self.target_column)
        if pa.types.is_boolean(target.type):
            target = pc.cast(target, pa.int8())
        values = np.asarray(target.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        if bad.size or not pa.types.is_integer(target.type):
            first = (bad[:3] + 2 + self.outcomes).tolist() if bad.size else "?"
            raise JoinInputError(
                f"outcomes file {self.path}: column {self.target_column} must be 0 or 1 "
                f"(rows {first})"
            )
        table = pa.table({"id": ids, "default": pa.array(values.astype(np.int8))})
        self._outcome_spill.write(_buckets_of(ids, self.buckets), table)
        self.outcomes += batch.num_rows

    def add_scored(
        self, ids: pa.Array | pa.ChunkedArray, probability: np.ndarray, grade: np.ndarray
    ) -> None:
        """One batch of scored loans (its ids, PDs and grades, in file order)."""
        if ids.type != self.id_type:
            try:
                ids = pc.cast(ids, self.id_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise JoinInputError(
                    f"scored column {self.id_column} cannot be joined with the outcomes' ids "
                    f"({self.id_type}): {exc}"
                ) from exc
        n = len(probability)
        rows = np.arange(self._scored_rows, self._scored_rows + n, dtype=np.int64)
        self._scored_rows += n
        valid = np.asarray(pc.is_valid(ids).to_numpy(zero_copy_only=False))
        if not valid.all():  # a loan without an id has no outcome
            ids = pc.filter(ids, pa.array(valid))
            probability, grade, rows = probability[valid], grade[valid], rows[valid]
        table = pa.table(
            {
                "id": ids,
                "probability": pa.array(probability),
                "grade": pa.array(grade.astype(np.int8)),
                "row": pa.array(rows),
            }
        )
        self._scored_spill.write(_buckets_of(ids, self.buckets), table)
        self._pd_keys += np.bincount(_pd_keys(probability), minlength=KEYS)

    def backtest(self, grades: int) -> dict[str, Any] | None:
        """The back-test block, or None when no outcome matches a scored loan."""
        self._scored_spill.close()
        ranges = Spill(self._folder, "matched")
        range_of_key = np.cumsum(self._pd_keys) // RANGE_ROWS
        range_of_key = np.r_[0, range_of_key[:-1]]  # a key's range: loans before it // RANGE_ROWS
        totals = _Totals(grades)
        for bucket in range(self.buckets):
            outcomes = self._outcome_spill.read(bucket)
            scored = self._scored_spill.read(bucket)
            if outcomes is None:
                continue
            outcome_ids = outcomes.column("id").combine_chunks()
            if len(pc.unique(outcome_ids)) != len(outcome_ids):
                raise JoinInputError(
                    f"outcomes file {self.path}: column {self.id_column} repeats loan ids"
                )
            if scored is None:
                continue
            position = pc.index_in(scored.column("id"), value_set=outcome_ids)
            hit = np.asarray(pc.is_valid(position).to_numpy(zero_copy_only=False))
            if not hit.any():
                continue
            at = np.asarray(pc.drop_null(position).to_numpy(zero_copy_only=False))
            probability = np.asarray(scored.column("probability"))[hit]
            grade = np.asarray(scored.column("grade"))[hit].astype(np.int64)
            outcome = np.asarray(outcomes.column("default"))[at].astype(np.int8)
            rows = np.asarray(scored.column("row"))[hit]
            totals.add_matched(probability, grade, outcome)
            ranges.write(
                range_of_key[_pd_keys(probability)],
                pa.table(
                    {
                        "probability": pa.array(probability),
                        "default": pa.array(outcome),
                        "row": pa.array(rows),
                    }
                ),
            )
        ranges.close()
        if totals.loans == 0:
            return None
        ordered = _OrderedStatistics(totals.loans, totals.defaults)
        for part in range(int(range_of_key[-1]) + 1):
            table = ranges.read(part)
            if table is not None:
                ordered.add_range(
                    np.asarray(table.column("probability")),
                    np.asarray(table.column("default")),
                    np.asarray(table.column("row")),
                )
        result = backtest_block(
            loans=totals.loans,
            defaults=totals.defaults,
            probability_sum=totals.probability_sum,
            brier_sum=totals.brier_sum,
            roc_auc=ordered.roc_auc(),
            ks=ordered.ks(),
            hosmer_lemeshow=ordered.hosmer_lemeshow(),
            grade_loans=totals.grade_loans,
            grade_defaults=totals.grade_defaults,
            grade_probability_sum=totals.grade_probability_sum,
        )
        result["unmatched_outcomes"] = self.outcomes - totals.loans
        return result


def _pd_keys(probability: np.ndarray) -> np.ndarray:
    return np.asarray(probability, dtype=np.float64).view(np.int64) >> KEY_SHIFT


@dataclass
class _Totals:
    grades: int
    loans: int = 0
    defaults: int = 0
    probability_sum: float = 0.0
    brier_sum: float = 0.0
    grade_loans: np.ndarray = field(init=False)
    grade_defaults: np.ndarray = field(init=False)
    grade_probability_sum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.grade_loans = np.zeros(self.grades + 1, dtype=np.int64)
        self.grade_defaults = np.zeros(self.grades + 1, dtype=np.int64)
        self.grade_probability_sum = np.zeros(self.grades + 1, dtype=np.float64)

    def add_matched(self, probability: np.ndarray, grade: np.ndarray, outcome: np.ndarray) -> None:
        size = self.grades + 1
        self.loans += int(outcome.size)
        self.defaults += int(outcome.sum())
        self.probability_sum += float(probability.sum())
        self.brier_sum += float(np.sum((probability - outcome) ** 2))
        self.grade_loans += np.bincount(grade, minlength=size)
        self.grade_defaults += np.bincount(grade, weights=outcome, minlength=size).astype(np.int64)
        self.grade_probability_sum += np.bincount(grade, weights=probability, minlength=size)


class _OrderedStatistics:
    """AUC, KS and Hosmer-Lemeshow from the matched loans, fed in ascending (PD, row) order."""

    def __init__(self, loans: int, defaults: int) -> None:
        self.loans = loans
        self.defaults = defaults
        self.repayers = loans - defaults
        self.seen = 0
        self.defaults_below = 0
        self.repayers_below = 0
        self.pairs = 0.0  # defaulter above repayer, ties one half
        self.ks_gap = 0.0
        # array_split's groups of the sorted loans: the first loans % 10 groups one larger.
        base, extra = divmod(loans, HOSMER_LEMESHOW_GROUPS)
        sizes = np.array([base + (1 if g < extra else 0) for g in range(HOSMER_LEMESHOW_GROUPS)])
        self.group_starts = np.r_[0, np.cumsum(sizes)[:-1]]
        self.group_sizes = sizes
        self.group_expected = np.zeros(sizes.size)
        self.group_observed = np.zeros(sizes.size)

    def add_range(self, probability: np.ndarray, outcome: np.ndarray, rows: np.ndarray) -> None:
        order = np.lexsort((rows, probability))
        probability, outcome = probability[order], outcome[order].astype(np.int64)
        n = probability.size
        first = np.r_[True, probability[1:] != probability[:-1]]
        value = np.cumsum(first) - 1
        d = np.bincount(value, weights=outcome).astype(np.int64)
        r = np.bincount(value).astype(np.int64) - d
        repayers_before = self.repayers_below + np.r_[0, np.cumsum(r)[:-1]]
        self.pairs += float(np.sum(d * (repayers_before + 0.5 * r)))
        if self.defaults and self.repayers:
            cum_d = (self.defaults_below + np.cumsum(d)) / self.defaults
            cum_r = (self.repayers_below + np.cumsum(r)) / self.repayers
            self.ks_gap = max(self.ks_gap, float(np.max(np.abs(cum_d - cum_r))))
        self.defaults_below += int(d.sum())
        self.repayers_below += int(r.sum())
        positions = self.seen + np.arange(n)
        group = np.searchsorted(self.group_starts, positions, side="right") - 1
        size = self.group_sizes.size
        self.group_expected += np.bincount(group, weights=probability, minlength=size)
        self.group_observed += np.bincount(group, weights=outcome, minlength=size)
        self.seen += n

    def roc_auc(self) -> float | None:
        if not (self.defaults and self.repayers):
            return None
        return self.pairs / (self.defaults * self.repayers)

    def ks(self) -> float | None:
        return self.ks_gap if self.defaults and self.repayers else None

    def hosmer_lemeshow(self) -> dict[str, float | int]:
        present = self.group_sizes > 0
        return hosmer_lemeshow_from_groups(
            self.group_sizes[present], self.group_expected[present], self.group_observed[present]
        )
