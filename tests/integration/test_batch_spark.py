"""The Spark engine in ``local[2]``: the same answers and rejects as the local engine.

One SparkSession for the module (a JVM start costs seconds). The input has clean loans and every
kind of bad row, in CSV and in Parquet, spread over several partitions so row numbering across
partitions is exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from pyspark.sql import SparkSession

from loan_default.batch.cli import main as score_main
from loan_default.batch.spark import main as spark_main
from loan_default.batch.spark import score_with_spark, spark_session
from tests.support.dirty_books import DIRTY_CELLS, DIRTY_ROWS, dirty_book
from tests.support.paths import PROJECT_CSV


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]", app_name="loan-default-tests")
    session.conf.set("spark.sql.files.maxPartitionBytes", "64k")  # several partitions per file
    yield session
    session.stop()


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 clean loans with the dirty rows spread through them, as CSV."""
    lines = PROJECT_CSV.read_text().splitlines()
    body = lines[1:3001]
    for i, row in enumerate(DIRTY_ROWS):
        body.insert(137 + i * 401, row)
    path = tmp_path_factory.mktemp("spark-book") / "book.csv"
    path.write_text("\n".join([lines[0], *body, ""]))
    return path


def read_dataset(path: Path) -> pd.DataFrame:
    kind = "parquet" if path.suffix == ".parquet" else "csv"
    if path.is_dir():
        return ds.dataset(path, format=kind).to_table().to_pandas()
    return pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)


def answers_of(frame: pd.DataFrame) -> pd.DataFrame:
    codes = [f"reason_{i}_code" for i in range(1, 5)]
    out = frame[["customer_id", "probability", "prediction", "risk_band", "grade"]].copy()
    out["customer_id"] = out["customer_id"].astype(np.int64)
    out["prediction"] = out["prediction"].astype(np.int64)
    out["grade"] = out["grade"].astype(np.int64)
    out["codes"] = frame[codes].astype(object).where(frame[codes].notna(), None).values.tolist()
    out["expected_loss"] = frame["expected_loss"]
    return out.reset_index(drop=True)


