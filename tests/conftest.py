"""Fixtures every tier shares: where things are, the reference data, real trained artifact folders.

Tiers: ``unit/`` needs no network and no subprocess; ``functional/`` uses real fakes (ASGI test
client, Lambda events, artifact folders on disk); ``integration/`` starts real servers and
processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.german_book import german_csv
from tests.support.paths import GERMAN_SCHEMA, PROJECT_CSV, REFERENCE_CSV, run_training


@pytest.fixture(scope="session")
def reference_csv() -> Path:
    """The reference loan book from ../shared; tests that need it skip where it is absent."""
    if not REFERENCE_CSV.is_file():
        pytest.skip(f"reference dataset not found at {REFERENCE_CSV}")
    return REFERENCE_CSV


@pytest.fixture(scope="session")
def trained_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real artifact folder, trained once per session on the project's synthetic data."""
    out = tmp_path_factory.mktemp("trained") / "artifacts"
    result = run_training(PROJECT_CSV, out, "--no-mlflow", "--quiet", "--seed", "7")
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="session")
def reference_artifacts(reference_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact folder trained on the reference dataset (seed 42, no MLflow), once per session.

    This is also the end-to-end run: ``python -m training`` on the reference data, in a temp folder.
    """
    out = tmp_path_factory.mktemp("trained-reference") / "artifacts"
    result = run_training(reference_csv, out, "--no-mlflow", "--quiet", "--seed", "42")
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="session")
def german_artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the German credit CSV, its artifact folder), trained once per session with its schema."""
    csv = german_csv()
    out = tmp_path_factory.mktemp("german") / "artifacts"
    result = run_training(csv, out, "--schema", str(GERMAN_SCHEMA), "--no-mlflow", "--quiet")
    assert result.returncode == 0, result.stderr
    return csv, out
