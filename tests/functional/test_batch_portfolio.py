"""The portfolio report of a scored output: figures against independent pandas computations,
the same report however the file is cut into batches or parts, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loan_default.batch import portfolio
from loan_default.batch.cli import main

ROWS = 5_000


@pytest.fixture(scope="module")
def scored_frame() -> pd.DataFrame:
    """A small scored book of the default book's shape: ids, exposure, every answer column."""
    rng = np.random.default_rng(11)
    probability = rng.beta(0.6, 4.0, ROWS)
    exposure = np.round(rng.lognormal(8.0, 1.0, ROWS), 2)
    band = np.where(probability >= 0.5, "high", np.where(probability >= 0.2, "medium", "low"))
    return pd.DataFrame(
        {
            "customer_id": np.arange(ROWS) + 1_000,
            "loan_amt_outstanding": exposure,
            "probability": probability,
            "prediction": (probability >= 0.5).astype(np.int8),
            "risk_band": band,
            "grade": np.minimum((probability * 10).astype(np.int16) + 1, 10),
            "expected_loss": probability * 0.9 * exposure,
        }
    )


@pytest.fixture(scope="module")
def scored_file(scored_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("portfolio") / "scored.parquet"
    scored_frame.to_parquet(path, index=False)
    return path


def report_of(path: Path, artifacts: Path, out: Path) -> dict[str, Any]:
    assert main([str(path), "--report", str(out), "--artifacts", str(artifacts)]) == 0
    report: dict[str, Any] = json.loads((out / portfolio.PORTFOLIO_JSON).read_text())
    return report


def test_the_figures_match_an_independent_computation(
    trained_artifacts: Path, scored_file: Path, scored_frame: pd.DataFrame, tmp_path: Path
) -> None:
    report = report_of(scored_file, trained_artifacts, tmp_path / "report")
    frame = scored_frame
    assert report["loans"] == ROWS
    assert report["exposure_column"] == "loan_amt_outstanding"
    assert report["total_exposure"] == pytest.approx(frame["loan_amt_outstanding"].sum())
    assert report["total_expected_loss"] == pytest.approx(frame["expected_loss"].sum())
    assert report["mean_pd"] == pytest.approx(frame["probability"].mean())
    weighted = np.average(frame["probability"], weights=frame["loan_amt_outstanding"])
    assert report["exposure_weighted_pd"] == pytest.approx(weighted)

    for row in report["bands"]:
        part = frame[frame["risk_band"] == row["risk_band"]]
        assert row["loans"] == len(part) > 0
        assert row["expected_loss"] == pytest.approx(part["expected_loss"].sum())
        assert row["exposure"] == pytest.approx(part["loan_amt_outstanding"].sum())
        assert row["mean_pd"] == pytest.approx(part["probability"].mean())
    grades = frame.groupby("grade")["expected_loss"].sum()
    assert [r["grade"] for r in report["grades"]] == grades.index.tolist()
    assert [r["expected_loss"] for r in report["grades"]] == pytest.approx(grades.tolist())

    counts, _ = np.histogram(frame["probability"], bins=portfolio.PD_BINS, range=(0, 1))
    assert report["pd_distribution"]["loans"] == counts.tolist()
    for name, value in report["pd_distribution"]["percentiles"].items():
        q = int(name[1:]) / 100
        assert abs(value - np.quantile(frame["probability"], q, method="inverted_cdf")) <= 1e-4

    largest = frame.nlargest(portfolio.TOP_SHOWN, "loan_amt_outstanding")
    shown = report["largest_exposures"]
    assert [r["customer_id"] for r in shown] == largest["customer_id"].tolist()
    assert set(shown[0]) == {
        "customer_id",
        "loan_amt_outstanding",
        "probability",
        "risk_band",
        "grade",
        "expected_loss",
    }
    total = frame["loan_amt_outstanding"].sum()
    concentration = report["concentration"]
    for k in (10, 100, 1000):
        top = frame["loan_amt_outstanding"].nlargest(k).sum() / total
        assert concentration[f"top_{k}_exposure_share"] == pytest.approx(top)
        top_el = frame["expected_loss"].nlargest(k).sum() / frame["expected_loss"].sum()
        assert concentration[f"top_{k}_expected_loss_share"] == pytest.approx(top_el)
    hhi = ((frame["loan_amt_outstanding"] / total) ** 2).sum()
    assert concentration["herfindahl_index"] == pytest.approx(hhi)
    assert concentration["effective_number_of_loans"] == pytest.approx(1 / hhi)


def test_the_page_shows_every_plot_and_table(
    trained_artifacts: Path, scored_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    report_of(scored_file, trained_artifacts, out)
    page = (out / portfolio.PORTFOLIO_HTML).read_text()
    for plot in portfolio.PLOTS.values():
        assert (out / plot).stat().st_size > 5_000
        assert f"src='{plot}'" in page
    for heading in ("PD distribution", "Expected loss by risk band", "Expected loss by grade"):
        assert f"<h2>{heading}</h2>" in page
    assert "<h2>Largest exposures</h2>" in page


def test_streamed_in_small_batches_or_from_a_folder_of_parts_the_report_is_the_same(
    trained_artifacts: Path,
    scored_file: Path,
    scored_frame: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = report_of(scored_file, trained_artifacts, tmp_path / "whole")
    folder = tmp_path / "spark-output.parquet"  # what the Spark engine writes: parts + _SUCCESS
    folder.mkdir()
    for part, rows in enumerate(np.array_split(np.arange(ROWS), 3)):
        table = pa.Table.from_pandas(scored_frame.iloc[rows], preserve_index=False)
        pq.write_table(table, folder / f"part-{part:05d}.parquet")
    (folder / "_SUCCESS").write_text("")
    csv = tmp_path / "scored.csv"
    scored_frame.to_csv(csv, index=False)
    monkeypatch.setattr(portfolio, "BATCH_ROWS", 333)
    for source in (folder, csv):
        report = report_of(source, trained_artifacts, tmp_path / source.stem)
        for key in ("loans", "pd_distribution", "largest_exposures"):
            assert report[key] == whole[key], key
        for key in ("total_expected_loss", "mean_pd", "exposure_weighted_pd"):
            assert report[key] == pytest.approx(whole[key]), key
        assert report["concentration"] == pytest.approx(whole["concentration"])


def test_score_with_report_scores_then_reports_the_output(
    trained_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "book.csv"
    lines = (Path(__file__).resolve().parents[2] / "Data" / "Loan_Data.csv").read_text()
    book.write_text("\n".join(lines.splitlines()[:301]) + "\n")
    out = tmp_path / "scored.parquet"
    args = [str(book), "--out", str(out), "--report", str(tmp_path / "report")]
    assert main([*args, "--artifacts", str(trained_artifacts), "--quiet"]) == 0
    report = json.loads((tmp_path / "report" / portfolio.PORTFOLIO_JSON).read_text())
    assert report["loans"] == 300
    assert report["total_expected_loss"] == pytest.approx(
        pd.read_parquet(out)["expected_loss"].sum()
    )
    assert f"report: {tmp_path / 'report' / portfolio.PORTFOLIO_HTML}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.parquet", None, "missing.parquet: no such file or folder"),
        ("book.csv", "customer_id,income\n1,2\n", "not a scored output (no column probability"),
        ("broken.parquet", "not parquet at all", "broken.parquet: not a readable parquet file"),
        ("scored.txt", "x", "unknown file type '.txt'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_the_old_report_stays(
    trained_artifacts: Path,
    tmp_path: Path,
    *,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    message: str,
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "portfolio.json").write_text("{}")
    if content is not None:
        (tmp_path / name).write_text(content)
    code = main([str(tmp_path / name), "--report", str(out), "--artifacts", str(trained_artifacts)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert (out / "portfolio.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_neither_out_nor_report_is_exit_2(
    trained_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "x.csv"), "--artifacts", str(trained_artifacts)]) == 2
    assert "give --out OUTPUT (score), --report DIR, or both" in capsys.readouterr().err
