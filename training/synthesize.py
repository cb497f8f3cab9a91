"""Synthetic loan books that behave like the reference dataset: ``python -m training.synthesize``.

The constants below were fitted to the reference file's summary statistics (category shares,
group means, regression slopes and residual spreads); no row of it is copied. The generative
story, one loan at a time:

1. credit lines outstanding (0..5) from their observed shares;
2. years employed given credit lines: a rounded normal clipped to 0..10;
3. income: normal around 70,000, floored at 1,000;
4. loan amount = income x a loan-to-income ratio that falls with years employed and rises
   slightly with credit lines (so loan amount tracks income, r ~ 0.84);
5. total debt = income x a debt-to-income ratio that climbs ~0.045 per credit line and falls with
   years employed, floored at 0.01 (so total debt tracks credit lines, r ~ 0.85);
6. FICO score: a rounded normal that rises with years employed, clipped to 300..850;
7. default ~ Bernoulli(sigmoid(risk / 4)) where risk, in FICO points, is
   ``254 * credit_lines + 2620 * debt_to_income - fico - 102.5 * years_employed - 325``:
   each credit line weighs like 254 FICO points, each 0.01 of debt-to-income like 26 points.
   The result: ~18.5 % defaults, driven by credit lines, debt-to-income, FICO and tenure.

Numbers are written with 10 significant digits, as in the reference file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.schema import FEATURES, ID_COLUMN, TARGET

DEFAULT_ROWS = 10_000
DEFAULT_SEED = 2024
"""The seed of the committed Data/Loan_Data.csv (regenerate it with the defaults)."""

CREDIT_LINE_SHARES = (0.413, 0.259, 0.090, 0.060, 0.048, 0.130)
"""P(0..5 credit lines outstanding); 5 collects the long tail, hence its bump."""

YEARS_MEAN_BY_LINES = (4.16, 5.39, 5.38, 4.59, 3.98, 3.78)
YEARS_SPREAD_BY_LINES = (1.36, 1.23, 1.96, 1.56, 2.03, 1.27)
YEARS_RANGE = (0, 10)

INCOME_MEAN, INCOME_SPREAD, INCOME_FLOOR = 70_000.0, 20_000.0, 1_000.0

LOAN_TO_INCOME_BASE = 0.0676
LOAN_TO_INCOME_PER_YEAR = -0.00198
LOAN_TO_INCOME_PER_LINE = 0.00055
LOAN_TO_INCOME_SPREAD = 0.0101
LOAN_TO_INCOME_FLOOR = 0.005

DEBT_TO_INCOME_BASE_BY_LINES = (0.0788, 0.1402, 0.1887, 0.2279, 0.2700, 0.3037)
DEBT_TO_INCOME_PER_YEAR_BY_LINES = (-0.0047, -0.0070, -0.0086, -0.0085, -0.0088, -0.0037)
DEBT_TO_INCOME_SPREAD_BY_LINES = (0.0290, 0.0158, 0.0163, 0.0155, 0.0161, 0.0265)
DEBT_TO_INCOME_FLOOR = 0.01

FICO_BASE = 609.9
FICO_PER_YEAR = 7.91
FICO_PER_LINE = 2.32
FICO_PER_LINE_SQUARED = -2.26
FICO_SPREAD = 56.6
FICO_RANGE = (300, 850)

RISK_PER_CREDIT_LINE = 254.0
RISK_PER_DEBT_TO_INCOME = 2620.0
RISK_PER_FICO_POINT = -1.0
RISK_PER_YEAR_EMPLOYED = -102.5
RISK_OFFSET = -325.0
RISK_SCALE = 4.0
"""FICO points over which P(default) moves from 27 % to 73 %: a sharp but not exact boundary."""

CUSTOMER_ID_RANGE = (1_000_000, 9_000_000)
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)
FLOAT_FORMAT = "%.10g"


def generate_loans(rows: int, seed: int) -> pd.DataFrame:
    """``rows`` synthetic loans with the reference file's columns, dtypes and behaviour."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)

    lines = rng.choice(len(CREDIT_LINE_SHARES), size=rows, p=CREDIT_LINE_SHARES)
    years = _rounded_normal(
        rng, _by(lines, YEARS_MEAN_BY_LINES), _by(lines, YEARS_SPREAD_BY_LINES), YEARS_RANGE
    )
    income = np.maximum(rng.normal(INCOME_MEAN, INCOME_SPREAD, rows), INCOME_FLOOR)

    loan_to_income = rng.normal(
        LOAN_TO_INCOME_BASE + LOAN_TO_INCOME_PER_YEAR * years + LOAN_TO_INCOME_PER_LINE * lines,
        LOAN_TO_INCOME_SPREAD,
    )
    loan_amount = income * np.maximum(loan_to_income, LOAN_TO_INCOME_FLOOR)

    debt_to_income = np.maximum(
        _by(lines, DEBT_TO_INCOME_BASE_BY_LINES)
        + _by(lines, DEBT_TO_INCOME_PER_YEAR_BY_LINES) * years
        + _by(lines, DEBT_TO_INCOME_SPREAD_BY_LINES) * rng.standard_normal(rows),
        DEBT_TO_INCOME_FLOOR,
    )
    total_debt = income * debt_to_income

    fico = _rounded_normal(
        rng,
        FICO_BASE
        + FICO_PER_YEAR * years
        + FICO_PER_LINE * lines
        + FICO_PER_LINE_SQUARED * lines**2,
        np.full(rows, FICO_SPREAD),
        FICO_RANGE,
    )

    risk = (
        RISK_PER_CREDIT_LINE * lines
        + RISK_PER_DEBT_TO_INCOME * debt_to_income
        + RISK_PER_FICO_POINT * fico
        + RISK_PER_YEAR_EMPLOYED * years
        + RISK_OFFSET
    )
    default = (rng.random(rows) < _sigmoid(risk / RISK_SCALE)).astype(np.int64)

    low, high = CUSTOMER_ID_RANGE
    customer_ids = rng.choice(high - low, size=rows, replace=False) + low

    return pd.DataFrame(
        {
            ID_COLUMN: customer_ids.astype(np.int64),
            "credit_lines_outstanding": lines.astype(np.int64),
            "loan_amt_outstanding": loan_amount,
            "total_debt_outstanding": total_debt,
            "income": income,
            "years_employed": years.astype(np.int64),
            "fico_score": fico.astype(np.int64),
            TARGET: default,
        },
        columns=list(COLUMNS),
    )


