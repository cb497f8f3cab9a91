"""The training run, stage by stage: data -> split -> stats -> cross-fit -> choice -> artifacts.

Order matters and is the point of this module: the stratified split happens before anything is
fitted, and every fitted thing (normalization statistics, fold models, cross-validation scores,
calibration, the final models) sees the training rows only. The test rows are touched once per
candidate, to measure it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from loan_service.book import BookSchema
from loan_service.sklearn_model import design_matrix, design_names, with_one_hot
from training.book_file import DEFAULT_SCHEMA, load_schema
from training.calibration import base_estimator, calibrate_on_out_of_fold, calibration_summary
from training.candidates import CANDIDATES, Candidate, json_safe_params
from training.cross_fit import FOLDS, TRAINING_THREADS, CrossFit, FitDone, cross_fit, fold_splitter
from training.data import LoanBook, load_loan_book
from training.evaluate import (
    Contender,
    Selection,
    cross_validation_scores,
    held_out_metrics,
    select_model,
)
from training.export import (
    MANIFEST_FILE,
    MODEL_FILE,
    ONNX_FILE,
    REFERENCE_FILE,
    REPORT_DIR,
    STATS_FILE,
    file_hashes,
    staging_folder,
    write_json,
)
from training.golden import GOLDEN_FILE, expected_behaviour, write_golden_loans
from training.manifest import SCHEMA_VERSION, library_versions, new_model_version, utc_now
from training.master_scale import derive_master_scale
from training.normalization import FeatureStats, compute_stats, normalize, stats_to_json
from training.onnx_export import convert_to_onnx, onnx_probabilities, verify_parity
from training.progress import Progress
from training.redaction import redact
from training.reference import build_reference, category_reference, numeric_reference
from training.registry import column_types, model_artifacts, scoring_requirements, typed_frame
from training.report import CANDIDATE_PLOTS, INDEX_FILE, ReportInput, write_plots, write_report
from training.results import CandidateResult
from training.schema import DECISION_THRESHOLD
from training.split import TEST_FRACTION, Split, stratified_split
from training.tracking import CandidateRun, RegisteredModelPayload, RunPayload, TrainingTracker

DEFAULT_SEED = 42


@dataclass(frozen=True)
class TrainingConfig:
    """What ``python -m training`` was asked to do."""

    data: Path
    out: Path
    schema: Path = DEFAULT_SCHEMA
    seed: int = DEFAULT_SEED
    track: bool = True
    candidates: tuple[Candidate, ...] = CANDIDATES


@dataclass(frozen=True)
class TrainingOutcome:
    """Where the artifacts went and what the manifest says."""

    out: Path
    manifest: dict[str, Any]
    report_index: Path


@dataclass(frozen=True)
class PreparedData:
    """The loan book split and normalized with training-split statistics.

    ``*_input`` is the model input (numbers normalized, categories as indices), what the
    exported model takes; ``*_features`` the design matrix the candidates are fitted on (the
    same rows with each category one-hot encoded; identical to the input without categories).
    """

    book: LoanBook
    split: Split
    stats: FeatureStats
    train_features: npt.NDArray[np.float64]
    test_features: npt.NDArray[np.float64]
    train_input: npt.NDArray[np.float64]
    test_input: npt.NDArray[np.float64]
    encoder: Any = None

    @property
    def schema(self) -> BookSchema:
        """The book's schema, completed with the category values found in the data."""
        return self.book.schema

    @property
    def train_target(self) -> npt.NDArray[np.int64]:
        """Targets of the training rows."""
        return self.book.target[self.split.train]

    @property
    def test_target(self) -> npt.NDArray[np.int64]:
        """Targets of the held-out rows."""
        return self.book.target[self.split.test]


def prepare_data(book: LoanBook, seed: int) -> PreparedData:
    """Split first, then compute statistics on the training rows and normalize both parts."""
    split = stratified_split(book.target, seed)
    stats = compute_stats(book.features[split.train], book.schema)
    train_input = normalize(book.features[split.train], stats, book.schema)
    test_input = normalize(book.features[split.test], stats, book.schema)
    encoder, train_features = design_matrix(book.schema, train_input)
    test_features = (
        test_input if encoder is None else np.asarray(encoder.transform(test_input), np.float64)
    )
    return PreparedData(
        book=book,
        split=split,
        stats=stats,
        train_features=train_features,
        test_features=test_features,
        train_input=train_input,
        test_input=test_input,
        encoder=encoder,
    )


