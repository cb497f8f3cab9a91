"""The schema file: the default book as data, one-line refusals naming the key and the line, and
the data rules a schema adds (categories, a text target, columns the file lacks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loan_service.book import BookSchema, ModelInput, UnknownCategoryError
from training.book_file import DEFAULT_SCHEMA, SchemaFileError, load_schema
from training.data import DataValidationError, load_loan_book
from training.schema import DEFAULT_BOOK, FEATURES, TARGET

BOOK_TOML = """\
name = "Small business loans"

[target]
column = "outcome"
default_value = "bad"

[id]
columns = ["loan_id"]

[loss]
exposure = "amount"

[features.amount]
type = "number"
min = 0
label = "Amount"
unit = "USD"
reason_code = "AM"
reason = "Amount of the loan"

[features.purpose]
type = "category"
values = ["car", "education", "home"]
label = "Loan purpose"
reason_code = "PU"
reason = "Purpose of the loan"

[features.housing]
type = "category"
label = "Housing"
reason_code = "HO"
reason = "Housing situation"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def small_book_rows(count: int = 40) -> list[list[str]]:
    purposes, housing = ("car", "education", "home"), ("own", "rent")
    return [
        [
            f"L{index}",
            f"{1000 + 37.5 * index:.2f}",
            purposes[index % 3],
            housing[index % 2],
            "bad" if index % 4 == 0 else "good",
        ]
        for index in range(count)
    ]


def write_csv(folder: Path, rows: list[list[str]]) -> Path:
    header = "loan_id,amount,purpose,housing,outcome"
    return write(folder, "book.csv", header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")


def refusal(csv: Path, schema: BookSchema) -> str:
    with pytest.raises(DataValidationError) as caught:
        load_loan_book(csv, schema)
    return str(caught.value)


def test_the_default_book_is_data_in_data_schema_toml() -> None:
    book = load_schema(DEFAULT_SCHEMA)
    assert book == DEFAULT_BOOK
    assert book.feature_names == FEATURES
    assert len(FEATURES) == 6
    assert book.target.column == TARGET
    assert book.loss.exposure in FEATURES
    assert len({feature.reason_code for feature in book.features}) == 6
    assert all(feature.reason and feature.label for feature in book.features)


def test_a_book_with_categories_and_a_text_target_loads(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, "book.toml", BOOK_TOML))
    book = load_loan_book(write_csv(tmp_path, small_book_rows()), schema)

    assert book.schema.feature("housing").values == ("own", "rent")  # found in the data
    assert book.schema.feature("purpose").values == ("car", "education", "home")
    assert book.features[:3, 1].tolist() == [0.0, 1.0, 2.0]  # a category is its value's index
    assert book.features[:3, 2].tolist() == [0.0, 1.0, 0.0]
    assert book.target[:5].tolist() == [1, 0, 0, 0, 1]  # "bad" is the default value


def test_a_category_value_not_allowed_names_column_value_and_rows(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, "book.toml", BOOK_TOML))
    rows = small_book_rows()
    rows[6][2] = "boat"
    rows[9][2] = "boat"
    message = refusal(write_csv(tmp_path, rows), schema)
    assert (
        "column 'purpose': value not allowed (boat; allowed: car, education, home) in 2 rows; "
        "first data rows: 7, 10"
    ) in message


def test_a_target_value_that_is_neither_is_refused_with_its_rows(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, "book.toml", BOOK_TOML))
    rows = small_book_rows()
    rows[2][4] = "unknown"
    message = refusal(write_csv(tmp_path, rows), schema)
    assert "column 'outcome': target must be bad (default) or one other value (repaid)" in message
    assert "found also unknown in 1 row; first data row: 3" in message


def test_a_schema_naming_a_column_the_file_lacks_is_refused(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, "book.toml", BOOK_TOML.replace("housing", "tenure")))
    message = refusal(write_csv(tmp_path, small_book_rows()), schema)
    assert "column 'tenure': required column is missing (columns found: loan_id, amount" in message


def test_an_example_category_value_the_file_does_not_have_is_refused(tmp_path: Path) -> None:
    text = BOOK_TOML.replace('label = "Housing"', 'label = "Housing"\nexample = "castle"')
    schema = load_schema(write(tmp_path, "book.toml", text))
    message = refusal(write_csv(tmp_path, small_book_rows()), schema)
    assert "column 'housing': the schema's example 'castle' is not a value found in the file" in (
        message
    )


def test_a_missing_category_cell_is_refused(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, "book.toml", BOOK_TOML))
    rows = small_book_rows()
    rows[4][3] = ""
    message = refusal(write_csv(tmp_path, rows), schema)
    assert "column 'housing': missing value (empty or NaN) in 1 row; first data row: 5" in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ('type = "category"\nvalues', 'type = "categorical"\nvalues'),
            ":22: features.purpose.type: Input should be 'integer', 'number' or 'category'",
        ),
        (
            ('reason_code = "HO"\n', ""),
            ":28: features.housing.reason_code: required key is missing",
        ),
        (
            ('reason_code = "HO"', 'reason_code = "PU"'),
            ":31: features.housing.reason_code: reason_code used by two features: PU",
        ),
        (
            ('exposure = "amount"', 'exposure = "purpose"'),
            ":11: loss.exposure: 'purpose' must be a number, not a category",
        ),
        (
            ("min = 0\n", 'min = "zero"\n'),
            ":15: features.amount.min: must be a number",
        ),
        (
            ('unit = "USD"\n', 'unit = "USD"\nexample = -5\n'),
            ":18: features.amount.example: is outside the feature's bounds",
        ),
        (
            ('label = "Loan purpose"', 'label = "Loan purpose"\nexample = "boat"'),
            ":25: features.purpose.example: 'boat' is not one of 'values'",
        ),
        (("[features.amount]", "[features.amount"), ":13: not valid TOML: "),
        (('default_value = "bad"', "default_value = "), ":5: not valid TOML: "),
    ],
)
def test_a_malformed_schema_is_one_line_naming_the_key_and_line(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, "book.toml", BOOK_TOML.replace(*edit, 1))
    with pytest.raises(SchemaFileError) as caught:
        load_schema(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"schema file {path}")
    assert expected in message


def test_model_input_encodes_raw_columns_in_schema_order(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, "book.toml", BOOK_TOML)).with_values(
        {"housing": ("own", "rent")}
    )
    encoder = ModelInput(schema, mean=[1000.0, 0, 0], std=[10.0, 1, 1], reference=[0, 0, 1])
    columns = {"amount": [1010.0, 990.0], "purpose": ["home", "car"], "housing": ["rent", "own"]}
    assert encoder.raw_matrix(columns).tolist() == [[1010.0, 2.0, 1.0], [990.0, 0.0, 0.0]]
    assert encoder.encode(columns).dtype == np.float32
    assert encoder.encode(columns).tolist() == [[1.0, 2.0, 1.0], [-1.0, 0.0, 0.0]]
    with pytest.raises(UnknownCategoryError, match=r"column 'purpose'.*allowed: car, education"):
        encoder.raw_matrix({**columns, "purpose": ["home", "boat"]})
