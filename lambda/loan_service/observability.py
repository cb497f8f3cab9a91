"""Powertools Logger and Metrics, set up once; the request path only bumps in-memory counters.

* Logs: JSON on Lambda (with the Lambda request id and ``cold_start`` from
  ``inject_lambda_context``), one readable line per record elsewhere. There is no per-request
  INFO line: a request is ~100 us of work and a log line would be a large share of it.
* Metrics (CloudWatch EMF, namespace ``LoanDefault``): ``Predictions``, ``DefaultsPredicted``,
  ``PredictionLatency`` (ms), ``MlflowDropped``, and Powertools' ``ColdStart``, by ``service``;
  and per model (dimensions ``service`` + ``model_version``, a second directive of the same
  document) ``Predictions``, ``DefaultsPredicted`` and ``ProbabilitySum``: the approval rate is
  ``1 - DefaultsPredicted / Predictions`` and the mean PD ``ProbabilitySum / Predictions`` of any
  period, weighted per loan. A release's canary alarms on exactly these (infra_cdk/release.py).
  The same document carries ``score_bins`` and ``feature_bins``: how many loans fell in each
  reference bin of the score and of each feature (``loan_service.reference_bins``), what the
  scheduled monitoring function sums.
  Requests record into ``PredictionMetrics`` (integer adds and a bounded reservoir); the Lambda
  handler prints one document per invocation (its fixed part serialized once per shape by
  Powertools' serializer, ``Observability.emf_line``), and on ECS a task prints one every 60 s.
  Local runs publish none (``GET /health`` shows the counters). Measured: Powertools'
  ``log_metrics`` + ``add_metric`` path cost ~100 us per invocation on this machine, building the
  metric set here and serializing it with ``Metrics.serialize_metric_set`` about a tenth of that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from pydantic_core import to_json

from loan_service.prediction_log import PredictionLog
from loan_service.redaction import install_log_redaction, redacting_serializer
from loan_service.reference_bins import ReferenceBinCounter
from loan_service.settings import Settings

LATENCY_RESERVOIR_SIZE: Final = 100  # EMF takes at most 100 values per metric per document
SERVER_METRICS_INTERVAL_SECONDS: Final = 60.0
# CloudWatch unit names as strings: Powertools resolves a MetricUnit enum member about twice as
# slowly as the equivalent string (measured), and these run on every Lambda invocation.
_COUNT: Final = "Count"
_MILLISECONDS: Final = "Milliseconds"
_NONE: Final = "None"
MODEL_VERSION_DIMENSION: Final = "model_version"
_TIMESTAMP_MARK: Final = 1_234_567_890_123  # a placeholder cut out of the serialized frame
# Published per model version too: what the release alarms compare with the training figures.
PER_MODEL_METRICS: Final = ("Predictions", "DefaultsPredicted", "ProbabilitySum")
_READABLE_SKIP: Final = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "sampling_rate",
        "exception",
        "exception_name",
        "exception_notes",
        "stack_trace",
        "xray_trace_id",
        "name",
    }
)


def readable_log_line(record: dict[str, Any]) -> str:
    """Powertools hands its formatter output here: render it for a terminal, not for CloudWatch."""
    extras = " ".join(
        f"{key}={value}" for key, value in record.items() if key not in _READABLE_SKIP
    )
    line = f"{record.get('timestamp', '')} {record.get('level', ''):<7} {record.get('message', '')}"
    if extras:
        line = f"{line}  [{extras}]"
    if record.get("exception"):
        line = f"{line}\n{record['exception']}"
    return line


def _json_line(record: dict[str, Any]) -> str:
    """Powertools' own serialization (compact JSON, ``str`` for the rest)."""
    return json.dumps(record, default=str, separators=(",", ":"), ensure_ascii=False)


def build_logger(settings: Settings, stream: IO[str] | None = None) -> Logger:
    """The service logger; our modules' ``loan_service.*`` loggers write through its handler."""
    install_log_redaction()
    options: dict[str, Any] = {"json_serializer": redacting_serializer(_json_line)}
    if not settings.on_lambda:
        options = {
            "json_serializer": redacting_serializer(readable_log_line),
            "serialize_stacktrace": False,
            "datefmt": "%H:%M:%S",
        }
    logger = Logger(
        service=settings.service_name, level=settings.log_level, stream=stream, **options
    )
    logging.getLogger("loan_service")
    copy_config_to_registered_loggers(source_logger=logger, include={"loan_service"})
    # Mangum logs one INFO line per request; keep its warnings and errors only.
    mangum_logger = logging.getLogger("mangum")
    copy_config_to_registered_loggers(
        source_logger=logger, include={"mangum"}, ignore_log_level=True
    )
    mangum_logger.setLevel(logging.WARNING)
    return logger


