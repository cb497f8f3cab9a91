"""The portfolio report of a scored loan book: where the risk and the expected loss are.

Read from a scored output (``loan-default score``'s file, or the Spark engine's folder of parts) in
record batches, so memory does not grow with the book: every figure is a running sum, a fixed
histogram or a bounded top-N. It writes, all or nothing, into one folder:

* ``portfolio.json``: loans, exposure, expected loss (EL) and mean PD in all; the PD distribution
  (counts per 0.02-wide bin, and percentiles read from a 0.0001-wide histogram, so within 0.0001);
  loans, exposure, EL and mean PD per risk band and per grade; the largest exposures (top 20
  with their ids, PD, grade and EL); concentration (the top 10, 100 and 1,000 loans' share of the
  exposure and of the EL, the Herfindahl-Hirschman index of exposures and its effective number
  of loans); exposure and EL per value of each categorical feature;
* ``portfolio.html`` with the tables and the plots (PNG, matplotlib's Agg backend as in the
  training report).

The exposure is the book schema's ``[loss] exposure`` feature (from the artifact folder's
manifest); a book without one gets the PD figures only.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from loan_default.batch.rules import InputError
from loan_service.book import BookSchema
from loan_service.scoring import RISK_BANDS

PORTFOLIO_JSON: Final = "portfolio.json"
PORTFOLIO_HTML: Final = "portfolio.html"
PLOTS: Final = {
    "pd": "pd-distribution.png",
    "bands": "expected-loss-by-band.png",
    "grades": "expected-loss-by-grade.png",
    "concentration": "concentration.png",
}
PD_BINS: Final = 50  # 0.02 wide, for the histogram shown
FINE_BINS: Final = 10_000  # 0.0001 wide, for the percentiles
PERCENTILES: Final = (1, 5, 10, 25, 50, 75, 90, 95, 99)
TOP_SHOWN: Final = 20
TOP_KEPT: Final = 1_000  # concentration of the top 10, 100 and 1,000
BATCH_ROWS: Final = 65_536
REQUIRED: Final = ("probability", "risk_band", "expected_loss")


def _read_dataset(path: Path) -> ds.Dataset:
    """A scored file (.parquet/.csv) or a Spark output folder of part files, as one dataset."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    name = path.name.lower()
    kind = "csv" if name.endswith(".csv") else "parquet"
    if path.is_file() and not name.endswith((".csv", ".parquet", ".pq")):
        raise InputError(f"{path}: unknown file type {path.suffix!r} (use .csv or .parquet)")
    try:
        dataset = ds.dataset(path, format=kind)
        _ = dataset.schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable {kind} file ({exc})") from exc
    missing = [column for column in REQUIRED if column not in dataset.schema.names]
    if missing:
        raise InputError(
            f"{path}: not a scored output (no column {', '.join(missing)}; "
            "run loan-default score first)"
        )
    return dataset


@dataclass(slots=True)
class _TopN:
    """The n largest values seen so far, with their rows' shown columns (bounded memory)."""

    n: int
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, values: np.ndarray, batch: pa.RecordBatch, columns: Sequence[str]) -> None:
        if values.size == 0:
            return
        take = min(self.n, values.size)
        candidates = np.argpartition(-values, take - 1)[:take]
        picked = batch.select(list(columns)).take(pa.array(candidates)).to_pylist()
        merged_values = np.concatenate([self.values, values[candidates]])
        merged_rows = self.rows + picked
        keep = np.argsort(-merged_values, kind="stable")[: self.n]
        self.values = merged_values[keep]
        self.rows = [merged_rows[i] for i in keep]


