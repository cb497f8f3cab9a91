"""The request schema is strict: wrong types, non-finite numbers and unknown fields are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from loan_service.schemas import MAX_BATCH_LOANS
from loan_service.scoring import loans_to_matrix
from tests.support.default_book import FEATURES, REQUEST_MODELS, LoanApplication, LoanBatch
from tests.support.loans import TYPICAL_LOAN


def errors_for(body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        LoanApplication.model_validate_json(json.dumps(body))
    return [(tuple(error["loc"]), error["type"]) for error in caught.value.errors()]


def test_features_are_the_contract_order() -> None:
    assert FEATURES == (
        "credit_lines_outstanding",
        "loan_amt_outstanding",
        "total_debt_outstanding",
        "income",
        "years_employed",
        "fico_score",
    )


@pytest.mark.parametrize("field", ["credit_lines_outstanding", "years_employed", "fico_score"])
def test_a_whole_number_written_with_a_fraction_is_accepted_as_that_integer(field: str) -> None:
    """JSON has one number type; JSON Schema's ``integer`` includes 5.0."""
    body = json.dumps({**TYPICAL_LOAN, field: float(TYPICAL_LOAN[field])})
    assert ".0" in body
    value = getattr(LoanApplication.model_validate_json(body), field)
    assert type(value) is int
    assert value == TYPICAL_LOAN[field]


def test_a_typical_loan_validates_and_ints_are_accepted_for_amounts() -> None:
    loan = LoanApplication.model_validate_json(json.dumps({**TYPICAL_LOAN, "income": 72000}))
    assert loan.income == 72000.0


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("income", True, "float_type"),
        ("income", "72000", "float_type"),
        ("credit_lines_outstanding", False, "int_type"),
        ("credit_lines_outstanding", "1", "int_type"),
        ("credit_lines_outstanding", 1.5, "int_type"),
        ("years_employed", 2.5, "int_type"),
        ("fico_score", 640.5, "int_type"),
        ("fico_score", None, "int_type"),
        ("loan_amt_outstanding", [1], "float_type"),
    ],
)
def test_booleans_strings_and_fractions_are_not_accepted_as_numbers(
    field: str, value: Any, error_type: str
) -> None:
    assert errors_for({**TYPICAL_LOAN, field: value}) == [((field,), error_type)]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(literal: str) -> None:
    text = json.dumps(TYPICAL_LOAN).replace('"income": 72000.0', f'"income": {literal}')
    with pytest.raises(ValidationError) as caught:
        LoanApplication.model_validate_json(text)
    assert [e["loc"] for e in caught.value.errors()] == [("income",)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("credit_lines_outstanding", -1),
        ("years_employed", -1),
        ("loan_amt_outstanding", -0.01),
        ("total_debt_outstanding", -5.0),
        ("income", 0),
        ("income", -1.0),
        ("fico_score", 299),
        ("fico_score", 851),
    ],
)
def test_values_outside_the_ranges_are_refused(field: str, value: Any) -> None:
    assert [loc for loc, _ in errors_for({**TYPICAL_LOAN, field: value})] == [(field,)]


@pytest.mark.parametrize(("field", "value"), [("fico_score", 300), ("fico_score", 850)])
def test_range_edges_are_accepted(field: str, value: int) -> None:
    assert getattr(LoanApplication(**{**TYPICAL_LOAN, field: value}), field) == value


def test_zero_amounts_and_zero_counts_are_accepted() -> None:
    loan = LoanApplication(
        **{
            **TYPICAL_LOAN,
            "loan_amt_outstanding": 0,
            "total_debt_outstanding": 0,
            "credit_lines_outstanding": 0,
            "years_employed": 0,
        }
    )
    assert loan.loan_amt_outstanding == 0.0


def test_unknown_and_missing_fields_are_each_reported() -> None:
    body = {**TYPICAL_LOAN, "customer_id": 8153374}
    del body["income"]
    assert sorted(errors_for(body)) == [
        (("customer_id",), "extra_forbidden"),
        (("income",), "missing"),
    ]


def test_a_batch_takes_one_to_a_thousand_loans() -> None:
    assert (
        len(LoanBatch.model_validate({"loans": [TYPICAL_LOAN] * MAX_BATCH_LOANS}).loans)
        == MAX_BATCH_LOANS
    )
    for size in (0, MAX_BATCH_LOANS + 1):
        with pytest.raises(ValidationError) as caught:
            LoanBatch.model_validate({"loans": [TYPICAL_LOAN] * size})
        assert caught.value.errors()[0]["loc"] == ("loans",)


def test_a_batch_reports_the_index_of_the_bad_loan() -> None:
    loans = [TYPICAL_LOAN, {**TYPICAL_LOAN, "fico_score": 900}]
    with pytest.raises(ValidationError) as caught:
        LoanBatch.model_validate_json(json.dumps({"loans": loans}))
    assert [e["loc"] for e in caught.value.errors()] == [("loans", 1, "fico_score")]


def _batch_cases() -> list[str]:
    """Batch bodies, valid and not, around every rule of ``LoanBatch``."""
    loan = dict(TYPICAL_LOAN)
    text = json.dumps(loan)
    cases = [
        json.dumps({"loans": [loan]}),
        json.dumps({"loans": [loan] * MAX_BATCH_LOANS}),
        json.dumps({"loans": [loan] * (MAX_BATCH_LOANS + 1)}),
        json.dumps({"loans": []}),
        json.dumps({"loans": [loan], "extra": 1}),
        json.dumps({"loan": [loan]}),
        json.dumps([loan]),
        "null",
        "{",
        "",
        '{"loans": [' + text[:-1] + ', "fico_score": 700}]}',  # a repeated key: the last wins
        '{"loans": [' + text[:-1] + ', "fico_score": 9000}]}',
        '{"loans": [' + text[:-1] + ', "unknown": 1}]}',
    ]
    for field in FEATURES:
        value = loan[field]
        for other in (
            True,
            None,
            str(value),
            float(value),
            float(value) + 0.5,
            -0.0,
            -1,
            10**30,
            2**53 + 1,
            1e308,
            float(value) * 1e6,
        ):
            cases.append(json.dumps({"loans": [loan, {**loan, field: other}]}))
        cases.append(json.dumps({"loans": [{k: v for k, v in loan.items() if k != field}]}))
        cases.append(json.dumps({"loans": [loan]}).replace(json.dumps(value), "NaN", 1))
    return cases


@pytest.mark.parametrize("body", _batch_cases())
def test_the_cheaper_batch_reader_vouches_only_for_bodies_loanbatch_accepts(body: str) -> None:
    reader = REQUEST_MODELS.batch_rows
    assert reader is not None
    rows = reader(body.encode())
    try:
        batch = LoanBatch.model_validate_json(body)
    except ValidationError:
        assert rows is None
        return
    if rows is not None:
        expected = loans_to_matrix(batch.loans)
        assert rows.tobytes() == expected.tobytes()  # the same doubles, zero signs included


def test_the_cheaper_batch_reader_reads_a_valid_batch_of_the_default_book() -> None:
    reader = REQUEST_MODELS.batch_rows
    assert reader is not None
    loans = [TYPICAL_LOAN, {**TYPICAL_LOAN, "fico_score": float(TYPICAL_LOAN["fico_score"])}]
    rows = reader(json.dumps({"loans": loans}).encode())
    assert rows is not None
    expected = loans_to_matrix(LoanBatch.model_validate_json(json.dumps({"loans": loans})).loans)
    assert rows.tobytes() == expected.tobytes()
