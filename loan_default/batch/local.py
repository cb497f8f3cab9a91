"""The local engine: stream record batches from a CSV or Parquet file, score, write, summarize.

Memory stays flat in the file's size: one record batch (``BATCH_ROWS`` rows) is read, scored and
written at a time. The output is written under a temporary name in the output's folder and renamed
at the end, so a stopped or crashed job never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loan_default.batch.core import BandTotals, BatchScorer
from loan_default.batch.rules import EMPTY_REJECTS, REJECT_SCHEMA, InputError

BATCH_ROWS: Final = 65_536
CSV_BLOCK_BYTES: Final = 4 << 20
PLAIN_PROGRESS_SECONDS: Final = 5.0
FORMATS: Final = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path) -> str:
    """``csv`` or ``parquet`` from the extension; ``InputError`` for anything else."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unknown file type {path.suffix!r} (use .csv or .parquet)")
    return kind


@dataclass(slots=True)
class Summary:
    """What the job did; printed one item per line at the end."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    bands: BandTotals = field(default_factory=BandTotals)
    stopped: bool = False
    seconds: float = 0.0

    @property
    def expected_loss(self) -> float:
        return float(self.bands.expected_loss.sum())

    def lines(self, band_names: tuple[str, ...]) -> list[str]:
        rate = self.rows_read / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"rows read: {self.rows_read}",
            f"rows scored: {self.rows_scored}",
            f"rows rejected: {self.rows_rejected}",
            f"total expected loss: {self.expected_loss:.2f}",
        ]
        for i, band in enumerate(band_names):
            lines.append(
                f"band {band}: {int(self.bands.loans[i])} loans, "
                f"expected loss {float(self.bands.expected_loss[i]):.2f}"
            )
        lines.append(f"time: {self.seconds:.1f} s ({rate:,.0f} rows/s)")
        return lines


class Reader(Protocol):
    schema: pa.Schema
    total: int  # the unit of ``done``: rows (Parquet) or bytes (CSV)

    def batches(self) -> Iterator[pa.RecordBatch]: ...

    def done(self) -> int: ...


class ParquetReader:
    def __init__(self, path: Path) -> None:
        # No pre-buffering: with it, the reader keeps every row group it has read (peak memory
        # grew with the file: 438 MiB against 154 MiB over 10M rows, for no time saved).
        self._file = pq.ParquetFile(path, pre_buffer=False)
        self.schema = self._file.schema_arrow
        self.total = self._file.metadata.num_rows
        self._done = 0

    def batches(self) -> Iterator[pa.RecordBatch]:
        # Columns decoded in this thread: the job runs on one core, where a pool's hand-offs
        # buy nothing and its threads' allocators held ~20 MiB more at the peak.
        for batch in self._file.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            self._done += batch.num_rows
            yield batch

    def done(self) -> int:
        return self._done


class CsvReader:
    """Features are read as text so one bad value rejects a row, not the file; the others keep
    the types pyarrow infers. A row with the wrong number of fields is a reject of its own."""

    def __init__(self, path: Path, feature_columns: tuple[str, ...]) -> None:
        self.total = path.stat().st_size
        self.malformed: list[tuple[int, str]] = []  # (1-based data row, reason)
        self._handle: IO[bytes] = path.open("rb")
        try:
            self._reader = pacsv.open_csv(
                self._handle,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(invalid_row_handler=self._malformed_row),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in feature_columns},
                    strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            self._handle.close()
            raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
        self.schema = self._reader.schema

    def _malformed_row(self, row: Any) -> str:
        # Line numbers count the header as line 1 (quoted line breaks aside): data row = line - 1.
        number = -1 if row.number is None else int(row.number) - 1
        self.malformed.append(
            (number, f"expected {row.expected_columns} fields, found {row.actual_columns}")
        )
        return "skip"

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._reader
        finally:
            self._handle.close()

    def done(self) -> int:
        return self._handle.tell() if not self._handle.closed else self.total


def open_reader(path: Path, feature_columns: tuple[str, ...]) -> CsvReader | ParquetReader:
    kind = file_format(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if kind == "csv":
        return CsvReader(path, feature_columns)
    try:
        return ParquetReader(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth Parquet dictionary pages: text (ids, categories) and the coded answers.

    Tried on every column of every row group, dictionary encoding of the float columns cost twice
    the rest of the write; the coded answers (risk band, reason codes) arrive as dictionary arrays
    and are written as they are, without hashing a string per row."""
    return [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]


