"""A window of logged predictions: the service's MLflow traces between two dates, as batches.

The service logs one trace per request (experiment ``loan-default-serving`` unless
``MLFLOW_EXPERIMENT_NAME`` says otherwise) with the loans as the root span's inputs and the
answers as its outputs. Traces are searched by their start time, page by page, and each page
becomes one Arrow record batch in the scored file's shape (features, ``probability``, ``grade``,
``model_version``), so the window is streamed exactly like a scored file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

import pyarrow as pa

from loan_default.monitoring.window import MonitorInputError

DEFAULT_EXPERIMENT: Final = "loan-default-serving"
PAGE_SIZE: Final = 500


def parse_date(text: str, *, end: bool = False) -> datetime:
    """``YYYY-MM-DD`` (a whole day: ``--to`` includes it) or an ISO timestamp, in UTC."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                return moment.replace(hour=23, minute=59, second=59, microsecond=999_000)
            return moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MonitorInputError(f"'{text}' is not a date (YYYY-MM-DD or ISO 8601)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def trace_batches(
    start: datetime, end: datetime, features: Mapping[str, str], experiment: str | None = None
) -> Iterator[pa.RecordBatch]:
    """The logged predictions started in [start, end], one record batch per page of traces."""
    from training.tracking import DEFAULT_TRACKING_URI, MLFLOW_CLIENT_DEFAULTS

    for key, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow

    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    try:
        client = mlflow.MlflowClient(uri)
        found = client.get_experiment_by_name(name)
    except Exception as exc:  # the message may embed the URI with credentials: name the type only
        raise MonitorInputError(
            f"the MLflow tracking server could not be read ({type(exc).__name__})"
        ) from exc
    if found is None:
        raise MonitorInputError(f"no MLflow experiment '{name}': no predictions were logged")
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    query = f"trace.timestamp_ms >= {start_ms} AND trace.timestamp_ms <= {end_ms}"
    token: str | None = None
    while True:
        page = client.search_traces(
            locations=[found.experiment_id],
            filter_string=query,
            max_results=PAGE_SIZE,
            page_token=token,
            include_spans=True,
        )
        batch = _page_to_batch(page, features)
        if batch.num_rows:
            yield batch
        token = page.token
        if not token:
            return


def _page_to_batch(traces: Sequence[Any], features: Mapping[str, str]) -> pa.RecordBatch:
    columns: dict[str, list[Any]] = {name: [] for name in features}
    columns.update(probability=[], grade=[], model_version=[])
    for trace in traces:
        spans = trace.data.spans
        if not spans:
            continue
        inputs, outputs = spans[0].inputs, spans[0].outputs
        loans = inputs.get("loans", [inputs]) if isinstance(inputs, dict) else []
        answers = outputs.get("predictions", [outputs]) if isinstance(outputs, dict) else []
        for loan, answer in zip(loans, answers, strict=False):
            for name in features:
                columns[name].append(loan.get(name))
            columns["probability"].append(answer.get("probability"))
            columns["grade"].append(answer.get("grade"))
            columns["model_version"].append(answer.get("model_version"))
    arrays = {
        name: pa.array(columns[name], pa.string() if kind == "category" else pa.float64())
        for name, kind in features.items()
    }
    arrays["probability"] = pa.array(columns["probability"], pa.float64())
    if None not in columns["grade"]:
        arrays["grade"] = pa.array(columns["grade"], pa.int64())
    arrays["model_version"] = pa.array(columns["model_version"], pa.string())
    return pa.RecordBatch.from_pydict(arrays)
