"""manifest.json: what was trained, on what, how well, and the hash of every file serving loads.

The key set is the contract with serving (schema_version 1): add keys freely, never
rename or drop one without bumping ``schema_version``.
"""

from __future__ import annotations

import platform
import secrets
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

SCHEMA_VERSION = 1

LIBRARIES = (
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "joblib",
    "onnx",
    "skl2onnx",
    "onnxruntime",
    "mlflow",
)

REQUIRED_KEYS = (
    "schema_version",
    "model_version",
    "created_at",
    "features",
    "target",
    "threshold",
    "model",
    "metrics",
    "data",
    "files",
    "grades",
    "versions",
    "mlflow_run_id",
    "mlflow",
    "seed",
)


def new_model_version(now: datetime) -> str:
    """``YYYYMMDD.HHMMSS-xxxxxxxx``: sortable by time, unique thanks to 32 random bits."""
    return f"{now:%Y%m%d.%H%M%S}-{secrets.token_hex(4)}"


def utc_now() -> datetime:
    """The current time in UTC, to the second (what created_at and model_version show)."""
    return datetime.now(UTC).replace(microsecond=0)


def library_versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries that shaped the artifacts (None if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def missing_keys(manifest: dict[str, Any]) -> list[str]:
    """Contract keys absent from ``manifest`` (empty when it is complete)."""
    return [key for key in REQUIRED_KEYS if key not in manifest]
