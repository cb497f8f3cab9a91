"""Prediction logging to MLflow: one trace per request, exported in batches by our own thread.

Request path. ``PredictionLog.record`` does one ``put_nowait`` of a tuple of objects the request
already built: no copy, no serialization, no I/O (a unit test measures the median). A full queue
drops the record and counts it.

Export. One daemon thread waits for a record, then takes every record already waiting, up to
``MAX_BATCH_RECORDS`` records or about ``MAX_BATCH_LOANS`` loans, without waiting for more: batches
grow with the load, and a lone request is shipped at once. Each record becomes the root span of
its own MLflow trace: the request's inputs and outputs, its start and end, the trace tags
``request_id`` and ``model_version``, and the span attributes ``endpoint``, ``latency_ms`` and
``n_loans``. The whole batch is written in ONE call:

* an MLflow server (``http(s)://``): one OTLP/HTTP protobuf POST to its ``/v1/traces`` endpoint
  (MLflow >= 3.6 with a SQL backend), which creates each trace, its request/response previews and
  its tags from the root span;
* a database URI (``sqlite:///mlflow.db``, ``make run``): the store call the server makes for such
  a POST, ``log_spans``, run in this thread (so the store's CPU work is this process's).

MLflow's own per-trace export costs two HTTP calls and two database transactions per trace; this
costs one of each per batch, and the store's per-trace work is what remains (docs/serving.md).
MLflow's exporter, tracer provider and async queue are not used at all. A URI whose store cannot
ingest spans (a ``./mlruns`` folder) turns logging off with one error line.

Failures. The client's retries are off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``); an export POST
gives up after ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (2 s) to connect or ``EXPORT_READ_TIMEOUT_SECONDS``
to answer. A failed batch is re-sent after a back-off (1 s doubling to 60 s), at most
``MAX_EXPORT_ATTEMPTS`` times in all, then counted as failed. Trace ids are chosen once per batch,
so a send that landed before it timed out is overwritten by the retry, not duplicated. Meanwhile
new records wait in, or are dropped from, the bounded queue.

``mlflow`` is imported only when ``MLFLOW_TRACKING_URI`` is set, once, while the app is built
(``prepare``), never on a request. Importing it in the thread instead made ``import main`` about
3x slower (GIL contention with the main thread's own imports) and would steal CPU from the first
requests. Everything that touches the network (``connect``, ``send``) runs in the thread.

Lambda: the sandbox freezes after each response, and this thread freezes with it. Nothing is
flushed at freeze. Queued records survive the freeze in memory and are exported, as one batch,
while later invocations run; a send cut by the freeze fails or times out after the thaw and is
re-sent. Records still queued when Lambda reclaims the sandbox are lost (Lambda sends no shutdown
signal to a function without an extension). ``close()`` (uvicorn shutdown) drains what it can
within its timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import urlparse

import numpy as np

from loan_service.redaction import redact
from loan_service.schemas import PredictionLogStatus
from loan_service.settings import Settings

MLFLOW_HTTP_TIMEOUT_SECONDS: Final = 2
EXPORT_READ_TIMEOUT_SECONDS: Final = 10.0
MAX_BATCH_RECORDS: Final = 200
MAX_BATCH_LOANS: Final = 2000
MAX_EXPORT_ATTEMPTS: Final = 3
BACKOFF_INITIAL_SECONDS: Final = 1.0
BACKOFF_MAX_SECONDS: Final = 60.0
STOP_POLL_SECONDS: Final = 0.25  # an idle thread checks this often whether close() was called
TRACE_NAME: Final = "loan_default_prediction"
SINGLE_PREDICTION_ENDPOINT: Final = "/predict"
TRACE_TAGS: Final = ("request_id", "model_version")


class PredictionRecord(NamedTuple):
    """One request as the log receives it: objects the request already built, nothing copied."""

    started_wall_ns: int
    latency_ns: int
    request_id: str
    endpoint: str
    raw: np.ndarray  # the request's feature rows, (n, features) float64
    answers: Sequence[Mapping[str, Any]]  # its ``PredictionAnswer``s, in order


_log = logging.getLogger(__name__)


class PredictionLog(Protocol):
    """What the API needs from a prediction logger (``DisabledPredictionLog`` or the MLflow one)."""

    def record(self, entry: PredictionRecord) -> None:
        """Hand over one request's record; must never block or raise."""
        ...

    def status(self) -> PredictionLogStatus: ...

    def take_new_drops(self) -> int: ...

    def close(self, timeout: float = 5.0) -> None: ...


