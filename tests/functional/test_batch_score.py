"""``loan-default score``: file in, every answer field out, rejects beside it, the API's answers."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from loan_default.batch import local, rules
from loan_default.batch.cli import main
from loan_default.batch.core import ANSWER_COLUMNS, BatchScorer
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES, REASON_CODES, LoanApplication
from tests.support.dirty_books import DIRTY_REJECTS, DIRTY_ROWS
from tests.support.loans import TYPICAL_LOAN
from tests.support.paths import PROJECT_CSV, REPO_ROOT
from tests.support.serving_fixtures import build_test_app


@pytest.fixture(scope="module")
def service(trained_artifacts: Path) -> PredictionService:
    return build_test_app(trained_artifacts)[1]


@pytest.fixture(scope="module")
def scorer(trained_artifacts: Path) -> BatchScorer:
    return BatchScorer(trained_artifacts, recovery_rate=0.10)


def score(artifacts: Path, *args: str) -> int:
    return main([*args, "--artifacts", str(artifacts), "--quiet"], prog="loan-default score")


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return pq.read_table(path).to_pandas()


def assert_answers_equal_the_api(frame: pd.DataFrame, service: PredictionService) -> None:
    raw = frame[list(FEATURES)].to_numpy(dtype=np.float64)
    answers = service.assessor.assess_matrix(raw, "batch")
    assert len(answers) == len(frame) > 0
    assert frame["probability"].round(6).tolist() == [a["probability"] for a in answers]
    assert frame["prediction"].tolist() == [a["prediction"] for a in answers]
    assert frame["risk_band"].tolist() == [a["risk_band"] for a in answers]
    assert frame["grade"].tolist() == [a["grade"] for a in answers]
    assert frame["grade"].nunique() > 3
    assert frame["expected_loss"].round(2).tolist() == [a["expected_loss"] for a in answers]
    codes = frame[[f"reason_{i}_code" for i in range(1, 5)]].to_numpy(dtype=object)
    for row, answer in zip(codes, answers, strict=True):
        expected = [REASON_CODES[reason["feature"]] for reason in answer["reasons"]]
        assert [c for c in row if isinstance(c, str)] == expected
    assert (codes[:, 0] != None).any()  # noqa: E711  (object array: elementwise)


@pytest.mark.parametrize(("source", "target"), [("csv", "parquet"), ("parquet", "csv")])
def test_a_book_is_scored_with_the_apis_answers_and_its_columns_in_order(
    trained_artifacts: Path, service: PredictionService, tmp_path: Path, source: str, target: str
) -> None:
    book = pd.read_csv(PROJECT_CSV)
    book.insert(3, "branch", [f"b{i % 7}" for i in range(len(book))])  # any other column
    input_path = tmp_path / f"book.{source}"
    if source == "csv":
        book.to_csv(input_path, index=False)
    else:
        book.to_parquet(input_path, index=False)
    output = tmp_path / f"scored.{target}"
    assert score(trained_artifacts, str(input_path), "--out", str(output)) == 0
    scored = read(output)
    assert list(scored.columns) == [*book.columns, *ANSWER_COLUMNS]
    assert scored["customer_id"].tolist() == book["customer_id"].tolist()
    assert scored["branch"].tolist() == book["branch"].tolist()
    assert np.array_equal(scored[list(FEATURES)].to_numpy(), book[list(FEATURES)].to_numpy())
    assert_answers_equal_the_api(scored, service)
    assert read(tmp_path / "scored.rejects.csv").empty


def test_every_reference_loan_gets_the_apis_answer(
    trained_artifacts: Path, service: PredictionService, reference_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "reference.parquet"
    assert score(trained_artifacts, str(reference_csv), "--out", str(output)) == 0
    assert_answers_equal_the_api(read(output), service)


def write_dirty_csv(path: Path, repeat: int = 1) -> None:
    lines = PROJECT_CSV.read_text().splitlines()
    body = []
    for _ in range(repeat):
        body += lines[1:3] + DIRTY_ROWS
    path.write_text("\n".join([lines[0], *body, ""]))


def test_bad_rows_go_to_the_rejects_file_and_the_job_goes_on(
    trained_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dirty_csv(tmp_path / "dirty.csv")
    output = tmp_path / "out.parquet"
    rejects = tmp_path / "bad.csv"
    code = score(
        trained_artifacts,
        str(tmp_path / "dirty.csv"),
        "--out",
        str(output),
        "--rejects",
        str(rejects),
    )
    assert code == 0
    found = read(rejects)
    assert list(found.columns) == ["row", "column", "reason"]
    got = [(r.row, None if pd.isna(r.column) else r.column, r.reason) for r in found.itertuples()]
    assert got == DIRTY_REJECTS
    scored = read(output)
    assert scored["customer_id"].tolist()[2:] == [8]  # 700.0 is the whole number 700
    out = capsys.readouterr().out
    assert "rows read: 10\n" in out
    assert "rows scored: 3\n" in out
    assert "rows rejected: 7\n" in out
    assert "band high:" in out
    assert "total expected loss:" in out


def test_rows_are_numbered_across_streamed_batches(
    trained_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "BATCH_ROWS", 4)
    monkeypatch.setattr(local, "CSV_BLOCK_BYTES", 200)  # many CSV blocks: many record batches
    write_dirty_csv(tmp_path / "dirty.csv", repeat=3)
    output = tmp_path / "out.csv"
    assert score(trained_artifacts, str(tmp_path / "dirty.csv"), "--out", str(output)) == 0
    found = read(tmp_path / "out.rejects.csv")
    period = 2 + len(DIRTY_ROWS)
    expected = [
        (row + k * period, column, reason)
        for k, (row, column, reason) in itertools.product(range(3), DIRTY_REJECTS)
    ]
    got = [(r.row, None if pd.isna(r.column) else r.column, r.reason) for r in found.itertuples()]
    assert got == expected
    assert read(output)["customer_id"].tolist().count(8) == 3


def api_accepts(values: dict[str, Any]) -> bool:
    try:
        LoanApplication.model_validate_json(pd.Series(values).to_json())
    except ValidationError:
        return False
    return True


def test_the_batch_refuses_exactly_what_the_api_refuses(scorer: BatchScorer) -> None:
    """Values on and around every bound, whole and fractional: each row is scored by the file
    path exactly when the API's request model accepts the same loan."""
    rng = np.random.default_rng(3)
    edges: dict[str, list[float]] = {}
    for name in FEATURES:
        schema = LoanApplication.model_json_schema()["properties"][name]
        bounds = [schema.get(k) for k in ("minimum", "maximum", "exclusiveMinimum")]
        points = [float(TYPICAL_LOAN[name])]
        for bound in (b for b in bounds if b is not None):
            points += [bound - 1, bound - 0.5, bound, bound + 0.5, bound + 1]
        edges[name] = points
    rows = []
    for _ in range(400):
        loan = dict(TYPICAL_LOAN)
        for name in rng.choice(FEATURES, size=2, replace=False):
            loan[str(name)] = float(rng.choice(edges[str(name)]))
        rows.append(loan)
    table = pa.Table.from_pylist(rows)
    result = scorer.score(table, np.arange(1, len(rows) + 1))
    accepted = [api_accepts(loan) for loan in rows]
    assert 50 < sum(accepted) < len(rows) - 50
    rejected_rows = set(result.rejects.column("row").to_pylist())
    assert [i + 1 not in rejected_rows for i in range(len(rows))] == accepted