@dataclass(slots=True)
class _Totals:
    loans: np.ndarray
    exposure: np.ndarray
    expected_loss: np.ndarray
    pd_sum: np.ndarray

    @classmethod
    def zeros(cls, size: int) -> _Totals:
        return cls(np.zeros(size, np.int64), np.zeros(size), np.zeros(size), np.zeros(size))

    def add(self, index: np.ndarray, pd: np.ndarray, el: np.ndarray, exposure: np.ndarray) -> None:
        size = self.loans.size
        self.loans += np.bincount(index, minlength=size)
        self.pd_sum += np.bincount(index, weights=pd, minlength=size)
        self.expected_loss += np.bincount(index, weights=el, minlength=size)
        self.exposure += np.bincount(index, weights=exposure, minlength=size)

    def rows(self, labels: Sequence[Any], key: str, total_el: float) -> list[dict[str, Any]]:
        return [
            {
                key: label,
                "loans": int(self.loans[i]),
                "exposure": float(self.exposure[i]),
                "expected_loss": float(self.expected_loss[i]),
                "expected_loss_share": float(self.expected_loss[i] / total_el) if total_el else 0.0,
                "mean_pd": float(self.pd_sum[i] / self.loans[i]) if self.loans[i] else None,
            }
            for i, label in enumerate(labels)
        ]


def _float_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(name)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.float64())
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return np.nan_to_num(values, nan=0.0)


def build_report(scored: Path, book: BookSchema, model_version: str) -> dict[str, Any]:
    """Every figure of the report, in one streamed pass over ``scored``."""
    dataset = _read_dataset(scored)
    names = dataset.schema.names
    exposure_name = book.loss.exposure if book.loss.exposure in names else None
    graded = "grade" in names
    ids = [column for column in book.id.columns if column in names]
    categories = [f for f in book.categories if f.name in names and f.values]
    shown = [*ids, *([exposure_name] if exposure_name else []), "probability", "risk_band"]
    shown += [*(["grade"] if graded else []), "expected_loss"]
    wanted = sorted(set(shown) | {c.name for c in categories}, key=names.index)

    fine = np.zeros(FINE_BINS, np.int64)
    bands = _Totals.zeros(len(RISK_BANDS))
    grade_totals = _Totals.zeros(0)
    segments = {f.name: _Totals.zeros(len(f.values or ())) for f in categories}
    top_exposure = _TopN(TOP_KEPT)
    top_el = _TopN(TOP_KEPT)
    exposure_squares = 0.0
    pd_exposure = 0.0
    band_index = pa.array(RISK_BANDS, pa.string())
    for batch in _batches(dataset, wanted):
        if batch.num_rows == 0:
            continue
        pd = np.clip(_float_column(batch, "probability"), 0.0, 1.0)
        el = _float_column(batch, "expected_loss")
        exposure = _float_column(batch, exposure_name) if exposure_name else np.zeros(pd.size)
        fine += np.bincount(
            np.minimum((pd * FINE_BINS).astype(np.int64), FINE_BINS - 1), minlength=FINE_BINS
        )
        band = pc.index_in(pc.cast(batch.column("risk_band"), pa.string()), band_index)
        if band.null_count:
            raise InputError(f"{scored}: risk_band holds a value other than low/medium/high")
        bands.add(band.to_numpy(zero_copy_only=False), pd, el, exposure)
        if graded:
            grade = pc.cast(batch.column("grade"), pa.int64()).to_numpy(zero_copy_only=False)
            grade_totals = _grow(grade_totals, int(grade.max()) + 1)
            grade_totals.add(grade, pd, el, exposure)
        for feature in categories:
            text = pc.utf8_trim_whitespace(pc.cast(batch.column(feature.name), pa.string()))
            codes = pc.fill_null(
                pc.index_in(text, pa.array(feature.values or (), pa.string())), -1
            ).to_numpy(zero_copy_only=False)
            known = codes >= 0
            segments[feature.name].add(codes[known], pd[known], el[known], exposure[known])
        exposure_squares += float(np.dot(exposure, exposure))
        pd_exposure += float(np.dot(pd, exposure))
        top_exposure.add(exposure, batch, shown)
        top_el.add(el, batch, shown)

    loans = int(bands.loans.sum())
    if loans == 0:
        raise InputError(f"{scored}: no scored loans in it")
    total_el = float(bands.expected_loss.sum())
    total_exposure = float(bands.exposure.sum())
    coarse = fine.reshape(PD_BINS, -1).sum(axis=1)
    cumulative = np.cumsum(fine)
    percentiles = {
        f"p{q}": float((np.searchsorted(cumulative, q / 100 * loans) + 1) / FINE_BINS)
        for q in PERCENTILES
    }
    report: dict[str, Any] = {
        "model_version": model_version,
        "source": str(scored),
        "loans": loans,
        "exposure_column": exposure_name,
        "total_exposure": total_exposure if exposure_name else None,
        "total_expected_loss": total_el,
        "mean_pd": float(bands.pd_sum.sum() / loans),
        "exposure_weighted_pd": (
            pd_exposure / total_exposure if exposure_name and total_exposure > 0 else None
        ),
        "pd_distribution": {
            "bin_width": 1 / PD_BINS,
            "bins": [round(i / PD_BINS, 4) for i in range(PD_BINS + 1)],
            "loans": coarse.tolist(),
            "percentiles": percentiles,
        },
        "bands": bands.rows(RISK_BANDS, "risk_band", total_el),
        "grades": [
            row
            for row in grade_totals.rows(range(grade_totals.loans.size), "grade", total_el)
            if row["loans"]
        ],
        "largest_exposures": top_exposure.rows[:TOP_SHOWN] if exposure_name else [],
        "concentration": _concentration(
            top_exposure, top_el, total_exposure, total_el, exposure_squares, exposure_name
        ),
        "segments": {
            name: totals.rows(book.feature(name).values or (), "value", total_el)
            for name, totals in segments.items()
        },
    }
    return report


