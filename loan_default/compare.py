"""``loan-default compare A B --out DIR``: what changes for applicants if B replaces A.

Inputs, either

* two scored files (``loan-default score`` output, CSV or Parquet): the same loans in the same
  order, each with ``probability`` and ``prediction`` (and ``grade`` where grades exist); or
* one file of logged shadow pairs (``.jsonl``/``.log``: the service's ``shadow`` log lines, or
  the bare pair records), where A is the champion and B the challenger of each request.

Figures: agreement rate of the decisions; swap-ins (declined by A, approved by B) and swap-outs
(approved by A, declined by B); PSI between the two score distributions (bins from A's deciles,
widened to fixed PD bins where A's scores are too concentrated for deciles); the grade migration
matrix; and with ``--outcomes CSV`` (a ``default`` column, one row per loan in the same order) the
observed default rate of each swap set. Writes ``compare.json`` and ``compare.html`` and logs one
MLflow run (``--no-mlflow`` to skip). Exit 0 done, 2 bad input (one line naming the problem).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

EXIT_OK: Final = 0
EXIT_BAD_INPUT: Final = 2
PAIR_SUFFIXES: Final = (".jsonl", ".log", ".ndjson")
FIXED_PD_EDGES: Final = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
PSI_FLOOR: Final = 1e-4
EXPERIMENT_NAME: Final = "loan-default-compare"
COMPARE_JSON: Final = "compare.json"
COMPARE_HTML: Final = "compare.html"


class InputError(ValueError):
    """Bad input: the message names the file and the problem."""


@dataclass(frozen=True)
class Side:
    """One model's decisions on the compared loans."""

    name: str
    probability: npt.NDArray[np.float64]
    prediction: npt.NDArray[np.int64]
    grade: npt.NDArray[np.int64] | None


