"""The two commands as a user runs them: real processes, real exit codes, real output streams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_module(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_bad_data_exits_2_with_the_column_and_rows_on_stderr_and_no_folder(tmp_path: Path) -> None:
    data = tmp_path / "loans.csv"
    data.write_text(
        "credit_lines_outstanding,loan_amt_outstanding,total_debt_outstanding,income,"
        "years_employed,fico_score,default\n"
        "0,3000,4000,50000,3,620,0\n"
        "5,4100,21000,61000,2,912,1\n"
    )
    out = tmp_path / "artifacts"

    result = run_module("training", "--data", str(data), "--out", str(out), "--no-mlflow")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "column 'fico_score': FICO score outside 300..850" in result.stderr
    assert "first data row: 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_help_documents_every_contract_flag() -> None:
    result = run_module("training", "--help")
    assert result.returncode == 0
    for flag in ("--data", "--out", "--seed", "--no-mlflow", "--quiet"):
        assert flag in result.stdout


def test_synthesize_writes_the_requested_loan_book_from_any_folder(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "loans.csv"

    result = run_module(
        "training.synthesize", "--rows", "250", "--seed", "5", "--out", str(out), cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert "wrote 250 loans" in result.stdout
    loans = pd.read_csv(out)
    assert len(loans) == 250
    assert list(loans.columns)[-1] == "default"


def test_synthesize_refuses_zero_rows(tmp_path: Path) -> None:
    result = run_module("training.synthesize", "--rows", "0", "--out", str(tmp_path / "x.csv"))
    assert result.returncode == 2
    assert "--rows must be at least 1" in result.stderr


def test_the_cli_and_a_refused_file_import_no_heavy_library(tmp_path: Path) -> None:
    """scikit-learn, matplotlib, skl2onnx and mlflow load only in the stages that need them, so
    a bad file is refused in a fraction of a second and --no-mlflow never imports mlflow."""
    data = tmp_path / "loans.csv"
    data.write_text("")
    probe = (
        "import sys\n"
        "from training.cli import main\n"
        f"code = main(['--data', {str(data)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet'])\n"
        "heavy = ('sklearn', 'matplotlib', 'skl2onnx', 'onnxruntime', 'mlflow')\n"
        "print(code, sorted(name for name in heavy if name in sys.modules))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )

    assert result.stdout.strip() == "2 []", result.stderr
