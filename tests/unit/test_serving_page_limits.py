"""The web page checks the same limits as the API before it sends anything.

``web/index.html`` is one self-contained file with no build step, so it carries its own copy of
the field limits and the batch size. These tests read that copy and compare it with the API's
published schema, so that a change on one side fails here instead of drifting.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from loan_service.api.routes.web import INDEX_HTML
from loan_service.schemas import MAX_BATCH_LOANS
from tests.default_book import FEATURES, LoanApplication

_FIELD = re.compile(
    r"\{ name: '(?P<name>\w+)', integer: (?P<integer>true|false), min: (?P<min>[\d.e]+)"
    r"(?P<exclusive>, minExclusive: true)?, max: (?P<max>[\d.e]+) \}"
)


def page_fields() -> dict[str, dict[str, Any]]:
    fields = {}
    for match in _FIELD.finditer(INDEX_HTML.read_text(encoding="utf-8")):
        fields[match["name"]] = {
            "type": "integer" if match["integer"] == "true" else "number",
            "exclusiveMinimum" if match["exclusive"] else "minimum": float(match["min"]),
            "maximum": float(match["max"]),
        }
    return fields


def test_the_page_lists_every_feature_in_the_api_order() -> None:
    assert list(page_fields()) == list(FEATURES)


@pytest.mark.parametrize("feature", FEATURES)
def test_each_field_limit_on_the_page_is_the_api_schema_limit(feature: str) -> None:
    published = LoanApplication.model_json_schema()["properties"][feature]
    expected = {
        key: float(value) if key != "type" else value
        for key, value in published.items()
        if key in {"type", "minimum", "exclusiveMinimum", "maximum"}
    }

    assert page_fields()[feature] == expected


def test_the_page_batch_limit_is_the_api_batch_limit() -> None:
    page = INDEX_HTML.read_text(encoding="utf-8")
    (rows,) = re.findall(r"const MAX_BATCH_ROWS = (\d+);", page)

    assert int(rows) == MAX_BATCH_LOANS
