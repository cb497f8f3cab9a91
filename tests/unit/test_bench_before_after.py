"""The before-and-after benchmark's own logic: alternating rounds, medians, the results block."""

from __future__ import annotations

from pathlib import Path

from bench.before_after import measure_both
from bench.results_file import write_block


def test_rounds_alternate_the_order_and_each_figure_is_the_median() -> None:
    calls: list[str] = []
    figures = {"before": iter([3.0, 1.0, 2.0]), "after": iter([10.0, 30.0, 20.0])}

    def measure(tree: Path, _artifacts: Path) -> dict[str, float]:
        calls.append(tree.name)
        return {"value": next(figures[tree.name])}

    trees = {"before": (Path("before"), Path("a")), "after": (Path("after"), Path("b"))}
    medians = measure_both(trees, measure, rounds=3)
    assert calls == ["before", "after", "after", "before", "before", "after"]
    assert medians == {"before": {"value": 2.0}, "after": {"value": 20.0}}


def test_a_block_is_appended_once_then_replaced_in_place(tmp_path: Path) -> None:
    results = tmp_path / "results.md"
    results.write_text("# Benchmark results\n\nother figures\n")
    write_block("before_after", ["first"], results)
    write_block("before_after", ["second"], results)
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nother figures\n")
    assert "first" not in text
    assert text.count("second") == 1
    assert text.count("<!-- before_after benchmark") == 1
