"""The loan book's columns and the rules they obey (SPEC §3): the one place that names them.

Everything else (validation, normalization, export, serving's tests) imports these names, so a
renamed or reordered feature is a one-line change here rather than a hunt across the code.
"""

from __future__ import annotations

from typing import Final

ID_COLUMN: Final = "customer_id"
"""An identifier: carried in the CSV, never a model feature."""

FEATURES: Final[tuple[str, ...]] = (
    "credit_lines_outstanding",
    "loan_amt_outstanding",
    "total_debt_outstanding",
    "income",
    "years_employed",
    "fico_score",
)
"""The model's input, in the order every artifact (stats.json, the pickle, ONNX) expects."""

TARGET: Final = "default"
"""1 = the borrower defaulted, 0 = repaid."""

DECISION_THRESHOLD: Final = 0.5
"""P(default) at or above this is predicted as a default; model selection compares F1 here."""

FICO_COLUMN: Final = "fico_score"
FICO_RANGE: Final = (300.0, 850.0)
"""The valid FICO score range; anything outside it is a data error, not an outlier."""

NON_NEGATIVE_COLUMNS: Final[tuple[str, ...]] = (
    "credit_lines_outstanding",
    "loan_amt_outstanding",
    "total_debt_outstanding",
    "income",
    "years_employed",
)
"""Counts, money amounts and years cannot be below zero."""

REQUIRED_COLUMNS: Final[tuple[str, ...]] = (*FEATURES, TARGET)