@dataclass(slots=True)
class PredictionMetrics:
    """Counters since the last publish; all the request path does is ``record``."""

    predictions: int = 0
    defaults: int = 0
    probability_sum: float = 0.0
    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    total_predictions: int = 0
    _random: random.Random = field(default_factory=lambda: random.Random(20261128))

    def record(
        self, predictions: int, defaults: int, latency_ms: float, probability_sum: float = 0.0
    ) -> None:
        self.predictions += predictions
        self.defaults += defaults
        self.probability_sum += probability_sum
        self.total_predictions += predictions
        self.requests += 1
        if len(self.latencies_ms) < LATENCY_RESERVOIR_SIZE:
            self.latencies_ms.append(latency_ms)
        else:  # reservoir sampling keeps a uniform sample of the window's latencies
            slot = self._random.randrange(self.requests)
            if slot < LATENCY_RESERVOIR_SIZE:
                self.latencies_ms[slot] = latency_ms

    def metric_set(self, dropped: int) -> dict[str, dict[str, Any]]:
        """The window as a Powertools metric set (name -> Unit/StorageResolution/Value), then
        reset. Built directly: ``Metrics.add_metric`` formats a debug message and re-validates
        the unit on every call, several times the cost of the prediction's own bookkeeping."""
        metrics: dict[str, dict[str, Any]] = {}
        if self.requests:
            metrics["Predictions"] = _metric(_COUNT, [float(self.predictions)])
            metrics["DefaultsPredicted"] = _metric(_COUNT, [float(self.defaults)])
            metrics["ProbabilitySum"] = _metric(_NONE, [self.probability_sum])
            metrics["PredictionLatency"] = _metric(_MILLISECONDS, list(self.latencies_ms))
        if dropped:
            metrics["MlflowDropped"] = _metric(_COUNT, [float(dropped)])
        self.predictions = 0
        self.defaults = 0
        self.probability_sum = 0.0
        self.requests = 0
        self.latencies_ms.clear()
        return metrics


def _metric(unit: str, values: list[float]) -> dict[str, Any]:
    return {"Unit": unit, "StorageResolution": 60, "Value": values}


