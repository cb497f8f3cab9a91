"""``loan-default compare A B --out DIR``: what changes for applicants if B replaces A.

Inputs, either

* two scored files (``loan-default score`` output, CSV or Parquet): the same loans in the same
  order, each with ``probability`` and ``prediction`` (and ``grade`` where grades exist); or
* one file of logged shadow pairs (``.jsonl``/``.log``: the service's ``shadow`` log lines, as
  exported, or the bare pair records), where A is the champion and B the challenger of each
  request.

Figures: agreement rate of the decisions; swap-ins (declined by A, approved by B) and swap-outs
(approved by A, declined by B); PSI between the two score distributions (bins from A's deciles,
widened to fixed PD bins where A's scores are too concentrated for deciles); the grade migration
matrix; and with ``--outcomes CSV`` (a ``default`` column of 0/1) the observed default rate of
each swap set. Outcomes join

* two scored files on the outcome file's other columns that both scored files carry (an id such
  as ``customer_id``, which ``loan-default score`` keeps), else by row order (one outcome row per
  loan, in the files' order);
* logged pairs by the request id: a request carries only the book's features (unknown fields are
  refused), so the one key a pair shares with the lender's records is the id the service answered
  with (``request_id`` in the body, ``X-Request-ID`` header), which the caller stores with the
  application - or sets itself, as ``X-Request-ID``, to its own loan id where no gateway assigns
  one. The outcomes file has ``request_id`` and ``default``, plus ``loan`` (the loan's 1-based
  position in its request) for batch requests. Outcomes of requests that were not shadowed are
  normal (a sample rate below 1) and counted; pairs without an outcome are left out of the rates.

Writes ``compare.json`` and ``compare.html`` and logs one MLflow run (``--no-mlflow`` to skip).
Exit 0 done, 2 bad input (one line naming the problem; nothing written).
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
OUTCOME_COLUMN: Final = "default"
REQUEST_ID_COLUMN: Final = "request_id"
POSITION_COLUMN: Final = "loan"
COMPARE_JSON: Final = "compare.json"
COMPARE_HTML: Final = "compare.html"


class InputError(ValueError):
    """Bad input: the message names the file and the problem."""


PairKey = tuple[str, int]
"""(request id, 1-based position of the loan in its request): what identifies a logged loan."""


@dataclass(frozen=True)
class Outcomes:
    """Observed defaults aligned with the compared loans (NaN: no outcome for that loan)."""

    default: npt.NDArray[np.float64]
    join: dict[str, Any]


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


def read_pairs(path: Path) -> tuple[Side, Side, list[PairKey]]:
    """Champion and challenger from logged shadow pairs (one loan per answer), and each loan's
    key: its request id and its position in the request."""
    sides: dict[str, dict[str, list[Any]]] = {
        name: {"probability": [], "prediction": [], "grade": [], "version": []}
        for name in ("champion", "challenger")
    }
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    keys: list[PairKey] = []
    decoder = json.JSONDecoder()
    for number, line in enumerate(lines, start=1):
        start = line.find("{")
        if start < 0:
            continue
        try:  # the first JSON object on the line (an export may put a timestamp before it)
            record, _ = decoder.raw_decode(line, start)
        except json.JSONDecodeError:
            continue  # other log lines
        pair = record.get("pair", record) if isinstance(record, dict) else None
        if not isinstance(pair, dict) or pair.get("event") != "shadow":
            continue
        try:
            answers = {name: pair[name]["answers"] for name in sides}
            if len(answers["champion"]) != len(answers["challenger"]):
                raise InputError(f"{path}: line {number}: the two sides answer different loans")
            request_id = str(pair["request_id"])
            keys.extend(
                (request_id, position) for position in range(1, len(answers["champion"]) + 1)
            )
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

    return build("champion"), build("challenger"), keys


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


def compare(a: Side, b: Side, outcomes: Outcomes | None) -> dict[str, Any]:
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
        observed = outcomes.default
        if observed.size != n:
            raise InputError(f"outcomes has {observed.size} rows for {n} compared loans")
        known = ~np.isnan(observed)
        report["outcomes_join"] = outcomes.join
        report["outcomes"] = {
            name: {
                "loans": int(mask.sum()),
                "with_outcome": int((mask & known).sum()),
                "defaults": int(observed[mask & known].sum()),
                "observed_default_rate": (
                    float(observed[mask & known].mean()) if (mask & known).any() else None
                ),
            }
            for name, mask in sets.items()
        }
    return report


def outcome_values(path: Path, frame: Any) -> npt.NDArray[np.int64]:
    """The ``default`` column as 0/1, or a refusal naming the first bad data row."""
    if OUTCOME_COLUMN not in frame.columns:
        found = ", ".join(str(column) for column in frame.columns) or "(none)"
        raise InputError(f"{path}: no '{OUTCOME_COLUMN}' column (columns found: {found})")
    if frame.empty:
        raise InputError(f"{path}: the file has a header but no outcomes")
    values = frame[OUTCOME_COLUMN].to_numpy()
    valid = np.isin(values, (0, 1))
    if not valid.all():
        row = int(np.flatnonzero(~valid)[0]) + 1
        raise InputError(f"{path}: '{OUTCOME_COLUMN}' must be 0 or 1 (data row {row})")
    return values.astype(np.int64)


def outcomes_for_files(path: Path, frame_a: Any, frame_b: Any) -> Outcomes:
    """Two scored files: joined on the outcome file's id columns that both scored files carry
    (e.g. ``customer_id``, kept from the input by ``loan-default score``), else one outcome per
    loan in the files' row order."""
    frame = read_table(path)
    values = outcome_values(path, frame)
    keys = [
        column
        for column in frame.columns
        if column != OUTCOME_COLUMN and column in frame_a.columns and column in frame_b.columns
    ]
    if not keys:
        join = {"on": "row order", "outcomes": int(values.size), "matched": int(values.size)}
        return Outcomes(values.astype(np.float64), join)
    loans_a = frame_a[keys].astype(str).reset_index(drop=True)
    if len(frame_b) != len(loans_a) or not loans_a.equals(
        frame_b[keys].astype(str).reset_index(drop=True)
    ):
        raise InputError(
            f"the two scored files differ in {', '.join(keys)}: compare the same loans in the "
            "same order"
        )
    given = frame[keys].astype(str).reset_index(drop=True)
    twice = given.duplicated(keep=False).to_numpy()
    if twice.any():
        rows = np.flatnonzero(twice)[:2] + 1
        raise InputError(
            f"{path}: the same {', '.join(keys)} has two outcomes (data rows "
            f"{' and '.join(str(row) for row in rows)})"
        )
    given[OUTCOME_COLUMN] = values.astype(np.float64)
    observed = loans_a.merge(given, how="left", on=keys)[OUTCOME_COLUMN].to_numpy(np.float64)
    matched = int((~np.isnan(observed)).sum())
    if matched == 0:
        raise InputError(
            f"{path}: none of its {values.size} outcomes matches a scored loan by {', '.join(keys)}"
        )
    used = int(given.merge(loans_a.drop_duplicates(), how="inner", on=keys).shape[0])
    join = {
        "on": ", ".join(keys),
        "outcomes": int(values.size),
        "matched": used,
        "loans_without_outcome": int(np.isnan(observed).sum()),
        "outcomes_without_loan": int(values.size) - used,
    }
    return Outcomes(observed, join)


