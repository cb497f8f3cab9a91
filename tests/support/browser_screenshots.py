"""Regenerate the docs' screenshots of the page: ``make screenshots``.

The page is shown as a user sees it: the real app on a real trained model, the example loan scored,
and a small CSV file scored below it. Desktop is 1280 px wide, phone 390 px (an iPhone 12-15).
The artifact folder is ``artifacts/`` when ``make train`` has made one, else a fresh one trained
on ``Data/Loan_Data.csv`` into a temporary folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.browser_harness import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    FEATURES,
    REPO_ROOT,
    choose_csv,
    csv_text,
    open_page,
    sample_loans,
    serve_app,
    submit_single_loan,
)

DOCS_DIR = REPO_ROOT / "docs"
SHOTS = {"page-desktop.png": (1280, 900), "page-phone.png": (390, 844)}


def ensure_artifacts(scratch: Path) -> Path:
    """``artifacts/`` if it is complete, else a folder trained now with ``python -m training``."""
    existing = REPO_ROOT / "artifacts"
    if (existing / "manifest.json").is_file():
        return existing
    out = scratch / "artifacts"
    command = [
        sys.executable,
        "-m",
        "training",
        "--data",
        str(REPO_ROOT / "Data" / "Loan_Data.csv"),
    ]
    command += ["--out", str(out), "--no-mlflow", "--quiet"]
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    return out


def take_screenshots(artifact_dir: Path, out_dir: Path) -> list[Path]:
    """Score the example loan and a 12-row file on the page, then capture it at both widths."""
    loans = sample_loans(12)
    header = ["customer_id", *FEATURES]
    rows = [
        [f"C{1001 + index}", *[loan[name] for name in FEATURES]] for index, loan in enumerate(loans)
    ]
    written: list[Path] = []
    with serve_app(artifact_dir) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
        for filename, (width, height) in SHOTS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            tab = context.new_page()
            open_page(tab, base_url)
            submit_single_loan(tab)
            choose_csv(tab, csv_text(header, rows))
            tab.get_by_role("button", name="Score the file").click()
            tab.wait_for_selector("#batch-table tbody tr")
            tab.get_by_role("button", name="Probability").click()
            tab.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
            target = out_dir / filename
            tab.screenshot(path=str(target), full_page=True)
            written.append(target)
            context.close()
        browser.close()
    return written


def main() -> None:
    """Write docs/page-desktop.png and docs/page-phone.png."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DOCS_DIR, help="folder for the PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for path in take_screenshots(ensure_artifacts(Path(scratch)), args.out):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
