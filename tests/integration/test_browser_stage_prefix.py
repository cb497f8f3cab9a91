"""The page under an API Gateway stage prefix (``/prod/`` and ``/prod``), end to end in Chromium.

API Gateway's REST API serves the stage at ``https://<id>.execute-api.<region>.amazonaws.com/prod``
and strips ``/prod`` before the request reaches the function. ``StagePrefixProxy`` does the same in
front of the real app, so these tests prove the page's relative URLs survive the prefix.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser_harness import (
    StagePrefixProxy,
    choose_csv,
    csv_text,
    fill_loan,
    http_json,
    open_page,
    sample_loans,
    submit_single_loan,
)

pytest_plugins = ["tests.support.browser_fixtures"]


@pytest.mark.parametrize("page_path", ["/prod/", "/prod"], ids=["with-slash", "without-slash"])
def test_browser_page_under_prod_stage_scores_a_loan_and_a_file_through_the_prefix(
    page: Page, stage_proxy: StagePrefixProxy, page_path: str
) -> None:
    # GIVEN the page opened at the stage URL, as a user would from the API Gateway console
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_page(page, stage_proxy.origin + page_path)
    stage = stage_proxy.origin + "/prod/"

    # WHEN a loan is scored
    fill_loan(page, {"fico_score": 700})
    response = submit_single_loan(page)

    # THEN the call went to /prod/predict and the result is on the page
    assert response.url == stage + "predict"
    assert response.status == 200
    expect(page.locator("#model-version")).to_have_text(response.json()["model_version"])

    # AND the live-model link and the footer summary go through the stage too
    _, model = http_json(stage + "model")
    expect(page.locator("#model-summary")).to_contain_text(f"version {model['model_version']}")
    link = page.get_by_role("link", name="Live model metrics (JSON)")
    assert link.evaluate("node => node.href") == stage + "model"
    assert (
        page.get_by_role("link", name="API documentation").evaluate("node => node.href")
        == stage + "docs"
    )

    # WHEN a CSV is scored
    loans = sample_loans(8)
    header = [
        "credit_lines_outstanding",
        "loan_amt_outstanding",
        "total_debt_outstanding",
        "income",
        "years_employed",
        "fico_score",
    ]
    choose_csv(page, csv_text(header, [[loan[name] for name in header] for loan in loans]))
    with page.expect_response(lambda candidate: candidate.url.endswith("/predict/batch")) as batch:
        page.get_by_role("button", name="Score the file").click()

    # THEN it went to /prod/predict/batch, and every request the page made stayed inside the stage
    assert batch.value.url == stage + "predict/batch"
    assert batch.value.status == 200
    assert batch.value.request.post_data_json == {"loans": loans}
    expect(page.locator("#batch-table tbody tr")).to_have_count(8)
    outside = [
        url
        for url in requested
        if not url.startswith(stage) and url != stage_proxy.origin + "/prod"
    ]
    assert outside == [], "a request escaped the stage prefix (API Gateway would answer 403)"


def test_browser_stage_proxy_answers_like_api_gateway_outside_the_stage(
    stage_proxy: StagePrefixProxy,
) -> None:
    # GIVEN the stage proxy: a path outside /prod is refused as API Gateway refuses it,
    # which is what a page using root-absolute URLs would hit
    status, body = http_json(stage_proxy.origin + "/predict", {"fico_score": 700})
    assert (status, body) == (403, {"message": "Forbidden"})
    status, health = http_json(stage_proxy.origin + "/prod/health")
    assert status == 200
    assert health["status"] == "ok"
