"""The CSV batch section in headless Chromium against the real app."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from playwright.sync_api import Page, Response, Route, expect

from tests.support.browser_harness import (
    FEATURES,
    choose_csv,
    csv_text,
    http_json,
    open_page,
    percent,
    sample_loans,
)

pytest_plugins = ["tests.support.browser_fixtures"]


def loans_csv(loans: list[dict[str, float | int]], with_customer_id: bool = True) -> str:
    """CSV in the reference file's layout: customer_id first, the six features, nothing else."""
    header = (["customer_id"] if with_customer_id else []) + list(FEATURES)
    rows = [
        ([f"C{index:05d}"] if with_customer_id else []) + [loan[name] for name in FEATURES]
        for index, loan in enumerate(loans)
    ]
    return csv_text(header, rows)


def score_file(tab: Page) -> Response:
    """Press "Score the file" and return the real /predict/batch response once it is rendered."""
    with tab.expect_response(lambda response: response.url.endswith("/predict/batch")) as answer:
        tab.get_by_role("button", name="Score the file").click()
    expect(tab.locator("#batch-button")).not_to_have_attribute("aria-disabled", "true")
    return answer.value


def table_probabilities(tab: Page) -> list[float]:
    """The probability column's exact values, in the order the table shows them."""
    cells = tab.locator("#batch-table tbody td[data-probability]")
    return [
        float(value)
        for value in cells.evaluate_all("cells => cells.map(c => c.dataset.probability)")
    ]


def test_browser_csv_upload_scores_every_row_in_order_with_ids_summary_and_model_version(
    page: Page, live_app: str
) -> None:
    # GIVEN a CSV of 40 loans with a customer_id column
    loans = sample_loans(40)
    open_page(page, live_app)
    choose_csv(page, loans_csv(loans))

    # WHEN scored
    response = score_file(page)

    # THEN only the six features were sent, and the table shows the real answers in file order
    assert response.status == 200
    assert response.request.post_data_json == {"loans": loans}
    answer = response.json()
    status, direct = http_json(live_app + "predict/batch", {"loans": loans})
    assert status == 200
    assert [item["probability"] for item in answer["predictions"]] == [
        item["probability"] for item in direct["predictions"]
    ]
    rows = page.locator("#batch-table tbody tr")
    expect(rows).to_have_count(40)
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("C00000")
    expect(rows.nth(39).locator("td").nth(1)).to_have_text("C00039")
    assert table_probabilities(page) == [item["probability"] for item in answer["predictions"]]
    expect(page.locator("#batch-table tbody td[data-probability]")).to_have_text(
        [percent(item["probability"]) for item in answer["predictions"]]
    )
    defaults = sum(item["prediction"] for item in answer["predictions"])
    expect(page.locator("#batch-summary")).to_contain_text(
        f"40 loans scored: {defaults} likely to default"
    )
    expect(page.locator("#batch-result")).to_contain_text(
        f"Model version {answer['model_version']}"
    )


def test_browser_batch_table_sorts_by_probability_both_ways_and_back_to_file_order(
    page: Page, live_app: str
) -> None:
    # GIVEN a scored file
    open_page(page, live_app)
    choose_csv(page, loans_csv(sample_loans(30)))
    score_file(page)
    file_order = table_probabilities(page)

    # WHEN the probability heading is chosen: riskiest first
    page.get_by_role("button", name="Probability").click()
    descending = table_probabilities(page)
    assert descending == sorted(file_order, reverse=True)
    expect(page.locator("th", has=page.locator("[data-sort=probability]"))).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(page.locator("[data-sort=probability]")).to_be_focused()
    expect(page.locator("#sort-status")).to_contain_text("Sorted by probability, highest first.")

    # WHEN chosen again (from the keyboard): safest first
    page.keyboard.press("Enter")
    assert table_probabilities(page) == sorted(file_order)
    expect(page.locator("th", has=page.locator("[data-sort=probability]"))).to_have_attribute(
        "aria-sort", "ascending"
    )

    # WHEN the row heading is chosen: back to the file's order
    page.get_by_role("button", name="Row").click()
    assert table_probabilities(page) == file_order
    expect(page.locator("#batch-table caption")).to_contain_text("sorted by file order")
    expect(page.locator("#sort-status")).to_have_text(
        "Sorted by file order. Select a column heading to sort."
    )


