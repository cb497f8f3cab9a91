"""``loan-default score INPUT --out OUTPUT``: score a loan book file (also ``python -m
loan_default.batch``).

``--report DIR`` adds the portfolio report (``loan_default.batch.portfolio``) of the scored
output; without ``--out``, INPUT is an existing scored output and only its report is written.

Exit status: 0 scored (rejects, if any, are in the rejects file); 1 stopped because more rows were
rejected than ``--max-rejects`` allows (no output file is left behind); 2 bad arguments or an
input that cannot be scored at all (missing file, unknown extension, a feature column missing,
a bad artifact folder), with one line on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Final

import loan_default.batch  # noqa: F401  (puts the service's source root on the path)
from loan_default.cli import loading
from loan_service.artifacts import ArtifactError
from loan_service.scoring import RISK_BANDS
from loan_service.settings import Settings

EXIT_DONE: Final = 0
EXIT_STOPPED: Final = 1
EXIT_BAD_INPUT: Final = 2
ENGINES: Final = ("local", "spark")
ENV_SPARK_MASTER: Final = "SPARK_MASTER"  # --engine spark: where to run (default local[*])


def default_rejects(output: Path) -> Path:
    """``book.scored.parquet`` -> ``book.scored.rejects.csv`` beside it."""
    return output.with_name(f"{output.stem}.rejects.csv")


def build_parser(prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Score every loan of a CSV or Parquet file with the trained model: the input's "
        "columns, then probability, prediction, risk_band, expected_loss and reason_1_code .. "
        "reason_4_code. Rows the API would refuse go to the rejects file (row, column, reason).",
        epilog="Exit status: 0 done, 1 stopped by --max-rejects, 2 bad arguments or input.",
    )
    parser.add_argument("input", type=Path, help="loan book, .csv or .parquet")
    parser.add_argument("--out", type=Path, help="scored output, .parquet or .csv (by extension)")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write the portfolio report (portfolio.html, portfolio.json, plots) of the scored "
        "output into DIR; without --out, INPUT is a scored output and only the report is made",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default): one process, streaming; spark: Spark on SPARK_MASTER (default "
        "local[*]), output and rejects written as folders of part files",
    )
    parser.add_argument(
        "--rejects", type=Path, help="rejects file, .csv or .parquet (default OUTPUT.rejects.csv)"
    )
    parser.add_argument(
        "--max-rejects",
        type=int,
        metavar="N",
        help="stop (exit 1, no output) once more than N rows are rejected",
    )
    parser.add_argument(
        "--artifacts", type=Path, help="artifact folder (default ARTIFACT_DIR or artifacts/)"
    )
    parser.add_argument(
        "--recovery-rate",
        type=float,
        help="share of the exposure recovered after a default (default RECOVERY_RATE or 0.10)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:  # noqa: PLR0911
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    name = parser.prog
    settings = Settings()
    artifact_dir: Path = args.artifacts or settings.artifact_dir or Path("artifacts")
    recovery_rate = settings.recovery_rate if args.recovery_rate is None else args.recovery_rate
    if not 0.0 <= recovery_rate <= 1.0:
        print(f"{name}: --recovery-rate must be between 0 and 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.max_rejects is not None and args.max_rejects < 0:
        print(f"{name}: --max-rejects must be 0 or more", file=sys.stderr)
        return EXIT_BAD_INPUT
    with loading():
        from loan_default.batch.rules import InputError

    if args.out is None:
        if args.report is None:
            print(f"{name}: give --out OUTPUT (score), --report DIR, or both", file=sys.stderr)
            return EXIT_BAD_INPUT
        return _report(name, args.input, artifact_dir, args.report)
    rejects_path: Path = args.rejects or default_rejects(args.out)

    try:
        if args.engine == "spark":
            from loan_default.batch.spark import score_with_spark, spark_session

            summary = score_with_spark(
                spark_session(os.environ.get(ENV_SPARK_MASTER) or "local[*]"),
                str(artifact_dir.resolve()),
                str(args.input.resolve()),
                str(args.out.resolve()),
                str(rejects_path.resolve()),
                recovery_rate,
                args.max_rejects,
            )
        else:
            with loading():
                from loan_default.batch.core import BatchScorer
                from loan_default.batch.local import score_file

                scorer = BatchScorer(
                    artifact_dir, recovery_rate, settings.model_runtime, coded=True
                )
            summary = score_file(
                scorer,
                args.input,
                args.out,
                rejects_path,
                max_rejects=args.max_rejects,
                quiet=args.quiet,
            )
    except (InputError, ArtifactError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in summary.lines(RISK_BANDS):
        print(line)
    if summary.stopped:
        print(
            f"{name}: stopped: more than {args.max_rejects} rows rejected "
            f"(see {rejects_path}); no output written",
            file=sys.stderr,
        )
        return EXIT_STOPPED
    print(f"output: {args.out}")
    print(f"rejects: {rejects_path}")
    if args.report is not None:
        return _report(name, args.out, artifact_dir, args.report)
    return EXIT_DONE


def _report(name: str, scored: Path, artifact_dir: Path, out: Path) -> int:
    """The portfolio report of a scored output; one line and exit 2 when it cannot be made."""
    from loan_default.batch.portfolio import PORTFOLIO_HTML, report_scored
    from loan_default.batch.rules import InputError

    try:
        report = report_scored(scored, artifact_dir, out)
    except (InputError, ArtifactError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"portfolio: {report['loans']} loans, expected loss {report['total_expected_loss']:.2f}")
    print(f"report: {out / PORTFOLIO_HTML}")
    return EXIT_DONE
