"""The training report: evaluation plots (PNG) and an index.html that compares the candidates.

Plots use matplotlib's non-interactive Agg backend (no display on a build box) and small figures,
so the whole report costs about a second of the training budget. The page is self-contained
(inline CSS, relative image links): open ``artifacts/report/index.html`` straight from disk.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.calibration import reliability_curve
from training.normalization import FeatureStats
from training.results import CandidateResult
from training.schema import DECISION_THRESHOLD

PLOT_FILES = {
    "roc": "roc.png",
    "pr": "pr.png",
    "calibration": "calibration.png",
    "confusion_matrix": "confusion_matrix.png",
    "feature_weights": "feature_weights.png",
    "score_distribution": "score_distribution.png",
}
INDEX_FILE = "index.html"
_DPI = 100
_COLOURS = ("#1f5fa8", "#d9641e", "#2e8b57", "#8e44ad")


@dataclass(frozen=True)
class ReportInput:
    """What the report presents."""

    results: Sequence[CandidateResult]
    chosen: str
    reason: str
    test_target: npt.NDArray[np.int64]
    stats: FeatureStats
    data: dict[str, Any]
    calibration: dict[str, Any]
    model_version: str
    created_at: str
    seed: int
    design_names: Sequence[str] = ()
    """One name per column the candidates were fitted on (their weights' order)."""


def write_report(report: ReportInput, folder: Path) -> list[Path]:
    """Write every plot and index.html into ``folder``; return the files written."""
    written = write_plots(report, folder, tuple(PLOT_FILES))
    index = folder / INDEX_FILE
    index.write_text(render_index(report), encoding="utf-8")
    written.append(index)
    return written


CANDIDATE_PLOTS = ("roc", "pr", "calibration", "confusion_matrix", "feature_weights")
"""The plots that describe one candidate on its own (its nested MLflow run gets these)."""


def write_plots(report: ReportInput, folder: Path, keys: Sequence[str]) -> list[Path]:
    """Write the plots named by ``keys`` (keys of ``PLOT_FILES``) into ``folder``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    folder.mkdir(parents=True, exist_ok=True)
    plotters = {
        "roc": _plot_roc,
        "pr": _plot_precision_recall,
        "calibration": _plot_calibration,
        "confusion_matrix": _plot_confusion_matrices,
        "feature_weights": _plot_feature_weights,
        "score_distribution": _plot_score_distribution,
    }
    written = []
    for key in keys:
        path = folder / PLOT_FILES[key]
        plotters[key](report, path)
        written.append(path)
    return written


def _figure(columns: int = 1) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(5.2 * columns, 4.2), dpi=_DPI)
    return figure, axes


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)


def _plot_roc(report: ReportInput, path: Path) -> None:
    from sklearn.metrics import roc_curve

    figure, axis = _figure()
    for colour, result in zip(_COLOURS, report.results, strict=False):
        fpr, tpr, _ = roc_curve(report.test_target, result.test_probability)
        label = f"{result.name} (AUC {result.metrics['roc_auc']:.4f})"
        axis.plot(fpr, tpr, color=colour, label=label, linewidth=1.8)
    axis.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    axis.legend(loc="lower right")
    _save(figure, path)


def _plot_precision_recall(report: ReportInput, path: Path) -> None:
    from sklearn.metrics import precision_recall_curve

    figure, axis = _figure()
    for colour, result in zip(_COLOURS, report.results, strict=False):
        precision, recall, _ = precision_recall_curve(report.test_target, result.test_probability)
        label = f"{result.name} (AP {result.metrics['pr_auc']:.4f})"
        axis.plot(recall, precision, color=colour, label=label, linewidth=1.8)
    prevalence = float(report.test_target.mean())
    axis.axhline(prevalence, color="#999999", linestyle=":", linewidth=1, label="no skill")
    axis.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)")
    axis.legend(loc="lower left")
    _save(figure, path)


def _plot_calibration(report: ReportInput, path: Path) -> None:
    figure, axis = _figure()
    axis.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="perfect")
    for colour, result in zip(_COLOURS, report.results, strict=False):
        curves = (
            ("calibrated", result.test_probability, result.metrics["brier"], "-", 1.0),
            (
                "uncalibrated",
                result.test_probability_uncalibrated,
                result.metrics["uncalibrated"]["brier"],
                "--",
                0.45,
            ),
        )
        for kind, probability, brier, style, alpha in curves:
            curve = reliability_curve(report.test_target, probability)
            axis.plot(
                curve.predicted,
                curve.observed,
                linestyle=style,
                color=colour,
                alpha=alpha,
                label=f"{result.name} {kind} (Brier {brier:.4f})",
            )
            axis.scatter(
                curve.predicted,
                curve.observed,
                s=12 + 8 * np.sqrt(curve.counts),
                color=colour,
                alpha=alpha,
                edgecolors="white",
                linewidths=0.5,
            )
    axis.set(
        xlabel="mean predicted P(default) in bin",
        ylabel="observed default rate in bin",
        title="Reliability (test split, 10 bins; area ~ loans)",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
    )
    axis.legend(loc="upper left", fontsize="x-small")
    _save(figure, path)


def _plot_confusion_matrices(report: ReportInput, path: Path) -> None:
    figure, axes = _figure(columns=len(report.results))
    for axis, result in zip(np.atleast_1d(axes), report.results, strict=True):
        matrix = np.asarray(result.metrics["confusion_matrix"])
        axis.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            shade = "white" if count > matrix.max() / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=shade, fontsize=13)
        chosen = " (chosen)" if result.name == report.chosen else ""
        axis.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=["repaid", "default"],
            yticklabels=["repaid", "default"],
            xlabel="predicted",
            ylabel="actual",
            title=f"{result.name}{chosen}\nthreshold {DECISION_THRESHOLD}",
        )
    _save(figure, path)


def _plot_feature_weights(report: ReportInput, path: Path) -> None:
    figure, axes = _figure(columns=len(report.results))
    names = list(report.design_names) or [str(name) for name in report.stats]
    positions = np.arange(len(names))
    for axis, colour, result in zip(np.atleast_1d(axes), _COLOURS, report.results, strict=False):
        axis.barh(positions, result.weights, color=colour)
        axis.axvline(0, color="#555555", linewidth=0.8)
        axis.set_yticks(positions, labels=names)
        axis.invert_yaxis()
        axis.set(title=result.name, xlabel=result.weight_kind)
    _save(figure, path)


def _plot_score_distribution(report: ReportInput, path: Path) -> None:
    chosen = next(result for result in report.results if result.name == report.chosen)
    figure, axis = _figure()
    bins = np.linspace(0.0, 1.0, 41)
    for label, value, colour in (("repaid (0)", 0, _COLOURS[0]), ("default (1)", 1, _COLOURS[1])):
        scores = chosen.test_probability[report.test_target == value]
        axis.hist(scores, bins=bins, alpha=0.65, color=colour, label=f"{label}, n={scores.size}")
    axis.axvline(DECISION_THRESHOLD, color="#333333", linestyle="--", label="threshold")
    axis.set_yscale("log")
    axis.set(
        xlabel="calibrated P(default)",
        ylabel="loans (log scale)",
        title=f"Score distribution per class: {chosen.name}",
    )
    axis.legend(loc="upper center")
    _save(figure, path)


_METRIC_ROWS = (
    ("f1", "F1 at threshold"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("accuracy", "accuracy"),
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC (average precision)"),
    ("brier", "Brier score (calibrated)"),
    ("log_loss", "log loss (calibrated)"),
)

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;
padding:1.5rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f2f4f7}
td.chosen,th.chosen{background:#e8f3ec;font-weight:600}
.verdict{background:#e8f3ec;border-left:4px solid #2e8b57;padding:.6rem 1rem}
.muted{color:#555}figure{margin:1rem 0}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1rem}
img{max-width:100%;height:auto;border:1px solid #eee}code{font-size:.9em}
"""


def render_index(report: ReportInput) -> str:
    """The report page: verdict, candidates side by side, calibration, data, plots."""
    esc = html.escape
    names = [result.name for result in report.results]

    def header_cell(name: str) -> str:
        css = ' class="chosen"' if name == report.chosen else ""
        mark = " (chosen)" if name == report.chosen else ""
        return f"<th{css}>{esc(name)}{mark}</th>"

    def value_cell(name: str, value: str) -> str:
        css = ' class="chosen"' if name == report.chosen else ""
        return f"<td{css}>{value}</td>"

    head = "<tr><th>held-out metric (test split)</th>" + "".join(map(header_cell, names)) + "</tr>"
    rows = []
    for key, label in _METRIC_ROWS:
        cells = "".join(value_cell(r.name, f"{r.metrics[key]:.4f}") for r in report.results)
        rows.append(f"<tr><td>{esc(label)}</td>{cells}</tr>")
    cells = "".join(
        value_cell(r.name, f"{r.metrics['uncalibrated']['brier']:.4f}") for r in report.results
    )
    rows.append(f"<tr><td>Brier score before calibration</td>{cells}</tr>")
    cells = "".join(
        value_cell(
            r.name, "TN {} FP {}<br>FN {} TP {}".format(*np.ravel(r.metrics["confusion_matrix"]))
        )
        for r in report.results
    )
    rows.append(f"<tr><td>confusion matrix</td>{cells}</tr>")
    for key in ("f1", "roc_auc", "brier"):
        cells = "".join(
            value_cell(
                r.name,
                f"{r.metrics['cv'][f'{key}_mean']:.4f} ± {r.metrics['cv'][f'{key}_std']:.4f}",
            )
            for r in report.results
        )
        folds = report.results[0].metrics["cv"]["folds"]
        rows.append(f"<tr><td>{folds}-fold CV {key} (training split)</td>{cells}</tr>")
    cells = "".join(value_cell(r.name, f"{r.fit_seconds:.1f} s") for r in report.results)
    rows.append(f"<tr><td>fitting time (fold models + final model, summed)</td>{cells}</tr>")
    models = "".join(
        f"<li><strong>{esc(r.name)}</strong>: {esc(r.candidate.summary)}</li>"
        for r in report.results
    )

    stat_rows = "".join(
        f"<tr><td>{esc(name)}</td>"
        + "".join(
            f"<td>{report.stats[name][key]:,.2f}</td>"
            for key in ("mean", "std", "min", "q50", "max")
        )
        + "</tr>"
        for name in report.stats
        if "mean" in report.stats[name]
    )
    data = report.data
    calibration = report.calibration
    plots = "".join(
        f'<figure><img src="{esc(file)}" alt="{esc(caption)}"><figcaption class="muted">'
        f"{esc(caption)}</figcaption></figure>"
        for file, caption in (
            (PLOT_FILES["roc"], "ROC curve of each calibrated candidate on the test split"),
            (PLOT_FILES["pr"], "Precision-recall curve of each candidate on the test split"),
            (PLOT_FILES["calibration"], "Reliability diagram before and after calibration"),
            (PLOT_FILES["confusion_matrix"], "Confusion matrices at the decision threshold"),
            (PLOT_FILES["feature_weights"], "Coefficients (normalized features) and importances"),
            (PLOT_FILES["score_distribution"], "Chosen model's P(default) per actual class"),
        )
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Training report {esc(report.model_version)}</title><style>{_STYLE}</style></head>
<body>
<h1>Loan default model: training report</h1>
<p class="muted">model version <code>{esc(report.model_version)}</code> · trained
{esc(report.created_at)} · seed {report.seed}</p>
<p class="verdict"><strong>Chosen: {esc(report.chosen)}</strong>. {esc(report.reason)}.</p>

<h2>Candidates side by side</h2>
<ul>{models}</ul>
<table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>
<p class="muted">Every held-out figure uses the calibrated model on the test split, which no
fitting step saw; cross-validation ran on the training split only.</p>

<h2>Calibration</h2>
<p>Method <code>{esc(str(calibration["method"]))}</code>, {calibration["cv_folds"]}-fold, fitted
on {esc(str(calibration["fitted_on"]))}. Brier score of the chosen model:
{calibration["brier_uncalibrated"]:.4f} before, {calibration["brier_calibrated"]:.4f} after.</p>

<h2>Data</h2>
<p>{data["rows"]:,} loans ({data["train_rows"]:,} training, {data["test_rows"]:,} test, stratified),
default rate {data["default_rate"]:.2%}. File sha256 <code>{esc(data["sha256"])}</code>.</p>
<table><thead><tr><th>feature (training split)</th><th>mean</th><th>std</th><th>min</th>
<th>median</th><th>max</th></tr></thead><tbody>{stat_rows}</tbody></table>

<h2>Plots</h2>
<div class="plots">{plots}</div>
</body></html>
"""