def test_browser_batch_results_download_as_csv_with_original_columns_and_predictions(
    page: Page, live_app: str, tmp_path: Path
) -> None:
    # GIVEN a scored file with an extra column and a customer id that looks like a formula
    loans = sample_loans(12)
    header = ["customer_id", *FEATURES, "branch"]
    rows: list[list[object]] = [
        [f"C{index}", *[loan[name] for name in FEATURES], "North, east"]
        for index, loan in enumerate(loans)
    ]
    rows[0][0] = "=HYPERLINK(1)"
    text = csv_text(
        header, [[f'"{cell}"' if "," in str(cell) else cell for cell in row] for row in rows]
    )
    open_page(page, live_app)
    choose_csv(page, text)
    answer = score_file(page).json()
    page.get_by_role("button", name="Probability").click()  # the download keeps file order anyway

    # WHEN the results are downloaded
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download results (CSV)").click()
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    # THEN it holds every input column and the prediction, one row per loan, in file order
    assert download.suggested_filename == "loan-predictions.csv"
    records = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert len(records) == 12
    assert list(records[0]) == [
        "row",
        *header,
        "probability",
        "prediction",
        "risk_band",
        "grade",
        "expected_loss",
        "reason_1",
        "reason_2",
        "reason_3",
        "reason_4",
        "model_version",
    ]
    for index, (record, item) in enumerate(zip(records, answer["predictions"], strict=True)):
        assert record["row"] == str(index + 1)
        assert float(record["probability"]) == item["probability"]
        assert int(record["prediction"]) == item["prediction"]
        assert record["risk_band"] == item["risk_band"]
        assert int(record["grade"]) == item["grade"]
        assert float(record["expected_loss"]) == item["expected_loss"]
        assert record["model_version"] == answer["model_version"]
        assert record["branch"] == "North, east"
    assert records[0]["customer_id"] == "'=HYPERLINK(1)", "formula-like text must be neutralised"


def test_browser_csv_over_1000_rows_is_refused_with_a_clear_message_before_any_request(
    page: Page, live_app: str
) -> None:
    # GIVEN a file of 1,001 loans
    posted: list[str] = []
    page.on(
        "request", lambda request: posted.append(request.url) if request.method == "POST" else None
    )
    open_page(page, live_app)
    choose_csv(page, loans_csv(sample_loans(1001)))

    # WHEN the user tries to score it
    page.get_by_role("button", name="Score the file").click()

    # THEN the page says how many rows there are and what the limit is, and sends nothing
    expect(page.locator("#batch-banner")).to_contain_text(
        "The file has 1,001 loans; the limit is 1,000 per upload. Split it into smaller files."
    )
    assert posted == []
    expect(page.locator("#batch-table")).to_have_count(0)


def test_browser_csv_of_exactly_1000_rows_is_scored(page: Page, live_app: str) -> None:
    # GIVEN a file at the limit
    open_page(page, live_app)
    choose_csv(page, loans_csv(sample_loans(1000)))

    # WHEN scored, THEN all 1,000 rows come back
    assert score_file(page).status == 200
    expect(page.locator("#batch-table tbody tr")).to_have_count(1000)
    expect(page.locator("#batch-summary")).to_contain_text("1,000 loans scored")


def test_browser_malformed_csv_rows_are_reported_by_row_and_column_and_nothing_is_sent(
    page: Page, live_app: str
) -> None:
    # GIVEN a file with a non-number, a missing cell, an out-of-range FICO and a short row
    loans = sample_loans(6)
    header = ["customer_id", *FEATURES]
    rows: list[list[object]] = [
        [f"C{index}", *[loan[name] for name in FEATURES]] for index, loan in enumerate(loans)
    ]
    rows[1][FEATURES.index("income") + 1] = "60k"
    rows[2][FEATURES.index("years_employed") + 1] = ""
    rows[3][FEATURES.index("fico_score") + 1] = 851
    rows[4] = rows[4][:5]
    posted: list[str] = []
    page.on(
        "request", lambda request: posted.append(request.url) if request.method == "POST" else None
    )
    open_page(page, live_app)
    choose_csv(page, csv_text(header, rows))

    # WHEN the user tries to score it
    page.get_by_role("button", name="Score the file").click()

    # THEN each problem names its row (and file line) and column, and nothing is sent
    expect(page.locator("#batch-banner li")).to_have_text(
        [
            'Row 2 (line 3), column income: "60k" is not valid. Enter a number, for example 60000.',
            'Row 3 (line 4), column years_employed: "" is not valid. Enter a value.',
            'Row 4 (line 5), column fico_score: "851" is not valid. Must be from 300 to 850.',
            "Row 5 (line 6): has 5 values but the header has 7 columns.",
        ]
    )
    assert posted == []