def _grow(totals: _Totals, size: int) -> _Totals:
    if size <= totals.loans.size:
        return totals
    grown = _Totals.zeros(size)
    n = totals.loans.size
    grown.loans[:n], grown.exposure[:n] = totals.loans, totals.exposure
    grown.expected_loss[:n], grown.pd_sum[:n] = totals.expected_loss, totals.pd_sum
    return grown


def _concentration(  # noqa: PLR0917  (private: the running figures of one pass)
    top_exposure: _TopN,
    top_el: _TopN,
    total_exposure: float,
    total_el: float,
    exposure_squares: float,
    exposure_name: str | None,
) -> dict[str, Any]:
    el_shares = {
        f"top_{k}_expected_loss_share": float(top_el.values[:k].sum() / total_el)
        if total_el
        else 0.0
        for k in (10, 100, 1000)
    }
    if exposure_name is None or total_exposure <= 0:
        return el_shares
    hhi = exposure_squares / total_exposure**2
    return {
        **{
            f"top_{k}_exposure_share": float(top_exposure.values[:k].sum() / total_exposure)
            for k in (10, 100, 1000)
        },
        **el_shares,
        "herfindahl_index": float(hhi),
        "effective_number_of_loans": float(1 / hhi) if hhi > 0 else None,
    }


def _batches(dataset: ds.Dataset, columns: list[str]) -> Iterator[pa.RecordBatch]:
    try:
        yield from dataset.to_batches(columns=columns, batch_size=BATCH_ROWS)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable scored output ({str(exc).splitlines()[0]})") from exc


