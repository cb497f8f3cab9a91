"""The single-loan form in headless Chromium against the real app.

Every test drives the page as a user would and reads what the page shows; the answers come from
the real app under uvicorn on a real trained model. Where a test needs the server to see a value the
page would refuse, it rewrites the outgoing request body (the server and its answer stay real).
"""

from __future__ import annotations

import json

from playwright.sync_api import Browser, Page, Route, expect

from tests.support.browser_harness import (
    CONTRAST_FAILURES_JS,
    FEATURES,
    PAGE_EXAMPLE_LOAN,
    StagePrefixProxy,
    fill_loan,
    free_port,
    http_json,
    open_page,
    percent,
    submit_single_loan,
)

pytest_plugins = ["tests.support.browser_fixtures"]

BAND_LABELS = {"low": "Low risk", "medium": "Medium risk", "high": "High risk"}
RISKY_LOAN = {
    "credit_lines_outstanding": 5,
    "loan_amt_outstanding": 8000,
    "total_debt_outstanding": 30000,
    "income": 25000,
    "years_employed": 0,
    "fico_score": 520,
}


def test_browser_prefilled_form_submit_shows_probability_decision_band_reasons_loss_and_version(
    page: Page, live_app: str
) -> None:
    # GIVEN the page with its example values
    open_page(page, live_app)

    # WHEN the user presses "Estimate risk"
    response = submit_single_loan(page)

    # THEN the page sent the six prefilled numbers and shows every part of the real answer
    assert response.status == 200
    assert response.request.post_data_json == PAGE_EXAMPLE_LOAN
    answer = response.json()
    status, direct = http_json(live_app + "predict", PAGE_EXAMPLE_LOAN)
    assert status == 200
    assert answer["probability"] == direct["probability"]

    expect(page.locator("#probability-value")).to_have_text(percent(answer["probability"]))
    threshold_text = percent(answer["threshold"])
    if answer["prediction"] == 1:
        expected_decision = f"Likely to default: at or above the {threshold_text} threshold"
    else:
        expected_decision = f"Unlikely to default: below the {threshold_text} threshold"
    expect(page.locator("#decision")).to_have_text(expected_decision)
    expect(page.locator("#risk-band")).to_have_text(BAND_LABELS[answer["risk_band"]])
    expect(page.locator("#expected-loss")).to_have_text(f"${answer['expected_loss']:,.2f}")
    expect(page.locator("#grade")).to_have_text(str(answer["grade"]))
    expect(page.locator("#model-version")).to_have_text(answer["model_version"])
    _, health = http_json(live_app + "health")
    assert answer["model_version"] == health["model_version"]

    reason_texts = [reason["text"] for reason in answer["reasons"]]
    if reason_texts:
        expect(page.locator("#result ol.reasons li")).to_have_text(reason_texts)
    else:
        expect(page.locator("#result .no-reasons")).to_be_visible()

    fill_width = page.locator("#result .gauge .fill").evaluate("node => node.style.width")
    assert float(fill_width.rstrip("%")) == answer["probability"] * 100
    expect(page.locator("#result .gauge")).to_have_attribute(
        "aria-label",
        f"Probability {percent(answer['probability'])} against a threshold of {threshold_text}",
    )


def test_browser_risky_applicant_typed_in_gets_likely_default_high_band_and_plain_word_reasons(
    page: Page, live_app: str
) -> None:
    # GIVEN an applicant with five credit lines, debt above income and a poor FICO score
    open_page(page, live_app)
    fill_loan(page, RISKY_LOAN)

    # WHEN submitted
    answer = submit_single_loan(page).json()

    # THEN the model calls it a likely default and the page says so in words, with the reasons
    assert answer["prediction"] == 1, answer
    expect(page.locator("#decision")).to_contain_text("Likely to default")
    expect(page.locator("#risk-band")).to_have_text(BAND_LABELS[answer["risk_band"]])
    assert answer["reasons"], "a risky applicant must get at least one reason"
    items = page.locator("#result ol.reasons li")
    expect(items).to_have_count(len(answer["reasons"]))
    for item in items.all_inner_texts():
        assert "_" not in item, f"reason should be plain words, not a column name: {item!r}"


