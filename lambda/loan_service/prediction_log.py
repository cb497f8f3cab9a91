"""Prediction logging to MLflow: one trace per request, exported in batches by our own thread.

Request path. ``PredictionLog.record`` does one ``put_nowait`` of a tuple of objects the request
already built: no copy, no serialization, no I/O (a unit test measures the median). A full queue
drops the record and counts it.

Export. One daemon thread waits for a record, then takes every record already waiting, up to
``MAX_BATCH_RECORDS`` records or about ``MAX_BATCH_LOANS`` loans, without waiting for more: batches
grow with the load, and a lone request is shipped at once. Each record becomes the root span of
its own trace: the request's inputs and outputs, its start and end, the trace tags ``request_id``
and ``model_version``, and the span attributes ``endpoint``, ``latency_ms`` and ``n_loans``. The
whole batch is ONE OTLP/HTTP protobuf POST, sent by OpenTelemetry's own ``OTLPSpanExporter`` to
the MLflow server's documented OTLP endpoint ``/v1/traces`` (MLflow >= 3.6 with a SQL backend)
with the experiment in the ``x-mlflow-experiment-id`` header. The server creates each trace, its
request/response previews and its tags from the root span (the attributes below). No MLflow
package is imported: the experiment's id is one REST call (``experiments/get-by-name``, and
``experiments/create`` when it is missing). A tracking URI that is not a server (``sqlite:///``,
a ``./mlruns`` folder) cannot receive spans: logging is off, with one error line.

Failures. The experiment lookup gives up after ``MLFLOW_HTTP_TIMEOUT_SECONDS`` to connect or
``EXPORT_READ_TIMEOUT_SECONDS`` to answer; one export (the exporter's own quick retries of a
refused connection or a 429/502/503/504 included) gives up after ``EXPORT_TIMEOUT_SECONDS``. A
failed batch is re-sent after a back-off (1 s doubling to 60 s), at most ``MAX_EXPORT_ATTEMPTS``
times in all, then counted as failed. Trace ids are chosen once per batch, so a send that landed
before it timed out is overwritten by the retry, not duplicated. Meanwhile new records wait in,
or are dropped from, the bounded queue.

Batching is what makes the log keep up: the server's work per trace is what remains, one HTTP
call and one database transaction per batch (docs/serving.md).

OpenTelemetry is imported only when ``MLFLOW_TRACKING_URI`` is set, once, while the app is built
(``prepare``), never on a request. Importing in the thread instead made ``import main`` slower
(GIL contention with the main thread's own imports) and would steal CPU from the first requests.
Everything that touches the network (``connect``, ``send``) runs in the thread.

Lambda: the sandbox freezes after each response, and this thread freezes with it. Nothing is
flushed at freeze. Queued records survive the freeze in memory and are exported, as one batch,
while later invocations run; a send cut by the freeze fails or times out after the thaw and is
re-sent. At reclaim, the shutdown extension (``lambda_shutdown``) drains what it can.
``close()`` (uvicorn shutdown) drains what it can within its timeout.
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
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, cast
from urllib.parse import unquote, urlsplit

import numpy as np

from loan_service.redaction import redact
from loan_service.schemas import PredictionLogStatus
from loan_service.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.util.types import Attributes

MLFLOW_HTTP_TIMEOUT_SECONDS: Final = 2.0
EXPORT_READ_TIMEOUT_SECONDS: Final = 10.0
REST_TIMEOUT: Final = (MLFLOW_HTTP_TIMEOUT_SECONDS, EXPORT_READ_TIMEOUT_SECONDS)
EXPORT_TIMEOUT_SECONDS: Final = 30.0
MAX_BATCH_RECORDS: Final = 200
MAX_BATCH_LOANS: Final = 2000
MAX_EXPORT_ATTEMPTS: Final = 3
BACKOFF_INITIAL_SECONDS: Final = 1.0
BACKOFF_MAX_SECONDS: Final = 60.0
STOP_POLL_SECONDS: Final = 0.25  # an idle thread checks this often whether close() was called
TRACE_NAME: Final = "loan_default_prediction"
SINGLE_PREDICTION_ENDPOINT: Final = "/predict"
TRACE_TAGS: Final = ("request_id", "model_version")

# MLflow's OTLP ingestion: the documented endpoint and header, and the root-span attributes its
# span model reads (inputs/outputs become the trace's request/response; ``mlflow.traceTag.<key>``
# attributes become trace tags, ``mlflow.traceName`` its name).
OTLP_TRACES_PATH: Final = "/v1/traces"
EXPERIMENT_ID_HEADER: Final = "x-mlflow-experiment-id"
INPUTS_ATTRIBUTE: Final = "mlflow.spanInputs"
OUTPUTS_ATTRIBUTE: Final = "mlflow.spanOutputs"
SPAN_TYPE_ATTRIBUTE: Final = "mlflow.spanType"
TRACE_TAG_PREFIX: Final = "mlflow.traceTag."
TRACE_NAME_TAG: Final = "mlflow.traceName"


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
    """``MLFLOW_TRACKING_URI`` unset: records go nowhere and OpenTelemetry is never imported."""

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
    """The tracking URI is not an MLflow server (a database URI, a ``./mlruns`` folder): nothing
    there receives spans, and retrying cannot help."""


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


def _random_id(n_bytes: int) -> int:
    """A non-zero OTel id from the OS: unlike a ``random.Random`` state, it never repeats in
    processes forked from one parent."""
    return int.from_bytes(os.urandom(n_bytes), "big") or 1


def prediction_span_factory(features: Sequence[str]) -> Callable[[PredictionRecord], Any]:
    """Import OpenTelemetry's SDK span types; return ``record -> ReadableSpan``.

    The span is a finished root span, its own trace's only span. Attribute values are plain
    values (the loans and answers as mappings, sent as OTLP key-value lists): the MLflow server
    stores each as JSON, reads the inputs/outputs attributes as the trace's request and response,
    and turns every ``mlflow.traceTag.<key>`` attribute into a trace tag (``search_traces``
    filters on them). The MLflow trace id is derived by the server from the OTel trace id.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    sampled = TraceFlags(TraceFlags.SAMPLED)
    ok = Status(StatusCode.OK)
    no_resource = Resource.get_empty()
    constant_attributes = {
        SPAN_TYPE_ATTRIBUTE: "UNKNOWN",
        f"{TRACE_TAG_PREFIX}{TRACE_NAME_TAG}": TRACE_NAME,
    }

    def prediction_span(record: PredictionRecord) -> Any:
        loans = [dict(zip(features, row, strict=True)) for row in record.raw.tolist()]
        outputs = [dict(answer) for answer in record.answers]
        single = record.endpoint == SINGLE_PREDICTION_ENDPOINT and len(loans) == len(outputs) == 1
        fields: dict[str, Any] = {
            "request_id": record.request_id,
            "model_version": str(outputs[0]["model_version"]) if outputs else "",
            "endpoint": record.endpoint,
            "latency_ms": record.latency_ns / 1e6,
            "n_loans": len(loans),
        }
        attributes: dict[str, Any] = {
            **constant_attributes,
            INPUTS_ATTRIBUTE: loans[0] if single else {"loans": loans},
            OUTPUTS_ATTRIBUTE: outputs[0] if single else {"predictions": outputs},
            **fields,
            **{f"{TRACE_TAG_PREFIX}{key}": str(fields[key]) for key in TRACE_TAGS},
        }
        context = SpanContext(_random_id(16), _random_id(8), is_remote=False, trace_flags=sampled)
        return ReadableSpan(
            name=TRACE_NAME,
            context=context,
            parent=None,
            # OTLP attribute values may be key-value lists; OTel's encoder sends mappings as such.
            attributes=cast("Attributes", attributes),
            start_time=record.started_wall_ns,
            end_time=record.started_wall_ns + max(record.latency_ns, 1),
            status=ok,
            resource=no_resource,
        )

    return prediction_span


