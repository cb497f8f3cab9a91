"""The streamed back-test (hash-partitioned join, PD-range spills) gives exactly the in-memory
back-test's figures - which the monitor tests check against scikit-learn and scipy - on a window
spread over many buckets and ranges, with tied PDs, ids of either kind and unmatched outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loan_default.monitoring import outcome_join
from loan_default.monitoring.backtest import backtest
from loan_default.monitoring.outcome_join import JoinInputError, OutcomeJoin

GRADES = 5


def window(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ids (shuffled), PDs with many ties, grades, outcomes drawn from the PDs."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n * 3)[:n].astype(np.int64)
    probability = np.round(rng.beta(1.2, 5, n), 3)
    grade = rng.integers(1, GRADES + 1, n)
    outcome = (rng.random(n) < probability).astype(np.int8)
    return ids, probability, grade, outcome


def as_kind(ids: np.ndarray, kind: str) -> list[Any]:
    return ids.tolist() if kind == "int" else [f"L-{i:07d}" for i in ids.tolist()]


def assert_same(streamed: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in ("loans", "defaults", "verdict"):
        assert streamed[key] == expected[key], key
    for key in ("roc_auc", "gini", "ks", "brier", "predicted_pd", "observed_rate"):
        assert streamed[key] == pytest.approx(expected[key], abs=1e-12), key
    hl, expected_hl = streamed["hosmer_lemeshow"], expected["hosmer_lemeshow"]
    assert (hl["dof"], hl["groups"]) == (expected_hl["dof"], expected_hl["groups"])
    assert hl["statistic"] == pytest.approx(expected_hl["statistic"], rel=1e-10)
    assert len(streamed["grades"]) == len(expected["grades"])
    for row, expected_row in zip(streamed["grades"], expected["grades"], strict=True):
        assert row["verdict"] == expected_row["verdict"]
        numbers = {k: v for k, v in expected_row.items() if k != "verdict"}
        assert {k: row[k] for k in numbers} == pytest.approx(numbers, rel=1e-12)


@pytest.mark.parametrize("kind", ["int", "str"])
def test_the_streamed_join_gives_the_in_memory_backtest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(outcome_join, "RANGE_ROWS", 257)  # about 20 PD ranges
    ids, probability, grade, outcome = window(6000, seed=3)
    known = np.random.default_rng(4).random(ids.size) < 0.8  # a fifth without an outcome yet
    strangers = np.arange(10**7, 10**7 + 150)  # outcomes of loans not in the window
    outcome_ids = np.r_[ids[known], strangers]
    outcome_values = np.r_[outcome[known], np.zeros(strangers.size, np.int8)]
    shuffle = np.random.default_rng(5).permutation(outcome_ids.size)
    csv = tmp_path / "outcomes.csv"
    pd.DataFrame(
        {
            "customer_id": as_kind(outcome_ids[shuffle], kind),
            "default": outcome_values[shuffle],
        }
    ).to_csv(csv, index=False)

    join = OutcomeJoin(csv, "customer_id", "default")
    try:
        scored_ids = as_kind(ids, kind)
        for start in range(0, ids.size, 700):
            end = start + 700
            join.add_scored(
                pa.array(scored_ids[start:end]), probability[start:end], grade[start:end]
            )
        streamed = join.backtest(GRADES)
    finally:
        join.cleanup()

    expected = backtest(probability[known], grade[known], outcome[known], GRADES)
    assert streamed is not None
    assert_same(streamed, expected)
    assert streamed["unmatched_outcomes"] == strangers.size


def test_repeated_outcome_ids_are_refused_in_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "outcomes.csv"
    csv.write_text("customer_id,default\n7,0\n8,1\n7,1\n", encoding="utf-8")
    join = OutcomeJoin(csv, "customer_id", "default")
    try:
        join.add_scored(pa.array([7, 8]), np.array([0.1, 0.2]), np.array([1, 2]))
        with pytest.raises(JoinInputError, match="column customer_id repeats loan ids"):
            join.backtest(GRADES)
    finally:
        join.cleanup()


def test_no_match_is_none_and_the_spill_folder_is_removed(tmp_path: Path) -> None:
    csv = tmp_path / "outcomes.csv"
    csv.write_text("customer_id,default\n1,0\n", encoding="utf-8")
    join = OutcomeJoin(csv, "customer_id", "default")
    folder = join._folder
    join.add_scored(pa.array([2, 3]), np.array([0.1, 0.2]), np.array([1, 2]))
    assert join.backtest(GRADES) is None
    join.cleanup()
    assert not folder.exists()


def test_a_larger_outcomes_file_gets_more_buckets_of_bounded_size() -> None:
    assert outcome_join.bucket_count(1_000) == outcome_join.MIN_BUCKETS
    rows_per_bucket = outcome_join.BUCKET_ROWS * outcome_join.CSV_BYTES_PER_ROW
    assert outcome_join.bucket_count(40 * rows_per_bucket) == 40
    assert outcome_join.bucket_count(10**12) == outcome_join.MAX_BUCKETS