def test_browser_invalid_values_get_client_side_messages_next_to_each_field_and_send_nothing(
    page: Page, live_app: str
) -> None:
    # GIVEN one wrong value in every field
    open_page(page, live_app)
    posted: list[str] = []
    page.on(
        "request", lambda request: posted.append(request.url) if request.method == "POST" else None
    )
    fill_loan(
        page,
        {
            "credit_lines_outstanding": "2.5",
            "loan_amt_outstanding": "4,500",
            "total_debt_outstanding": "",
            "income": "0",
            "years_employed": "-1",
            "fico_score": "900",
        },
    )

    # WHEN the user submits
    page.get_by_role("button", name="Estimate risk").click()

    # THEN each field says what is wrong, the first one has focus, and no request left the page
    expected = {
        "credit_lines_outstanding": "Enter a whole number.",
        "loan_amt_outstanding": "Enter a plain number without commas, for example 60000.",
        "total_debt_outstanding": "Enter a value.",
        "income": "Must be more than 0 and at most 1,000,000,000.",
        "years_employed": "Must be from 0 to 100.",
        "fico_score": "Must be from 300 to 850.",
    }
    for name, message in expected.items():
        expect(page.locator(f"#error-{name}")).to_have_text(message)
        expect(page.locator(f"#{name}")).to_have_attribute("aria-invalid", "true")
        described_by = page.locator(f"#{name}").get_attribute("aria-describedby") or ""
        assert f"error-{name}" in described_by.split()
    expect(page.locator("#single-banner")).to_have_text("6 values need attention.")
    expect(page.locator("#credit_lines_outstanding")).to_be_focused()
    assert posted == []

    # WHEN the user restores the example values and submits again
    page.get_by_role("button", name="Restore example values").click()
    response = submit_single_loan(page)

    # THEN the messages are gone and the result is shown
    assert response.status == 200
    for name in FEATURES:
        expect(page.locator(f"#error-{name}")).to_have_text("")
        expect(page.locator(f"#{name}")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#probability-value")).to_be_visible()


def test_browser_server_side_422_appears_next_to_the_field_it_names(
    page: Page, live_app: str
) -> None:
    # GIVEN a request body rewritten on its way out, so the real server sees FICO 900
    # (the page itself would never send it)
    open_page(page, live_app)

    def send_out_of_range_fico(route: Route) -> None:
        route.continue_(post_data=json.dumps({**PAGE_EXAMPLE_LOAN, "fico_score": 900}))

    page.route("**/predict", send_out_of_range_fico)

    # WHEN the user submits
    response = submit_single_loan(page)

    # THEN the server's own 422 message is shown under the FICO field, with a banner and reference
    assert response.status == 422
    body = response.json()
    fico_errors = [item for item in body["detail"] if item["field"] == "fico_score"]
    assert fico_errors, body
    expect(page.locator("#error-fico_score")).to_have_text(fico_errors[0]["msg"])
    expect(page.locator("#fico_score")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#fico_score")).to_be_focused()
    expect(page.locator("#single-banner")).to_contain_text("The service rejected some values")
    expect(page.locator("#single-banner")).to_contain_text(f"Reference: {body['request_id']}")
    expect(page.locator("#result .placeholder")).to_be_visible()


def test_browser_server_side_422_for_a_field_the_form_does_not_have_is_listed_in_the_banner(
    page: Page, live_app: str
) -> None:
    # GIVEN an unknown field added to the outgoing body (the API rejects unknown fields)
    open_page(page, live_app)

    def add_unknown_field(route: Route) -> None:
        route.continue_(post_data=json.dumps({**PAGE_EXAMPLE_LOAN, "customer_id": 8153374}))

    page.route("**/predict", add_unknown_field)

    # WHEN submitted
    response = submit_single_loan(page)

    # THEN the banner names the field, since no form field can show it
    assert response.status == 422
    expect(page.locator("#single-banner li")).to_contain_text(["customer_id"])


def test_browser_gateway_5xx_and_unreachable_service_show_a_banner_not_a_blank_page(
    page: Page, live_app: str
) -> None:
    with StagePrefixProxy(live_app, "/prod") as gateway:
        # GIVEN the page loaded through the gateway, whose integration then goes away
        open_page(page, gateway.origin + "/prod/")
        gateway.upstream = f"http://127.0.0.1:{free_port()}/"

        # WHEN the user submits, THEN the gateway's 502 becomes a clear banner
        response = submit_single_loan(page)
        assert response.status == 502
        expect(page.locator("#single-banner")).to_contain_text(
            "The prediction service had a problem (HTTP 502). Try again in a moment."
        )
        expect(page.locator("#result .placeholder")).to_be_visible()

        # WHEN the gateway itself becomes unreachable
        gateway.close()
        page.get_by_role("button", name="Estimate risk").click()

        # THEN the page says it could not reach the service
        expect(page.locator("#single-banner")).to_contain_text(
            "Could not reach the prediction service. Check your connection and try again."
        )
        expect(page.get_by_role("button", name="Estimate risk")).to_be_enabled()


def test_browser_keyboard_only_user_tabs_through_fields_in_order_and_submits_with_enter(
    page: Page, live_app: str
) -> None:
    # GIVEN the page, used from the keyboard only
    open_page(page, live_app)

    # WHEN the user tabs: first stop is the skip link, which jumps to the form
    page.keyboard.press("Tab")
    expect(page.locator("a.skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    visited: list[str] = []
    for _ in range(len(FEATURES) + 1):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.id"))

    # THEN focus visits the six fields in the model's order, then the submit button
    assert visited == [*FEATURES, "predict-button"]

    # WHEN the user changes a value by typing and presses Enter on the button
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("700")
    page.keyboard.press("Tab")
    with page.expect_response(lambda response: response.url.endswith("/predict")) as answer:
        page.keyboard.press("Enter")

    # THEN the typed value was sent and the result is shown
    assert (answer.value.request.post_data_json or {}).get("fico_score") == 700
    expect(page.locator("#probability-value")).to_have_text(
        percent(answer.value.json()["probability"])
    )
    focus_outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focus_outline != "none", "the focused control must show a visible focus ring"


def test_browser_api_key_is_sent_as_x_api_key_and_kept_only_in_session_storage(
    page: Page, live_app: str, chromium_browser: Browser
) -> None:
    # GIVEN a user who enters an API key
    open_page(page, live_app)
    page.locator("#api-settings summary").click()
    page.get_by_label("API key (optional)").fill("test-key-123")

    # WHEN a loan is submitted
    response = submit_single_loan(page)

    # THEN the key travels as x-api-key, is stored for this tab only, and survives a reload
    assert response.request.headers.get("x-api-key") == "test-key-123"
    stored = page.evaluate("[sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]
    page.reload()
    expect(page.get_by_label("API key (optional)")).to_have_value("test-key-123")

    # AND a new browser session starts without it, and sends no header
    other = chromium_browser.new_context()
    try:
        fresh = other.new_page()
        open_page(fresh, live_app)
        expect(fresh.get_by_label("API key (optional)")).to_have_value("")
        assert "x-api-key" not in submit_single_loan(fresh).request.headers
    finally:
        other.close()


def test_browser_page_only_talks_to_its_own_origin_and_logs_no_console_errors(
    page: Page, live_app: str
) -> None:
    # GIVEN a record of every request and console error
    requested: list[str] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on(
        "console",
        lambda message: console_errors.append(message.text) if message.type == "error" else None,
    )

    # WHEN the page loads and scores a loan
    open_page(page, live_app)
    submit_single_loan(page)

    # THEN nothing came from a CDN or any other origin, and nothing failed
    assert requested, "the page made no requests at all"
    assert all(url.startswith(live_app) for url in requested), requested
    assert {url.removeprefix(live_app) for url in requested} == {"", "model", "predict"}
    assert console_errors == []


def test_browser_every_field_has_a_label_results_are_announced_and_text_meets_wcag_aa_contrast(
    page: Page, live_app: str
) -> None:
    # GIVEN the page with a result AND a field error on screen (the most colours at once)
    open_page(page, live_app)
    submit_single_loan(page)
    page.fill("#fico_score", "900")
    page.locator("#fico_score").blur()
    expect(page.locator("#error-fico_score")).not_to_be_empty()

    # THEN every input has a label, results sit in a live region, and all text passes AA contrast
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter((node) => node.labels.length === 0).map((node) => node.id)"
    )
    assert unlabelled == []
    expect(page.locator("#result")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#batch-summary")).to_have_attribute("role", "status")
    expect(page.locator("#single-banner")).to_have_attribute("role", "alert")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.locator("#api-settings summary").click()
    report = page.evaluate(CONTRAST_FAILURES_JS)
    assert report["checked"] > 40
    assert report["failures"] == []


def test_browser_model_link_opens_the_live_model_metrics_and_footer_names_the_version(
    page: Page, live_app: str
) -> None:
    # GIVEN the page
    open_page(page, live_app)
    _, model = http_json(live_app + "model")

    # THEN the footer summarises the live model, and the link leads to GET /model
    expect(page.locator("#model-summary")).to_contain_text(f"version {model['model_version']}")
    link = page.get_by_role("link", name="Live model metrics (JSON)")
    assert link.evaluate("node => node.href") == live_app + "model"
    with page.expect_response(live_app + "model") as opened:
        link.click()
    assert opened.value.status == 200
    assert json.loads(page.locator("body").inner_text())["model_version"] == model["model_version"]
