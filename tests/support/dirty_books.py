"""Loan books with known bad cells, and the rejects batch scoring must report for them.

The local and the Spark engine are held to the same rejects, so both read them from here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Data rows of the default book, appended after its header and first rows, and their rejects.
DIRTY_ROWS = [
    "1,2,3000,4000,50000,3,abc,0",
    "2,,3000,4000,50000,3,600,0",
    "3,1,3000,4000,0,3,600,0",
    "4,1.5,3000,4000,50000,3,900,0",
    "5,1,3000",
    "6,1,3000,4000,50000,3,nan,0",
    "7,1,-5,4000,50000,3,700,1",
    "8,1,3000,4000,50000,3,700.0,1",
]
DIRTY_REJECTS = [
    (3, "fico_score", "not a number: 'abc'"),
    (4, "credit_lines_outstanding", "missing"),
    (5, "income", "must be more than 0: 0"),
    (6, "credit_lines_outstanding", "not a whole number: 1.5"),
    (6, "fico_score", "above the maximum 850: 900"),
    (7, None, "expected 8 fields, found 3"),
    (8, "fico_score", "not a finite number: nan"),
    (9, "loan_amt_outstanding", "below the minimum 0: -5"),
]


# (0-based frame row, column, value written, the reject expected or None when the row is scored)
DIRTY_CELLS: list[tuple[int, str, str, str | None]] = [
    (2, "housing", "castle", "unknown category: 'castle'"),
    (4, "purpose", "", "missing"),
    (6, "duration_in_month", "0", "below the minimum 1: 0"),
    (8, "credit_amount", "abc", "not a number: 'abc'"),
    (10, "housing", " own ", None),  # trimmed, as training reads a category
    (12, "job", "NaN", "missing"),
    (14, "credit_amount", "0", "must be more than 0: 0"),
    (14, "housing", "Own", "unknown category: 'Own'"),  # two bad values: two rejects, one row
]


def dirty_book(csv: Path, path: Path) -> pd.DataFrame:
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for row, column, value, _ in DIRTY_CELLS:
        frame.loc[row, column] = value
    frame.insert(0, "loan_id", [f"L{i:04d}" for i in range(len(frame))])
    frame.to_csv(path, index=False)
    return frame
