"""``loan-default monitor``: population stability, characteristic stability and back-testing.

    loan-default monitor --artifacts DIR (--scored FILE | --from DATE --to DATE)
                         [--outcomes CSV] --out DIR

Exit codes: 0 the report was written; 2 bad input - one line on stderr naming the problem, and
nothing is written (an existing ``--out`` folder is left as it was).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

EXIT_BAD_INPUT: Final = 2
DEFAULT_ID_COLUMN: Final = "customer_id"
DEFAULT_TARGET_COLUMN: Final = "default"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m loan_default.monitoring",
        description="Stability (PSI, CSI, grade shares) of a window of scored loans against the "
        "training reference, and a back-test when outcomes are known.",
    )
    parser.add_argument("--artifacts", type=Path, required=True, help="the model's artifact folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--scored",
        type=Path,
        help="scored loans (.parquet or .csv, as written by 'loan-default score')",
    )
    source.add_argument(
        "--from",
        dest="start",
        metavar="DATE",
        help="the predictions the service logged to MLflow from DATE (YYYY-MM-DD or ISO 8601, "
        "UTC; MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME) ...",
    )
    parser.add_argument("--to", dest="end", metavar="DATE", help="... to DATE (inclusive)")
    parser.add_argument(
        "--outcomes", type=Path, help="CSV of loan id and observed default (0/1), joined on the id"
    )
    parser.add_argument(
        "--id-column", default=None, help=f"loan id column (default: {DEFAULT_ID_COLUMN})"
    )
    parser.add_argument("--out", type=Path, required=True, help="report folder (replaced)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--from and --to go together")
    from loan_default.monitoring.run import MonitorRequest, run_monitor
    from loan_default.monitoring.traces import parse_date
    from loan_default.monitoring.window import MonitorInputError

    try:
        start = None if args.start is None else parse_date(args.start)
        end = None if args.end is None else parse_date(args.end, end=True)
    except MonitorInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    request = MonitorRequest(
        artifacts=args.artifacts,
        scored=args.scored,
        outcomes=args.outcomes,
        id_column=args.id_column or DEFAULT_ID_COLUMN,
        target_column=DEFAULT_TARGET_COLUMN,
        out=args.out,
        track=not args.no_mlflow,
        start=start,
        end=end,
    )
    try:
        result = run_monitor(request)
    except MonitorInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.quiet:
        window = result["window"]
        print(
            f"{window['loans']:,} loans: score PSI {result['score_psi']:.4f}, grade PSI "
            f"{result['grade_psi']:.4f}, verdict {result['verdict']}"
            + (
                f"; back-test AUC {_fmt(result['backtest']['roc_auc'])}, "
                f"grades {result['backtest']['verdict']}"
                if "backtest" in result
                else ""
            )
        )
        print(f"Report: {args.out / 'report.html'}")
    return 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def dumps(payload: Any) -> str:
    return json.dumps(payload, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
