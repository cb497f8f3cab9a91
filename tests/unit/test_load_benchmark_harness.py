"""The benchmark's machinery, offline: wrk's script and report, the results file.

``make bench`` runs for a long time before it writes anything; a slip in its report code would
throw all of that away at the very end, so the rendering is tested here on synthetic figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.results_file import markers, write_block
from bench.run import (
    BenchConfig,
    CpuSample,
    Results,
    errors_total,
    goals,
    headline_rows,
    median_run,
    others_share,
    render,
)
from bench.wrk import JSON_MARKER, LoadResult, _lua_string, parse_wrk_output, write_lua_script
from tests.support.loans import loan_rows

PROJECT_CSV = Path(__file__).resolve().parents[2] / "Data" / "Loan_Data.csv"

WRK_STDOUT = f"""Running 10s test @ http://127.0.0.1:8000
  1 threads and 8 connections
  Latency Distribution
     50%  520.00us
     99%    2.10ms
  120000 requests in 10.00s, 40.00MB read
Requests/sec:  12000.00
{JSON_MARKER}{{"requests": 120000, "duration_us": 10000000, "bytes": 41943040, \
"connect_errors": 0, "read_errors": 1, "write_errors": 0, "status_errors": 2, "timeouts": 3, \
"p50_us": 520, "p90_us": 900, "p99_us": 2100, "max_us": 15000, "mean_us": 610.5}}
"""


def load_result(requests_per_second: float, p50_us: float, p99_us: float) -> LoadResult:
    return LoadResult(
        requests=int(requests_per_second * 10),
        duration_s=10.0,
        errors=0,
        status_errors=0,
        p50_us=p50_us,
        p90_us=p99_us * 0.8,
        p99_us=p99_us,
        max_us=p99_us * 2,
        mean_us=p50_us,
        connections=8,
        threads=1,
        text="",
    )


def full_results(contended: bool = False) -> Results:
    return Results(
        facts={
            "date": "2026-11-28 05:00 UTC",
            "nproc": "2",
            "arch": "x86_64",
            "kernel": "6.1",
            "cpu": "test CPU",
            "python": "3.11.7",
            "commit": "abc1234",
            "load_before": (0.1, 0.1, 0.1),
            "load_after": (0.9, 0.5, 0.2),
            "others_share_run": 0.3 if contended else 0.01,
            "others_share_http": 0.02,
            "contended": contended,
        },
        models={
            "logistic_regression": {"model_version": "v1", "f1": 0.997, "served_by_default": True},
            "random_forest": {"model_version": "v2", "f1": 0.985, "served_by_default": False},
        },
        http={
            "service/logistic_regression": load_result(12_000, 500, 2_000),
            "reference": load_result(400, 18_000, 40_000),
            "service/random_forest": load_result(9_000, 700, 3_000),
        },
        http_rounds={
            "service/logistic_regression": [
                load_result(11_000, 520, 2_100),
                load_result(12_000, 500, 2_000),
                load_result(13_000, 480, 1_900),
            ],
            "reference": [
                load_result(380, 19_000, 41_000),
                load_result(400, 18_000, 40_000),
                load_result(420, 17_000, 39_000),
            ],
        },
        batch_http={
            "logistic_regression": load_result(60, 120_000, 200_000),
            "random_forest": load_result(30, 250_000, 400_000),
        },
        handler={
            "samples": 20000,
            "p50_us": 180.0,
            "p99_us": 400.0,
            "bare_mangum_p50_us": 150.0,
            "bare_mangum_p99_us": 350.0,
            "without_bins_p50_us": 175.0,
            "without_bins_p99_us": 395.0,
            "bins_p50_us": 4.2,
            "event": "API Gateway HTTP API (payload 2.0), POST /predict, one loan",
        },
        cold_start={
            "service: import main + first handler answer": [0.40, 0.42, 0.41],
            "reference: import Flask app + unpickle + first answer": [1.6, 1.5, 1.7],
        },
        predictor={
            "logistic_regression": {
                "pd_only_rows_per_second": 5_000_000,
                "with_reasons_rows_per_second": 700_000,
            }
        },
        training={"reference data (../shared/data/Loan_Data.csv)": 21.5, "1,000,000 rows": "n/a"},
    )


def test_wrk_figures_are_read_from_the_scripts_json_line() -> None:
    result = parse_wrk_output(WRK_STDOUT, connections=8, threads=1)
    assert result.requests_per_second == pytest.approx(12_000.0)
    assert (result.p50_us, result.p99_us) == (520.0, 2100.0)
    assert result.errors == 6  # read + status + timeouts: every kind counts
    assert result.status_errors == 2
    assert JSON_MARKER not in result.text
    assert "Latency Distribution" in result.text


def test_wrk_output_without_the_json_line_is_an_error_not_zeros() -> None:
    with pytest.raises(RuntimeError, match="WRK_JSON"):
        parse_wrk_output("Running 10s test\nRequests/sec: 1.0\n", connections=8, threads=1)


def test_lua_long_strings_cannot_be_closed_by_the_json_inside() -> None:
    assert _lua_string('{"a": 1}') == '[[{"a": 1}]]'
    assert _lua_string('{"a": [[1]]}') == '[=[{"a": [[1]]}]=]'
    assert _lua_string("]]]=]") == "[==[]]]=]]==]"


def test_the_lua_script_posts_every_body_in_turn_and_reports_json(tmp_path: Path) -> None:
    script = write_lua_script(tmp_path / "s.lua", "/predict", ['{"x": 1}', '{"x": 2}'])
    text = script.read_text()
    assert text.count('wrk.format("POST", "/predict"') == 1
    assert '[[{"x": 1}]]' in text
    assert '[[{"x": 2}]]' in text
    assert JSON_MARKER.strip() in text
    with pytest.raises(ValueError, match="at least one"):
        write_lua_script(tmp_path / "empty.lua", "/predict", [])


def test_loans_read_from_the_book_keep_integer_features_integral() -> None:
    loans = loan_rows(PROJECT_CSV, 3)
    assert len(loans) == 3
    for loan in loans:
        assert isinstance(loan["credit_lines_outstanding"], int)
        assert isinstance(loan["fico_score"], int)
        assert isinstance(loan["income"], float)


def test_the_headline_is_ratios_of_the_two_designs() -> None:
    rows = {row[0]: row for row in headline_rows(full_results())}
    throughput = rows["HTTP throughput, `POST /predict` (requests/s)"]
    assert throughput[1:] == ("12,000", "400", "**30.0x**")
    assert rows["HTTP latency p50"][3] == "36.0x lower"
    assert rows["cold start, fresh process to first answer (median)"][3] == "3.9x faster"


def test_goals_say_met_or_missed_against_issue_7_and_issue_3() -> None:
    verdicts = {name: met for name, met, _ in goals(full_results())}
    assert verdicts["HTTP throughput >= 25x the original design"] is True
    assert verdicts["uvicorn p99 <= 5 ms"] is True
    assert verdicts["fresh process to main imported and answering <= 0.5 s"] is True
    slow = full_results()
    slow.http["reference"] = load_result(600, 18_000, 40_000)
    verdicts = {name: met for name, met, _ in goals(slow)}
    assert verdicts["HTTP throughput >= 25x the original design"] is False


def test_the_results_file_has_every_section_and_flags_contention() -> None:
    config = BenchConfig(command="make bench")
    quiet = render(full_results(contended=False), config)
    for heading in (
        "## Headline",
        "## Goals",
        "## HTTP",
        "## Lambda handler in process",
        "## Cold start",
        "## Batch throughput",
        "## Training wall time",
    ):
        assert heading in quiet
    assert "Command: `make bench`" in quiet
    assert "| `main.handler` without reference bins | 175 us | 395 us |" in quiet
    assert "for its EMF document, timed alone): p50 4.2 us, budget 10 us." in quiet
    assert "2 cores (`nproc`), `x86_64` (`uname -m`)" in quiet
    assert "Measured under contention" not in quiet
    assert "Measured under contention" in render(full_results(contended=True), config)


def test_a_run_with_missing_sections_still_renders() -> None:
    results = full_results()
    results.cold_start, results.predictor, results.batch_http = {}, {}, {}
    text = render(results, BenchConfig())
    assert "## Cold start" not in text
    assert "## Batch throughput" not in text
    assert "## HTTP" in text


def test_cpu_taken_by_others_is_machine_busy_time_minus_our_own() -> None:
    before = CpuSample(wall=0.0, machine_busy=100.0, own=10.0)
    after = CpuSample(wall=10.0, machine_busy=115.0, own=20.0)  # 15 busy, 10 of them ours
    assert others_share(before, after, cores=2) == pytest.approx(5.0 / 20.0)


def test_the_representative_round_is_the_median_by_throughput() -> None:
    runs = [load_result(rps, 1, 2) for rps in (300, 100, 200)]
    assert median_run(runs).requests_per_second == pytest.approx(200)
    assert median_run(runs[:2]).requests_per_second == pytest.approx(100)  # lower middle


def test_every_round_is_listed_with_its_own_ratio() -> None:
    text = render(full_results(), BenchConfig())
    assert "11,000 / 380, 28.9x; 12,000 / 400, 30.0x; 13,000 / 420, 31.0x" in text


def test_a_failed_request_in_any_round_counts_once() -> None:
    results = full_results()
    failing = results.http_rounds["reference"][0]
    results.http_rounds["reference"][0] = dataclasses.replace(failing, errors=3)
    assert errors_total(results) == 3


def test_a_benchmark_block_replaces_only_its_own_lines_in_the_results_file(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# Benchmark results\n\nheadline\n")
    write_block("serving", ["first run"], results)
    write_block("image", ["image run"], results)
    write_block("serving", ["second run"], results)
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nheadline\n")
    assert "second run" in text
    assert "first run" not in text
    assert text.count(markers("serving")[0]) == 1
    assert text.index("second run") < text.index("image run")
