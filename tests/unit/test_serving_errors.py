"""Error helpers: readable field paths, and details that never echo the rejected input."""

from __future__ import annotations

import json

import pytest

from loan_service.errors import error_body, error_code, field_path, validation_details


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("body", "fico_score"), "fico_score"),
        (("body", "loans", 3, "fico_score"), "loans[3].fico_score"),
        (("body", "loans"), "loans"),
        (("body",), "body"),
        (("query", "page"), "query.page"),
    ],
)
def test_field_path_reads_like_the_request(loc: tuple[str | int, ...], expected: str) -> None:
    assert field_path(loc) == expected


def test_validation_details_keep_location_reason_and_type_but_not_the_input() -> None:
    secret = "4111 1111 1111 1111"
    details = validation_details(
        [
            {
                "loc": ("body", "income"),
                "msg": "Input should be a valid number",
                "type": "float_type",
                "input": secret,
                "ctx": {"error": secret},
            }
        ]
    )
    assert details == [
        {
            "loc": ["body", "income"],
            "field": "income",
            "msg": "Input should be a valid number",
            "type": "float_type",
        }
    ]
    assert secret not in json.dumps(details)


def test_error_codes_cover_the_contract_and_default_sensibly() -> None:
    assert [error_code(s) for s in (404, 405, 413, 415, 422, 500)] == [
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "validation_error",
        "internal_error",
    ]
    assert error_code(418) == "client_error"
    assert error_code(502) == "internal_error"


def test_error_body_is_the_common_json_shape() -> None:
    assert json.loads(error_body(413, "too big", "req-1")) == {
        "error": "payload_too_large",
        "message": "too big",
        "request_id": "req-1",
    }
