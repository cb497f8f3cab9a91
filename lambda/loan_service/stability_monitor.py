"""The scheduled stability check on AWS: a window of the service's logs in, PSI/CSI metrics out.

Every EMF document the service prints carries how many loans fell in each reference bin
(``loan_service.reference_bins``). Once a day (an EventBridge rule) this function:

1. runs ONE CloudWatch Logs Insights query over the service function's log group for the window
   (``stats sum(`score_bins.0`) as b0, ... by model_version``; split into several queries only if
   the query text would pass Logs Insights' 10,000-character limit), polling ``GetQueryResults``
   until it is ``Complete``;
2. turns the rows back into bin counts per model version;
3. computes the score's PSI and each feature's CSI for the model baked into this image against
   its ``reference.json`` with ``loan_service.stability.psi`` - the code ``loan-default monitor``
   uses, so the two never disagree on the same loans;
4. publishes ``ScorePSI`` and ``MonitoredLoans`` (dimension ``model_version``) and ``FeatureCSI``
   (``model_version`` + ``feature``) with ``PutMetricData``; the alarms at 0.10 and 0.25 live in
   the CDK construct (``infra_cdk/stability_monitor.py``).

A query that fails, is cancelled, times out or is still running at the deadline stops the check
with one line naming the query, the log group and the status; nothing is published then.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from loan_service.reference_bins import insights_field
from loan_service.stability import Reference, psi, verdict, worst

SERVICE_LOG_GROUP_ENV: Final = "SERVICE_LOG_GROUP"
WINDOW_HOURS_ENV: Final = "STABILITY_WINDOW_HOURS"
NAMESPACE_ENV: Final = "STABILITY_METRICS_NAMESPACE"
QUERY_DEADLINE_ENV: Final = "STABILITY_QUERY_DEADLINE_SECONDS"
DEFAULT_NAMESPACE: Final = "LoanDefault/Stability"
DEFAULT_WINDOW_HOURS: Final = 24
DEFAULT_QUERY_DEADLINE_SECONDS: Final = 240.0
POLL_SECONDS: Final = 2.0
QUERY_TEXT_LIMIT: Final = 10_000  # Logs Insights' longest query string
METRICS_PER_CALL: Final = 20  # PutMetricData's historical limit; the window has a handful
MODEL_VERSION_FIELD: Final = "model_version"
SCORE_METRIC: Final = "ScorePSI"
FEATURE_METRIC: Final = "FeatureCSI"
LOANS_METRIC: Final = "MonitoredLoans"
FEATURE_DIMENSION: Final = "feature"
FAILED_STATUSES: Final = frozenset({"Failed", "Cancelled", "Timeout", "Unknown"})

log = logging.getLogger("loan_service.stability_monitor")


class MonitoringError(RuntimeError):
    """The window could not be read; the message is one line naming the query and why."""


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    log_group: str
    window_hours: int = DEFAULT_WINDOW_HOURS
    namespace: str = DEFAULT_NAMESPACE
    query_deadline_seconds: float = DEFAULT_QUERY_DEADLINE_SECONDS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> MonitorSettings:
        env = os.environ if environ is None else environ
        log_group = env.get(SERVICE_LOG_GROUP_ENV, "").strip()
        if not log_group:
            raise MonitoringError(f"{SERVICE_LOG_GROUP_ENV} is not set: the log group to query")
        hours = env.get(WINDOW_HOURS_ENV, str(DEFAULT_WINDOW_HOURS)).strip()
        if not hours.isdigit() or int(hours) < 1:
            raise MonitoringError(f"{WINDOW_HOURS_ENV} must be a whole number of hours >= 1")
        deadline = env.get(QUERY_DEADLINE_ENV, str(DEFAULT_QUERY_DEADLINE_SECONDS))
        try:
            seconds = float(deadline)
        except ValueError:
            raise MonitoringError(f"{QUERY_DEADLINE_ENV} must be a number of seconds") from None
        return cls(
            log_group=log_group,
            window_hours=int(hours),
            namespace=env.get(NAMESPACE_ENV, DEFAULT_NAMESPACE).strip() or DEFAULT_NAMESPACE,
            query_deadline_seconds=seconds,
        )


@dataclass(frozen=True, slots=True)
class BinQuery:
    """One Logs Insights query and what each of its result columns is: (feature|None, bin)."""

    text: str
    columns: dict[str, tuple[str | None, int]]


def bin_queries(reference: Reference, limit: int = QUERY_TEXT_LIMIT) -> list[BinQuery]:
    """The queries that sum every reference bin by model version (usually exactly one)."""
    bins: list[tuple[str | None, int]] = [(None, i) for i in range(reference.score.bins)]
    for name, ref in reference.features.items():
        bins += [(name, i) for i in range(ref.bins)]
    head = f"filter ispresent({MODEL_VERSION_FIELD})\n| stats "
    tail = f"\n  by {MODEL_VERSION_FIELD}"
    queries: list[BinQuery] = []
    terms: list[str] = []
    columns: dict[str, tuple[str | None, int]] = {}
    for number, (feature, index) in enumerate(bins):
        alias = f"b{number}"
        term = f"sum(`{insights_field(feature, index)}`) as {alias}"
        if terms and len(head) + len(",\n  ".join([*terms, term])) + len(tail) > limit:
            queries.append(BinQuery(head + ",\n  ".join(terms) + tail, columns))
            terms, columns = [], {}
        terms.append(term)
        columns[alias] = (feature, index)
    queries.append(BinQuery(head + ",\n  ".join(terms) + tail, columns))
    return queries


@dataclass(slots=True)
class WindowBins:
    """One model version's bin counts over the window."""

    score: np.ndarray
    features: dict[str, np.ndarray]

    @classmethod
    def empty(cls, reference: Reference) -> WindowBins:
        return cls(
            score=np.zeros(reference.score.bins, dtype=np.int64),
            features={
                name: np.zeros(ref.bins, dtype=np.int64) for name, ref in reference.features.items()
            },
        )

    @property
    def loans(self) -> int:
        return int(self.score.sum())


