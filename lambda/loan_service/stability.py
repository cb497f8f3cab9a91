"""The master scale and the training reference: one definition for serving, ``monitor`` and AWS.

Training writes ``reference.json`` (hashed in the manifest like every file serving loads) and the
master scale (``manifest["grades"]``); this module reads both and holds the only copy of the rules
that turn values into bins and bins into stability indices:

* grade: ``searchsorted(upper_bounds, pd, side="right") + 1`` - a PD equal to a bound belongs to
  the riskier grade; grade 1 is the lowest risk.
* numeric bin: ``searchsorted(cuts, x, side="right")`` over the training deciles (duplicates
  removed), so bin ``i`` is ``[cut[i-1], cut[i])``; one extra, last bin holds missing values (NaN).
* category bin: the position of the value among the training values; one extra, last bin holds
  values training never saw and missing ones.
* PSI (CSI for a feature) = sum over bins of ``(o - r) * ln(o / r)``, shares floored at
  ``SHARE_FLOOR`` so an empty bin stays finite. Verdicts: below 0.10 stable, 0.10 to 0.25
  investigate, 0.25 or more significant.

numpy only: it runs in the Lambda image, where there is no scipy or pandas.
"""

from __future__ import annotations

import itertools
import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

REFERENCE_FILE: Final = "reference.json"
REFERENCE_FORMAT: Final = 1
STABLE_BELOW: Final = 0.10
SIGNIFICANT_FROM: Final = 0.25
SHARE_FLOOR: Final = 1e-4
"""Share given to an empty bin: 1 in 10,000 keeps ln(o / r) finite without dominating the sum."""

Verdict = Literal["stable", "investigate", "significant"]
FeatureKind = Literal["number", "category"]


class ReferenceError(ValueError):
    """reference.json or the master scale cannot be used; the message says what is wrong."""


def verdict(index: float) -> Verdict:
    """The usual reading of a PSI / CSI value."""
    if index >= SIGNIFICANT_FROM:
        return "significant"
    if index >= STABLE_BELOW:
        return "investigate"
    return "stable"


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """The most severe of several verdicts (stable when there are none)."""
    order: tuple[Verdict, ...] = ("stable", "investigate", "significant")
    return max(verdicts, key=order.index, default="stable")


def shares_of(counts: np.ndarray) -> np.ndarray:
    """Counts per bin -> shares (all zero for an empty window)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(reference_shares: np.ndarray, observed_counts: np.ndarray) -> float:
    """Population stability index of observed bin counts against the reference shares."""
    reference = np.maximum(np.asarray(reference_shares, dtype=np.float64), SHARE_FLOOR)
    observed = np.maximum(shares_of(observed_counts), SHARE_FLOOR)
    if reference.shape != observed.shape:
        raise ValueError(f"{observed.shape[0]} observed bins for {reference.shape[0]} reference")
    return float(np.sum((observed - reference) * np.log(observed / reference)))


@dataclass(frozen=True, slots=True)
class MasterScale:
    """Grades 1..n by PD: grade g holds ``upper_bounds[g-2] <= pd < upper_bounds[g-1]``."""

    upper_bounds: np.ndarray  # (n - 1,) strictly increasing PD bounds
    scale: tuple[dict[str, Any], ...]  # per grade: pd_from, pd_to, training figures

    @property
    def grades(self) -> int:
        return int(self.upper_bounds.shape[0]) + 1

    def grade(self, probability: np.ndarray) -> np.ndarray:
        """Vectorized: the grade (int64, 1 = lowest risk) of each PD."""
        return np.searchsorted(self.upper_bounds, probability, side="right") + 1

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any]) -> MasterScale:
        bounds = block.get("upper_bounds")
        scale = block.get("scale")
        if not isinstance(bounds, list) or not all(_is_number(b) for b in bounds):
            raise ReferenceError("manifest grades.upper_bounds must be a list of numbers")
        if not isinstance(scale, list) or len(scale) != len(bounds) + 1:
            raise ReferenceError("manifest grades.scale must have one entry per grade")
        array = np.asarray(bounds, dtype=np.float64)
        if array.size and (np.any(np.diff(array) <= 0) or array[0] <= 0 or array[-1] > 1):
            raise ReferenceError("manifest grades.upper_bounds must increase strictly in (0, 1]")
        return cls(upper_bounds=array, scale=tuple(dict(entry) for entry in scale))


@dataclass(frozen=True, slots=True)
class FeatureReference:
    """One variable's training distribution: bins and the share of the training split in each."""

    name: str
    kind: FeatureKind
    shares: np.ndarray  # one per bin; the last bin is missing (numbers) / unseen or missing
    cuts: np.ndarray  # numbers: inner bin edges; categories: empty
    values: tuple[str, ...]  # categories: the training values, in bin order; numbers: empty
    low: float  # numbers: the training minimum (below it is out of range)
    high: float  # numbers: the training maximum
    cut_list: tuple[float, ...] = ()  # ``cuts`` as Python floats, for one value at a time

    def __post_init__(self) -> None:
        object.__setattr__(self, "cut_list", tuple(float(cut) for cut in self.cuts))

    @property
    def bins(self) -> int:
        return int(self.shares.shape[0])

    @property
    def extra_bin(self) -> int:
        """The index of the missing (numbers) or unseen-or-missing (categories) bin."""
        return self.bins - 1

    def labels(self) -> list[str]:
        """Human-readable bin names, for reports."""
        if self.kind == "category":
            return [*self.values, "(unseen or missing)"]
        edges = [f"{cut:.6g}" for cut in self.cuts]
        if not edges:
            return ["all", "(missing)"]
        names = [f"< {edges[0]}"]
        names += [f"{low} .. < {high}" for low, high in itertools.pairwise(edges)]
        names += [f">= {edges[-1]}", "(missing)"]
        return names

    def bin_of_numbers(self, values: np.ndarray) -> np.ndarray:
        """Vectorized bin indices (int64) of float values; NaN goes to the missing bin."""
        bins = np.searchsorted(self.cuts, values, side="right")
        missing = np.isnan(values)
        if missing.any():
            bins[missing] = self.extra_bin
        return bins

    def bin_of_value(self, value: Any) -> int:
        """One value's bin (the request path: a single applicant, no numpy call overhead)."""
        if self.kind == "category":
            try:
                return self.values.index(str(value)) if value is not None else self.extra_bin
            except ValueError:
                return self.extra_bin
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.extra_bin
        return bisect_right(self.cut_list, float(value))

    def out_of_range(self, values: np.ndarray) -> np.ndarray:
        """Numbers outside the training range [low, high] (missing excluded)."""
        return (values < self.low) | (values > self.high)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": self.kind, "shares": self.shares.tolist()}
        if self.kind == "category":
            entry["values"] = list(self.values)
        else:
            entry.update(cuts=self.cuts.tolist(), min=self.low, max=self.high)
        return entry

    @classmethod
    def from_json(cls, name: str, entry: Mapping[str, Any]) -> FeatureReference:
        kind = entry.get("type")
        shares = entry.get("shares")
        if not isinstance(shares, list) or not all(_is_number(s) for s in shares):
            raise ReferenceError(f"{REFERENCE_FILE}: {name}.shares must be a list of numbers")
        share_array = np.asarray(shares, dtype=np.float64)
        if not math.isclose(float(share_array.sum()), 1.0, abs_tol=1e-6):
            raise ReferenceError(f"{REFERENCE_FILE}: {name}.shares must sum to 1")
        if kind == "category":
            values = entry.get("values")
            if not isinstance(values, list) or len(values) + 1 != len(shares):
                raise ReferenceError(
                    f"{REFERENCE_FILE}: {name} needs one share per value plus one (unseen)"
                )
            return cls(
                name, "category", share_array, np.empty(0), tuple(map(str, values)), 0.0, 0.0
            )
        if kind in ("number", "integer"):
            cuts = entry.get("cuts")
            low: Any = entry.get("min")
            high: Any = entry.get("max")
            if not isinstance(cuts, list) or not all(_is_number(c) for c in cuts):
                raise ReferenceError(f"{REFERENCE_FILE}: {name}.cuts must be a list of numbers")
            if len(cuts) + 2 != len(shares) or not (_is_number(low) and _is_number(high)):
                raise ReferenceError(
                    f"{REFERENCE_FILE}: {name} needs min, max and len(cuts) + 2 shares"
                )
            cut_array = np.asarray(cuts, dtype=np.float64)
            if np.any(np.diff(cut_array) <= 0):
                raise ReferenceError(f"{REFERENCE_FILE}: {name}.cuts must increase strictly")
            return cls(name, "number", share_array, cut_array, (), float(low), float(high))
        raise ReferenceError(f"{REFERENCE_FILE}: {name}.type must be 'number' or 'category'")


