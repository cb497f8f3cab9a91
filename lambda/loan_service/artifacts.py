"""Read and verify the artifact folder that training wrote.

Order matters: the manifest is parsed, then the sha256 of EVERY file it lists is checked, and only
then is anything else read. A mismatch stops the service with a message naming the file, so a
corrupted or hand-edited artifact never serves a single prediction.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loan_service.book import BookSchema, FeatureSpec
from loan_service.stability import (
    REFERENCE_FILE,
    MasterScale,
    Reference,
    ReferenceError,
    load_reference,
)

MANIFEST_FILE: Final = "manifest.json"
ONNX_FILE: Final = "model.onnx"
PICKLE_FILE: Final = "best_model.pkl"
STATS_FILE: Final = "stats.json"
REQUIRED_FILES: Final = (PICKLE_FILE, ONNX_FILE, STATS_FILE)
SUPPORTED_SCHEMA_VERSION: Final = 1
STATS_KEYS: Final = ("mean", "std", "min", "q25", "q50", "q75", "max")


class ArtifactError(RuntimeError):
    """The artifact folder cannot be served; the message says which file and why."""


class _ModelBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    selection_reason: str = ""


class _MlflowBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str | None = None
    registered_model: dict[str, Any] | None = None


class Manifest(BaseModel):
    """The fields of ``manifest.json`` serving relies on (others are kept, not interpreted)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int
    model_version: str = Field(min_length=1)
    created_at: str
    features: list[str]
    target: str = "default"
    threshold: float = Field(gt=0.0, lt=1.0)
    model: _ModelBlock
    metrics: dict[str, dict[str, Any]]
    data: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str]
    grades: dict[str, Any] | None = None  # the master scale; absent in older folders
    versions: dict[str, Any] = Field(default_factory=dict)
    mlflow_run_id: str | None = None
    mlflow: _MlflowBlock | None = None
    seed: int | None = None
    book: BookSchema = Field(alias="schema")
    """The loan book's schema (features, target, reason codes) the model was trained on."""


@dataclass(frozen=True, slots=True)
class FeatureStats:
    """Training-split statistics as float64 vectors in feature order (normalization, reasons).

    A category's mean and std are 0 and 1 (its index enters the model unnormalized); its
    ``reference`` is the index of its most frequent training value. ``reference`` is in
    model-input space: 0 for a number (its training mean, normalized).
    """

    mean: np.ndarray
    std: np.ndarray
    median: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    reference: np.ndarray


@dataclass(frozen=True, slots=True)
class ArtifactBundle:
    """A verified artifact folder: every listed file matched its sha256 before this was built."""

    directory: Path
    manifest: Manifest
    stats: FeatureStats
    master_scale: MasterScale | None = None  # None: a folder trained before grades existed
    reference: Reference | None = None  # None: a folder without reference.json

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def pickle_path(self) -> Path:
        return self.directory / PICKLE_FILE


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_manifest(directory: Path) -> Manifest:
    manifest_path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise ArtifactError(
            f"artifact folder {directory} does not exist: train first (`make train`) "
            "or set ARTIFACT_DIR"
        )
    if not manifest_path.is_file():
        raise ArtifactError(f"{MANIFEST_FILE} is missing from {directory}")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{MANIFEST_FILE} is not readable JSON: {exc}") from exc
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ArtifactError(f"{MANIFEST_FILE} is invalid: {problems}") from exc
    if manifest.schema_version != SUPPORTED_SCHEMA_VERSION:
        raise ArtifactError(
            f"{MANIFEST_FILE} has schema_version {manifest.schema_version}; "
            f"this service reads version {SUPPORTED_SCHEMA_VERSION}"
        )
    return manifest


def read_manifest(directory: Path) -> Manifest:
    """The folder's manifest alone (no checksums, no model): what reports on scored files need."""
    return _read_manifest(directory)