class Observability:
    """The logger, the EMF metrics object and the request-path counters, built once."""

    def __init__(
        self,
        settings: Settings,
        prediction_log: PredictionLog,
        stream: IO[str] | None = None,
        model_version: str | None = None,
        reference_bins: ReferenceBinCounter | None = None,
    ) -> None:
        self.settings = settings
        self.model_version = model_version
        self.reference_bins = reference_bins
        self.logger = build_logger(settings, stream)
        self.metrics = Metrics(namespace=settings.metrics_namespace, service=settings.service_name)
        self._dimensions = {"service": settings.service_name}
        self.counters = PredictionMetrics()
        self.prediction_log = prediction_log
        # Powertools' own switch (POWERTOOLS_METRICS_DISABLED, POWERTOOLS_DEV), read once here
        # rather than from the environment on every invocation.
        self.metrics_enabled = not is_metrics_disabled()
        self._cold_start = True
        # Per metric set shape: the EMF line's fixed text around the timestamp (``emf_line``).
        self._emf_frames: dict[tuple[str, ...], tuple[str, str]] = {}

    def record_bins(self, raw: Any, answers: Any) -> None:
        """Count which reference bin each answered loan fell in (published with the metrics)."""
        if self.reference_bins is not None:
            self.reference_bins.record(raw, answers)

    def record_bin_probabilities(self, raw: Any, probabilities: Sequence[float]) -> None:
        """``record_bins`` for answers kept as columns (a batch request's)."""
        if self.reference_bins is not None:
            self.reference_bins.record_probabilities(raw, probabilities)

    def emit_invocation_metrics(self, context: Any) -> None:
        """End of a Lambda invocation: one EMF document (Powertools' serializer and format),
        plus Powertools' ``ColdStart`` document on the sandbox's first invocation."""
        if not self.metrics_enabled:
            return
        if self._cold_start:
            self._cold_start = False
            self.metrics.provider.add_cold_start_metric(context)
        metric_set = self.counters.metric_set(self.prediction_log.take_new_drops())
        if metric_set:
            self._print_emf(metric_set)

    def flush_server_metrics(self) -> None:
        """Long-lived servers: the same document for the last window."""
        metric_set = self.counters.metric_set(self.prediction_log.take_new_drops())
        if metric_set and self.metrics_enabled:
            self._print_emf(metric_set)

    def _print_emf(self, metric_set: dict[str, dict[str, Any]]) -> None:
        # EMF goes to stdout, as Powertools' does: the document ``emf_document`` builds, written
        # as the compact JSON pydantic-core gives it (a fifth of ``json.dumps``'s time).
        sys.stdout.write(self.emf_line(metric_set, time.time_ns() // 1_000_000))

    def emf_document(self, metric_set: dict[str, dict[str, Any]], timestamp_ms: int) -> Any:
        """The document Powertools' ``serialize_metric_set`` writes for ``metric_set`` (explicit
        dimensions: Powertools keeps metric and dimension sets at class level, shared by every
        Metrics object in the process), plus the per-model directive and the reference bins.
        The reference for ``emf_line``, which the tests hold it equal to."""
        per_model = bool(self.model_version) and "Predictions" in metric_set
        # The root value of the per-model directive's extra dimension.
        metadata: dict[str, Any] = (
            {MODEL_VERSION_DIMENSION: self.model_version} if per_model else {}
        )
        bins = self.reference_bins.take() if self.reference_bins is not None else None
        if bins is not None:  # properties, not metrics: what the monitoring function sums
            metadata.update(bins)
        document: Any = self.metrics.serialize_metric_set(
            metrics=metric_set, dimensions=self._dimensions, metadata=metadata
        )
        document["_aws"]["Timestamp"] = timestamp_ms
        if per_model:
            directives = document["_aws"]["CloudWatchMetrics"]
            directives.append(
                {
                    "Namespace": directives[0]["Namespace"],
                    "Dimensions": [[*directives[0]["Dimensions"][0], MODEL_VERSION_DIMENSION]],
                    "Metrics": [
                        metric
                        for metric in directives[0]["Metrics"]
                        if metric["Name"] in PER_MODEL_METRICS
                    ],
                }
            )
        return document

    def emf_line(self, metric_set: dict[str, dict[str, Any]], timestamp_ms: int) -> str:
        """``emf_document`` as one JSON line, the same bytes, at a fraction of its cost.

        Per metric set shape (which metrics, whether the per-model directive applies) the
        document's fixed part - the directives, the dimensions, the model version - is the same
        on every invocation: it is serialized once, by ``emf_document`` itself, and kept as text
        around the timestamp; each invocation serializes only the bins and the values. (Building
        and serializing the whole document was a ninth of a Lambda invocation.)"""
        shape = tuple(metric_set)
        frame = self._emf_frames.get(shape)
        if frame is None:
            frame = self._emf_frame(metric_set)
            self._emf_frames[shape] = frame
        head, tail = frame
        variable: dict[str, Any] = {}
        if self.reference_bins is not None:
            bins = self.reference_bins.take()
            if bins is not None:
                variable.update(bins)
        for name, metric in metric_set.items():
            variable[name] = metric["Value"]
        return f"{head}{timestamp_ms}{tail}{to_json(variable).decode()[1:]}\n"

    def _emf_frame(self, metric_set: dict[str, dict[str, Any]]) -> tuple[str, str]:
        """The fixed text before and after the timestamp of ``metric_set``'s shape, cut from a
        document ``emf_document`` built without bins (the values are cut off too)."""
        bins, self.reference_bins = self.reference_bins, None
        try:
            document = self.emf_document(metric_set, _TIMESTAMP_MARK)
        finally:
            self.reference_bins = bins
        for name in metric_set:
            del document[name]
        text = to_json(document).decode()
        mark = f'"Timestamp":{_TIMESTAMP_MARK}'
        head, tail = text.split(mark)
        if not tail.endswith("}"):
            raise RuntimeError("the EMF document no longer ends with its own fields")
        return f'{head}"Timestamp":', f"{tail[:-1]},"

    @property
    def publishes_server_metrics(self) -> bool:
        """Long-lived servers publish EMF only on ECS (CloudWatch collects their stdout)."""
        return self.settings.on_ecs and not self.settings.on_lambda

    async def publish_server_metrics_forever(
        self, interval: float = SERVER_METRICS_INTERVAL_SECONDS
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            self.flush_server_metrics()
