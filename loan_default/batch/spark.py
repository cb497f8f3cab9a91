"""The Spark engine: the same per-batch scorer in ``mapInPandas``, one ONNX session per worker.

``score_dataframe`` numbers the rows (1-based, in file order, as the local engine does), runs
``BatchScorer.score`` on every pandas batch of every partition and splits the answers from the
rejects. Each Python worker builds ONE ``BatchScorer`` (one ONNX Runtime session on the same
``model.onnx`` and statistics) the first time it sees the artifact folder and reuses it for every
batch and task after (Spark reuses Python workers). The local engine and this one share the
checks, the scoring core and the output columns, so they give the same answers and rejects.

Run it on a cluster (EMR Serverless, ``spark-submit``) as a script::

    spark-submit loan_default/batch/spark.py INPUT --out OUTPUT --artifacts ./artifacts

Spark writes OUTPUT and the rejects as folders of part files (readable as one dataset by pandas,
pyarrow, Athena). On a local file system they are written under a temporary name and renamed at
the end; on S3 Spark's committer writes ``_SUCCESS`` only when the job finished.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

if __package__ in (None, ""):  # run as a script by spark-submit: the package comes from --py-files
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pandas as pd
import pyarrow as pa

import loan_default.batch
from loan_default.batch.code_zip import build_code_zip
from loan_default.batch.core import BatchScorer
from loan_default.batch.local import Summary, file_format
from loan_default.batch.rules import InputError
from loan_service.artifacts import ArtifactError
from loan_service.scoring import RISK_BANDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ROW_ID: Final = "__row_id"
CORRUPT: Final = "__corrupt_record"
REJECT_ROW: Final = "__reject_row"
REJECT_COLUMN: Final = "__reject_column"
REJECT_REASON: Final = "__reject_reason"
REJECT_SEQ: Final = "__reject_seq"
_PARTITION_SHIFT: Final = 33  # monotonically_increasing_id: partition index << 33 | row in it

_WORKER_SCORERS: dict[tuple[str, float], BatchScorer] = {}


def worker_scorer(artifact_dir: str, recovery_rate: float) -> BatchScorer:
    """This Python worker's scorer: built once (sha256 checks, ONNX session), then reused."""
    key = (artifact_dir, recovery_rate)
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        scorer = _WORKER_SCORERS[key] = BatchScorer(Path(artifact_dir), recovery_rate)
    return scorer


def ship_code(spark: SparkSession) -> None:
    """Give the workers this checkout's code, unless it already came as a zip (--py-files)."""
    if ".zip" in str(Path(loan_default.batch.__file__)):
        return
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="loan-default-code-"))
    spark.sparkContext.addPyFile(str(build_code_zip(folder / "loan_default_code.zip")))