def _verify_checksums(directory: Path, manifest: Manifest) -> None:
    """Check every listed file before any of them is opened for its content."""
    missing_from_manifest = [name for name in REQUIRED_FILES if name not in manifest.files]
    if missing_from_manifest:
        raise ArtifactError(
            f"{MANIFEST_FILE} lists no sha256 for {', '.join(missing_from_manifest)}"
        )
    for name, expected in manifest.files.items():
        path = directory / name
        if Path(name).name != name:
            raise ArtifactError(f"{MANIFEST_FILE} lists {name!r}, which is not a plain file name")
        if not path.is_file():
            raise ArtifactError(f"{name} is listed in {MANIFEST_FILE} but missing")
        try:
            actual = sha256_of(path)
        except OSError as exc:
            raise ArtifactError(f"{name} cannot be read ({exc.strerror or exc})") from exc
        if actual != expected.lower():
            raise ArtifactError(
                f"{name} does not match its sha256 in {MANIFEST_FILE} "
                f"(expected {expected}, found {actual})"
            )


def _category_stats(entry: dict[str, Any], spec: FeatureSpec) -> dict[str, float]:
    values = list(spec.values or ())
    mode = entry.get("mode")
    if entry.get("values") != values or mode not in values:
        raise ArtifactError(
            f"{STATS_FILE}: {spec.name} must list the schema's values and one of them as mode"
        )
    index = float(values.index(mode))
    return {"mean": 0.0, "std": 1.0, "q50": index, "min": 0.0, "max": len(values) - 1.0}


def _read_stats(directory: Path, book: BookSchema) -> FeatureStats:
    try:
        raw = json.loads((directory / STATS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{STATS_FILE} is not readable JSON: {exc}") from exc
    columns: dict[str, list[float]] = {key: [] for key in STATS_KEYS}
    reference: list[float] = []
    for spec in book.features:
        feature = spec.name
        entry = raw.get(feature) if isinstance(raw, dict) else None
        if not isinstance(entry, dict):
            raise ArtifactError(f"{STATS_FILE} has no statistics for {feature}")
        if spec.is_category:
            category = _category_stats(entry, spec)
            for key in STATS_KEYS:
                columns[key].append(category.get(key, category["q50"]))
            reference.append(category["q50"])
            continue
        reference.append(0.0)
        for key in STATS_KEYS:
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ArtifactError(f"{STATS_FILE}: {feature}.{key} is not a number")
            if not math.isfinite(value):
                raise ArtifactError(f"{STATS_FILE}: {feature}.{key} is not finite")
            columns[key].append(float(value))
        if entry["std"] <= 0.0:
            raise ArtifactError(f"{STATS_FILE}: {feature}.std must be > 0 to normalize")
    return FeatureStats(
        mean=np.asarray(columns["mean"], dtype=np.float64),
        std=np.asarray(columns["std"], dtype=np.float64),
        median=np.asarray(columns["q50"], dtype=np.float64),
        minimum=np.asarray(columns["min"], dtype=np.float64),
        maximum=np.asarray(columns["max"], dtype=np.float64),
        reference=np.asarray(reference, dtype=np.float64),
    )


def load_artifacts(
    directory: Path, expected_features: tuple[str, ...] | None = None
) -> ArtifactBundle:
    """Verify, then read, the artifact folder; raise ``ArtifactError`` naming what is wrong.

    The features are the manifest schema's; ``expected_features``, when given, must equal them.
    """
    directory = directory.resolve()
    manifest = _read_manifest(directory)
    _verify_checksums(directory, manifest)
    if tuple(manifest.features) != manifest.book.feature_names:
        raise ArtifactError(
            f"{MANIFEST_FILE} features {manifest.features} do not match its schema "
            f"{list(manifest.book.feature_names)}"
        )
    if expected_features is not None and tuple(manifest.features) != expected_features:
        raise ArtifactError(
            f"{MANIFEST_FILE} features {manifest.features} do not match the API schema "
            f"{list(expected_features)}"
        )
    if not manifest.book.is_complete:
        raise ArtifactError(f"{MANIFEST_FILE}: schema lists a category without its values")
    stats = _read_stats(directory, manifest.book)
    try:
        master_scale = MasterScale.from_manifest(manifest.grades) if manifest.grades else None
        reference = load_reference(directory) if REFERENCE_FILE in manifest.files else None
    except ReferenceError as exc:
        raise ArtifactError(str(exc)) from exc
    if reference is not None and reference.model_version != manifest.model_version:
        raise ArtifactError(
            f"{REFERENCE_FILE} belongs to model {reference.model_version}, "
            f"not {manifest.model_version}"
        )
    return ArtifactBundle(
        directory=directory,
        manifest=manifest,
        stats=stats,
        master_scale=master_scale,
        reference=reference,
    )