def fit_candidates(
    candidates: Sequence[Candidate], data: PreparedData, seed: int, progress: Progress
) -> list[CandidateResult]:
    """Cross-fit every candidate on the training rows, then calibrate and measure each one."""
    fits = len(candidates) * (FOLDS + 1)
    with progress.stage(
        f"cross-fit {len(candidates)} candidate(s) on the training rows: {FOLDS} fold models "
        f"+ 1 final model each ({fits} fits, {TRAINING_THREADS} at a time)"
    ):
        fitted = cross_fit(
            candidates,
            data.train_features,
            data.train_target,
            seed,
            on_fit=lambda done: progress.say(_describe_fit(done)),
        )
    results = []
    for crossfit in fitted:
        name = crossfit.candidate.name
        with progress.stage(
            f"{name}: CV scores and calibration from the out-of-fold predictions, held-out metrics"
        ):
            result = evaluate_candidate(crossfit, data, seed)
        results.append(result)
        metrics = result.metrics
        progress.say(
            f"  {name}: F1 {metrics['f1']:.4f}  ROC AUC {metrics['roc_auc']:.4f}  "
            f"Brier {metrics['brier']:.4f} (uncalibrated {metrics['uncalibrated']['brier']:.4f})"
        )
    return results


def evaluate_candidate(crossfit: CrossFit, data: PreparedData, seed: int) -> CandidateResult:
    """CV scores and the calibrator from the out-of-fold predictions; metrics on the test rows."""
    cv = cross_validation_scores(crossfit.out_of_fold, data.train_target)
    calibrated = calibrate_on_out_of_fold(
        crossfit.final_model,
        crossfit.out_of_fold.response,
        data.train_target,
        unfitted=crossfit.candidate.build(seed),
        splitter=fold_splitter(seed),
    )
    base = base_estimator(calibrated)
    probability = calibrated.predict_proba(data.test_features)[:, 1]
    raw_probability = base.predict_proba(data.test_features)[:, 1]
    metrics = held_out_metrics(data.test_target, probability)
    raw = held_out_metrics(data.test_target, raw_probability)
    metrics["cv"] = cv
    metrics["uncalibrated"] = {key: raw[key] for key in ("f1", "roc_auc", "brier", "log_loss")}
    return CandidateResult(
        candidate=crossfit.candidate,
        calibrated_model=calibrated,
        base_model=base,
        test_probability=np.asarray(probability, dtype=np.float64),
        test_probability_uncalibrated=np.asarray(raw_probability, dtype=np.float64),
        metrics=metrics,
        fit_seconds=crossfit.fit_seconds,
    )


def _describe_fit(done: FitDone) -> str:
    epochs = f", {done.epochs} epochs" if done.epochs is not None else ""
    held_out = f", predicted {done.predicted_rows:,} held-out" if done.predicted_rows else ""
    return (
        f"  {done.task.describe()}: fitted on {done.fit_rows:,} rows{epochs}{held_out} "
        f"({done.seconds:.1f}s)"
    )


def choose(results: list[CandidateResult]) -> Selection:
    """Apply the selection rule to the fitted candidates."""
    return select_model(
        [Contender(r.name, r.candidate.complexity, float(r.metrics["f1"])) for r in results]
    )