class DisabledPredictionLog:
    """``MLFLOW_TRACKING_URI`` unset: records go nowhere and mlflow is never imported."""

    def record(self, entry: PredictionRecord) -> None:
        return None

    def status(self) -> PredictionLogStatus:
        return PredictionLogStatus(
            enabled=False, state="disabled", queued=0, exported=0, dropped=0, failed=0
        )

    def take_new_drops(self) -> int:
        return 0

    def close(self, timeout: float = 5.0) -> None:
        return None


class BatchExporter(Protocol):
    """Turns a batch of records into durable storage in one round trip."""

    def prepare(self) -> None:
        """Imports and local configuration, in the caller's thread, no network."""
        ...

    def connect(self) -> None:
        """Network setup (credentials, experiment), in the logging thread; raises on failure
        (``UnsupportedTrackingStore`` when retrying cannot help)."""
        ...

    def encode(self, records: Sequence[PredictionRecord]) -> object:
        """The batch's payload, built once: its trace ids are chosen here, so every retry
        re-sends the same traces."""
        ...

    def send(self, payload: object) -> None:
        """Store the whole payload, or raise: a batch lands whole or not at all."""
        ...

    def close(self) -> None:
        """Release what ``prepare``/``connect`` hold (the logging thread has stopped)."""
        ...


class UnsupportedTrackingStore(Exception):
    """The tracking URI names a store that cannot ingest spans (e.g. a ``./mlruns`` folder)."""


def token_from_secret_string(secret: str) -> str:
    """A Secrets Manager value holding the MLflow token: plain, or JSON with a "token" key."""
    with contextlib.suppress(json.JSONDecodeError):
        parsed = json.loads(secret)
        if isinstance(parsed, dict) and isinstance(parsed.get("token"), str):
            return str(parsed["token"])
    return secret


def _read_token_from_secrets_manager(secret_arn: str) -> str:
    import boto3  # shipped by the Lambda base image; only needed when the ARN is configured

    response = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    return token_from_secret_string(str(response["SecretString"]))