def read_table(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except Exception as exc:
        raise InputError(
            f"{path}: not a readable {suffix[1:]} file ({type(exc).__name__})"
        ) from exc
    raise InputError(f"{path}: expected .csv or .parquet (or a .jsonl file of logged pairs)")


def side_of_table(path: Path, frame: Any) -> Side:
    for column in ("probability", "prediction"):
        if column not in frame.columns:
            raise InputError(f"{path}: no '{column}' column (is it a scored file?)")
    probability = frame["probability"].to_numpy(np.float64)
    if not np.all((probability >= 0.0) & (probability <= 1.0)):
        row = int(np.flatnonzero(~((probability >= 0.0) & (probability <= 1.0)))[0]) + 1
        raise InputError(f"{path}: probability outside 0..1 (data row {row})")
    grade = None
    if "grade" in frame.columns and frame["grade"].notna().all():
        grade = frame["grade"].to_numpy(np.int64)
    return Side(path.name, probability, frame["prediction"].to_numpy(np.int64), grade)


def read_pairs(path: Path) -> tuple[Side, Side]:
    """Champion and challenger from logged shadow pairs (one loan per answer)."""
    sides: dict[str, dict[str, list[Any]]] = {
        name: {"probability": [], "prediction": [], "grade": [], "version": []}
        for name in ("champion", "challenger")
    }
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    for number, line in enumerate(lines, start=1):
        text = line[line.find("{") :] if "{" in line else ""
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue  # other log lines
        pair = record.get("pair", record) if isinstance(record, dict) else None
        if not isinstance(pair, dict) or pair.get("event") != "shadow":
            continue
        try:
            answers = {name: pair[name]["answers"] for name in sides}
            if len(answers["champion"]) != len(answers["challenger"]):
                raise InputError(f"{path}: line {number}: the two sides answer different loans")
            for name, items in answers.items():
                for item in items:
                    sides[name]["probability"].append(float(item["probability"]))
                    sides[name]["prediction"].append(int(item["prediction"]))
                    sides[name]["grade"].append(item.get("grade"))
                sides[name]["version"].append(pair[name]["model_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: line {number}: not a complete shadow pair ({exc})") from None
    if not sides["champion"]["probability"]:
        raise InputError(f"{path}: no logged shadow pairs found")

    def build(name: str) -> Side:
        data = sides[name]
        grades = data["grade"]
        versions = sorted(set(data["version"]))
        return Side(
            f"{name} {', '.join(versions)}",
            np.asarray(data["probability"], np.float64),
            np.asarray(data["prediction"], np.int64),
            None if any(g is None for g in grades) else np.asarray(grades, np.int64),
        )

    return build("champion"), build("challenger")


def psi(expected: npt.NDArray[np.float64], actual: npt.NDArray[np.float64]) -> float:
    """Population stability index of ``actual`` against ``expected`` (bins from ``expected``)."""
    quantiles = np.unique(np.quantile(expected, np.linspace(0.0, 1.0, 11)))
    edges = quantiles if quantiles.size >= 6 else np.asarray(FIXED_PD_EDGES)
    edges = edges.copy()
    edges[0], edges[-1] = -np.inf, np.inf
    expected_share = np.histogram(expected, bins=edges)[0] / expected.size
    actual_share = np.histogram(actual, bins=edges)[0] / actual.size
    expected_share = np.maximum(expected_share, PSI_FLOOR)
    actual_share = np.maximum(actual_share, PSI_FLOOR)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def compare(a: Side, b: Side, outcomes: npt.NDArray[np.int64] | None) -> dict[str, Any]:
    if a.probability.size != b.probability.size:
        raise InputError(
            f"{a.name} has {a.probability.size} loans, {b.name} {b.probability.size}: "
            "compare the same loans in the same order"
        )
    n = int(a.probability.size)
    if n == 0:
        raise InputError("no loans to compare")
    approved_a = a.prediction == 0
    approved_b = b.prediction == 0
    sets = {
        "swap_in": ~approved_a & approved_b,
        "swap_out": approved_a & ~approved_b,
        "both_approve": approved_a & approved_b,
        "both_decline": ~approved_a & ~approved_b,
    }
    report: dict[str, Any] = {
        "a": a.name,
        "b": b.name,
        "loans": n,
        "agreement_rate": float(np.mean(a.prediction == b.prediction)),
        "approval_rate": {"a": float(np.mean(approved_a)), "b": float(np.mean(approved_b))},
        "mean_pd": {"a": float(np.mean(a.probability)), "b": float(np.mean(b.probability))},
        "swap_in": int(sets["swap_in"].sum()),
        "swap_out": int(sets["swap_out"].sum()),
        "score_psi": psi(a.probability, b.probability),
        "mean_abs_pd_change": float(np.mean(np.abs(a.probability - b.probability))),
    }
    if a.grade is not None and b.grade is not None:
        grades = sorted(set(a.grade.tolist()) | set(b.grade.tolist()))
        index = {grade: i for i, grade in enumerate(grades)}
        matrix = np.zeros((len(grades), len(grades)), dtype=np.int64)
        np.add.at(matrix, ([index[g] for g in a.grade], [index[g] for g in b.grade]), 1)
        report["grade_migration"] = {
            "grades": grades,
            "rows_are": "a",
            "columns_are": "b",
            "counts": matrix.tolist(),
            "unchanged_rate": float(np.trace(matrix) / n),
        }
    if outcomes is not None:
        if outcomes.size != n:
            raise InputError(f"outcomes has {outcomes.size} rows for {n} compared loans")
        report["outcomes"] = {
            name: {
                "loans": int(mask.sum()),
                "defaults": int(outcomes[mask].sum()),
                "observed_default_rate": float(outcomes[mask].mean()) if mask.any() else None,
            }
            for name, mask in sets.items()
        }
    return report


def read_outcomes(path: Path) -> npt.NDArray[np.int64]:
    frame = read_table(path)
    if "default" not in frame.columns:
        raise InputError(f"{path}: no 'default' column")
    values = frame["default"].to_numpy()
    if not np.isin(values, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(values, (0, 1)))[0]) + 1
        raise InputError(f"{path}: 'default' must be 0 or 1 (data row {row})")
    return values.astype(np.int64)


def render_html(report: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape(str(value))

    rows = [
        ("loans", report["loans"]),
        ("agreement rate", report["agreement_rate"]),
        (
            "approval rate A / B",
            f"{report['approval_rate']['a']:.4f} / {report['approval_rate']['b']:.4f}",
        ),
        ("mean PD A / B", f"{report['mean_pd']['a']:.4f} / {report['mean_pd']['b']:.4f}"),
        ("swap-ins (A declines, B approves)", report["swap_in"]),
        ("swap-outs (A approves, B declines)", report["swap_out"]),
        ("score PSI", report["score_psi"]),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Champion vs challenger</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}</style></head><body>",
        f"<h1>{cell(report['a'])} vs {cell(report['b'])}</h1><table>",
        *(f"<tr><th>{cell(k)}</th><td>{cell(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    if "outcomes" in report:
        parts.append("<h2>Observed default rate by swap set</h2><table>")
        parts.append("<tr><th>set</th><th>loans</th><th>defaults</th><th>rate</th></tr>")
        for name, entry in report["outcomes"].items():
            rate = entry["observed_default_rate"]
            parts.append(
                f"<tr><th>{cell(name)}</th><td>{entry['loans']}</td><td>{entry['defaults']}</td>"
                f"<td>{'-' if rate is None else cell(rate)}</td></tr>"
            )
        parts.append("</table>")
    if "grade_migration" in report:
        migration = report["grade_migration"]
        header = "".join(f"<th>B {g}</th>" for g in migration["grades"])
        parts.append(
            f"<h2>Grade migration (rows A, columns B)</h2><table><tr><th></th>{header}</tr>"
        )
        for grade, counts in zip(migration["grades"], migration["counts"], strict=True):
            cells = "".join(f"<td>{c}</td>" for c in counts)
            parts.append(f"<tr><th>A {grade}</th>{cells}</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def log_run(report: dict[str, Any], out: Path) -> str:
    """One MLflow run with the figures and both files; returns its id."""
    from training.tracking import MLFLOW_CLIENT_DEFAULTS, local_artifact_root, resolve_tracking_uri

    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import mlflow

    uri = resolve_tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT_NAME) is None:
        mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=local_artifact_root(uri))
    mlflow.set_experiment(EXPERIMENT_NAME)
    with mlflow.start_run(run_name="compare") as run:
        mlflow.log_params({"a": report["a"][:250], "b": report["b"][:250]})
        metrics = {
            key: float(report[key])
            for key in ("loans", "agreement_rate", "swap_in", "swap_out", "score_psi")
        }
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out / COMPARE_JSON))
        mlflow.log_artifact(str(out / COMPARE_HTML))
        return str(run.info.run_id)