def run_training(config: TrainingConfig, progress: Progress) -> TrainingOutcome:
    """Train, choose, export and track; the artifact folder appears only when all succeeded."""
    with progress.stage(f"load and validate {config.data} against {config.schema.name}"):
        book = load_loan_book(config.data, load_schema(config.schema))
    with progress.stage(
        f"stratified split ({1 - TEST_FRACTION:.0%} train / {TEST_FRACTION:.0%} test) "
        "and normalization statistics from the training rows"
    ):
        data = prepare_data(book, config.seed)

    results = fit_candidates(config.candidates, data, config.seed, progress)
    selection = choose(results)
    chosen = next(result for result in results if result.name == selection.name)
    progress.say(f"chosen: {selection.name} - {selection.reason}")

    created = utc_now()
    model_version = new_model_version(created)
    manifest = _manifest(
        config=config,
        data=data,
        results=results,
        chosen=chosen,
        selection=selection,
        model_version=model_version,
        created=created,
    )

    with staging_folder(config.out) as staging:
        with progress.stage("export best_model.pkl, model.onnx (parity-checked), stats.json"):
            onnx_bytes = _export_models(chosen, data, staging, model_version)
        with progress.stage("master scale (rating grades) and reference distributions"):
            manifest["grades"] = _write_reference(data, onnx_bytes, staging, model_version)
        manifest["files"] = file_hashes(staging)
        with progress.stage("golden loans (every band, answered by the serving code)"):
            write_json(staging / MANIFEST_FILE, manifest)
            golden = write_golden_loans(
                staging,
                data.schema,
                data.book.features[data.split.test],
                model_version,
            )
            manifest["files"][GOLDEN_FILE] = golden.pop("sha256")
            manifest["golden_loans"] = golden
        report = ReportInput(
            results=results,
            chosen=selection.name,
            reason=selection.reason,
            test_target=data.test_target,
            stats=data.stats,
            data=manifest["data"],
            calibration=manifest["model"]["calibration"],
            model_version=model_version,
            created_at=manifest["created_at"],
            seed=config.seed,
            design_names=design_names(data.schema),
        )
        with progress.stage("training report (plots + index.html)"):
            write_report(report, staging / REPORT_DIR)
        with (
            progress.stage("MLflow tracking"),
            TrainingTracker(enabled=config.track, quiet=progress.quiet) as tracker,
            tempfile.TemporaryDirectory(prefix="candidate-plots-") as plots,
        ):
            # The model logged to MLflow carries the manifest: written first, with the run id.
            manifest["mlflow_run_id"] = tracker.run_id
            manifest["mlflow"] = tracker.summary()
            write_json(staging / MANIFEST_FILE, manifest)
            if tracker.active:
                payload = _run_payload(
                    config=config,
                    data=data,
                    results=results,
                    chosen=chosen,
                    manifest=manifest,
                    folder=staging,
                    report=report,
                    plots=Path(plots),
                )
                tracker.log_run(payload)
            manifest["mlflow"] = tracker.summary()
            write_json(staging / MANIFEST_FILE, manifest)
            tracker.log_manifest(manifest)
            if tracker.summary() != manifest["mlflow"]:  # logging the manifest itself failed
                manifest["mlflow"] = tracker.summary()
                write_json(staging / MANIFEST_FILE, manifest)
        if tracker.status == "tracked":
            progress.say(f"  MLflow run {tracker.run_id} at {redact(tracker.tracking_uri or '')}")
    return TrainingOutcome(
        out=config.out, manifest=manifest, report_index=config.out / REPORT_DIR / INDEX_FILE
    )


def _export_models(
    chosen: CandidateResult, data: PreparedData, folder: Path, model_version: str
) -> bytes:
    import joblib

    model = exported_model(chosen, data)
    joblib.dump(model, folder / MODEL_FILE)
    (folder / STATS_FILE).write_text(stats_to_json(data.stats), encoding="utf-8")
    onnx_bytes = convert_to_onnx(
        model,
        metadata={"model_version": model_version, "features": ",".join(data.schema.feature_names)},
        book=data.schema,
    ).SerializeToString()
    all_rows = normalize(data.book.features, data.stats, data.schema)
    verify_parity(model, onnx_bytes, all_rows)
    (folder / ONNX_FILE).write_bytes(onnx_bytes)
    return onnx_bytes


def _write_reference(
    data: PreparedData, onnx_bytes: bytes, folder: Path, model_version: str
) -> dict[str, Any]:
    """The master scale (returned for the manifest) and reference.json, both from the training
    split's PDs as serving computes them (the ONNX graph)."""
    probability = onnx_probabilities(onnx_bytes, data.train_input).astype(np.float64)
    grades = derive_master_scale(probability, data.train_target)
    train_rows = data.book.features[data.split.train]
    reference = build_reference(
        model_version=model_version,
        probability=probability,
        grade_shares=[grade["train_share"] for grade in grades["scale"]],
        features={
            feature.name: category_reference(
                [feature.values[int(code)] for code in train_rows[:, index]], feature.values
            )
            if feature.is_category and feature.values
            else numeric_reference(train_rows[:, index])
            for index, feature in enumerate(data.schema.features)
        },
    )
    write_json(folder / REFERENCE_FILE, reference)
    return grades


def exported_model(chosen: CandidateResult, data: PreparedData) -> Any:
    """What ``best_model.pkl`` holds: the calibrated model taking the model input (behind the
    one-hot step for a book with categories)."""
    return with_one_hot(data.encoder, chosen.calibrated_model)


