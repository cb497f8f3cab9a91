"""The Spark engine: the local engine's per-batch scorer on Spark, one ONNX session per Python
worker, with the file I/O done by the workers in pyarrow.

Spark schedules the work and gathers a small summary per task; the Python workers read, score
and write the data themselves. The JVM's share of a scoring job was most of its cost (its
Parquet reader and writer, and moving every row between the JVM and Python as Arrow, both
ways), so rows stay out of the JVM wherever a Python worker can do the same work:

* **Parquet input**: the driver reads the files' footers (pyarrow) and splits the book into
  tasks of whole row groups (or slices of one, when there are fewer row groups than cores). A
  task's first file row number is known from the footers, so each worker numbers its rows with
  no extra pass, reads its row groups itself (pyarrow), scores them and writes its output part
  and its rejects part. ONE pass over the data, no row through the JVM.
* **CSV input**: Spark's own CSV reader splits the file by bytes (so it keeps its handling of
  quoting and of rows with the wrong number of fields, ``CORRUPT``); its Arrow batches go to the
  workers in ``mapInArrow``, which score them and write their output part themselves. Row numbers
  are not known before the rows are read: only a book with bad rows costs a second, check-only
  pass, which numbers each partition's rows from the first pass's counts (1-based, in file order,
  as the local engine does) and writes the rejects parts.

Each Python worker builds ONE ``BatchScorer`` (one ONNX Runtime session on the same
``model.onnx`` and statistics) the first time it sees the artifact folder and reuses it for every
batch and task after (Spark reuses Python workers). The local engine and this one share the
checks, the scoring core, the output columns and their Parquet encoding, so they give the same
answers and rejects.

Run it on a cluster (EMR Serverless, ``spark-submit``) as a script::

    spark-submit loan_default/batch/spark.py INPUT --out OUTPUT --artifacts ./artifacts

OUTPUT and the rejects are folders of part files (``part-00000.parquet`` ..., in file order, and
``_SUCCESS`` once the job finished; readable as one dataset by pandas, pyarrow, Spark, Athena).
The workers open them through ``pyarrow.fs.FileSystem.from_uri``: a local path, or ``s3://`` with
the credentials of the default AWS chain (on EMR Serverless, the job role). On a local file
system a folder is written under a temporary name and renamed at the end (each part under a
temporary name too, renamed when complete); on S3 a part is visible only once its upload is
complete, and the driver writes ``_SUCCESS`` last.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlparse

if __package__ in (None, ""):  # run as a script by spark-submit: the package comes from --py-files
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import loan_default.batch
from loan_default.batch import rules as checks
from loan_default.batch.code_zip import build_code_zip
from loan_default.batch.core import BandTotals, BatchScorer
from loan_default.batch.local import BATCH_ROWS, Summary, file_format, parquet_options
from loan_default.batch.rules import REJECT_SCHEMA, InputError
from loan_service.artifacts import ArtifactError
from loan_service.scoring import RISK_BANDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CORRUPT: Final = "__corrupt_record"
SUCCESS: Final = "_SUCCESS"
SCHEMES: Final = {"s3a": "s3", "s3n": "s3"}  # Hadoop's names for S3, pyarrow's is s3


class PartitionTotals(NamedTuple):
    """What one task saw: the driver's summary and the CSV rows' offsets."""

    rows: int  # every row of the task, bad ones included
    rejected: int  # rows with at least one bad value (or the wrong number of fields)
    loans: np.ndarray  # scored loans per risk band
    expected_loss: np.ndarray  # expected loss per risk band


_WORKER_SCORERS: dict[tuple[str, float], BatchScorer] = {}


def worker_scorer(artifact_dir: str, recovery_rate: float) -> BatchScorer:
    """This Python worker's scorer: built once (sha256 checks, ONNX session), then reused."""
    key = (artifact_dir, recovery_rate)
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        scorer = BatchScorer(Path(artifact_dir), recovery_rate, coded=True)
        _WORKER_SCORERS[key] = scorer
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
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    ship_code(spark)
    return spark


# --- where parts go: a local folder or an object store, through pyarrow's file systems ---------


_FILE_SYSTEMS: dict[tuple[str, str], pafs.FileSystem] = {}


def _is_local(path: str) -> bool:
    return urlparse(path).scheme in ("", "file")