def spark_session(master: str | None = None, app_name: str = "loan-default-score") -> SparkSession:
    """A session for scoring: Arrow transfers on, no UI; ``master`` None keeps spark-submit's."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master is not None:  # a local session: workers run this interpreter (its packages)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.master(master).config("spark.driver.bindAddress", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1")
    spark = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    ship_code(spark)
    return spark


def read_input(spark: SparkSession, path: str) -> DataFrame:
    """Parquet as it is; CSV with every column as text (the checks parse the features) and the
    line of any row with the wrong number of fields in ``CORRUPT``."""
    from pyspark.sql.types import StringType, StructField, StructType

    kind = file_format(Path(urlparse(path).path))
    try:
        if kind == "parquet":
            return spark.read.parquet(path)
        header = spark.read.option("header", True).csv(path).columns
    except Exception as exc:  # Spark's AnalysisException: the path does not exist or is unreadable
        raise InputError(f"{path}: not readable ({str(exc).splitlines()[0]})") from exc
    schema = StructType(
        [StructField(name, StringType()) for name in header] + [StructField(CORRUPT, StringType())]
    )
    return (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .option("emptyValue", "")
        .csv(path)
    )


def _spark_type(data_type: pa.DataType) -> Any:
    from pyspark.sql.pandas.types import from_arrow_type

    return from_arrow_type(data_type)


def _malformed(lines: pd.Series, expected: int) -> list[str]:
    found = [len(next(csv.reader([str(line)]), [])) for line in lines]
    return [f"expected {expected} fields, found {n}" for n in found]


def score_dataframe(
    df: DataFrame, artifact_dir: str, recovery_rate: float
) -> tuple[DataFrame, DataFrame, BatchScorer]:
    """(answers, rejects, the driver's scorer) of ``df``; nothing runs until they are used."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    scorer = BatchScorer(Path(artifact_dir), recovery_rate)
    input_columns = [c for c in df.columns if c != CORRUPT]
    has_corrupt = CORRUPT in df.columns
    arrow_input = pa.schema(
        [
            pa.field(f.name, pa.string())
            if isinstance(f.dataType, StringType)
            else pa.field(f.name, _to_arrow(f.dataType))
            for f in df.schema.fields
            if f.name != CORRUPT
        ]
    )
    output = scorer.check_schema(arrow_input)
    numbered = df.withColumn(ROW_ID, F.monotonically_increasing_id())
    counts: dict[int, int] = dict(
        numbered.groupBy(F.spark_partition_id().alias("p")).count().select("p", "count").collect()
    )
    offsets = np.zeros(max(counts, default=0) + 1, dtype=np.int64)
    for partition in range(1, len(offsets)):
        offsets[partition] = offsets[partition - 1] + counts.get(partition - 1, 0)
    rejects_fields = [
        StructField(REJECT_ROW, LongType()),
        StructField(REJECT_COLUMN, StringType()),
        StructField(REJECT_REASON, StringType()),
        StructField(REJECT_SEQ, LongType()),
    ]
    out_schema = StructType(
        [StructField(f.name, _spark_type(f.type)) for f in output] + rejects_fields
    )
    out_names = [f.name for f in output]
    expected_fields = len(input_columns)
    run = _partition_scorer(
        artifact_dir, recovery_rate, offsets, out_names, has_corrupt, expected_fields
    )
    result = numbered.mapInPandas(run, out_schema)
    from pyspark import StorageLevel

    result = result.persist(StorageLevel.MEMORY_AND_DISK)
    answers = result.filter(F.col(REJECT_ROW).isNull()).select(*out_names)
    rejects = (
        result.filter(F.col(REJECT_ROW).isNotNull())
        .orderBy(REJECT_ROW, REJECT_SEQ)
        .select(
            F.col(REJECT_ROW).alias("row"),
            F.col(REJECT_COLUMN).alias("column"),
            F.col(REJECT_REASON).alias("reason"),
        )
    )
    return answers, rejects, scorer


def _to_arrow(data_type: Any) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(data_type)


def _partition_scorer(  # noqa: PLR0917  (the closure's captured settings, private)
    artifact_dir: str,
    recovery_rate: float,
    offsets: np.ndarray,
    out_names: list[str],
    has_corrupt: bool,
    expected_fields: int,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    mask = (1 << _PARTITION_SHIFT) - 1

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = worker_scorer(artifact_dir, recovery_rate)
        for batch in batches:
            frame = batch
            ids = frame.pop(ROW_ID).to_numpy(dtype=np.int64)
            rows = offsets[ids >> _PARTITION_SHIFT] + (ids & mask) + 1
            malformed_rows = np.empty(0, dtype=np.int64)
            reasons: list[str] = []
            if has_corrupt:
                corrupt = frame.pop(CORRUPT)
                bad = corrupt.notna().to_numpy()
                if bad.any():
                    malformed_rows = rows[bad]
                    reasons = _malformed(corrupt[bad], expected_fields)
                    frame, rows = frame[~bad], rows[~bad]
            table = pa.Table.from_pandas(frame, preserve_index=False)
            result = scorer.score(table, rows)
            answers = result.table.to_pandas()
            for name in (REJECT_ROW, REJECT_COLUMN, REJECT_REASON, REJECT_SEQ):
                answers[name] = None
            yield answers[[*out_names, REJECT_ROW, REJECT_COLUMN, REJECT_REASON, REJECT_SEQ]]
            reject_rows = np.concatenate([malformed_rows, result.rejects.column("row").to_numpy()])
            if reject_rows.size:
                rejects = pd.DataFrame({name: [None] * reject_rows.size for name in out_names})
                rejects[REJECT_ROW] = reject_rows
                rejects[REJECT_COLUMN] = [None] * len(reasons) + result.rejects.column(
                    "column"
                ).to_pylist()
                rejects[REJECT_REASON] = reasons + result.rejects.column("reason").to_pylist()
                rejects[REJECT_SEQ] = np.arange(reject_rows.size)
                yield rejects

    return run


def _is_local(path: str) -> bool:
    return urlparse(path).scheme in ("", "file")


def _write(frame: DataFrame, path: str, header: bool = True) -> None:
    """Parquet or CSV by extension; locally under a temporary name, renamed when complete."""
    kind = file_format(Path(urlparse(path).path))
    target = path
    if _is_local(path):
        final = Path(urlparse(path).path)
        target = str(final.with_name(f".{final.name}.{os.getpid()}.partial"))
    writer = frame.write.mode("overwrite")
    if kind == "parquet":
        writer.parquet(target)
    else:
        writer.option("header", header).csv(target)
    if _is_local(path):
        final = Path(urlparse(path).path)
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        os.replace(target, final)


def score_with_spark(  # noqa: PLR0917  (mirrors score_file's arguments)
    spark: SparkSession,
    artifact_dir: str,
    input_path: str,
    output_path: str,
    rejects_path: str,
    recovery_rate: float,
    max_rejects: int | None = None,
) -> Summary:
    """Score a file with Spark into ``output_path`` and ``rejects_path`` (folders of parts)."""
    import time

    from pyspark.sql import functions as F

    started = time.perf_counter()
    answers, rejects, scorer = score_dataframe(
        read_input(spark, input_path), artifact_dir, recovery_rate
    )
    summary = Summary()
    totals = answers.groupBy("risk_band").agg(
        F.count(F.lit(1)).alias("loans"), F.sum("expected_loss").alias("expected_loss")
    )
    for row in totals.collect():
        band = RISK_BANDS.index(row["risk_band"])
        summary.bands.loans[band] = row["loans"]
        summary.bands.expected_loss[band] = row["expected_loss"] or 0.0
    summary.rows_scored = int(summary.bands.loans.sum())
    summary.rows_rejected = rejects.select("row").distinct().count()
    summary.rows_read = summary.rows_scored + summary.rows_rejected
    _write(rejects.coalesce(1), rejects_path)
    if max_rejects is not None and summary.rows_rejected > max_rejects:
        summary.stopped = True
    else:
        _write(answers, output_path)
    del scorer
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``spark-submit spark.py INPUT --out OUTPUT --artifacts DIR``: exit codes as ``score``."""
    from loan_default.batch.cli import EXIT_BAD_INPUT, EXIT_DONE, EXIT_STOPPED

    parser = argparse.ArgumentParser(prog=prog, description="Score a loan book with Spark.")
    parser.add_argument("input", help="loan book: a .csv or .parquet path or s3:// URI")
    parser.add_argument("--out", required=True, help="scored output (.parquet or .csv)")
    parser.add_argument("--rejects", help="rejects (default OUTPUT.rejects.csv)")
    parser.add_argument("--artifacts", required=True, help="the artifact folder (local path)")
    parser.add_argument("--recovery-rate", type=float, default=0.10)
    parser.add_argument("--max-rejects", type=int)
    parser.add_argument("--master", help="Spark master (default: spark-submit's)")
    args = parser.parse_args(argv)
    name = parser.prog
    rejects = args.rejects or _default_rejects(args.out)
    spark = spark_session(args.master)
    # A relative folder stays relative: on EMR Serverless ``--archives ...#artifacts`` unpacks it
    # in the working directory of the driver and of every executor, which are not the same path.
    artifacts = Path(args.artifacts)
    try:
        summary = score_with_spark(
            spark,
            str(artifacts if not artifacts.is_absolute() else artifacts.resolve()),
            args.input,
            args.out,
            rejects,
            args.recovery_rate,
            args.max_rejects,
        )
    except (InputError, ArtifactError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in summary.lines(RISK_BANDS):
        print(line)
    if summary.stopped:
        print(f"{name}: stopped: more than {args.max_rejects} rows rejected", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_DONE


def _default_rejects(output: str) -> str:
    parsed = urlparse(output)
    stem = Path(parsed.path)
    rejects = str(stem.with_name(f"{stem.stem}.rejects.csv"))
    return parsed._replace(path=rejects).geturl() if parsed.scheme else rejects


if __name__ == "__main__":
    # Run the package's copy (from --py-files on a cluster), not this script's ``__main__``: the
    # functions shipped to the workers are then pickled by reference, and each worker keeps one
    # scorer across tasks.
    from loan_default.batch import spark as package_module  # noqa: PLW0406

    sys.exit(package_module.main())