class TrackingServer(NamedTuple):
    """Where an MLflow tracking URI points, split into what the HTTP client needs: the base URL
    (no credentials in it, so no log line or error text can carry them) and basic-auth userinfo."""

    base_url: str
    userinfo: tuple[str, str] | None

    @classmethod
    def from_uri(cls, uri: str) -> TrackingServer:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            scheme = parts.scheme or "a local path"
            raise UnsupportedTrackingStore(
                f"MLFLOW_TRACKING_URI must be an MLflow server (http:// or https://), not "
                f"{scheme}: only a server receives traces over OTLP"
            )
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        userinfo = None
        if parts.username is not None:
            userinfo = (unquote(parts.username), unquote(parts.password or ""))
        return cls(base, userinfo)


def tracking_session(server: TrackingServer) -> Any:
    """A ``requests`` session carrying MLflow's documented client credentials: the URI's
    userinfo or ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic auth),
    ``MLFLOW_TRACKING_TOKEN`` (bearer), ``MLFLOW_TRACKING_CLIENT_CERT_PATH`` (mutual TLS)."""
    import requests

    session = requests.Session()
    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if server.userinfo is not None:
        session.auth = server.userinfo
    elif username:
        session.auth = (username, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    client_certificate = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_certificate:
        session.cert = client_certificate
    return session


def tls_verify() -> bool | str:
    """``MLFLOW_TRACKING_SERVER_CERT_PATH`` (a CA bundle), ``MLFLOW_TRACKING_INSECURE_TLS``."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() == "true":
        return False
    return os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


class ExportFailed(Exception):
    """The OTLP exporter gave up on a batch (it logged why)."""


def find_or_create_experiment(session: Any, base_url: str, name: str) -> str:
    """The experiment's id: one REST call (get-by-name), plus one to create it when missing.

    Two processes starting together may both create it: the loser's create answers
    ``RESOURCE_ALREADY_EXISTS`` and it reads the winner's id."""
    api = f"{base_url}/api/2.0/mlflow/experiments"
    found = session.get(
        f"{api}/get-by-name", params={"experiment_name": name}, timeout=REST_TIMEOUT
    )
    if found.status_code == 200:
        return str(found.json()["experiment"]["experiment_id"])
    if found.status_code != 404:
        found.raise_for_status()
        raise ExportFailed(f"experiments/get-by-name answered {found.status_code}")
    created = session.post(f"{api}/create", json={"name": name}, timeout=REST_TIMEOUT)
    if created.status_code == 200:
        return str(created.json()["experiment_id"])
    if _error_code(created) == "RESOURCE_ALREADY_EXISTS":
        return find_or_create_experiment(session, base_url, name)
    created.raise_for_status()
    raise ExportFailed(f"experiments/create answered {created.status_code}")


def _error_code(response: Any) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        return str(response.json().get("error_code"))
    return None


class MlflowTraceExporter:
    """One MLflow trace per request, a batch of them per OTLP round trip (module docstring)."""

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
        self._prediction_span: Callable[[PredictionRecord], Any] | None = None
        self._exporter_class: Any = None
        self._exporter: Any = None
        self._success: Any = None
        self.experiment_id: str | None = None

    def prepare(self) -> None:
        """Import OpenTelemetry's SDK and OTLP exporter (once, while the app is built)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult

        self._exporter_class = OTLPSpanExporter
        self._success = SpanExportResult.SUCCESS
        self._prediction_span = prediction_span_factory(self._features)

    def connect(self) -> None:
        """Read the token if configured, find or create the experiment, build the exporter."""
        server = TrackingServer.from_uri(self._tracking_uri)
        if self._token_secret_arn and "MLFLOW_TRACKING_TOKEN" not in os.environ:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self._read_secret(self._token_secret_arn)
        session = tracking_session(server)
        session.verify = tls_verify()
        experiment_id = find_or_create_experiment(session, server.base_url, self._experiment_name)
        verify = session.verify
        exporter = self._exporter_class(
            endpoint=f"{server.base_url}{OTLP_TRACES_PATH}",
            headers={EXPERIMENT_ID_HEADER: experiment_id},
            timeout=EXPORT_TIMEOUT_SECONDS,
            session=session,
            certificate_file=verify if isinstance(verify, str) else None,
        )
        session.verify = verify  # the exporter resets it from certificate_file; keep False
        self._exporter = exporter
        self.experiment_id = experiment_id

    def encode(self, records: Sequence[PredictionRecord]) -> object:
        if self._prediction_span is None:
            raise RuntimeError("encode() before prepare()")
        return [self._prediction_span(record) for record in records]

    def send(self, payload: object) -> None:
        if self._exporter is None:
            raise RuntimeError("send() before connect()")
        if self._exporter.export(payload) is not self._success:
            raise ExportFailed(f"OTLP export to {OTLP_TRACES_PATH} failed")

    def close(self) -> None:
        if self._exporter is not None:
            self._exporter.shutdown()
        self._exporter = None


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

    The OTLP exporter missing while the URI is set is a deployment mistake, but it must not stop
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
        _log.error("MLFLOW_TRACKING_URI is set but the OTLP exporter cannot be imported (%s)", exc)
        return DisabledPredictionLog()