def test_browser_csv_without_a_required_column_names_the_missing_column(
    page: Page, live_app: str
) -> None:
    # GIVEN a file whose header lacks fico_score
    open_page(page, live_app)
    choose_csv(page, csv_text(["customer_id", *FEATURES[:-1]], [["C1", 1, 1000, 2000, 50000, 3]]))

    # WHEN the user tries to score it, THEN the banner names the missing column
    page.get_by_role("button", name="Score the file").click()
    expect(page.locator("#batch-banner")).to_contain_text(
        "The header row is missing the column fico_score."
    )


def test_browser_server_side_batch_422_names_the_row_and_413_says_too_much_data(
    page: Page, live_app: str
) -> None:
    # GIVEN outgoing batch bodies rewritten so the real server judges them: first a bad row 3 ...
    loans = sample_loans(5)
    open_page(page, live_app)
    choose_csv(page, loans_csv(loans))
    bodies = [
        {"loans": [*loans[:2], {**loans[2], "fico_score": 900}, *loans[3:]]},
        {"loans": sample_loans(1001)},
    ]

    def rewrite(route: Route) -> None:
        route.continue_(post_data=json.dumps(bodies.pop(0)))

    page.route("**/predict/batch", rewrite)

    # WHEN scored, THEN the server's 422 is shown as row 3, column fico_score
    response = score_file(page)
    assert response.status == 422
    expect(page.locator("#batch-banner")).to_contain_text("The service rejected some values")
    expect(page.locator("#batch-banner li")).to_contain_text(["Row 3, column fico_score:"])

    # WHEN the next body holds 1,001 loans, THEN the server's 413 is shown as too much data
    response = score_file(page)
    assert response.status == 413
    expect(page.locator("#batch-banner")).to_contain_text("Too much data for one request")
    expect(page.locator("#batch-banner")).to_contain_text(
        f"Reference: {response.json()['request_id']}"
    )


FORMULA_LOOKALIKES = [
    " =HYPERLINK(1)",  # a space before =
    "\t+1",  # a tab before +
    "\n-1+2",  # a line break before -
    "\r\n@SUM(A1)",  # CR LF before @
    "\uff1dHYPERLINK(1)",  # full-width =
    "\uff0b1",  # full-width +
    "\uff0d1",  # full-width -
    "\uff20SUM(A1)",  # full-width @
    "\u3000=1",  # an ideographic space before =
]


def test_browser_download_neutralises_formulas_behind_whitespace_and_full_width_signs(
    page: Page, live_app: str, tmp_path: Path
) -> None:
    # GIVEN customer ids that a spreadsheet would still run as formulas
    loans = sample_loans(len(FORMULA_LOOKALIKES))
    header = ["customer_id", *FEATURES]
    rows = [
        ['"' + identifier + '"', *[loan[name] for name in FEATURES]]
        for identifier, loan in zip(FORMULA_LOOKALIKES, loans, strict=True)
    ]
    open_page(page, live_app)
    choose_csv(page, csv_text(header, rows))
    score_file(page)

    # WHEN the results are downloaded
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download results (CSV)").click()
    saved = tmp_path / "results.csv"
    download_info.value.save_as(saved)

    # THEN each id is kept, behind the apostrophe that makes a spreadsheet show it as text
    records = list(csv.DictReader(io.StringIO(saved.read_bytes().decode("utf-8"), newline="")))
    assert [record["customer_id"] for record in records] == [
        "'" + identifier for identifier in FORMULA_LOOKALIKES
    ]
