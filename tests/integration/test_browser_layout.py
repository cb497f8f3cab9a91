"""Responsive layout in Chromium: phone width without sideways scrolling, desktop side by side."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.support.browser_harness import (
    FEATURES,
    choose_csv,
    csv_text,
    open_page,
    sample_loans,
    submit_single_loan,
)

pytest_plugins = ["tests.support.browser_fixtures"]

HORIZONTAL_OVERFLOW_JS = """
() => ({
  page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  offenders: [...document.querySelectorAll('body *')]
    .filter((node) => !node.closest('.table-wrap'))
    .filter((node) => node.getBoundingClientRect().right
      > document.documentElement.clientWidth + 0.5)
    .map((node) => node.tagName + '#' + node.id + '.' + node.className),
})
"""


def test_browser_phone_width_has_no_horizontal_scroll_with_result_errors_and_table_shown(
    phone_page: Page, live_app: str
) -> None:
    # GIVEN a 375 px wide phone showing a result, a field error and a scored file
    open_page(phone_page, live_app)
    submit_single_loan(phone_page)
    phone_page.fill("#income", "1,000,000,000,000,000")
    phone_page.locator("#income").blur()
    expect(phone_page.locator("#error-income")).not_to_be_empty()
    loans = sample_loans(20)
    header = ["customer_id", *FEATURES]
    rows = [
        [f"customer-{index:08d}", *[loan[name] for name in FEATURES]]
        for index, loan in enumerate(loans)
    ]
    choose_csv(phone_page, csv_text(header, rows))
    phone_page.get_by_role("button", name="Score the file").click()
    expect(phone_page.locator("#batch-table tbody tr")).to_have_count(20)

    # THEN the page itself never scrolls sideways (the wide table scrolls inside its own box)
    overflow = phone_page.evaluate(HORIZONTAL_OVERFLOW_JS)
    assert overflow == {"page": 0, "offenders": []}
    assert phone_page.evaluate("document.documentElement.clientWidth") == 375

    # AND every control stays at least 44 px tall, a comfortable touch target
    heights = phone_page.evaluate(
        "[...document.querySelectorAll('main input[type=text], main button:not(.sort)')]"
        ".map((node) => [node.id || node.textContent, node.getBoundingClientRect().height])"
    )
    assert [name for name, height in heights if height < 44] == []


def test_browser_desktop_width_puts_the_result_beside_the_form(page: Page, live_app: str) -> None:
    # GIVEN a 1280 px wide window with a result shown
    open_page(page, live_app)
    submit_single_loan(page)

    # THEN the result panel sits to the right of the form, top-aligned with it, and fully on screen
    form_box = page.locator("#loan-form").bounding_box()
    result_box = page.locator("#result").bounding_box()
    assert form_box is not None
    assert result_box is not None
    assert result_box["x"] >= form_box["x"] + form_box["width"]
    assert abs(result_box["y"] - form_box["y"]) < 2
    assert result_box["x"] + result_box["width"] <= 1280
    assert page.evaluate("document.documentElement.scrollWidth") == 1280