def delta_columns(schema: pa.Schema) -> dict[str, str]:
    """Integer columns (ids, counts, the decision, grades): delta-encoded, uncompressed.

    ``DELTA_BINARY_PACKED`` stores each page's differences in as few bits as they need: an id
    column that counts up shrinks to almost nothing and a small count to a few bits a row, as
    fast as plain values and faster than snappy over them (per million rows: 7 against 15-26 ms a
    column, and a smaller file). Every Parquet reader of the format's second version reads it
    (pyarrow, Spark, DuckDB)."""
    return {f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_integer(f.type)}


def parquet_compression(schema: pa.Schema) -> dict[str, str]:
    """Nothing for numbers and coded answers, snappy for the rest (text, dates, ...).

    Probabilities, losses and amounts are full-precision doubles that snappy cannot shrink (the
    file is 4 % larger without it), integers are delta-encoded (``delta_columns``), and the
    dictionary pages of coded answers hold a few bit-packed indices a row: compressing those only
    cost time."""
    plain = (pa.types.is_floating, pa.types.is_integer, pa.types.is_dictionary)
    return {f.name: "none" if any(kind(f.type) for kind in plain) else "snappy" for f in schema}


def parquet_options(schema: pa.Schema, statistics: Sequence[str] | None = None) -> dict[str, Any]:
    """``pq.ParquetWriter``'s encoding arguments for a scored output of ``schema`` (both engines):
    dictionary pages for text, delta-encoded integers, compression where it pays, and min/max
    statistics for the ``statistics`` columns (default: all)."""
    return {
        "compression": parquet_compression(schema),
        "use_dictionary": dictionary_columns(schema) or False,
        "column_encoding": delta_columns(schema) or None,
        "write_statistics": True if statistics is None else list(statistics) or False,
    }


class TableWriter:
    """Parquet or CSV by extension, under a temporary name until ``commit``."""

    def __init__(
        self, path: Path, schema: pa.Schema, statistics: Sequence[str] | None = None
    ) -> None:
        """``statistics``: the Parquet columns that get min/max statistics (default: all)."""
        self.path = path
        self.kind = file_format(path)
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | pacsv.CSVWriter
        if self.kind == "parquet":
            self._writer = pq.ParquetWriter(
                self.temporary, schema, **parquet_options(schema, statistics)
            )
        else:
            self._writer = pacsv.CSVWriter(self.temporary, schema)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)

    def commit(self) -> None:
        self._writer.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        try:
            self._writer.close()
        finally:
            self.temporary.unlink(missing_ok=True)


