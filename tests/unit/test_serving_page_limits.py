"""The web page carries no copy of a book's features: it builds its form from ``GET /model``.

``web/index.html`` is one self-contained file with no build step. Its fields, their limits and
the CSV checks come from the served model's schema at load time (the browser tests check the
default and the German book's pages against the API); only the batch size is the page's own.
"""

from __future__ import annotations

import re

from loan_service.api.routes.web import INDEX_HTML
from loan_service.schemas import MAX_BATCH_LOANS, ModelInfoPublic
from tests.support.default_book import FEATURES

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*|<!--.*?-->", re.DOTALL)


def page_without_comments() -> str:
    return _COMMENTS.sub("", INDEX_HTML.read_text(encoding="utf-8"))


def test_the_page_names_no_feature_of_the_default_book() -> None:
    page = page_without_comments()

    assert [name for name in (*FEATURES, "customer_id") if name in page] == []


def test_the_page_reads_the_schema_and_example_that_get_model_publishes() -> None:
    page = page_without_comments()
    published = ModelInfoPublic.model_json_schema(by_alias=True)["properties"]

    for key in ("schema", "example", "features"):
        assert key in published
        assert f"model.{key}" in page


def test_the_page_batch_limit_is_the_api_batch_limit() -> None:
    page = INDEX_HTML.read_text(encoding="utf-8")
    (rows,) = re.findall(r"const MAX_BATCH_ROWS = (\d+);", page)

    assert int(rows) == MAX_BATCH_LOANS