def add_rows(
    windows: dict[str, WindowBins],
    rows: Sequence[Sequence[Mapping[str, str]]],
    query: BinQuery,
    reference: Reference,
) -> None:
    """Logs Insights rows (lists of ``{field, value}``, values as text) into per-version counts;
    a bin no event of a version had comes back absent or empty and counts 0."""
    for row in rows:
        values = {cell["field"]: cell.get("value") for cell in row}
        version = values.get(MODEL_VERSION_FIELD)
        if not version:
            continue
        window = windows.setdefault(version, WindowBins.empty(reference))
        for alias, (feature, index) in query.columns.items():
            text = values.get(alias)
            if text in (None, ""):
                continue
            count = float(text)  # Logs Insights answers every value as a string
            if not math.isfinite(count) or count < 0 or count != int(count):
                raise MonitoringError(f"Logs Insights returned {text!r} as a bin count ({alias})")
            target = window.score if feature is None else window.features[feature]
            target[index] += int(count)


def run_query(
    logs: Any,
    settings: MonitorSettings,
    query: BinQuery,
    start: datetime,
    end: datetime,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[list[dict[str, str]]]:
    """Start the query and poll it to ``Complete``; any other ending is a ``MonitoringError``."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"over {settings.log_group}"
    try:
        query_id = logs.start_query(
            logGroupName=settings.log_group,
            startTime=int(start.timestamp()),
            endTime=int(end.timestamp()),
            queryString=query.text,
        )["queryId"]
    except (ClientError, BotoCoreError) as exc:
        raise MonitoringError(f"Logs Insights query {where} could not start: {exc}") from exc
    deadline = clock() + settings.query_deadline_seconds
    while True:
        try:
            answer = logs.get_query_results(queryId=query_id)
        except (ClientError, BotoCoreError) as exc:
            raise MonitoringError(
                f"Logs Insights query {query_id} {where}: results unreadable: {exc}"
            ) from exc
        status = answer.get("status", "Unknown")
        if status == "Complete":
            results: list[list[dict[str, str]]] = answer.get("results", [])
            stats = answer.get("statistics", {})
            log.info(
                "Logs Insights query %s %s: %d rows, %.0f of %.0f records matched",
                query_id,
                where,
                len(results),
                stats.get("recordsMatched", 0.0),
                stats.get("recordsScanned", 0.0),
            )
            return results
        if status in FAILED_STATUSES:
            raise MonitoringError(f"Logs Insights query {query_id} {where} ended {status}")
        if clock() >= deadline:
            raise MonitoringError(
                f"Logs Insights query {query_id} {where} still {status} after "
                f"{settings.query_deadline_seconds:g} s: nothing published"
            )
        sleep(POLL_SECONDS)


@dataclass(slots=True)
class StabilityResult:
    """The figures of one window for the image's model."""

    model_version: str
    window_start: datetime
    window_end: datetime
    loans: int
    score_psi: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    other_versions: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        verdicts = []
        if self.score_psi is not None:
            verdicts = [verdict(self.score_psi), *(verdict(v) for v in self.features.values())]
        return {
            "model_version": self.model_version,
            "window": {
                "from": self.window_start.isoformat(),
                "to": self.window_end.isoformat(),
                "loans": self.loans,
            },
            "score_psi": self.score_psi,
            "features": {
                name: {"csi": value, "verdict": verdict(value)}
                for name, value in self.features.items()
            },
            "verdict": worst(verdicts) if verdicts else None,
            "other_model_versions": dict(self.other_versions),
        }


def stability(
    reference: Reference, windows: Mapping[str, WindowBins], start: datetime, end: datetime
) -> StabilityResult:
    """PSI of the score and CSI per feature for the reference's model version."""
    version = reference.model_version
    mine = windows.get(version)
    result = StabilityResult(
        model_version=version,
        window_start=start,
        window_end=end,
        loans=0 if mine is None else mine.loans,
        other_versions={v: w.loans for v, w in windows.items() if v != version},
    )
    if mine is None or mine.loans == 0:
        return result
    result.score_psi = psi(reference.score.shares, mine.score)
    result.features = {
        name: psi(ref.shares, mine.features[name]) for name, ref in reference.features.items()
    }
    return result


def metric_data(result: StabilityResult) -> list[dict[str, Any]]:
    """The ``MetricData`` entries of one window (an empty window publishes only its 0 loans)."""
    version = [{"Name": MODEL_VERSION_FIELD, "Value": result.model_version}]
    at = result.window_end
    data: list[dict[str, Any]] = [
        {
            "MetricName": LOANS_METRIC,
            "Dimensions": version,
            "Timestamp": at,
            "Value": float(result.loans),
            "Unit": "Count",
        }
    ]
    if result.score_psi is None:
        return data
    data.append(
        {
            "MetricName": SCORE_METRIC,
            "Dimensions": version,
            "Timestamp": at,
            "Value": result.score_psi,
            "Unit": "None",
        }
    )
    data += [
        {
            "MetricName": FEATURE_METRIC,
            "Dimensions": [*version, {"Name": FEATURE_DIMENSION, "Value": name}],
            "Timestamp": at,
            "Value": value,
            "Unit": "None",
        }
        for name, value in result.features.items()
    ]
    return data


def window_end_of(event: Mapping[str, Any] | None, now: Callable[[], datetime]) -> datetime:
    """The window ends at the scheduled time (EventBridge's ``time``), else now: a retried run
    reads the same window."""
    text = (event or {}).get("time")
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    return now()


def run_check(
    logs: Any,
    cloudwatch: Any,
    reference: Reference,
    settings: MonitorSettings,
    *,
    event: Mapping[str, Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Query the window, compute the figures, publish them; returns the window's summary."""
    end = window_end_of(event, now)
    start = end - timedelta(hours=settings.window_hours)
    windows: dict[str, WindowBins] = {}
    for query in bin_queries(reference):
        rows = run_query(logs, settings, query, start, end, sleep=sleep, clock=clock)
        add_rows(windows, rows, query, reference)
    result = stability(reference, windows, start, end)
    data = metric_data(result)
    for first in range(0, len(data), METRICS_PER_CALL):
        cloudwatch.put_metric_data(
            Namespace=settings.namespace, MetricData=data[first : first + METRICS_PER_CALL]
        )
    summary = result.summary()
    if result.score_psi is None:
        log.warning(
            "no predictions of model %s in %s between %s and %s: only %s=0 published",
            result.model_version,
            settings.log_group,
            start.isoformat(),
            end.isoformat(),
            LOANS_METRIC,
        )
    else:
        log.info(
            "model %s, %d loans: score PSI %.4f, verdict %s",
            result.model_version,
            result.loans,
            result.score_psi,
            summary["verdict"],
        )
    return summary


def load_reference_of(directory: Path) -> Reference:
    """The baked, checksum-verified ``reference.json`` (the image's artifact folder)."""
    from loan_service.artifacts import ArtifactError, load_artifacts

    try:
        bundle = load_artifacts(directory)
    except ArtifactError as exc:
        raise MonitoringError(str(exc)) from exc
    if bundle.reference is None:
        raise MonitoringError(f"{directory} has no reference.json: retrain the model")
    return bundle.reference