def file_system(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for ``uri`` and the path on it; one per bucket per process (an S3
    file system resolves its bucket's region once)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), os.path.abspath(parsed.path)
    scheme = SCHEMES.get(parsed.scheme, parsed.scheme)
    key = (scheme, parsed.netloc)
    fs = _FILE_SYSTEMS.get(key)
    if fs is None:
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{parsed.netloc}/")
        _FILE_SYSTEMS[key] = fs
    return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")


@dataclass(frozen=True, slots=True)
class Destination:
    """A folder of parts: ``uri`` as given, ``folder`` where the parts are written (locally a
    temporary name beside it, renamed by ``commit``; elsewhere the final place)."""

    uri: str
    folder: str
    kind: str  # "parquet" or "csv": the parts' format, from the extension

    @classmethod
    def of(cls, uri: str) -> Destination:
        kind = file_format(Path(urlparse(uri).path))
        _, path = file_system(uri)
        folder = path
        if _is_local(uri):
            final = Path(path)
            folder = str(final.with_name(f".{final.name}.{os.getpid()}.partial"))
        return cls(uri, folder, kind)

    def prepare(self) -> None:
        """An empty folder to write into (what was there before is replaced, as Spark's
        ``overwrite`` does)."""
        fs, _ = file_system(self.uri)
        fs.delete_dir_contents(self.folder, missing_dir_ok=True)
        if _is_local(self.uri):  # an object store has no folders: a key prefix is one
            fs.create_dir(self.folder, recursive=True)

    def part(self, index: int) -> str:
        return f"{self.folder}/part-{index:05d}.{self.kind}"

    def write_empty(self, schema: pa.Schema) -> None:
        """A header-only (CSV) or schema-only (Parquet) first part, so the folder reads back
        with its columns when no task wrote a row."""
        fs, _ = file_system(self.uri)
        if self.kind == "parquet":
            pq.write_table(schema.empty_table(), self.part(0), filesystem=fs)
        else:
            with fs.open_output_stream(self.part(0)) as stream:
                stream.write((",".join(schema.names) + "\n").encode())

    def commit(self) -> None:
        """``_SUCCESS``, then (locally) the folder under its final name."""
        fs, path = file_system(self.uri)
        with fs.open_output_stream(f"{self.folder}/{SUCCESS}"):
            pass
        if not _is_local(self.uri):
            return
        found = fs.get_file_info(path).type
        if found == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif found != pafs.FileType.NotFound:
            fs.delete_file(path)
        fs.move(self.folder, path)

    def discard(self) -> None:
        """Delete the parts written (a stopped job keeps no output)."""
        fs, _ = file_system(self.uri)
        if fs.get_file_info(self.folder).type != pafs.FileType.NotFound:
            fs.delete_dir(self.folder)


class PartWriter:
    """One task's part: opened at its first non-empty table, so a task with no rows writes no
    file. Locally under a temporary name, renamed when complete (a re-run task replaces it); on
    S3 the object appears only when its upload completes."""

    def __init__(self, destination: Destination, index: int, statistics: list[str] | None) -> None:
        self.destination = destination
        self.path = destination.part(index)
        self._fs, _ = file_system(destination.uri)
        self._local = _is_local(destination.uri)
        self._target = (
            f"{destination.folder}/.part-{index:05d}.{os.getpid()}.tmp"
            if self._local
            else self.path
        )
        self._statistics = statistics
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._stream: Any = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._writer is None:
            schema = table.schema
            self._stream = self._fs.open_output_stream(self._target)
            if self.destination.kind == "parquet":
                self._writer = pq.ParquetWriter(
                    self._stream, schema, **parquet_options(schema, self._statistics)
                )
            else:
                self._writer = pacsv.CSVWriter(self._stream, schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def abort(self) -> None:
        """A failed task: no part, and no temporary file, left behind."""
        try:
            if self._writer is not None:
                self._writer.close()
                self._stream.close()
        finally:
            # On S3 closing the stream completed the upload: the truncated part goes too.
            if self._writer is not None:
                self._fs.delete_file(self._target)
            self._writer = None

    def close(self) -> bool:
        """Finish the part; whether it holds any row."""
        if self._writer is None:
            return False
        self._writer.close()
        self._stream.close()
        if self._local:
            self._fs.move(self._target, self.path)
        return True


# --- the plan: decided once on the driver ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoringPlan:
    """What every task needs, decided once on the driver from the input's schema."""

    artifact_dir: str
    recovery_rate: float
    input: pa.Schema  # the columns a task scores (CSV: as Spark hands them over, CORRUPT aside)
    output: pa.Schema  # the input's columns (typed features), then the answers
    out: Destination
    rejects: Destination
    has_corrupt: bool = False  # a CSV input: CORRUPT holds the line of a row with the wrong count
    expected_fields: int = 0

    @classmethod
    def of(
        cls,
        schema: pa.Schema,
        artifact_dir: str,
        recovery_rate: float,
        out: Destination,
        rejects: Destination,
        *,
        has_corrupt: bool = False,
    ) -> ScoringPlan:
        """The plan for an input of ``schema``; ``InputError`` when it cannot be scored."""
        output = BatchScorer(Path(artifact_dir), recovery_rate, coded=True).check_schema(schema)
        return cls(
            artifact_dir, recovery_rate, schema, output, out, rejects, has_corrupt, len(schema)
        )

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

    def output_writer(self, index: int) -> PartWriter:
        # Row-group statistics for the input's columns only, as the local engine writes them.
        return PartWriter(self.out, index, list(self.input.names))

    def rejects_writer(self, index: int) -> PartWriter:
        return PartWriter(self.rejects, index, None)


def _malformed(lines: pa.Array, expected: int) -> list[str]:
    found = [len(next(csv.reader([str(line)]), [])) for line in lines.to_pylist()]
    return [f"expected {expected} fields, found {n}" for n in found]


def _with_malformed(rejects: pa.Table, rows: np.ndarray, reasons: list[str]) -> pa.Table:
    """A batch's rejects plus its malformed rows (no column), by row, then as listed."""
    if not rows.size:
        return rejects
    extra = pa.table(
        {"row": rows, "column": pa.nulls(rows.size, pa.string()), "reason": reasons},
        schema=REJECT_SCHEMA,
    )
    table = pa.concat_tables([extra, rejects])
    order = np.argsort(table.column("row").to_numpy(), kind="stable")
    return table.take(pa.array(order))


def _score_batches(
    plan: ScoringPlan, index: int, batches: Iterable[tuple[pa.RecordBatch, np.ndarray]]
) -> PartitionTotals:
    """Score ``(batch, its 1-based row numbers)`` pairs into output part ``index``; with known
    row numbers (Parquet) the rejects go to rejects part ``index`` as well."""
    scorer = worker_scorer(plan.artifact_dir, plan.recovery_rate)
    writer = plan.output_writer(index)
    rejects = None if plan.has_corrupt else plan.rejects_writer(index)
    writers = [writer] if rejects is None else [writer, rejects]
    bands = BandTotals()
    seen = rejected = 0
    try:
        for batch, rows in batches:
            seen += batch.num_rows
            good, good_rows, malformed, _ = plan.well_formed(batch, rows)
            result = scorer.score(good, good_rows)
            rejected += malformed.size + result.rejected_rows
            bands.add(result.scored)
            table = result.table
            if not table.schema.equals(plan.output):
                table = table.cast(plan.output)
            writer.write(table)
            if rejects is not None:
                rejects.write(result.rejects)
    except BaseException:
        for part in writers:
            part.abort()
        raise
    for part in writers:
        part.close()
    return PartitionTotals(seen, rejected, bands.loans, bands.expected_loss)


# --- Parquet: the workers read their own row groups -----------------------------------------


class Slice(NamedTuple):
    """One task's rows: ``length`` rows from row ``start`` of a row group of a file."""

    path: str
    row_group: int
    start: int
    length: int
    first_row: int  # the 1-based file row number of its first row


def parquet_files(uri: str) -> list[str]:
    """The Parquet files of ``uri`` (a file, or a folder of parts in name order, skipping
    ``_``/``.`` names such as ``_SUCCESS``); ``InputError`` when there are none."""
    fs, path = file_system(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [path]
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{uri}: not readable (no such file or folder)")
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    files = sorted(
        f.path
        for f in found
        if f.type == pafs.FileType.File
        and not any(p.startswith(("_", ".")) for p in Path(f.path).relative_to(path).parts)
    )
    if not files:
        raise InputError(f"{uri}: not readable (a folder without Parquet files)")
    return files


def plan_slices(uri: str, parallelism: int) -> tuple[pa.Schema, list[Slice]]:
    """The input's schema and its tasks, from the files' footers alone (no data read).

    A task is one row group. Only a book with fewer row groups than cores (``parallelism``) is
    cut finer, into slices of an even share of the book rounded up to whole batches: a slice
    decodes its row group from the start (pyarrow reads no row range), so a larger book keeps
    whole row groups."""
    fs, _ = file_system(uri)
    files = parquet_files(uri)
    schema: pa.Schema | None = None
    groups: list[tuple[str, int, int]] = []
    for path in files:
        try:
            metadata = pq.read_metadata(path, filesystem=fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{uri}: not a readable Parquet file ({exc})") from exc
        file_schema = metadata.schema.to_arrow_schema().remove_metadata()
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise InputError(f"{path}: its columns differ from those of {files[0]}")
        groups += [
            (path, g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups)
        ]
    assert schema is not None
    total = sum(rows for *_, rows in groups)
    step = max([1, *(rows for *_, rows in groups)])  # whole row groups
    if total and len(groups) < parallelism:
        share = math.ceil(total / parallelism)
        step = max(BATCH_ROWS, math.ceil(share / BATCH_ROWS) * BATCH_ROWS)
    slices: list[Slice] = []
    first = 1
    for path, group, rows in groups:
        for start in range(0, rows, step):
            length = min(step, rows - start)
            slices.append(Slice(path, group, start, length, first + start))
        first += rows
    return schema, slices


def read_slice(
    uri: str, part: Slice, schema: pa.Schema
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """The slice's record batches (in ``schema``) with their file row numbers."""
    fs, _ = file_system(uri)
    with fs.open_input_file(part.path) as handle:
        # Pre-buffered: a task reads one row group, so it holds at most that, and on S3 its
        # column chunks come in a few coalesced range requests instead of one per page. Decoded
        # in this thread: the worker is one core's worth of the cluster already.
        parquet = pq.ParquetFile(handle, pre_buffer=True)
        offset, end = 0, part.start + part.length
        batches = parquet.iter_batches(
            batch_size=BATCH_ROWS, row_groups=[part.row_group], use_threads=False
        )
        for batch in batches:
            lo, hi = max(part.start - offset, 0), min(end - offset, batch.num_rows)
            if hi > lo:
                piece = batch.slice(lo, hi - lo)
                if not piece.schema.equals(schema):
                    piece = piece.cast(schema)
                first = part.first_row + offset + lo - part.start
                yield piece, np.arange(first, first + piece.num_rows, dtype=np.int64)
            offset += batch.num_rows
            if offset >= end:
                break


def _slice_pass(
    plan: ScoringPlan, source: str
) -> Callable[[Iterable[tuple[int, Slice]]], Iterator[tuple[int, PartitionTotals]]]:
    """One task: read, score and write each of its slices (one, as the tasks are planned)."""

    def run(tasks: Iterable[tuple[int, Slice]]) -> Iterator[tuple[int, PartitionTotals]]:
        for index, part in tasks:
            try:
                totals = _score_batches(plan, index, read_slice(source, part, plan.input))
            except pa.ArrowInvalid as exc:
                raise InputError(f"{part.path}: unreadable input ({exc})") from exc
            yield index, totals

    return run


# --- CSV: Spark's reader, the workers' writers -----------------------------------------------


def read_csv(spark: SparkSession, path: str) -> DataFrame:
    """Every column as text (the checks parse the features) and the line of any row with the
    wrong number of fields in ``CORRUPT``."""
    from pyspark.sql.types import StringType, StructField, StructType

    try:
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


TOTALS_SCHEMA: Final = pa.schema(
    [
        ("partition", pa.int64()),
        ("rows", pa.int64()),
        ("rejected", pa.int64()),
        ("loans", pa.list_(pa.int64())),
        ("expected_loss", pa.list_(pa.float64())),
    ]
)
TOTALS_DDL: Final = (
    "partition long, rows long, rejected long, loans array<long>, expected_loss array<double>"
)
_DONE_SCHEMA: Final = pa.schema([("partition", pa.int64())])  # the rejects pass: one row a task


def _partition() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context is not None else 0


def _csv_scoring_pass(
    plan: ScoringPlan,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """One task: score its batches into its output part; yield its totals (one row)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition = _partition()

        def numbered() -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
            seen = 0  # numbered within the partition: the rejects pass numbers them in the file
            for batch in batches:
                yield batch, np.arange(seen + 1, seen + batch.num_rows + 1, dtype=np.int64)
                seen += batch.num_rows

        totals = _score_batches(plan, partition, numbered())
        yield pa.RecordBatch.from_pylist(
            [
                {
                    "partition": partition,
                    "rows": totals.rows,
                    "rejected": totals.rejected,
                    "loans": totals.loans.tolist(),
                    "expected_loss": totals.expected_loss.tolist(),
                }
            ],
            schema=TOTALS_SCHEMA,
        )

    return run


def _csv_rejects_pass(
    plan: ScoringPlan, offsets: np.ndarray
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """One task: check every batch (no scoring) and write its rejects, numbered in the file."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition = _partition()
        rules = worker_scorer(plan.artifact_dir, plan.recovery_rate).rules
        writer = plan.rejects_writer(partition)
        seen = int(offsets[partition]) if partition < offsets.size else 0
        try:
            for batch in batches:
                rows = np.arange(seen + 1, seen + batch.num_rows + 1, dtype=np.int64)
                seen += batch.num_rows
                good, good_rows, malformed, reasons = plan.well_formed(batch, rows)
                found = checks.check_columns(good, rules, good_rows).rejects
                writer.write(_with_malformed(found, malformed, reasons))
        except BaseException:
            writer.abort()
            raise
        writer.close()
        yield pa.RecordBatch.from_pylist([{"partition": partition}], schema=_DONE_SCHEMA)

    return run


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


def _score_parquet(
    spark: SparkSession, plan_of: Callable[[pa.Schema, bool], ScoringPlan], source: str
) -> tuple[ScoringPlan, Callable[[], Summary]]:
    """The plan (from the footers) and the job that scores the book with it."""
    sc = spark.sparkContext
    schema, slices = plan_slices(source, sc.defaultParallelism)
    plan = plan_of(schema, False)

    def job() -> Summary:
        tasks = sc.parallelize(list(enumerate(slices)), max(len(slices), 1))
        return _summary(dict(tasks.mapPartitions(_slice_pass(plan, source)).collect()))[0]

    return plan, job


def _score_csv(
    spark: SparkSession, plan_of: Callable[[pa.Schema, bool], ScoringPlan], source: str
) -> tuple[ScoringPlan, Callable[[], Summary]]:
    """The plan (from Spark's reading of the header) and the job that scores the book with it."""
    from pyspark.sql.pandas.types import to_arrow_type

    df = read_csv(spark, source)
    fields = [f for f in df.schema.fields if f.name != CORRUPT]
    plan = plan_of(pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in fields]), True)

    def job() -> Summary:
        totals = {
            int(r["partition"]): PartitionTotals(
                int(r["rows"]),
                int(r["rejected"]),
                np.array(r["loans"], dtype=np.int64),
                np.array(r["expected_loss"], dtype=np.float64),
            )
            for r in df.mapInArrow(_csv_scoring_pass(plan), TOTALS_DDL).collect()
        }
        summary, offsets = _summary(totals)
        if summary.rows_rejected:
            df.mapInArrow(_csv_rejects_pass(plan, offsets), "partition long").collect()
        return summary

    return plan, job


def _parts(destination: Destination) -> list[str]:
    """The part files written so far (none: an object store has no folder for them yet)."""
    fs, _ = file_system(destination.uri)
    found = fs.get_file_info(pafs.FileSelector(destination.folder, allow_not_found=True))
    return sorted(f.path for f in found if Path(f.path).name.startswith("part-"))


def _check_rows(destination: Destination, rows: int) -> None:
    """The Parquet parts' footers hold the rows the tasks reported scoring: a part lost or
    replaced by a second attempt of its task fails the job instead of going unnoticed."""
    if destination.kind != "parquet":
        return
    fs, _ = file_system(destination.uri)
    found = sum(pq.read_metadata(path, filesystem=fs).num_rows for path in _parts(destination))
    if found != rows:
        raise RuntimeError(f"{destination.uri}: its parts hold {found} rows, {rows} were scored")


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

    Parquet: ONE pass, the workers read their row groups, score them and write their output and
    rejects parts. CSV: one pass scores and writes the output; only when some row was bad does
    a second, check-only pass number the rejects in file order and write them.
    """
    import time

    started = time.perf_counter()
    out, rejects = Destination.of(output_path), Destination.of(rejects_path)

    def plan_of(schema: pa.Schema, has_corrupt: bool) -> ScoringPlan:
        return ScoringPlan.of(
            schema, artifact_dir, recovery_rate, out, rejects, has_corrupt=has_corrupt
        )

    kind = file_format(Path(urlparse(input_path).path))
    planned = _score_parquet if kind == "parquet" else _score_csv
    plan, job = planned(spark, plan_of, input_path)  # InputError: nothing written yet
    out.prepare()
    rejects.prepare()
    try:
        summary = job()
        _check_rows(out, summary.rows_scored)
    except BaseException:
        out.discard()
        rejects.discard()
        raise
    if not _parts(rejects):
        rejects.write_empty(REJECT_SCHEMA)
    rejects.commit()
    if max_rejects is not None and summary.rows_rejected > max_rejects:
        summary.stopped = True
        out.discard()
    else:
        if not _parts(out):
            out.write_empty(plan.output)
        out.commit()
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
