"""Sample loans of the default book, each defined once: tests, benchmarks and probes send these.

A plain module of dicts (no imports beyond the standard library): a cold-start probe can import it
without adding to what it measures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

TYPICAL_LOAN: Final[dict[str, Any]] = {
    "credit_lines_outstanding": 1,
    "loan_amt_outstanding": 4500.0,
    "total_debt_outstanding": 7800.0,
    "income": 72000.0,
    "years_employed": 5,
    "fico_score": 640,
}
"""A typical approved applicant: the loan the API's examples show."""

# Five credit lines and debt at 62 % of income: the textbook risky applicant.
RISKY_LOAN: Final[dict[str, Any]] = {
    "credit_lines_outstanding": 5,
    "loan_amt_outstanding": 6000.0,
    "total_debt_outstanding": 25000.0,
    "income": 40000.0,
    "years_employed": 2,
    "fico_score": 580,
}
# Every feature on the safe side of the training mean.
SAFE_LOAN: Final[dict[str, Any]] = {
    "credit_lines_outstanding": 0,
    "loan_amt_outstanding": 3000.0,
    "total_debt_outstanding": 2000.0,
    "income": 90000.0,
    "years_employed": 8,
    "fico_score": 780,
}
# A PD strictly between 0.001 and 0.999 with the trained model (about 0.01: approved), so its
# counterfactual impacts are well separated, not saturated (the serving benchmark's loan).
MIDDLING_LOAN: Final[dict[str, Any]] = {
    "credit_lines_outstanding": 1,
    "loan_amt_outstanding": 4000.0,
    "total_debt_outstanding": 12000.0,
    "income": 45000.0,
    "years_employed": 1,
    "fico_score": 560,
}


def loan_rows(path: Path, count: int) -> list[dict[str, int | float]]:
    """The first ``count`` loans of a default-book CSV, typed as the API expects (integer
    features stay integers, as the schema file declares them)."""
    import csv

    from training.schema import DEFAULT_BOOK

    integer = {f.name for f in DEFAULT_BOOK.features if f.type == "integer"}
    loans: list[dict[str, int | float]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            loans.append(
                {
                    name: int(float(row[name])) if name in integer else float(row[name])
                    for name in DEFAULT_BOOK.feature_names
                }
            )
            if len(loans) == count:
                break
    return loans