def test_max_rejects_stops_the_job_and_leaves_no_output(
    trained_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dirty_csv(tmp_path / "dirty.csv")
    output = tmp_path / "out.parquet"
    code = score(
        trained_artifacts, str(tmp_path / "dirty.csv"), "--out", str(output), "--max-rejects", "3"
    )
    assert code == 1
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirty.csv", "out.rejects.csv"]
    assert "stopped: more than 3 rows rejected" in capsys.readouterr().err
    assert (
        score(
            trained_artifacts,
            str(tmp_path / "dirty.csv"),
            "--out",
            str(output),
            "--max-rejects",
            "7",
        )
        == 0
    )
    assert output.exists()


def test_a_failure_midway_leaves_nothing_under_the_final_name(
    scorer: BatchScorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "BATCH_ROWS", 1000)
    pd.read_csv(PROJECT_CSV).to_parquet(tmp_path / "book.parquet")
    calls = itertools.count()
    original = scorer.score

    def failing(batch: pa.RecordBatch, rows: np.ndarray) -> Any:
        if next(calls) == 2:
            raise MemoryError("out of memory")
        return original(batch, rows)

    monkeypatch.setattr(scorer, "score", failing)
    output = tmp_path / "out.parquet"
    with pytest.raises(MemoryError):
        local.score_file(scorer, tmp_path / "book.parquet", output, tmp_path / "r.csv", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.parquet", "r.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--out", "o.parquet"], "missing.csv: no such file"),
        (["book.txt", "--out", "o.parquet"], "unknown file type '.txt'"),
        (["book.csv", "--out", "o.json"], "unknown file type '.json'"),
        (["nofico.csv", "--out", "o.parquet"], "input has no column fico_score"),
        (["clash.csv", "--out", "o.parquet"], "input column probability has the name"),
        (["book.csv", "--out", "o.parquet", "--max-rejects", "-1"], "--max-rejects must be"),
        (["book.csv", "--out", "o.parquet", "--recovery-rate", "2"], "--recovery-rate must be"),
    ],
)
def test_bad_input_is_exit_2_with_one_line_naming_the_problem(
    trained_artifacts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    book = pd.read_csv(PROJECT_CSV).head(20)
    book.to_csv("book.csv", index=False)
    book.to_csv("book.txt", index=False)
    book.drop(columns="fico_score").to_csv("nofico.csv", index=False)
    book.assign(probability=1).to_csv("clash.csv", index=False)
    assert score(trained_artifacts, *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not Path("o.parquet").exists()


def test_a_bad_artifact_folder_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pd.read_csv(PROJECT_CSV).head(5).to_csv(tmp_path / "b.csv", index=False)
    code = score(tmp_path / "nowhere", str(tmp_path / "b.csv"), "--out", str(tmp_path / "o.csv"))
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one(
    scorer: BatchScorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "BATCH_ROWS", 2000)
    monkeypatch.setattr(local, "PLAIN_PROGRESS_SECONDS", 0.0)
    pd.read_csv(PROJECT_CSV).to_parquet(tmp_path / "book.parquet")
    stream = io.StringIO()
    local.score_file(
        scorer,
        tmp_path / "book.parquet",
        tmp_path / "o.parquet",
        tmp_path / "r.csv",
        progress_stream=stream,
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("scored 2,000 rows (20% of the rows), ")
    assert "rows/s, about" in lines[0]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(local.make_progress(10, "rows", Terminal(), quiet=False), local.RichProgress)
    assert isinstance(
        local.make_progress(10, "rows", io.StringIO(), quiet=False), local.PlainProgress
    )


@pytest.mark.parametrize("module", ["loan_default", "loan_default.batch"])
def test_the_command_runs_as_a_module(trained_artifacts: Path, tmp_path: Path, module: str) -> None:
    pd.read_csv(PROJECT_CSV).head(50).to_csv(tmp_path / "b.csv", index=False)
    command = [sys.executable, "-m", module] + (["score"] if module == "loan_default" else [])
    result = subprocess.run(
        [
            *command,
            str(tmp_path / "b.csv"),
            *("--out", str(tmp_path / "o.parquet"), "--artifacts", str(trained_artifacts)),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rows scored: 50" in result.stdout
    assert len(read(tmp_path / "o.parquet")) == 50


NO_PANDAS_RUN: Final = """
import sys
from loan_default.batch.cli import main
code = main(sys.argv[1:], prog="loan-default score")
assert code == 0, code
print("pandas imported" if "pandas" in sys.modules else "no pandas")
print("compute imported" if "pyarrow.compute" in sys.modules else "no pyarrow.compute")
"""


def test_a_clean_parquet_book_is_scored_without_importing_pandas(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    """pandas costs the run 0.6 s of CPU to import, pyarrow.compute ~70 ms (it writes every
    function's docstring), and a Parquet book of numbers needs neither."""
    book = pd.read_csv(PROJECT_CSV).head(300)
    book.to_parquet(tmp_path / "book.parquet", index=False)
    arguments = [str(tmp_path / "book.parquet"), "--out", str(tmp_path / "scored.parquet")]
    result = subprocess.run(
        [sys.executable, "-c", NO_PANDAS_RUN, *arguments, "--artifacts", str(trained_artifacts)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["no pandas", "no pyarrow.compute"]
    assert "rows scored: 300" in result.stdout
    scored = read(tmp_path / "scored.parquet")
    assert scored["customer_id"].tolist() == book["customer_id"].tolist()
    assert scored["risk_band"].astype(str).isin(["low", "medium", "high"]).all()


def test_numbers_are_read_from_the_arrow_buffers_with_their_nulls_at_any_offset() -> None:
    column = pa.array([None, 1, 2, None, 4, 5, 6, 7, 8, None, 10], pa.int64())
    for start in (0, 1, 3, 9):
        part = column.slice(start)
        values, missing, not_numeric = rules._numbers(part)
        assert missing.tolist() == part.is_null().to_pylist()
        expected = part.cast(pa.float64()).to_numpy(zero_copy_only=False)
        assert np.array_equal(values, expected, equal_nan=True)
        assert not not_numeric.any()
    assert rules.null_mask(pa.nulls(3)).tolist() == [True] * 3
    assert rules.null_mask(pa.array([1.5, 2.5])).tolist() == [False, False]


def test_a_column_cleared_by_its_lowest_and_highest_values_has_no_value_the_full_check_refuses(
    scorer: BatchScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Columns of values on, inside and just outside every bound (whole, fractional, NaN, inf),
    as floats and as integers: the shortcut clears a column exactly when checking it value by
    value finds nothing, and the batch's inputs and rejects are the same either way."""
    rng = np.random.default_rng(11)
    checked = 0
    for rule in scorer.rules:
        bounds = [b for b in (rule.minimum, rule.maximum, rule.exclusive_minimum) if b is not None]
        edges = [*bounds, *(b + d for b in bounds for d in (-1.0, -0.5, 0.5, 1.0))]
        inside = [float(TYPICAL_LOAN[rule.name]), *edges]
        for _ in range(60):
            values = rng.choice(inside, size=5)
            if rng.random() < 0.3:
                values[rng.integers(0, 5)] = rng.choice([np.nan, np.inf, -np.inf])
            whole = bool(np.all(np.isfinite(values)) and np.all(values == np.floor(values)))
            columns = [pa.array(values)]
            if whole and rng.random() < 0.5:
                columns.append(pa.array(values.astype(np.int64)))
            for column in columns:
                batch = pa.table(
                    {
                        r.name: column if r is rule else [TYPICAL_LOAN[r.name]] * 5
                        for r in scorer.rules
                    }
                )
                rows = np.arange(1, 6)
                quick = rules.check_columns(batch, scorer.rules, rows)
                with monkeypatch.context() as patch:
                    patch.setattr(rules, "_clean", lambda *_: False)
                    full = rules.check_columns(batch, scorer.rules, rows)
                assert np.array_equal(quick.raw, full.raw, equal_nan=True)
                assert quick.bad.tolist() == full.bad.tolist()
                assert quick.rejects.equals(full.rejects)
                raw_values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
                assert rules._clean(rule, raw_values, column.type) == (not full.bad.any())
                checked += 1
    assert checked > 300


def test_the_parquet_output_is_encoded_as_documented(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    """Coded text answers, non-null features and answers, delta-encoded integers, uncompressed
    numbers and coded answers, snappy text, statistics for the input's columns only
    (docs/batch-scoring.md)."""
    book = pd.read_csv(PROJECT_CSV).head(500)
    book.insert(1, "branch", [f"branch {i % 7}" for i in range(len(book))])  # text passes through
    book.to_parquet(tmp_path / "book.parquet", index=False)
    output = tmp_path / "scored.parquet"
    assert score(trained_artifacts, str(tmp_path / "book.parquet"), "--out", str(output)) == 0
    parquet = pq.ParquetFile(output)
    schema = parquet.schema_arrow
    assert schema.field("risk_band").type == pa.dictionary(pa.int8(), pa.string())
    for slot in range(1, 5):
        assert schema.field(f"reason_{slot}_code").type == pa.dictionary(pa.int16(), pa.string())
    for name in [*FEATURES, "probability", "prediction", "risk_band", "grade", "expected_loss"]:
        assert not schema.field(name).nullable, name
    assert schema.field("customer_id").nullable
    group = parquet.metadata.row_group(0)
    for i in range(group.num_columns):
        column = group.column(i)
        name = column.path_in_schema
        assert column.is_stats_set == (name in book.columns), name
        data_type = schema.field(name).type
        text = pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
        assert column.compression == ("SNAPPY" if text else "UNCOMPRESSED"), name
        delta = "DELTA_BINARY_PACKED" in column.encodings
        assert delta == pa.types.is_integer(data_type), name
    assert {"customer_id", "prediction", "grade", "fico_score"} <= {
        group.column(i).path_in_schema
        for i in range(group.num_columns)
        if "DELTA_BINARY_PACKED" in group.column(i).encodings
    }
    scored = read(output)
    assert scored["risk_band"].astype(str).tolist() == scored["risk_band"].tolist()
    assert set(scored["risk_band"].astype(str)) <= {"low", "medium", "high"}
    assert scored["branch"].tolist() == book["branch"].tolist()
    assert scored["customer_id"].tolist() == book["customer_id"].tolist()