def write_loans_csv(loans: pd.DataFrame, path: Path) -> None:
    """CSV with 10 significant digits per amount and ``\\n`` line ends: byte-stable output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    loans.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def _by(lines: npt.NDArray[np.int64], table: tuple[float, ...]) -> npt.NDArray[np.float64]:
    """Look a per-credit-line constant up for every loan."""
    return np.asarray(table, dtype=np.float64)[lines]


def _rounded_normal(
    rng: np.random.Generator,
    mean: npt.NDArray[np.float64],
    spread: npt.NDArray[np.float64],
    bounds: tuple[int, int],
) -> npt.NDArray[np.float64]:
    """Integers from a normal, clipped to ``bounds`` (years, FICO scores)."""
    return np.clip(np.rint(rng.normal(mean, spread)), *bounds)


def _sigmoid(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -500.0, 500.0)))


def main(argv: list[str] | None = None) -> int:
    """``python -m training.synthesize --rows N --seed S --out PATH``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.synthesize",
        description="Write a synthetic loan book that mimics the reference dataset.",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="loans to generate")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--out", type=Path, default=Path("Data/Loan_Data.csv"), help="CSV file to write"
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    loans = generate_loans(args.rows, args.seed)
    write_loans_csv(loans, args.out)
    rate = float(loans[TARGET].mean())
    print(f"wrote {args.rows} loans ({rate:.1%} defaults, seed {args.seed}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
