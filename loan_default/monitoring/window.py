"""One pass over a window of scored loans: bin counts in, stability figures out.

The window is read in Arrow record batches (``pyarrow``: Parquet row groups or CSV blocks), and
each batch only adds to fixed-size counters: per bin of the score, of each grade and of each
feature, plus missing and out-of-range counts. Memory is therefore the batch plus the counters,
whatever the window's size. With outcomes, each batch's (id, PD, grade) is spilled to disk for the
streamed join (``outcome_join``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loan_service.stability import (
    FeatureReference,
    MasterScale,
    Reference,
    psi,
    shares_of,
    verdict,
    worst,
)

if TYPE_CHECKING:
    from loan_default.monitoring.outcome_join import OutcomeJoin

BATCH_ROWS: Final = 1 << 20
PROBABILITY_COLUMN: Final = "probability"
GRADE_COLUMN: Final = "grade"
MODEL_VERSION_COLUMN: Final = "model_version"


class MonitorInputError(ValueError):
    """The window, the outcomes or the artifact folder cannot be monitored (one line, exit 2)."""


def file_columns(path: Path) -> list[str]:
    """The column names of a Parquet or CSV file (by extension), without reading its rows."""
    if not path.is_file():
        raise MonitorInputError(f"scored file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            raise MonitorInputError(f"scored file {path} is not readable Parquet: {exc}") from exc
    if suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace") as handle:
            header = handle.readline().rstrip("\r\n")
        if not header:
            raise MonitorInputError(f"the window is empty: scored file {path} has no header")
        return [name.strip().strip('"') for name in header.split(",")]
    raise MonitorInputError(f"scored file {path} must be .parquet or .csv")


def open_batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` from a Parquet or CSV file (by extension), streamed."""
    _require_columns(path, file_columns(path), columns)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
        return
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=64 << 20),
            convert_options=pacsv.ConvertOptions(include_columns=columns),
        )
        yield from reader
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        if "empty" in str(exc).lower():
            return
        raise MonitorInputError(f"scored file {path} is not readable CSV: {exc}") from exc


def _require_columns(path: Path, present: list[str], needed: list[str]) -> None:
    missing = [name for name in needed if name not in present]
    if missing:
        raise MonitorInputError(
            f"scored file {path} lacks the model's column(s) {', '.join(missing)}"
        )


def _floats(column: pa.Array | pa.ChunkedArray, name: str) -> np.ndarray:
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        if pa.types.is_null(column.type):
            return np.full(len(column), np.nan)
        raise MonitorInputError(f"column {name} is {column.type}, not a number")
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))


@dataclass(slots=True)
class FeatureCounts:
    reference: FeatureReference
    counts: np.ndarray
    out_of_range: int = 0

    @property
    def missing(self) -> int:
        """Numbers: missing values. Categories: unseen or missing (one bin)."""
        return int(self.counts[self.reference.extra_bin])

    def add(self, column: pa.Array | pa.ChunkedArray, name: str) -> None:
        ref = self.reference
        if ref.kind == "category":
            text = pc.cast(column, pa.string())
            bins = pc.fill_null(pc.index_in(text, value_set=pa.array(ref.values)), ref.extra_bin)
            self.counts += np.bincount(bins.to_numpy(zero_copy_only=False), minlength=ref.bins)
            return
        values = _floats(column, name)
        self.counts += np.bincount(ref.bin_of_numbers(values), minlength=ref.bins)
        self.out_of_range += int(np.count_nonzero(ref.out_of_range(values)))


