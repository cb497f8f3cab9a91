"""Command line: ``python -m training --data CSV [--schema TOML] --out DIR [--seed N] [--quiet]``.

Exit codes: 0 trained; 2 the data (or the arguments) cannot be trained on - the message names the
column and the first offending rows, and no artifact folder is written or changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.book_file import DEFAULT_SCHEMA, SchemaFileError
from training.data import DataValidationError
from training.normalization import ConstantFeatureError
from training.pipeline import DEFAULT_SEED, TrainingConfig, run_training
from training.progress import Progress

EXIT_BAD_DATA = 2
DEFAULT_DATA = Path("Data/Loan_Data.csv")
DEFAULT_OUT = Path("artifacts")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training",
        description="Train the loan-default model and write the artifact folder serving loads.",
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"loan-book CSV (default {DEFAULT_DATA})"
    )
    parser.add_argument(
        "--schema",
        type=Path,
        default=DEFAULT_SCHEMA,
        help="the loan book's schema file (TOML; default: the default book, Data/schema.toml)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"artifact folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow")
    parser.add_argument("--quiet", action="store_true", help="print no progress, only errors")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run training; return the process exit code."""
    args = build_parser(prog).parse_args(argv)
    progress = Progress(quiet=args.quiet)
    config = TrainingConfig(
        data=args.data, out=args.out, schema=args.schema, seed=args.seed, track=not args.no_mlflow
    )
    try:
        outcome = run_training(config, progress)
    except (SchemaFileError, DataValidationError, ConstantFeatureError) as error:
        print(f"error: {error}", file=sys.stderr)
        print("error: training stopped; no artifact folder was written.", file=sys.stderr)
        return EXIT_BAD_DATA
    chosen = outcome.manifest["model"]["name"]
    metrics = outcome.manifest["metrics"][chosen]
    progress.say(
        f"wrote {outcome.out} in {progress.elapsed():.1f}s: {chosen}, F1 {metrics['f1']:.4f}, "
        f"ROC AUC {metrics['roc_auc']:.4f}, Brier {metrics['brier']:.4f}, "
        f"version {outcome.manifest['model_version']}"
    )
    if not args.quiet:
        print(f"Report: {outcome.report_index}")
    return 0
