"""The Spark engine: the local engine's per-batch scorer in ``mapInArrow``, one ONNX session per
Python worker.

``score_with_spark`` reads the input ONCE to score it: every task hands its Arrow record batches
(the local engine's unit, no pandas in between) to ``BatchScorer.score``, yields the answers,
which Spark writes as they come, and adds its partition's totals (rows, rejected rows, loans and
expected loss per band) to an accumulator. Only the rejects need file row numbers, and only a
file with bad rows needs them: a second, check-only pass then numbers each partition's rows from
the first pass's counts (1-based, in file order, as the local engine does) and writes the
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlparse

if __package__ in (None, ""):  # run as a script by spark-submit: the package comes from --py-files
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.accumulators import Accumulator, AccumulatorParam

import loan_default.batch
from loan_default.batch import rules as checks
from loan_default.batch.code_zip import build_code_zip
from loan_default.batch.core import BandTotals, BatchScorer
from loan_default.batch.local import Summary, file_format
from loan_default.batch.rules import REJECT_SCHEMA, InputError
from loan_service.artifacts import ArtifactError
from loan_service.scoring import RISK_BANDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CORRUPT: Final = "__corrupt_record"
REJECT_SEQ: Final = "__reject_seq"


class PartitionTotals(NamedTuple):
    """What one task of the scoring pass saw: the driver's summary and row offsets."""

    rows: int  # every row of the partition, bad ones included
    rejected: int  # rows with at least one bad value (or the wrong number of fields)
    loans: np.ndarray  # scored loans per risk band
    expected_loss: np.ndarray  # expected loss per risk band


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


def _malformed(lines: pa.Array, expected: int) -> list[str]:
    found = [len(next(csv.reader([str(line)]), [])) for line in lines.to_pylist()]
    return [f"expected {expected} fields, found {n}" for n in found]


class _PartitionTotals(AccumulatorParam[dict[int, PartitionTotals]]):
    """Per-partition totals, keyed by partition: a re-run task replaces its own entry."""

    def zero(self, value: dict[int, PartitionTotals]) -> dict[int, PartitionTotals]:
        return {}

    def addInPlace(
        self, value1: dict[int, PartitionTotals], value2: dict[int, PartitionTotals]
    ) -> dict[int, PartitionTotals]:
        value1.update(value2)
        return value1


@dataclass(frozen=True, slots=True)
class ScoringPlan:
    """What every task needs, decided once on the driver from the input's schema."""

    artifact_dir: str
    recovery_rate: float
    output: pa.Schema  # the input's columns (typed features), then the answers
    has_corrupt: bool  # a CSV input: CORRUPT holds the line of a row with the wrong field count
    expected_fields: int

    @classmethod
    def of(cls, df: DataFrame, artifact_dir: str, recovery_rate: float) -> ScoringPlan:
        """The plan for ``df``; ``InputError`` when its columns cannot be scored."""
        from pyspark.sql.types import StringType

        fields = [f for f in df.schema.fields if f.name != CORRUPT]
        arrow_input = pa.schema(
            [
                pa.field(f.name, pa.string())
                if isinstance(f.dataType, StringType)
                else pa.field(f.name, _to_arrow(f.dataType))
                for f in fields
            ]
        )
        output = BatchScorer(Path(artifact_dir), recovery_rate).check_schema(arrow_input)
        return cls(artifact_dir, recovery_rate, output, CORRUPT in df.columns, len(fields))

    def spark_schema(self) -> Any:
        from pyspark.sql.types import StructField, StructType

        return StructType([StructField(f.name, _spark_type(f.type)) for f in self.output])

    def well_formed(
        self, batch: pa.RecordBatch, rows: np.ndarray
    ) -> tuple[pa.RecordBatch, np.ndarray, np.ndarray, list[str]]:
        """(the rows with the right number of fields, their numbers, the others' numbers and
        reasons); without CORRUPT every row is well formed."""
        if not self.has_corrupt:
            return batch, rows, rows[:0], []
        index = batch.schema.get_field_index(CORRUPT)
        corrupt = batch.column(index)
        batch = batch.remove_column(index)
        bad = corrupt.is_valid().to_numpy(zero_copy_only=False)
        if not bad.any():
            return batch, rows, rows[:0], []
        reasons = _malformed(corrupt.filter(pa.array(bad)), self.expected_fields)
        return batch.filter(pa.array(~bad)), rows[~bad], rows[bad], reasons