def configure_mlflow_client_environment() -> None:
    """Before mlflow is imported: no client retries (by default it retries a dead server for
    minutes), a short timeout (kept if already set), and no MLflow usage telemetry unless the
    deployment opts in: a service scoring customers' loans calls nobody but its tracking server."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(MLFLOW_HTTP_TIMEOUT_SECONDS))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _random_id(n_bytes: int) -> int:
    """A non-zero OTel id from the OS: unlike a ``random.Random`` state, it never repeats in
    processes forked from one parent."""
    return int.from_bytes(os.urandom(n_bytes), "big") or 1


def prediction_span_factory(features: Sequence[str]) -> Callable[[PredictionRecord], Any]:
    """Import MLflow's span entity and OTel's span types; return ``record -> MLflow Span``.

    The span is a finished root span: its own trace's only span. Inputs/outputs use MLflow's span
    attributes (the server derives the trace's request/response previews from them), and
    ``mlflow.traceTag.<key>`` attributes become trace tags, which ``search_traces`` filters on.
    Attribute values are JSON strings, as MLflow's own spans store them.
    """
    from mlflow.entities import Span
    from mlflow.tracing.constant import SpanAttributeKey, TraceTagKey
    from mlflow.tracing.utils import dump_span_attribute_value as to_json
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    sampled = TraceFlags(TraceFlags.SAMPLED)
    ok = Status(StatusCode.OK)
    no_resource = Resource.get_empty()
    tag = SpanAttributeKey.TRACE_TAG_PREFIX
    constant_attributes = {
        SpanAttributeKey.SPAN_TYPE: to_json("UNKNOWN"),
        f"{tag}{TraceTagKey.TRACE_NAME}": to_json(TRACE_NAME),
    }

    def prediction_span(record: PredictionRecord) -> Any:
        loans = [dict(zip(features, row, strict=True)) for row in record.raw.tolist()]
        outputs = [dict(answer) for answer in record.answers]
        single = record.endpoint == SINGLE_PREDICTION_ENDPOINT and len(loans) == len(outputs) == 1
        fields = {
            "request_id": record.request_id,
            "model_version": str(outputs[0]["model_version"]) if outputs else "",
            "endpoint": record.endpoint,
            "latency_ms": record.latency_ns / 1e6,
            "n_loans": len(loans),
        }
        otel_trace_id = _random_id(16)
        attributes = {
            **constant_attributes,
            SpanAttributeKey.REQUEST_ID: to_json(
                generate_mlflow_trace_id_from_otel_trace_id(otel_trace_id)
            ),
            SpanAttributeKey.INPUTS: to_json(loans[0] if single else {"loans": loans}),
            SpanAttributeKey.OUTPUTS: to_json(outputs[0] if single else {"predictions": outputs}),
            **{key: to_json(value) for key, value in fields.items()},
            **{f"{tag}{key}": to_json(str(fields[key])) for key in TRACE_TAGS},
        }
        context = SpanContext(otel_trace_id, _random_id(8), is_remote=False, trace_flags=sampled)
        return Span(
            ReadableSpan(
                name=TRACE_NAME,
                context=context,
                parent=None,
                attributes=attributes,
                start_time=record.started_wall_ns,
                end_time=record.started_wall_ns + max(record.latency_ns, 1),
                status=ok,
                resource=no_resource,
            )
        )

    return prediction_span


class OtlpHttpSpanSink:
    """Spans of many traces -> one OTLP/HTTP protobuf POST to the MLflow server's ``/v1/traces``.

    This is what MLflow's ``RestStore.log_spans`` sends, without its server-version probe: that
    probe's answer is cached for the process, so one failed probe (server restarting, sandbox
    frozen mid-request) would disable span logging until the process ends. MLflow's
    ``http_request`` adds the tracking credentials (token, basic auth, TLS settings) as for its
    other calls; the connect timeout is MLflow's (short), the read timeout leaves a live server
    time to store a full batch.
    """

    def __init__(
        self, get_host_creds: Callable[[], Any], experiment_id: str, connect_timeout: float
    ) -> None:
        from mlflow.tracing.utils.otlp import MLFLOW_EXPERIMENT_ID_HEADER, OTLP_TRACES_PATH
        from mlflow.utils.rest_utils import http_request, verify_rest_response
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self._get_host_creds = get_host_creds
        self._path = OTLP_TRACES_PATH
        self._headers = {
            "Content-Type": "application/x-protobuf",
            MLFLOW_EXPERIMENT_ID_HEADER: experiment_id,
        }
        self._timeout = (connect_timeout, EXPORT_READ_TIMEOUT_SECONDS)
        self._http_request = http_request
        self._verify = verify_rest_response
        self._request_type = ExportTraceServiceRequest

    def encode(self, spans: list[Any]) -> object:
        request = self._request_type()
        scope_spans = request.resource_spans.add().scope_spans.add()
        scope_spans.spans.extend(span.to_otel_proto() for span in spans)
        return request.SerializeToString()

    def send(self, payload: object) -> None:
        response = self._http_request(
            host_creds=self._get_host_creds(),
            endpoint=self._path,
            method="POST",
            data=payload,
            extra_headers=self._headers,
            max_retries=0,
            timeout=self._timeout,
        )
        self._verify(response, self._path)


class StoreSpanSink:
    """A database URI (``sqlite:///mlflow.db``): the store's own ``log_spans``, in this process,
    the call the MLflow server makes for an OTLP request."""

    def __init__(self, store: Any, experiment_id: str) -> None:
        try:
            store.log_spans(experiment_id, [])  # a database store answers; the others cannot
        except NotImplementedError as exc:
            raise UnsupportedTrackingStore(
                f"{type(store).__name__} cannot store spans: use an MLflow server or a "
                "database URI such as sqlite:///mlflow.db"
            ) from exc
        self._store = store
        self._experiment_id = experiment_id

    def encode(self, spans: list[Any]) -> object:
        return spans

    def send(self, payload: object) -> None:
        self._store.log_spans(self._experiment_id, payload)


class MlflowTraceExporter:
    """One MLflow trace per request, a batch of them per round trip (module docstring)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        token_secret_arn: str | None = None,
        read_secret: Callable[[str], str] = _read_token_from_secrets_manager,
        features: Sequence[str] = (),
    ) -> None:
        self._features = tuple(features)
        self._tracking_uri = tracking_uri
        self._experiment_name = experiment_name
        self._token_secret_arn = token_secret_arn
        self._read_secret = read_secret
        self._tracing_client: Any = None
        self._prediction_span: Callable[[PredictionRecord], Any] | None = None
        self._sink: OtlpHttpSpanSink | StoreSpanSink | None = None
        self.experiment_id: str | None = None

    def prepare(self) -> None:
        """Configure the client, then import mlflow (once, while the app is built). Only what
        the ``mlflow-tracing`` distribution of the image has: no ``mlflow.MlflowClient`` there."""
        configure_mlflow_client_environment()
        from mlflow.tracing.client import TracingClient

        self._tracing_client = TracingClient
        self._prediction_span = prediction_span_factory(self._features)

    def connect(self) -> None:
        """Read the token if configured, find or create the experiment, pick the span sink."""
        if self._token_secret_arn and "MLFLOW_TRACKING_TOKEN" not in os.environ:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self._read_secret(self._token_secret_arn)
        store = self._tracing_client(self._tracking_uri).store
        experiment = store.get_experiment_by_name(self._experiment_name)
        if experiment is None:
            experiment_id = str(store.create_experiment(self._experiment_name))
        else:
            experiment_id = str(experiment.experiment_id)
        self._sink = self._span_sink(store, experiment_id)
        self.experiment_id = experiment_id

    def _span_sink(self, store: Any, experiment_id: str) -> OtlpHttpSpanSink | StoreSpanSink:
        if urlparse(self._tracking_uri).scheme in ("http", "https"):
            from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

            connect_timeout = float(MLFLOW_HTTP_REQUEST_TIMEOUT.get())
            return OtlpHttpSpanSink(store.get_host_creds, experiment_id, connect_timeout)
        return StoreSpanSink(store, experiment_id)

    def encode(self, records: Sequence[PredictionRecord]) -> object:
        if self._prediction_span is None or self._sink is None:
            raise RuntimeError("encode() before prepare() and connect()")
        return self._sink.encode([self._prediction_span(record) for record in records])

    def send(self, payload: object) -> None:
        if self._sink is None:
            raise RuntimeError("send() before connect()")
        self._sink.send(payload)

    def close(self) -> None:
        self._sink = None