def outcomes_by_request(path: Path, keys: Sequence[PairKey]) -> Outcomes:
    """Logged pairs: outcomes joined on ``request_id`` (and ``loan``, the position in a batch).

    Refused when a column is missing or malformed, a key appears twice, a request of several
    loans has no ``loan`` column, or no outcome matches any pair.
    """
    frame = read_table(path)
    values = outcome_values(path, frame)
    if REQUEST_ID_COLUMN not in frame.columns:
        raise InputError(
            f"{path}: no '{REQUEST_ID_COLUMN}' column: logged pairs carry no loan id, outcomes "
            f"join them on the request id the service answered with (and '{POSITION_COLUMN}' for "
            "a batch request)"
        )
    ids = frame[REQUEST_ID_COLUMN]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 1
        raise InputError(f"{path}: '{REQUEST_ID_COLUMN}' is empty (data row {row})")
    request_ids = [str(value) for value in ids]
    if POSITION_COLUMN in frame.columns:
        import pandas as pd

        numbers = pd.to_numeric(frame[POSITION_COLUMN], errors="coerce").to_numpy(np.float64)
        bad = ~(np.isfinite(numbers) & (numbers >= 1) & (numbers == np.floor(numbers)))
        if bad.any():
            raise InputError(
                f"{path}: '{POSITION_COLUMN}' must be the loan's position in its request, a whole "
                f"number from 1 (data row {int(np.flatnonzero(bad)[0]) + 1})"
            )
        positions = [int(value) for value in numbers]
    else:
        sizes: dict[str, int] = {}
        for request_id, position in keys:
            sizes[request_id] = max(sizes.get(request_id, 0), position)
        batch = next((rid for rid in request_ids if sizes.get(rid, 0) > 1), None)
        if batch is not None:
            raise InputError(
                f"{path}: request '{batch}' scored {sizes[batch]} loans: add a "
                f"'{POSITION_COLUMN}' column (the loan's 1-based position in its request)"
            )
        positions = [1] * len(request_ids)
    by_key: dict[PairKey, int] = {}
    first_row: dict[PairKey, int] = {}
    for row, (key, value) in enumerate(
        zip(zip(request_ids, positions, strict=True), values, strict=True), start=1
    ):
        if key in by_key:
            raise InputError(
                f"{path}: request '{key[0]}' loan {key[1]} has two outcomes "
                f"(data rows {first_row[key]} and {row})"
            )
        by_key[key], first_row[key] = int(value), row
    observed = np.array([by_key.get(key, np.nan) for key in keys], dtype=np.float64)
    matched_keys = {key for key in keys if key in by_key}
    if not matched_keys:
        raise InputError(
            f"{path}: none of its {len(by_key)} outcomes matches a logged pair (first outcome: "
            f"request '{request_ids[0]}', first pair: request '{keys[0][0]}'): join on the "
            "request id the service answered with"
        )
    join = {
        "on": f"{REQUEST_ID_COLUMN}, {POSITION_COLUMN}",
        "outcomes": len(by_key),
        "matched": len(matched_keys),
        "loans_without_outcome": int(np.isnan(observed).sum()),
        "outcomes_without_pair": len(by_key) - len(matched_keys),
    }
    return Outcomes(observed, join)


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
        join = report["outcomes_join"]
        parts.append("<h2>Observed default rate by swap set</h2>")
        parts.append(
            f"<p>Outcomes joined on {cell(join['on'])}: {join['matched']} of "
            f"{join['outcomes']} outcomes matched a compared loan.</p><table>"
        )
        parts.append(
            "<tr><th>set</th><th>loans</th><th>with outcome</th><th>defaults</th><th>rate</th></tr>"
        )
        for name, entry in report["outcomes"].items():
            rate = entry["observed_default_rate"]
            parts.append(
                f"<tr><th>{cell(name)}</th><td>{entry['loans']}</td>"
                f"<td>{entry['with_outcome']}</td><td>{entry['defaults']}</td>"
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
        for name, entry in report.get("outcomes", {}).items():
            metrics[f"{name}.with_outcome"] = float(entry["with_outcome"])
            if entry["observed_default_rate"] is not None:
                metrics[f"{name}.observed_default_rate"] = float(entry["observed_default_rate"])
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
    cli.add_argument(
        "--outcomes",
        type=Path,
        help="CSV/Parquet of observed defaults ('default' 0/1). Two scored files: keyed by id "
        "columns both files carry (e.g. customer_id), else one row per loan in their order. "
        "Logged pairs: keyed by 'request_id' (and 'loan', the 1-based position in a batch "
        "request)",
    )
    cli.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    return cli


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(list(argv) if argv is not None else None)
    name = prog or "compare"
    try:
        if args.b is None:
            if args.a.suffix.lower() not in PAIR_SUFFIXES:
                raise InputError(f"{args.a}: give two scored files, or one .jsonl of logged pairs")
            a, b, keys = read_pairs(args.a)
            outcomes = outcomes_by_request(args.outcomes, keys) if args.outcomes else None
        else:
            frame_a, frame_b = read_table(args.a), read_table(args.b)
            a, b = side_of_table(args.a, frame_a), side_of_table(args.b, frame_b)
            outcomes = (
                outcomes_for_files(args.outcomes, frame_a, frame_b) if args.outcomes else None
            )
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