@dataclass(frozen=True, slots=True)
class Reference:
    """The training split's distributions: the score, the grades, and each feature."""

    model_version: str
    rows: int
    score: FeatureReference
    grade_shares: np.ndarray  # (grades,)
    features: dict[str, FeatureReference]  # in the model's feature order

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REFERENCE_FORMAT,
            "model_version": self.model_version,
            "rows": self.rows,
            "split": "training",
            "score": self.score.to_json(),
            "grade": {"shares": self.grade_shares.tolist()},
            "features": {name: ref.to_json() for name, ref in self.features.items()},
        }

    @classmethod
    def from_json(cls, raw: Any) -> Reference:
        if not isinstance(raw, dict) or raw.get("format") != REFERENCE_FORMAT:
            raise ReferenceError(f"{REFERENCE_FILE} is not a format-{REFERENCE_FORMAT} reference")
        version, rows = raw.get("model_version"), raw.get("rows")
        if not isinstance(version, str) or not isinstance(rows, int):
            raise ReferenceError(f"{REFERENCE_FILE} needs model_version and rows")
        grade = raw.get("grade")
        features = raw.get("features")
        if not isinstance(grade, dict) or not isinstance(grade.get("shares"), list):
            raise ReferenceError(f"{REFERENCE_FILE} needs grade.shares")
        if not isinstance(features, dict) or not features:
            raise ReferenceError(f"{REFERENCE_FILE} needs a features table")
        score = raw.get("score")
        if not isinstance(score, dict):
            raise ReferenceError(f"{REFERENCE_FILE} needs a score table")
        return cls(
            model_version=version,
            rows=rows,
            score=FeatureReference.from_json("score", {"type": "number", **score}),
            grade_shares=np.asarray(grade["shares"], dtype=np.float64),
            features={
                name: FeatureReference.from_json(name, entry) for name, entry in features.items()
            },
        )


def load_reference(directory: Path) -> Reference:
    """Read ``reference.json`` from a (checksum-verified) artifact folder."""
    path = directory / REFERENCE_FILE
    if not path.is_file():
        raise ReferenceError(f"{REFERENCE_FILE} is missing from {directory}: retrain the model")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceError(f"{REFERENCE_FILE} is not readable JSON: {exc}") from exc
    return Reference.from_json(raw)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
