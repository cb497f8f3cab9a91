"""How the Spark engine splits a Parquet book into tasks from its footers alone (every row in
exactly one task, in file order, each task's first row number right, no more tasks than needed),
and checks the parts its tasks wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loan_default.batch.local import BATCH_ROWS
from loan_default.batch.rules import InputError
from loan_default.batch.spark import (
    Destination,
    _check_rows,
    _parts,
    parquet_files,
    plan_slices,
    read_slice,
)


def _book(path: Path, rows: int, row_group: int) -> None:
    pq.write_table(pa.table({"n": np.arange(1, rows + 1)}), path, row_group_size=row_group)


def _numbers(folder: str, parallelism: int) -> tuple[list[int], int]:
    schema, slices = plan_slices(folder, parallelism)
    found: list[int] = []
    for part in slices:
        for batch, rows in read_slice(folder, part, schema):
            assert batch.column("n").to_numpy().tolist() == rows.tolist()  # row n holds n
            found += rows.tolist()
    return found, len(slices)


def test_fewer_row_groups_than_cores_are_cut_into_slices_of_whole_batches(tmp_path: Path) -> None:
    _book(tmp_path / "one.parquet", 200_000, 200_000)
    for cores, expected in ((1, 1), (2, 2), (4, 4)):
        found, tasks = _numbers(str(tmp_path / "one.parquet"), cores)
        assert found == list(range(1, 200_001))
        assert tasks == expected
    _, slices = plan_slices(str(tmp_path / "one.parquet"), 4)
    assert [part.start for part in slices] == [0, BATCH_ROWS, 2 * BATCH_ROWS, 3 * BATCH_ROWS]


def test_as_many_row_groups_as_cores_stay_whole(tmp_path: Path) -> None:
    _book(tmp_path / "three.parquet", 300_000, 100_000)
    found, tasks = _numbers(str(tmp_path / "three.parquet"), 2)
    assert found == list(range(1, 300_001))
    assert tasks == 3


def test_a_folder_of_parts_is_numbered_across_its_files_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "book.parquet"
    folder.mkdir()
    pq.write_table(
        pa.table({"n": np.arange(1, 70_001)}), folder / "part-00000.parquet", row_group_size=30_000
    )
    pq.write_table(pa.table({"n": np.arange(70_001, 70_011)}), folder / "part-00001.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    assert [Path(p).name for p in parquet_files(str(folder))] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    found, tasks = _numbers(str(folder), 2)
    assert found == list(range(1, 70_011))
    assert tasks == 4  # three row groups and the small file: whole row groups, none split


def test_parts_with_other_columns_or_no_parts_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mixed.parquet"
    folder.mkdir()
    _book(folder / "a.parquet", 10, 10)
    pq.write_table(pa.table({"m": [1]}), folder / "b.parquet")
    with pytest.raises(InputError, match="columns differ"):
        plan_slices(str(folder), 2)
    with pytest.raises(InputError, match="not readable"):
        plan_slices(str(tmp_path / "nope.parquet"), 2)
    (tmp_path / "empty.parquet").mkdir()
    with pytest.raises(InputError, match="without Parquet files"):
        plan_slices(str(tmp_path / "empty.parquet"), 2)


def test_parts_that_do_not_hold_the_scored_rows_fail_the_job(tmp_path: Path) -> None:
    """A part lost or replaced by a second attempt of its task is caught by the footers' count;
    a folder not made yet (an object store's, before its first part) has no part."""
    destination = Destination.of(str(tmp_path / "scored.parquet"))
    assert _parts(destination) == []
    destination.prepare()
    _book(Path(destination.part(0)), 10, 10)
    _book(Path(destination.part(1)), 5, 5)
    _check_rows(destination, 15)
    with pytest.raises(RuntimeError, match="its parts hold 15 rows, 16 were scored"):
        _check_rows(destination, 16)