def _scoring_pass(
    plan: ScoringPlan, totals: Accumulator[dict[int, PartitionTotals]]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """One task: score every batch, yield the answers, add the partition's totals."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        scorer = worker_scorer(plan.artifact_dir, plan.recovery_rate)
        bands = BandTotals()
        seen = rejected = 0
        for batch in batches:
            # numbered within the partition: only the rejects need file row numbers (second pass)
            rows = np.arange(seen + 1, seen + batch.num_rows + 1, dtype=np.int64)
            seen += batch.num_rows
            good, good_rows, malformed, _ = plan.well_formed(batch, rows)
            result = scorer.score(good, good_rows)
            rejected += malformed.size + result.rejected_rows
            bands.add(result.scored)
            yield from result.table.cast(plan.output).to_batches()
        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        totals.add({partition: PartitionTotals(seen, rejected, bands.loans, bands.expected_loss)})

    return run


def _rejects_pass(
    plan: ScoringPlan, offsets: np.ndarray
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """One task: check every batch (no scoring), yield its rejects with their file row numbers."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        rules = worker_scorer(plan.artifact_dir, plan.recovery_rate).rules
        seen = int(offsets[partition]) if partition < offsets.size else 0
        for batch in batches:
            rows = np.arange(seen + 1, seen + batch.num_rows + 1, dtype=np.int64)
            seen += batch.num_rows
            good, good_rows, malformed, reasons = plan.well_formed(batch, rows)
            found = checks.check_columns(good, rules, good_rows).rejects
            if not found.num_rows and not malformed.size:
                continue
            row = np.concatenate([malformed, found.column("row").to_numpy()])
            column = [None] * malformed.size + found.column("column").to_pylist()
            reason = reasons + found.column("reason").to_pylist()
            order = np.argsort(row, kind="stable")  # by row, then as the checks listed them
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(row[order], pa.int64()),
                    pa.array([column[i] for i in order], pa.string()),
                    pa.array([reason[i] for i in order], pa.string()),
                    pa.array(np.arange(row.size, dtype=np.int64)),
                ],
                names=["row", "column", "reason", REJECT_SEQ],
            )

    return run


def _to_arrow(data_type: Any) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(data_type)


def _is_local(path: str) -> bool:
    return urlparse(path).scheme in ("", "file")


def _write(frame: DataFrame, path: str, header: bool = True) -> str:
    """Write Parquet or CSV by extension; locally under a temporary name (returned) that
    ``_commit`` renames, elsewhere (S3: the committer's ``_SUCCESS``) in place."""
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
    return target


def _write_no_rejects(path: str) -> str:
    """The folder Spark writes for no rejects (one part with the header or the schema, and
    ``_SUCCESS``), under the temporary name ``_write`` uses; this costs no Spark job."""
    final = Path(urlparse(path).path)
    target = final.with_name(f".{final.name}.{os.getpid()}.partial")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if file_format(final) == "parquet":
        pq.write_table(REJECT_SCHEMA.empty_table(), target / "part-00000.parquet")
    else:
        (target / "part-00000.csv").write_text(",".join(REJECT_SCHEMA.names) + "\n")
    (target / "_SUCCESS").write_bytes(b"")
    return str(target)


def _commit(target: str, path: str) -> None:
    if not _is_local(path):
        return
    final = Path(urlparse(path).path)
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    os.replace(target, final)


def _discard(spark: SparkSession, target: str) -> None:
    """Delete a written output that must not be kept, through Hadoop's file system (the one
    Spark wrote it with: local, HDFS or S3)."""
    jvm: Any = spark._jvm  # py4j: Hadoop's FileSystem has no Python API
    hadoop_path = jvm.org.apache.hadoop.fs.Path(target)
    hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(hadoop_path, True)


def _summary(totals: dict[int, PartitionTotals]) -> tuple[Summary, np.ndarray]:
    """The job's summary and each partition's first row offset (rows before it in the file)."""
    summary = Summary()
    counts = np.zeros(max(totals, default=-1) + 1, dtype=np.int64)
    for partition, part in totals.items():
        counts[partition] = part.rows
        summary.rows_read += part.rows
        summary.rows_rejected += part.rejected
        summary.bands.loans += part.loans
        summary.bands.expected_loss += part.expected_loss
    summary.rows_scored = int(summary.bands.loans.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return summary, offsets


def score_with_spark(  # noqa: PLR0917  (mirrors score_file's arguments)
    spark: SparkSession,
    artifact_dir: str,
    input_path: str,
    output_path: str,
    rejects_path: str,
    recovery_rate: float,
    max_rejects: int | None = None,
) -> Summary:
    """Score a file with Spark into ``output_path`` and ``rejects_path`` (folders of parts).

    ONE pass over the input scores it and writes the output; the same tasks add each
    partition's rows, rejects and band totals to an accumulator. Only when some row was bad does
    a second, check-only pass number the rejects in file order (each partition's first row is
    known from the first pass) and write them.
    """
    import time

    from pyspark.sql.types import LongType, StringType, StructField, StructType

    started = time.perf_counter()
    df = read_input(spark, input_path)
    plan = ScoringPlan.of(df, artifact_dir, recovery_rate)
    totals = spark.sparkContext.accumulator({}, _PartitionTotals())
    written = _write(df.mapInArrow(_scoring_pass(plan, totals), plan.spark_schema()), output_path)
    summary, offsets = _summary(totals.value)
    reject_schema = StructType(
        [
            StructField("row", LongType()),
            StructField("column", StringType()),
            StructField("reason", StringType()),
            StructField(REJECT_SEQ, LongType()),
        ]
    )
    if summary.rows_rejected:
        found = df.mapInArrow(_rejects_pass(plan, offsets), reject_schema)
        rejects = found.orderBy("row", REJECT_SEQ).drop(REJECT_SEQ).coalesce(1)
        _commit(_write(rejects, rejects_path), rejects_path)
    elif _is_local(rejects_path):  # a clean book: the empty rejects folder, without a Spark job
        _commit(_write_no_rejects(rejects_path), rejects_path)
    else:
        rejects = spark.createDataFrame([], reject_schema).drop(REJECT_SEQ).coalesce(1)
        _commit(_write(rejects, rejects_path), rejects_path)
    if max_rejects is not None and summary.rows_rejected > max_rejects:
        summary.stopped = True
        _discard(spark, written)
    else:
        _commit(written, output_path)
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