def _manifest(
    *,
    config: TrainingConfig,
    data: PreparedData,
    results: list[CandidateResult],
    chosen: CandidateResult,
    selection: Selection,
    model_version: str,
    created: Any,
) -> dict[str, Any]:
    book = data.book
    return {
        "schema_version": SCHEMA_VERSION,
        "model_version": model_version,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "features": list(data.schema.feature_names),
        "target": data.schema.target.column,
        "schema": data.schema.to_manifest(),
        "threshold": DECISION_THRESHOLD,
        "model": {
            "name": chosen.name,
            "summary": chosen.candidate.summary,
            "params": json_safe_params(chosen.base_model),
            "calibration": calibration_summary(
                chosen.metrics["uncalibrated"]["brier"], chosen.metrics["brier"]
            ),
            "selection_reason": selection.reason,
            "selection_rule": "highest held-out F1 at the threshold; on a tie the simpler model",
        },
        "metrics": {result.name: result.metrics for result in results},
        "expected": expected_behaviour(chosen.test_probability, DECISION_THRESHOLD),
        "data": {
            "source": book.path.name,
            "rows": book.rows,
            "train_rows": int(data.split.train.size),
            "test_rows": int(data.split.test.size),
            "test_fraction": TEST_FRACTION,
            "split": "stratified on the target, before any fitting",
            "sha256": book.sha256,
            "default_rate": book.default_rate,
            "train_default_rate": float(data.train_target.mean()),
            "test_default_rate": float(data.test_target.mean()),
        },
        "files": {},
        "versions": library_versions(),
        "mlflow_run_id": None,
        "mlflow": {
            "status": "disabled",
            "tracking_uri": None,
            "detail": None,
            "registered_model": None,
        },
        "seed": config.seed,
    }


def _run_payload(
    *,
    config: TrainingConfig,
    data: PreparedData,
    results: list[CandidateResult],
    chosen: CandidateResult,
    manifest: dict[str, Any],
    folder: Path,
    report: ReportInput,
    plots: Path,
) -> RunPayload:
    params: dict[str, Any] = {
        "seed": config.seed,
        "chosen_model": chosen.name,
        "threshold": DECISION_THRESHOLD,
        "test_fraction": TEST_FRACTION,
        "calibration_method": manifest["model"]["calibration"]["method"],
        "data_rows": data.book.rows,
        "data_sha256": data.book.sha256,
    }
    metrics: dict[str, float] = {}
    candidates = []
    for result in results:
        own_metrics = _candidate_metrics(result)
        own_params = json_safe_params(result.base_model)
        for key, value in own_params.items():
            params[f"{result.name}.{key}"] = value
        metrics.update({f"{result.name}.{key}": value for key, value in own_metrics.items()})
        candidates.append(
            CandidateRun(
                name=result.name,
                chosen=result.name == chosen.name,
                params={**own_params, "candidate": result.name, "seed": config.seed},
                metrics=own_metrics,
                plots=write_plots(
                    replace(report, results=[result], chosen=result.name),
                    plots / result.name,
                    CANDIDATE_PLOTS,
                ),
            )
        )
    for key, value in chosen.metrics.items():
        if isinstance(value, float):
            metrics[f"chosen.{key}"] = value
    types = column_types(data.schema)
    held_out = typed_frame(data.book.features[data.split.test], types, data.schema)
    held_out[data.schema.target.column] = data.test_target
    tags = {
        "model_version": manifest["model_version"],
        "chosen_model": chosen.name,
        "selection_reason": manifest["model"]["selection_reason"],
        "data_sha256": data.book.sha256,
        "data_source": data.book.path.name,
    }
    return RunPayload(
        params=params,
        metrics=metrics,
        tags=tags,
        artifact_files=[
            (folder / STATS_FILE, None),
            (folder / ONNX_FILE, "onnx"),
        ],
        artifact_dirs=[(folder / REPORT_DIR, "report")],
        candidates=candidates,
        model=RegisteredModelPayload(
            artifacts=model_artifacts(folder, manifest),
            column_types=types,
            input_example=typed_frame(data.book.features[data.split.train[:5]], types, data.schema),
            held_out=held_out,
            pip_requirements=scoring_requirements(manifest["versions"]),
            tags={key: tags[key] for key in ("model_version", "chosen_model", "data_sha256")},
        ),
    )


def _candidate_metrics(result: CandidateResult) -> dict[str, float]:
    """A candidate's held-out, cross-validation and uncalibrated figures, flat for MLflow."""
    metrics = {key: value for key, value in result.metrics.items() if isinstance(value, float)}
    for key, value in result.metrics["cv"].items():
        metrics[f"cv_{key}"] = float(value)
    for key, value in result.metrics["uncalibrated"].items():
        metrics[f"uncalibrated_{key}"] = float(value)
    return metrics
