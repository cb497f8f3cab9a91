"""Where things are: the repository, the serving source root, the reference and project data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
LAMBDA_ROOT: Final = REPO_ROOT / "lambda"
SHARED_DIR: Final = REPO_ROOT.parent / "shared"
REFERENCE_CSV: Final = SHARED_DIR / "data" / "Loan_Data.csv"
SHARED_EVENTS_DIR: Final = SHARED_DIR / "events"
PROJECT_CSV: Final = REPO_ROOT / "Data" / "Loan_Data.csv"
GERMAN_SCHEMA: Final = REPO_ROOT / "Data" / "books" / "german_credit.toml"
PROJECT_EVENTS_DIR: Final = REPO_ROOT / "tests" / "functional" / "events"
SAMPLE_EVENTS_DIR: Final = LAMBDA_ROOT / "events"


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