def write_report(report: dict[str, Any], out: Path) -> None:
    """``portfolio.json``, the plots and ``portfolio.html`` into ``out``, all or nothing: written
    in a staging folder beside it, then swapped in (an old report is replaced only when done)."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / PORTFOLIO_JSON).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        plots = _plots(report, staging)
        (staging / PORTFOLIO_HTML).write_text(_html(report, plots), encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _plots(report: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []

    def save(figure: Any, key: str, title: str) -> None:
        figure.tight_layout()
        figure.savefig(folder / PLOTS[key], dpi=100)
        plt.close(figure)
        made.append((PLOTS[key], title))

    distribution = report["pd_distribution"]
    figure, axis = plt.subplots(figsize=(9, 3.6))
    edges = distribution["bins"]
    axis.bar(edges[:-1], distribution["loans"], width=distribution["bin_width"], align="edge",
             color="#1f5fa8", edgecolor="white", linewidth=0.4)  # fmt: skip
    axis.set(xlabel="probability of default", ylabel="loans", xlim=(0, 1))
    axis.set_yscale("symlog", linthresh=10)
    axis.set_title(f"PD distribution - mean {report['mean_pd']:.4f}")
    save(figure, "pd", "PD distribution")

    def el_bars(rows: list[dict[str, Any]], key: str, plot: str, title: str) -> None:
        figure, axis = plt.subplots(figsize=(9, 3.6))
        labels = [str(row[key]) for row in rows]
        axis.bar(labels, [row["expected_loss"] for row in rows], color="#d9641e")
        axis.set(xlabel=key.replace("_", " "), ylabel="expected loss")
        pd_axis = axis.twinx()
        pd_axis.plot(labels, [row["mean_pd"] or 0.0 for row in rows], "o-", color="#1f5fa8")
        pd_axis.set_ylabel("mean PD", color="#1f5fa8")
        axis.set_title(title)
        save(figure, plot, title)

    el_bars(report["bands"], "risk_band", "bands", "Expected loss and mean PD by risk band")
    if report["grades"]:
        el_bars(report["grades"], "grade", "grades", "Expected loss and mean PD by grade")
    concentration = report["concentration"]
    figure, axis = plt.subplots(figsize=(9, 3.6))
    tops = (10, 100, 1000)
    width = 0.4
    positions = np.arange(len(tops))
    if "top_10_exposure_share" in concentration:
        axis.bar(positions - width / 2, [concentration[f"top_{k}_exposure_share"] for k in tops],
                 width, label="share of exposure", color="#1f5fa8")  # fmt: skip
    axis.bar(positions + width / 2, [concentration[f"top_{k}_expected_loss_share"] for k in tops],
             width, label="share of expected loss", color="#d9641e")  # fmt: skip
    axis.set_xticks(positions, [f"largest {k}" for k in tops])
    axis.set(ylabel="share of the book", ylim=(0, 1))
    axis.legend()
    axis.set_title("Concentration: the largest loans' share")
    save(figure, "concentration", "Concentration")
    return made


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    headers = list(rows[0])
    head = "".join(f"<th>{html.escape(h.replace('_', ' '))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(h))}</td>" for h in headers) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(report: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    images = {title: file for file, title in plots}

    def image(title: str) -> str:
        file = images.get(title)
        return "" if file is None else f"<img src='{file}' alt='{html.escape(title)}'>"

    summary = [
        {"figure": "loans", "value": report["loans"]},
        {"figure": "total exposure", "value": report["total_exposure"]},
        {"figure": "total expected loss", "value": report["total_expected_loss"]},
        {"figure": "mean PD", "value": report["mean_pd"]},
        {"figure": "exposure-weighted PD", "value": report["exposure_weighted_pd"]},
        *(
            {"figure": f"PD {name}", "value": value}
            for name, value in report["pd_distribution"]["percentiles"].items()
        ),
    ]
    concentration = [{"figure": k.replace("_", " "), "value": v}
                     for k, v in report["concentration"].items()]  # fmt: skip
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Portfolio report - {html.escape(report['model_version'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;"
        "padding:0 1em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}</style>"
        "</head><body>",
        f"<h1>Portfolio report: model {html.escape(report['model_version'])}</h1>",
        f"<p>Scored output: <code>{html.escape(report['source'])}</code>.</p>",
        _table(summary),
        "<h2>PD distribution</h2>",
        image("PD distribution"),
        "<h2>Expected loss by risk band</h2>",
        _table(report["bands"]),
        image("Expected loss and mean PD by risk band"),
    ]
    if report["grades"]:
        parts += [
            "<h2>Expected loss by grade</h2>",
            _table(report["grades"]),
            image("Expected loss and mean PD by grade"),
        ]
    parts += ["<h2>Concentration</h2>", _table(concentration), image("Concentration")]
    if report["largest_exposures"]:
        parts += ["<h2>Largest exposures</h2>", _table(report["largest_exposures"])]
    for name, rows in report["segments"].items():
        parts += [f"<h2>By {html.escape(name)}</h2>", _table(rows)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def report_scored(scored: Path, artifact_dir: Path, out: Path) -> dict[str, Any]:
    """Build the report of ``scored`` with the book of ``artifact_dir`` and write it to ``out``."""
    from loan_service.artifacts import read_manifest

    manifest = read_manifest(artifact_dir)
    report = build_report(scored, manifest.book, manifest.model_version)
    write_report(report, out)
    return report