@dataclass(slots=True)
class WindowCounts:
    """Everything a window contributes, accumulated batch by batch."""

    reference: Reference
    master_scale: MasterScale
    outcomes: OutcomeJoin | None = None
    loans: int = 0
    score: FeatureCounts = field(init=False)
    grades: np.ndarray = field(init=False)
    grade_pd_sum: np.ndarray = field(init=False)
    features: dict[str, FeatureCounts] = field(init=False)
    model_versions: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.score = FeatureCounts(self.reference.score, np.zeros(self.reference.score.bins, int))
        self.grades = np.zeros(self.master_scale.grades + 1, dtype=np.int64)
        self.grade_pd_sum = np.zeros(self.master_scale.grades + 1, dtype=np.float64)
        self.features = {
            name: FeatureCounts(ref, np.zeros(ref.bins, dtype=np.int64))
            for name, ref in self.reference.features.items()
        }

    def columns(self, available: list[str] | None = None) -> list[str]:
        """The columns a batch must carry (plus optional ones the file has)."""
        needed = [*self.reference.features, PROBABILITY_COLUMN]
        if self.outcomes is not None:
            needed.append(self.outcomes.id_column)
        if available is not None:
            needed += [c for c in (GRADE_COLUMN, MODEL_VERSION_COLUMN) if c in available]
        return needed

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        names = batch.schema.names
        probability = _floats(batch.column(PROBABILITY_COLUMN), PROBABILITY_COLUMN)
        if np.isnan(probability).any() or probability.min() < 0 or probability.max() > 1:
            raise MonitorInputError(
                f"column {PROBABILITY_COLUMN} has values outside 0..1 or missing values "
                f"(rows {self.loans + 1}..{self.loans + batch.num_rows})"
            )
        if GRADE_COLUMN in names:
            grade = _floats(batch.column(GRADE_COLUMN), GRADE_COLUMN)
            if np.isnan(grade).any() or grade.min() < 1 or grade.max() > self.master_scale.grades:
                raise MonitorInputError(
                    f"column {GRADE_COLUMN} has values outside 1..{self.master_scale.grades}"
                )
            grades = grade.astype(np.int64)
        else:
            grades = self.master_scale.grade(probability)
        if MODEL_VERSION_COLUMN in names:
            versions = pc.unique(batch.column(MODEL_VERSION_COLUMN)).to_pylist()
            self.model_versions.update(str(v) for v in versions if v is not None)
        self.loans += batch.num_rows
        self.score.counts += np.bincount(
            self.score.reference.bin_of_numbers(probability), minlength=self.score.reference.bins
        )
        self.grades += np.bincount(grades, minlength=self.grades.size)
        self.grade_pd_sum += np.bincount(grades, weights=probability, minlength=self.grades.size)
        for name, counts in self.features.items():
            counts.add(batch.column(name), name)
        if self.outcomes is not None:
            self.outcomes.add_scored(batch.column(self.outcomes.id_column), probability, grades)

    def summary(self) -> dict[str, Any]:
        """Stability figures of the window (the part of monitor.json that needs no outcomes)."""
        reference = self.reference
        score_psi = psi(reference.score.shares, self.score.counts)
        grade_psi = psi(reference.grade_shares, self.grades[1:])
        window_grade_shares = shares_of(self.grades[1:])
        features: dict[str, Any] = {}
        for name, counts in self.features.items():
            ref = counts.reference
            csi = psi(ref.shares, counts.counts)
            missing_share = counts.missing / self.loans
            missing_reference = float(ref.shares[ref.extra_bin])
            out_of_range_share = counts.out_of_range / self.loans
            features[name] = {
                "csi": csi,
                "verdict": verdict(csi),
                "type": ref.kind,
                "bins": ref.labels(),
                "reference_shares": ref.shares.tolist(),
                "window_shares": shares_of(counts.counts).tolist(),
                "missing_share": missing_share,
                "reference_missing_share": missing_reference,
                "out_of_range_share": out_of_range_share,
            }
        grew = [
            {
                "feature": name,
                "missing_share": entry["missing_share"],
                "reference_missing_share": entry["reference_missing_share"],
                "out_of_range_share": entry["out_of_range_share"],
            }
            for name, entry in features.items()
            if entry["missing_share"] > entry["reference_missing_share"]
            or entry["out_of_range_share"] > 0
        ]
        grades = []
        for index, loans in enumerate(self.grades[1:].tolist()):
            grade = index + 1
            share = float(window_grade_shares[index])
            ref_share = float(reference.grade_shares[index])
            grades.append(
                {
                    "grade": grade,
                    "loans": loans,
                    "share": share,
                    "reference_share": ref_share,
                    "change": share - ref_share,
                    "mean_pd": self.grade_pd_sum[grade] / loans if loans else None,
                }
            )
        verdicts = [verdict(score_psi), verdict(grade_psi)]
        verdicts += [entry["verdict"] for entry in features.values()]
        return {
            "score_psi": score_psi,
            "score_verdict": verdict(score_psi),
            "grade_psi": grade_psi,
            "grade_verdict": verdict(grade_psi),
            "score_bins": {
                "bins": reference.score.labels(),
                "reference_shares": reference.score.shares.tolist(),
                "window_shares": shares_of(self.score.counts).tolist(),
            },
            "grades": grades,
            "features": features,
            "missing_or_out_of_range_grew": grew,
            "verdict": worst(verdicts),
        }
