"""Registry rules that need no server: model URIs, redaction, column types, the promotion gate."""

from __future__ import annotations

import numpy as np
import pytest

from training.promote import Margins, gate, table
from training.registry import (
    ModelReference,
    RegistryError,
    column_types,
    parse_model_uri,
    redact,
    typed_frame,
)
from training.schema import DEFAULT_BOOK


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/loan-default@champion", ModelReference("loan-default", alias="champion")),
        ("models:/loan-default/12", ModelReference("loan-default", version="12")),
    ],
)
def test_registry_uris_name_an_alias_or_a_version(uri: str, expected: ModelReference) -> None:
    assert parse_model_uri(uri) == expected
    assert expected.uri == uri


@pytest.mark.parametrize(
    "uri", ["runs:/abc/model", "models:/loan-default", "models:/loan-default/latest", "champion"]
)
def test_anything_else_is_refused_with_the_expected_form(uri: str) -> None:
    with pytest.raises(RegistryError, match="expected models:/NAME@ALIAS or models:/NAME/VERSION"):
        parse_model_uri(uri)


def test_credentials_in_urls_and_secret_query_values_are_redacted() -> None:
    text = "API request to https://alice:s3cret@mlflow.bank:443/api?token=abc&x=1 failed"
    assert redact(text) == "API request to https://***@mlflow.bank:443/api?token=***&x=1 failed"


def test_the_signature_types_follow_the_books_schema() -> None:
    assert column_types(DEFAULT_BOOK) == {
        "credit_lines_outstanding": "long",
        "loan_amt_outstanding": "double",
        "total_debt_outstanding": "double",
        "income": "double",
        "years_employed": "long",
        "fico_score": "long",
    }


def test_model_input_rows_become_the_raw_typed_frame() -> None:
    values = np.array([[1.0, 4500.5, 640.0], [2.0, 300.0, 700.0]])
    frame = typed_frame(values, {"lines": "long", "amount": "double", "fico": "long"})
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        "lines": "int64",
        "amount": "float64",
        "fico": "int64",
    }


def test_a_fraction_in_a_whole_number_column_is_named() -> None:
    with pytest.raises(RegistryError, match=r"book.csv: lines must be a whole number .*row 2"):
        typed_frame(np.array([[1.0], [1.5]]), {"lines": "long"}, where="book.csv")


CHAMPION = {"roc_auc": 0.99, "f1": 0.90, "brier": 0.020}


def test_a_challenger_within_every_margin_passes() -> None:
    challenger = {"roc_auc": 0.986, "f1": 0.891, "brier": 0.024}
    checks = gate(challenger, CHAMPION, Margins(0.005, 0.01, 0.005))
    assert all(check.passed for check in checks)


@pytest.mark.parametrize(
    ("challenger", "failed"),
    [
        ({"roc_auc": 0.984, "f1": 0.90, "brier": 0.02}, ["roc_auc"]),
        ({"roc_auc": 0.99, "f1": 0.889, "brier": 0.02}, ["f1"]),
        ({"roc_auc": 0.99, "f1": 0.90, "brier": 0.026}, ["brier"]),
        ({"roc_auc": 0.5, "f1": 0.1, "brier": 0.3}, ["roc_auc", "f1", "brier"]),
    ],
)
def test_each_metric_beyond_its_margin_fails_and_the_table_says_so(
    challenger: dict[str, float], failed: list[str]
) -> None:
    checks = gate(challenger, CHAMPION, Margins(0.005, 0.01, 0.005))
    assert [check.metric for check in checks if not check.passed] == failed
    rows = table(checks, "3", "2").splitlines()
    assert "challenger v3" in rows[0]
    assert "champion v2" in rows[0]
    assert [row.split()[0] for row in rows[1:] if row.endswith("FAILED")] == failed


def test_zero_margins_refuse_any_loss() -> None:
    challenger = {"roc_auc": 0.9899, "f1": 0.90, "brier": 0.020}
    checks = gate(challenger, CHAMPION, Margins(0.0, 0.0, 0.0))
    assert [check.metric for check in checks if not check.passed] == ["roc_auc"]
