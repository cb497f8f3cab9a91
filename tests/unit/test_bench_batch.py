"""The batch benchmark's own pieces: its generated loans are valid loans, its results block is
replaced in place (never appended twice)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.batch import FEATURES, INTEGERS, batch_body, generate_loans
from bench.results_file import markers, write_block
from tests.support.default_book import LoanApplication


def test_generated_loans_are_loans_the_api_accepts(tmp_path: Path) -> None:
    path = tmp_path / "loans.parquet"
    generate_loans(3_000, path, seed=5)
    table = pq.read_table(path)
    assert table.num_rows == 3_000
    assert table.column_names == ["customer_id", *FEATURES]
    assert np.array_equal(table.column("customer_id").to_numpy(), np.arange(3_000))
    for name in INTEGERS:
        assert table.schema.field(name).type == "int64"
    for loan in table.select(list(FEATURES)).to_pylist():
        LoanApplication.model_validate(loan)  # raises on any value the API would refuse


def test_the_batch_body_is_1000_loans_the_api_accepts_with_integers_as_integers() -> None:
    loans = json.loads(batch_body())["loans"]
    assert len(loans) == 1000
    for loan in loans:
        assert list(loan) == list(FEATURES)
        assert all(isinstance(loan[name], int) for name in INTEGERS)
        LoanApplication.model_validate(loan)


def test_the_results_block_is_replaced_not_appended(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nother section\n")
    write_block("batch", ["first"], results)
    write_block("batch", ["second"], results)
    text = results.read_text()
    begin, end = markers("batch")
    assert text.count(begin) == text.count(end) == 1
    assert "second" in text
    assert "first" not in text
    assert text.startswith("# Results\n\nother section\n")
