"""Prediction logging to MLflow: one trace per request, exported by our own background thread.

The request path only calls ``PredictionLog.record``: one ``put_nowait`` of a tuple of objects the
request already built (no copy, no serialization, no I/O; a unit test measures the median). A full
queue drops the record and counts it. One daemon thread drains the queue and, for each record,
creates an MLflow trace whose export runs synchronously inside that thread
(``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false``: no second, hidden queue). MLflow's own HTTP retries
are switched off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``) and its timeout is short; after a failed
export the thread backs off (1 s doubling to 60 s) while new records wait in, or are dropped
from, the bounded queue.

``mlflow`` is imported only when ``MLFLOW_TRACKING_URI`` is set, once, while the app is built
(``prepare``), never on a request. Importing it in the thread instead made ``import main`` about
3x slower (GIL contention with the main thread's own imports) and would steal CPU from the first
requests. Everything that touches the network (``connect``, ``export``) runs in the thread.

Lambda: the sandbox freezes after each response, and this thread freezes with it. Nothing is
flushed at freeze. Queued records survive the freeze in memory and are exported while later
invocations run; those still queued when Lambda reclaims the sandbox are lost (Lambda sends no
shutdown signal to a function without an extension). ``close()`` (uvicorn shutdown) drains what it
can within its timeout.
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
from typing import Any, Final, Protocol

import numpy as np

from loan_service.schemas import FEATURES, PredictionLogStatus
from loan_service.settings import Settings

MLFLOW_HTTP_TIMEOUT_SECONDS: Final = 2
BACKOFF_INITIAL_SECONDS: Final = 1.0
BACKOFF_MAX_SECONDS: Final = 60.0
TRACE_NAME: Final = "loan_default_prediction"
_MLFLOW_EXPORT_LOGGER: Final = "mlflow.tracing.export.mlflow_v3"
_MLFLOW_FLUENT_LOGGER: Final = "mlflow.tracing.fluent"
_MLFLOW_NO_OP_TRACE_ID: Final = "MLFLOW_NO_OP_SPAN_TRACE_ID"  # a span MLflow could not start

# (start wall-clock ns, latency ns, request id, endpoint, raw feature rows, answers as dicts)
PredictionRecord = tuple[int, int, str, str, np.ndarray, Sequence[Mapping[str, Any]]]

_log = logging.getLogger(__name__)
_STOP: Final = object()


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


class TraceExporter(Protocol):
    """Turns one record into durable storage; ``export`` returns False when it did not land."""

    def prepare(self) -> None:
        """Imports and local configuration, in the caller's thread, no network."""
        ...

    def connect(self) -> None:
        """Network setup (credentials, experiment), in the logging thread; raises on failure."""
        ...

    def export(self, record: PredictionRecord) -> bool: ...

    def close(self) -> None:
        """Undo what ``prepare`` hooked into the process (the logging thread has stopped)."""
        ...


class _FailureSpy(logging.Filter):
    """MLflow's exporter swallows export errors and logs them; this notices and mutes them.

    The thread needs to know an export failed (to back off) and one line per failed trace would
    flood the logs while a server is down; our own state-change warnings replace them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failed = False
        self.last_message = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.failed = True
            self.last_message = record.getMessage()[:300]
            return False
        return True


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
    """Before mlflow is imported: no client retries, a short timeout, synchronous trace export."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(MLFLOW_HTTP_TIMEOUT_SECONDS))
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"


