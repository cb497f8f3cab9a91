"""monitor.json, the HTML report and its plots, written all-or-nothing into ``--out``."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Final

MONITOR_JSON: Final = "monitor.json"
REPORT_HTML: Final = "report.html"
PLOTS: Final = {
    "score": "score-distribution.png",
    "grades": "grade-shares.png",
    "csi": "feature-csi.png",
    "backtest": "backtest-grades.png",
}
_THRESHOLDS: Final = ((0.10, "investigate", "#d98e04"), (0.25, "significant", "#c0392b"))


def write_report(result: dict[str, Any], folder: Path) -> None:
    """Everything into ``folder`` (a fresh staging folder: the caller swaps it into place)."""
    (folder / MONITOR_JSON).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plots = _plots(result, folder)
    (folder / REPORT_HTML).write_text(_html(result, plots), encoding="utf-8")


def _plots(result: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []

    def bars(name: str, title: str, labels: list[str], ref: list[float], win: list[float]) -> None:
        figure, axes = plt.subplots(figsize=(9, 3.6))
        positions = range(len(labels))
        axes.bar([p - 0.2 for p in positions], ref, width=0.4, label="training reference")
        axes.bar([p + 0.2 for p in positions], win, width=0.4, label="this window")
        axes.set_xticks(list(positions), labels, rotation=30, ha="right", fontsize=7)
        axes.set_ylabel("share of loans")
        axes.set_title(title)
        axes.legend()
        figure.tight_layout()
        figure.savefig(folder / PLOTS[name], dpi=110)
        plt.close(figure)
        made.append((PLOTS[name], title))

    score = result["score_bins"]
    bars(
        "score",
        f"Score (PD) by training decile - PSI {result['score_psi']:.3f}",
        score["bins"],
        score["reference_shares"],
        score["window_shares"],
    )
    grades = result["grades"]
    bars(
        "grades",
        f"Grade shares - PSI {result['grade_psi']:.3f}",
        [f"grade {g['grade']}" for g in grades],
        [g["reference_share"] for g in grades],
        [g["share"] for g in grades],
    )
    features = result["features"]
    figure, axes = plt.subplots(figsize=(9, 3.2))
    names = list(features)
    axes.barh(names, [features[n]["csi"] for n in names], color="#34699a")
    for value, label, colour in _THRESHOLDS:
        axes.axvline(value, color=colour, linestyle="--", label=f"{label} ({value:.2f})")
    axes.set_xlabel("characteristic stability index (CSI)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / PLOTS["csi"], dpi=110)
    plt.close(figure)
    made.append((PLOTS["csi"], "CSI per feature"))
    backtest = result.get("backtest")
    if backtest and backtest["grades"]:
        rows = backtest["grades"]
        figure, axes = plt.subplots(figsize=(9, 3.6))
        labels = [str(row["grade"]) for row in rows]
        axes.plot(labels, [row["predicted_pd"] for row in rows], "o-", label="predicted PD")
        axes.plot(labels, [row["observed_rate"] for row in rows], "s--", label="observed rate")
        axes.set_yscale("symlog", linthresh=1e-3)
        axes.set_xlabel("grade")
        axes.set_ylabel("default rate")
        axes.set_title("Back-test per grade")
        axes.legend()
        figure.tight_layout()
        figure.savefig(folder / PLOTS["backtest"], dpi=110)
        plt.close(figure)
        made.append((PLOTS["backtest"], "Back-test per grade"))
    return made


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(result: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    window = result["window"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Model monitoring - {html.escape(result['model_version'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;"
        "padding:0 1em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}"
        ".stable,.green{color:#1e7d32}.investigate,.amber{color:#b36b00}"
        ".significant,.red{color:#c0392b}</style></head><body>",
        f"<h1>Model monitoring: {html.escape(result['model_version'])}</h1>",
        f"<p>{window['loans']:,} loans; window {_cell(window['from'])} to {_cell(window['to'])}; "
        f"source {_cell(window['source'])}.</p>",
        f"<p>Overall: <strong class='{result['verdict']}'>{result['verdict']}</strong> "
        f"(score PSI {result['score_psi']:.4f}, grade PSI {result['grade_psi']:.4f}).</p>",
        "<h2>Characteristic stability</h2>",
        _table(
            ["feature", "CSI", "verdict", "missing share", "out of range share"],
            [
                [n, f["csi"], f["verdict"], f["missing_share"], f["out_of_range_share"]]
                for n, f in result["features"].items()
            ],
        ),
        "<h2>Grades</h2>",
        _table(
            ["grade", "loans", "share", "training share", "change", "mean PD"],
            [
                [
                    g["grade"],
                    g["loans"],
                    g["share"],
                    g["reference_share"],
                    g["change"],
                    g["mean_pd"],
                ]
                for g in result["grades"]
            ],
        ),
    ]
    grew = result["missing_or_out_of_range_grew"]
    if grew:
        parts.append("<h2>Missing or out-of-range values grew</h2>")
        parts.append(
            _table(
                ["feature", "missing share", "training missing share", "out of range share"],
                [
                    [
                        g["feature"],
                        g["missing_share"],
                        g["reference_missing_share"],
                        g["out_of_range_share"],
                    ]
                    for g in grew
                ],
            )
        )
    backtest = result.get("backtest")
    if backtest:
        hl = backtest["hosmer_lemeshow"]
        parts.append("<h2>Back-test</h2>")
        parts.append(
            _table(
                ["loans", "defaults", "ROC AUC", "Gini", "KS", "Brier", "Hosmer-Lemeshow", "p"],
                [
                    [
                        backtest["loans"],
                        backtest["defaults"],
                        backtest["roc_auc"],
                        backtest["gini"],
                        backtest["ks"],
                        backtest["brier"],
                        hl["statistic"],
                        hl["p_value"],
                    ]
                ],
            )
        )
        parts.append(
            _table(
                [
                    "grade",
                    "loans",
                    "defaults",
                    "predicted PD",
                    "observed rate",
                    "binomial p",
                    "Jeffreys p",
                    "verdict",
                ],
                [
                    [
                        g["grade"],
                        g["loans"],
                        g["defaults"],
                        g["predicted_pd"],
                        g["observed_rate"],
                        g["binomial_p"],
                        g["jeffreys_p"],
                        g["verdict"],
                    ]
                    for g in backtest["grades"]
                ],
            )
        )
    for file, title in plots:
        parts.append(f"<h3>{html.escape(title)}</h3><img src='{file}' alt='{html.escape(title)}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