def parser(prog: str | None) -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog=prog,
        description="Champion (A) vs challenger (B): agreement, swap sets, PSI, grade migration.",
    )
    cli.add_argument("a", type=Path, help="scored file of A (CSV/Parquet), or logged shadow pairs")
    cli.add_argument("b", type=Path, nargs="?", help="scored file of B (omit for logged pairs)")
    cli.add_argument("--out", type=Path, required=True, help="folder for compare.json and .html")
    cli.add_argument("--outcomes", type=Path, help="CSV/Parquet with a 'default' column per loan")
    cli.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    return cli


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(list(argv) if argv is not None else None)
    name = prog or "compare"
    try:
        if args.b is None:
            if args.a.suffix.lower() not in PAIR_SUFFIXES:
                raise InputError(f"{args.a}: give two scored files, or one .jsonl of logged pairs")
            a, b = read_pairs(args.a)
        else:
            a = side_of_table(args.a, read_table(args.a))
            b = side_of_table(args.b, read_table(args.b))
        outcomes = read_outcomes(args.outcomes) if args.outcomes else None
        report = compare(a, b, outcomes)
    except InputError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.mkdir(parents=True, exist_ok=True)
    report["mlflow_run_id"] = None
    (args.out / COMPARE_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / COMPARE_HTML).write_text(render_html(report), encoding="utf-8")
    if not args.no_mlflow:
        report["mlflow_run_id"] = log_run(report, args.out)
        (args.out / COMPARE_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"{report['loans']} loans: agreement {report['agreement_rate']:.4f}, "
        f"{report['swap_in']} swap-ins, {report['swap_out']} swap-outs, "
        f"PSI {report['score_psi']:.4f} -> {args.out / COMPARE_HTML}"
    )
    return EXIT_OK