class ProgressReport(Protocol):
    def update(self, done: int, rows: int) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """One line every few seconds: for logs, CI and anything that is not a terminal."""

    def __init__(self, total: int, unit: str, stream: IO[str]) -> None:
        self.total, self.unit, self.stream = total, unit, stream
        self.started = self.last = time.perf_counter()

    def update(self, done: int, rows: int) -> None:
        now = time.perf_counter()
        if now - self.last < PLAIN_PROGRESS_SECONDS:
            return
        self.last = now
        elapsed = now - self.started
        share = done / self.total if self.total else 1.0
        eta = elapsed * (1 - share) / share if share > 0 else float("nan")
        print(
            f"scored {rows:,} rows ({share:.0%} of the {self.unit}), "
            f"{rows / elapsed:,.0f} rows/s, about {eta:.0f} s left",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        pass


class RichProgress:
    """A live bar with rows/s and the time left, on a terminal."""

    def __init__(self, total: int, unit: str, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.started = time.perf_counter()
        self._progress = Progress(
            TextColumn("scoring"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        self._task = self._progress.add_task(unit, total=total, rows=0, rate=0.0)
        self._progress.start()

    def update(self, done: int, rows: int) -> None:
        rate = rows / max(time.perf_counter() - self.started, 1e-9)
        self._progress.update(self._task, completed=done, rows=rows, rate=rate)

    def close(self) -> None:
        self._progress.stop()


def make_progress(total: int, unit: str, stream: IO[str], quiet: bool) -> ProgressReport:
    if quiet:
        return _NoProgress()
    if stream.isatty():
        return RichProgress(total, unit, stream)
    return PlainProgress(total, unit, stream)


class _NoProgress:
    def update(self, done: int, rows: int) -> None:
        pass

    def close(self) -> None:
        pass


def _row_numbers(first: int, count: int, skipped: list[int]) -> np.ndarray:
    """1-based data rows of the next ``count`` delivered rows; ``skipped`` rows (malformed, not
    delivered) are jumped over."""
    rows = np.arange(first, first + count, dtype=np.int64)
    for row in sorted(skipped):
        rows[rows >= row] += 1
    return rows


def _with_malformed(rejects: pa.Table, malformed: list[tuple[int, str]]) -> pa.Table:
    """A batch's rejects plus the malformed rows among its rows, in row order."""
    if not malformed:
        return rejects
    extra = pa.table(
        {
            "row": [row for row, _ in malformed],
            "column": [None] * len(malformed),
            "reason": [reason for _, reason in malformed],
        },
        schema=REJECT_SCHEMA,
    )
    return pa.concat_tables([extra, rejects]).sort_by("row")


def score_file(
    scorer: BatchScorer,
    input_path: Path,
    output_path: Path,
    rejects_path: Path,
    *,
    max_rejects: int | None = None,
    progress_stream: IO[str] | None = None,
    quiet: bool = False,
) -> Summary:
    """Score ``input_path`` into ``output_path``; rejects to ``rejects_path``. When more than
    ``max_rejects`` rows are rejected the job stops: ``summary.stopped``, output discarded, the
    rejects so far kept."""
    started = time.perf_counter()
    reader = open_reader(input_path, scorer.scorer.features)
    schema = scorer.check_schema(reader.schema)
    summary = Summary()
    malformed = reader.malformed if isinstance(reader, CsvReader) else []
    unit = "file" if isinstance(reader, CsvReader) else "rows"
    with ExitStack() as stack:
        # Row-group statistics for the input's columns (ids, features: what a reader filters
        # on); an answer column spans its whole range in every row group of a book, so its
        # statistics would skip nothing, and they cost a quarter of the write.
        writer = TableWriter(output_path, schema, statistics=reader.schema.names)
        rejects = TableWriter(rejects_path, REJECT_SCHEMA)
        committed = False

        def cleanup() -> None:
            if not committed:
                writer.discard()

        stack.callback(cleanup)
        progress = make_progress(reader.total, unit, progress_stream or sys.stderr, quiet)
        stack.callback(progress.close)
        delivered = 0  # rows handed over by the reader, malformed rows not included
        emitted = 0  # malformed rows written to the rejects so far
        try:
            for batch in reader.batches():
                rows = _row_numbers(delivered + 1, batch.num_rows, [row for row, _ in malformed])
                delivered += batch.num_rows
                result = scorer.score(batch, rows)
                # The reader may parse ahead: only malformed rows up to this batch's last row.
                last = int(rows[-1]) if rows.size else 0
                ready = [item for item in malformed[emitted:] if item[0] <= last]
                emitted += len(ready)
                rejects.write(_with_malformed(result.rejects, ready))
                writer.write(result.table)
                summary.rows_read += batch.num_rows + len(ready)
                summary.rows_rejected += result.rejected_rows + len(ready)
                summary.rows_scored += result.table.num_rows
                summary.bands.add(result.scored)
                progress.update(reader.done(), summary.rows_read)
                if max_rejects is not None and summary.rows_rejected > max_rejects:
                    summary.stopped = True
                    break
            else:
                rest = malformed[emitted:]  # malformed rows after the last delivered one
                rejects.write(_with_malformed(EMPTY_REJECTS, rest))
                summary.rows_read += len(rest)
                summary.rows_rejected += len(rest)
                summary.stopped = max_rejects is not None and summary.rows_rejected > max_rejects
        except pa.ArrowInvalid as exc:
            raise InputError(f"{input_path}: unreadable input ({exc})") from exc
        finally:
            rejects.commit()
        if not summary.stopped:
            writer.commit()
            committed = True
    summary.seconds = time.perf_counter() - started
    return summary