class BackgroundPredictionLog:
    """Bounded queue + one daemon thread exporting batches; never blocks a request."""

    def __init__(
        self,
        exporter: BatchExporter,
        capacity: int,
        *,
        max_batch_records: int = MAX_BATCH_RECORDS,
        max_batch_loans: int = MAX_BATCH_LOANS,
        max_attempts: int = MAX_EXPORT_ATTEMPTS,
        backoff_initial: float = BACKOFF_INITIAL_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
    ) -> None:
        self._exporter = exporter
        self._queue: queue.Queue[PredictionRecord] = queue.Queue(maxsize=capacity)
        self._max_batch_records = max_batch_records
        self._max_batch_loans = max_batch_loans
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._delay = backoff_initial
        self._stop = threading.Event()
        self._state = "starting"
        self._in_hand = 0  # taken from the queue, neither exported nor failed yet
        self._exported = 0
        self._batches = 0
        self._dropped = 0
        self._failed = 0
        self._drops_reported = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> BackgroundPredictionLog:
        """Prepare the exporter here (imports), then hand the network work to the thread."""
        self._exporter.prepare()
        self._thread.start()
        return self

    # --- request path -------------------------------------------------------------------------
    def record(self, entry: PredictionRecord) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._dropped += 1

    # --- observation --------------------------------------------------------------------------
    def status(self) -> PredictionLogStatus:
        return PredictionLogStatus(
            enabled=True,
            state=self._state,
            queued=self._queue.qsize() + self._in_hand,
            exported=self._exported,
            dropped=self._dropped,
            failed=self._failed,
        )

    @property
    def batches_exported(self) -> int:
        """Round trips that landed (``exported / batches_exported`` = mean batch size)."""
        return self._batches

    def take_new_drops(self) -> int:
        """Drops since the last call (for the MlflowDropped metric)."""
        current = self._dropped
        new = current - self._drops_reported
        self._drops_reported = current
        return new

    def wait_until_idle(self, timeout: float) -> bool:
        """True once every queued record has been exported or failed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Drain for up to ``timeout`` seconds, then stop the thread."""
        if self._thread.is_alive():
            self.wait_until_idle(timeout)
        self._stop.set()
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self._exporter.close()
        self._state = "stopped"

    # --- the logging thread -------------------------------------------------------------------
    def _back_off(self) -> bool:
        """Sleep the current delay, then double it; True when asked to stop meanwhile."""
        stopping = self._stop.wait(self._delay)
        self._delay = min(self._delay * 2, self._backoff_max)
        return stopping

    def _connect_with_backoff(self) -> bool:
        while not self._stop.is_set():
            try:
                self._exporter.connect()
            except UnsupportedTrackingStore as exc:
                _log.error("MLflow prediction logging is off: %s", exc)
                self._state = "stopped"
                return False
            except Exception as exc:
                self._state = "backoff"
                _log.warning(
                    "MLflow prediction logging cannot connect (%s: %s); retrying in %.0f s",
                    type(exc).__name__,
                    redact(str(exc))[:300],
                    self._delay,
                )
                if self._back_off():
                    return False
            else:
                self._state = "ok"
                self._delay = self._backoff_initial
                return True
        return False

    def _take_batch(self) -> list[PredictionRecord] | None:
        """Wait for one record, then take those already queued (never wait for more) up to the
        caps; None once asked to stop. The caller marks every record taken ``task_done``."""
        while True:
            try:
                first = self._queue.get(timeout=STOP_POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    return None
                continue
            break
        batch: list[PredictionRecord] = [first]
        loans = len(first[4])
        while len(batch) < self._max_batch_records and loans < self._max_batch_loans:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            loans += len(item[4])
        self._in_hand = len(batch)
        return batch

    def _deliver(self, batch: list[PredictionRecord]) -> None:
        """Encode once, send up to ``max_attempts`` times with a back-off after each failure,
        then count the batch as failed."""
        try:
            payload = self._exporter.encode(batch)
        except Exception as exc:  # a record that cannot be encoded never will be
            _log.warning(
                "MLflow prediction export skipped a batch (%s: %s)", type(exc).__name__, exc
            )
            self._failed += len(batch)
            return
        for _attempt in range(self._max_attempts):
            try:
                self._exporter.send(payload)
            except Exception as exc:  # the logging thread must survive anything
                if self._state == "ok":
                    _log.warning(
                        "MLflow prediction export failed (%s: %s); backing off (records queue up "
                        "to the limit, then are dropped and counted)",
                        type(exc).__name__,
                        redact(str(exc))[:300],
                    )
                self._state = "backoff"
                if self._back_off():
                    break
            else:
                self._exported += len(batch)
                self._batches += 1
                if self._state != "ok":
                    _log.warning("MLflow prediction logging recovered")
                self._state = "ok"
                self._delay = self._backoff_initial
                return
        self._failed += len(batch)

    def _run(self) -> None:
        if not self._connect_with_backoff():
            return
        while not self._stop.is_set():
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._deliver(batch)
            finally:
                self._in_hand = 0
                for _ in batch:
                    self._queue.task_done()


def build_prediction_log(settings: Settings, features: Sequence[str] = ()) -> PredictionLog:
    """The MLflow logger when ``MLFLOW_TRACKING_URI`` is set, else the disabled one.

    mlflow missing while the URI is set is a deployment mistake, but it must not stop
    predictions: it is logged as an error and logging stays off.
    """
    if not settings.prediction_logging_enabled or settings.mlflow_tracking_uri is None:
        return DisabledPredictionLog()
    exporter = MlflowTraceExporter(
        tracking_uri=settings.mlflow_tracking_uri.strip(),
        experiment_name=settings.mlflow_experiment_name,
        token_secret_arn=settings.mlflow_tracking_token_secret_arn,
        features=features,
    )
    try:
        return BackgroundPredictionLog(
            exporter, capacity=settings.prediction_log_queue_size
        ).start()
    except ImportError as exc:
        _log.error("MLFLOW_TRACKING_URI is set but mlflow cannot be imported (%s)", exc)
        return DisabledPredictionLog()