def rejects_of(frame: pd.DataFrame) -> list[tuple[int, str | None, str]]:
    return [
        (int(r.row), None if pd.isna(r.column) or r.column == "" else str(r.column), str(r.reason))
        for r in frame.itertuples()
    ]


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_spark_gives_the_local_engines_answers_and_rejects(
    spark: SparkSession, trained_artifacts: Path, book: Path, tmp_path: Path, kind: str
) -> None:
    source = book
    if kind == "parquet":  # the local engine's own typed output of the clean rows is the input
        source = tmp_path / "book.parquet"
        assert (
            score_main(
                [
                    str(book),
                    "--out",
                    str(source),
                    "--artifacts",
                    str(trained_artifacts),
                    "--quiet",
                    "--rejects",
                    str(tmp_path / "x.csv"),
                ]
            )
            == 0
        )
        frame = pd.read_parquet(source).iloc[:, :8]
        frame["fico_score"] = frame["fico_score"].astype("Int64")  # nullable: one missing value
        frame.loc[[5, 900], "fico_score"] = [pd.NA, 900]
        frame.to_parquet(source, index=False)
    local_out, local_rejects = tmp_path / "local.parquet", tmp_path / "local.rejects.csv"
    code = score_main(
        [
            *(str(source), "--out", str(local_out), "--rejects", str(local_rejects)),
            *("--artifacts", str(trained_artifacts), "--quiet"),
        ]
    )
    assert code == 0
    spark_out, spark_rejects = tmp_path / "spark.parquet", tmp_path / "spark.rejects.csv"
    summary = score_with_spark(
        spark, str(trained_artifacts), str(source), str(spark_out), str(spark_rejects), 0.10
    )
    local_answers = answers_of(read_dataset(local_out))
    spark_answers = answers_of(read_dataset(spark_out))
    assert len(spark_answers) == len(local_answers) > 2900
    assert spark_answers["customer_id"].tolist() == local_answers["customer_id"].tolist()
    assert np.abs(spark_answers["probability"] - local_answers["probability"]).max() <= 1e-7
    for column in ("prediction", "risk_band", "grade", "codes"):
        assert spark_answers[column].tolist() == local_answers[column].tolist(), column
    assert np.allclose(spark_answers["expected_loss"], local_answers["expected_loss"], rtol=1e-9)
    expected_rejects = rejects_of(pd.read_csv(local_rejects))
    assert len(expected_rejects) >= 2
    assert rejects_of(read_dataset(spark_rejects)) == expected_rejects
    assert summary.rows_scored == len(local_answers)
    assert summary.rows_rejected == len({row for row, _, _ in expected_rejects})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_spark_job_script_stops_at_max_rejects_and_leaves_no_output(
    spark: SparkSession, trained_artifacts: Path, book: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored.parquet"
    args = [str(book), "--out", str(out), "--artifacts", str(trained_artifacts)]
    assert spark_main([*args, "--max-rejects", "2"]) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nor a partial
    assert (tmp_path / "scored.rejects.csv").is_dir()
    assert spark_main(args) == 0
    assert len(read_dataset(out)) > 2900


def test_a_missing_input_is_exit_2(
    spark: SparkSession, trained_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.parquet")]
    assert spark_main([*args, "--artifacts", str(trained_artifacts)]) == 2
    assert "nope.csv: not readable" in capsys.readouterr().err


def test_a_book_with_categories_gets_the_same_answers_and_rejects_on_spark(
    spark: SparkSession, german_artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    """The German credit book (11 categories), with unknown and missing categories among bad
    values: local and Spark agree on every answer field and every reject."""
    csv, artifacts = german_artifacts
    dirty_book(csv, tmp_path / "book.csv")
    local_out = tmp_path / "local.parquet"
    args = ["--artifacts", str(artifacts), "--quiet", "--rejects", str(tmp_path / "local.csv")]
    assert score_main([str(tmp_path / "book.csv"), "--out", str(local_out), *args]) == 0
    spark_out, spark_rejects = tmp_path / "spark.parquet", tmp_path / "spark.rejects.csv"
    summary = score_with_spark(
        spark, str(artifacts), str(tmp_path / "book.csv"), str(spark_out), str(spark_rejects), 0.1
    )
    local, on_spark = read_dataset(local_out), read_dataset(spark_out)
    on_spark = on_spark.set_index("loan_id").loc[local["loan_id"]].reset_index()
    assert len(on_spark) == len(local) == summary.rows_scored > 980
    assert np.abs(on_spark["probability"] - local["probability"]).max() <= 1e-7
    codes = [f"reason_{i}_code" for i in range(1, 5)]
    for column in ("prediction", "risk_band", "grade", *codes):
        left = local[column].astype(object).where(local[column].notna(), None).tolist()
        right = on_spark[column].astype(object).where(on_spark[column].notna(), None).tolist()
        assert [str(v) for v in right] == [str(v) for v in left], column
    assert local["reason_1_code"].notna().sum() > 100
    assert np.allclose(on_spark["expected_loss"], local["expected_loss"], rtol=1e-9)
    expected = rejects_of(pd.read_csv(tmp_path / "local.csv"))
    assert len(expected) == sum(reason is not None for *_, reason in DIRTY_CELLS)
    assert rejects_of(read_dataset(spark_rejects)) == expected


def test_a_clean_book_is_one_pass_with_the_local_engines_summary_and_empty_rejects(
    spark: SparkSession, trained_artifacts: Path, tmp_path: Path
) -> None:
    """No bad row: the totals come from the scoring pass itself, and the rejects folder is the
    header alone (as Spark writes it for no rows)."""
    from loan_default.batch.core import BatchScorer
    from loan_default.batch.local import score_file

    source = tmp_path / "clean.csv"
    source.write_text("\n".join(PROJECT_CSV.read_text().splitlines()[:1201]) + "\n")
    local = score_file(
        BatchScorer(trained_artifacts, 0.10),
        source,
        tmp_path / "local.parquet",
        tmp_path / "local.rejects.csv",
        quiet=True,
    )
    rejects = tmp_path / "spark.rejects.csv"
    summary = score_with_spark(
        spark,
        str(trained_artifacts),
        str(source),
        str(tmp_path / "spark.parquet"),
        str(rejects),
        0.1,
    )
    assert (summary.rows_read, summary.rows_scored, summary.rows_rejected) == (1200, 1200, 0)
    assert summary.bands.loans.tolist() == local.bands.loans.tolist()
    assert np.allclose(summary.bands.expected_loss, local.bands.expected_loss, rtol=1e-9)
    assert len(read_dataset(tmp_path / "spark.parquet")) == 1200
    parts = sorted(p.name for p in rejects.iterdir())
    assert parts == ["_SUCCESS", "part-00000.csv"]
    assert (rejects / "part-00000.csv").read_text() == "row,column,reason\n"
