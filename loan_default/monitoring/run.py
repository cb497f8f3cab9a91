"""One monitoring window, start to finish: verify, stream, back-test, write, track."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loan_default.monitoring.report import MONITOR_JSON, REPORT_HTML, write_report
from loan_default.monitoring.window import (
    MODEL_VERSION_COLUMN,
    MonitorInputError,
    WindowCounts,
    file_columns,
    open_batches,
)
from loan_service.artifacts import MANIFEST_FILE, ArtifactBundle, ArtifactError, load_artifacts
from loan_service.stability import MasterScale, Reference

if TYPE_CHECKING:
    from loan_default.monitoring.outcome_join import OutcomeJoin

EXPERIMENT_NAME = "loan-default-monitoring"


@dataclass(frozen=True)
class MonitorRequest:
    artifacts: Path
    scored: Path | None  # a scored file, or None: the logged predictions from start to end
    outcomes: Path | None
    id_column: str
    target_column: str
    out: Path
    track: bool = True
    start: datetime | None = None
    end: datetime | None = None


def load_bundle(directory: Path) -> tuple[ArtifactBundle, Reference, MasterScale]:
    """The verified artifact folder, with its master scale and reference (exit 2 otherwise)."""
    try:
        raw = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        features = tuple(raw["features"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MonitorInputError(
            f"artifact folder {directory}: no readable {MANIFEST_FILE}"
        ) from exc
    try:
        bundle = load_artifacts(directory, features)
    except ArtifactError as exc:
        raise MonitorInputError(f"artifact folder {directory}: {exc}") from exc
    if bundle.master_scale is None or bundle.reference is None:
        raise MonitorInputError(
            f"artifact folder {directory} has no master scale or reference distribution "
            "(trained before monitoring existed): retrain the model"
        )
    return bundle, bundle.reference, bundle.master_scale


def run_monitor(request: MonitorRequest) -> dict[str, Any]:
    """Compute the window's report, write it into ``request.out`` and log it to MLflow."""
    bundle, reference, master_scale = load_bundle(request.artifacts)
    outcomes = None
    if request.outcomes:
        from loan_default.monitoring.outcome_join import OutcomeJoin

        outcomes = OutcomeJoin(request.outcomes, request.id_column, request.target_column)
    try:
        return _run_window(request, bundle, reference, master_scale, outcomes)
    finally:
        if outcomes is not None:
            outcomes.cleanup()


def _run_window(
    request: MonitorRequest,
    bundle: ArtifactBundle,
    reference: Reference,
    master_scale: MasterScale,
    outcomes: OutcomeJoin | None,
) -> dict[str, Any]:
    manifest = bundle.manifest
    counts = WindowCounts(reference, master_scale, outcomes)
    if request.scored is not None:
        columns = counts.columns(file_columns(request.scored))  # + optional ones it carries
        batches = open_batches(request.scored, columns)
        source = str(request.scored)
    else:
        from loan_default.monitoring.traces import trace_batches

        assert request.start is not None
        assert request.end is not None
        kinds = {name: ref.kind for name, ref in reference.features.items()}
        batches = trace_batches(request.start, request.end, kinds)
        source = "logged predictions (MLflow traces)"
    for batch in batches:
        counts.add(batch)
    if counts.loans == 0:
        raise MonitorInputError(f"the window is empty: {source} holds no scored loans")
    foreign = sorted(counts.model_versions - {manifest.model_version})
    if foreign:
        raise MonitorInputError(
            f"{source} was scored by model {', '.join(foreign)}, "
            f"not by {manifest.model_version} in {request.artifacts} "
            f"(its {MODEL_VERSION_COLUMN} column)"
        )
    result: dict[str, Any] = {
        "model_version": manifest.model_version,
        "window": {
            "loans": counts.loans,
            "from": _iso(request.start),
            "to": _iso(request.end),
            "source": source,
        },
        **counts.summary(),
    }
    if outcomes is not None:
        backtest = outcomes.backtest(master_scale.grades)
        if backtest is None:
            raise MonitorInputError(
                f"outcomes file {request.outcomes} matches no scored loan "
                f"(joined on {request.id_column})"
            )
        result["backtest"] = backtest
    from training.export import staging_folder

    with staging_folder(request.out) as staging:
        write_report(result, staging)
    if request.track:
        result_tracking = log_window(result, request.out)
        if result_tracking:
            print(f"warning: MLflow run not logged: {result_tracking}", file=sys.stderr)
    return result


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def window_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The figures of monitor.json as flat MLflow metrics."""
    metrics: dict[str, float] = {
        "loans": float(result["window"]["loans"]),
        "score_psi": result["score_psi"],
        "grade_psi": result["grade_psi"],
    }
    for name, entry in result["features"].items():
        metrics[f"csi.{name}"] = entry["csi"]
        metrics[f"missing_share.{name}"] = entry["missing_share"]
        metrics[f"out_of_range_share.{name}"] = entry["out_of_range_share"]
    for grade in result["grades"]:
        metrics[f"grade_share.{grade['grade']}"] = grade["share"]
    backtest_block = result.get("backtest")
    if backtest_block:
        for key in ("roc_auc", "gini", "ks", "brier"):
            if backtest_block[key] is not None:
                metrics[f"backtest.{key}"] = backtest_block[key]
        metrics["backtest.hosmer_lemeshow"] = backtest_block["hosmer_lemeshow"]["statistic"]
        metrics["backtest.hosmer_lemeshow_p"] = backtest_block["hosmer_lemeshow"]["p_value"]
        for grade in backtest_block["grades"]:
            metrics[f"backtest.jeffreys_p.{grade['grade']}"] = grade["jeffreys_p"]
            metrics[f"backtest.observed_rate.{grade['grade']}"] = grade["observed_rate"]
    return metrics


def log_window(result: dict[str, Any], folder: Path) -> str | None:
    """One MLflow run for the window; returns why it failed (never raises, never blocks long)."""
    from training.tracking import DEFAULT_TRACKING_URI, MLFLOW_CLIENT_DEFAULTS

    for key, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    try:
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(EXPERIMENT_NAME)
        window = result["window"]
        name = f"{result['model_version']} {window['from'] or ''}..{window['to'] or ''}"
        with mlflow.start_run(run_name=name) as run:
            mlflow.set_tags(
                {
                    "model_version": result["model_version"],
                    "verdict": result["verdict"],
                    "window_source": str(window["source"]),
                    "window_from": str(window["from"]),
                    "window_to": str(window["to"]),
                }
            )
            mlflow.log_metrics(window_metrics(result))
            mlflow.log_artifact(str(folder / MONITOR_JSON))
            mlflow.log_artifact(str(folder / REPORT_HTML))
            result["mlflow_run_id"] = run.info.run_id
    except Exception as exc:  # tracking never fails a report; the message may embed the URI
        return type(exc).__name__
    (folder / MONITOR_JSON).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return None