class MlflowTraceExporter:
    """One MLflow trace per request: inputs, outputs, model version, latency, request id."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        token_secret_arn: str | None = None,
        read_secret: Callable[[str], str] = _read_token_from_secrets_manager,
    ) -> None:
        self._tracking_uri = tracking_uri
        self._experiment_name = experiment_name
        self._token_secret_arn = token_secret_arn
        self._read_secret = read_secret
        self._experiment_id: str | None = None
        self._spy = _FailureSpy()
        self._mlflow: Any = None

    def prepare(self) -> None:
        """Configure the client, then import mlflow (once, while the app is built)."""
        configure_mlflow_client_environment()
        import mlflow

        for name in (_MLFLOW_EXPORT_LOGGER, _MLFLOW_FLUENT_LOGGER):
            target = logging.getLogger(name)
            if self._spy not in target.filters:
                target.addFilter(self._spy)
        self._mlflow = mlflow

    def connect(self) -> None:
        """Read the token if configured, then find or create the experiment."""
        if self._token_secret_arn and "MLFLOW_TRACKING_TOKEN" not in os.environ:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self._read_secret(self._token_secret_arn)
        mlflow = self._mlflow
        mlflow.set_tracking_uri(self._tracking_uri)
        client = mlflow.MlflowClient(tracking_uri=self._tracking_uri)
        experiment = client.get_experiment_by_name(self._experiment_name)
        if experiment is None:
            experiment_id = client.create_experiment(self._experiment_name)
        else:
            experiment_id = experiment.experiment_id
        self._experiment_id = str(experiment_id)

    def export(self, record: PredictionRecord) -> bool:
        started_wall_ns, latency_ns, request_id, endpoint, raw, answers = record
        loans = [dict(zip(FEATURES, row, strict=True)) for row in raw.tolist()]
        outputs = [dict(answer) for answer in answers]
        is_single = endpoint == "/predict"
        model_version = str(answers[0]["model_version"]) if answers else ""
        latency_ms = latency_ns / 1e6
        tags = {
            "request_id": request_id,
            "model_version": model_version,
            "endpoint": endpoint,
            "latency_ms": f"{latency_ms:.3f}",
            "n_loans": str(len(loans)),
        }
        self._spy.failed = False
        span = self._mlflow.start_span_no_context(
            name=TRACE_NAME,
            inputs=loans[0] if is_single and loans else {"loans": loans},
            attributes={
                "request_id": request_id,
                "model_version": model_version,
                "endpoint": endpoint,
                "latency_ms": latency_ms,
            },
            tags=tags,
            experiment_id=self._experiment_id,
            start_time_ns=started_wall_ns,
        )
        span.end(
            outputs=outputs[0] if is_single and outputs else {"predictions": outputs},
            end_time_ns=started_wall_ns + max(latency_ns, 1),
        )
        if getattr(span, "trace_id", None) in (None, "", _MLFLOW_NO_OP_TRACE_ID):
            self._spy.failed = True
        return not self._spy.failed

    @property
    def last_error(self) -> str:
        return self._spy.last_message

    def close(self) -> None:
        for name in (_MLFLOW_EXPORT_LOGGER, _MLFLOW_FLUENT_LOGGER):
            logging.getLogger(name).removeFilter(self._spy)


class BackgroundPredictionLog:
    """Bounded queue + one daemon thread feeding a ``TraceExporter``; never blocks a request."""

    def __init__(
        self,
        exporter: TraceExporter,
        capacity: int,
        backoff_initial: float = BACKOFF_INITIAL_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
    ) -> None:
        self._exporter = exporter
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stop = threading.Event()
        self._state = "starting"
        self._exported = 0
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
            queued=self._queue.qsize(),
            exported=self._exported,
            dropped=self._dropped,
            failed=self._failed,
        )

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
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():
            self._exporter.close()
        self._state = "stopped"

    # --- the logging thread -------------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Back off; True when asked to stop meanwhile."""
        return self._stop.wait(seconds)

    def _connect_with_backoff(self) -> bool:
        delay = self._backoff_initial
        while not self._stop.is_set():
            try:
                self._exporter.connect()
            except Exception as exc:
                self._state = "backoff"
                _log.warning(
                    "MLflow prediction logging cannot connect (%s: %s); retrying in %.0f s",
                    type(exc).__name__,
                    str(exc)[:300],
                    delay,
                )
                if self._sleep(delay):
                    return False
                delay = min(delay * 2, self._backoff_max)
            else:
                self._state = "ok"
                return True
        return False

    def _run(self) -> None:
        if not self._connect_with_backoff():
            return
        delay = self._backoff_initial
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                try:
                    landed = self._exporter.export(item)  # type: ignore[arg-type]
                except Exception as exc:  # the logging thread must survive anything
                    landed = False
                    _log.debug("prediction export raised %s", exc)
                if landed:
                    self._exported += 1
                    if self._state != "ok":
                        _log.warning("MLflow prediction logging recovered")
                    self._state = "ok"
                    delay = self._backoff_initial
                    continue
                self._failed += 1
                if self._state == "ok":
                    _log.warning(
                        "MLflow prediction export failed; backing off (records queue up to the "
                        "limit, then are dropped and counted)"
                    )
                self._state = "backoff"
                if self._sleep(delay):
                    return
                delay = min(delay * 2, self._backoff_max)
            finally:
                self._queue.task_done()


def build_prediction_log(settings: Settings) -> PredictionLog:
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
    )
    try:
        return BackgroundPredictionLog(
            exporter, capacity=settings.prediction_log_queue_size
        ).start()
    except ImportError as exc:
        _log.error("MLFLOW_TRACKING_URI is set but mlflow cannot be imported (%s)", exc)
        return DisabledPredictionLog()
