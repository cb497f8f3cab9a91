"""MLflow tracking of a training run; it never blocks or fails training.

* ``mlflow`` is imported only when tracking is on (``--no-mlflow`` never imports it).
* Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else a SQLite store at the repository root
  (an absolute path, so ``python -m training`` from any folder finds the same store).
* A remote server is probed with a plain TCP connect and a ``GET /health`` (3 s each) before
  MLflow is touched; MLflow's own HTTP client is told not to retry and to time out after 5 s
  (its defaults retry for minutes). A dead server costs at most a few seconds: training warns,
  goes on, and the manifest says ``"unreachable"``.
* Every MLflow call is guarded: a failure turns into a warning and a recorded status, never into
  a failed training run.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from contextlib import nullcontext, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from training.redaction import install_log_redaction, redact

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACKING_URI = f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
EXPERIMENT_NAME = "loan-default"
REGISTERED_MODEL_NAME = "loan-default"
PROBE_TIMEOUT_SECONDS = 3.0

MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
"""Applied (unless the user set them) before mlflow is imported."""

TrackingStatus = Literal["tracked", "disabled", "unreachable"]


@dataclass(frozen=True)
class CandidateRun:
    """One candidate as a nested run under the training run: MLflow's compare view lines them up."""

    name: str
    chosen: bool
    params: dict[str, Any]
    metrics: dict[str, float]
    plots: list[Path]


@dataclass(frozen=True)
class RegisteredModelPayload:
    """What the registered pyfunc is made of (see ``training.registry``)."""

    artifacts: dict[str, str]
    column_types: dict[str, str]
    input_example: Any
    held_out: Any
    pip_requirements: list[str]
    tags: dict[str, str]


@dataclass(frozen=True)
class RunPayload:
    """Everything a training run logs to MLflow."""

    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_files: list[tuple[Path, str | None]]
    artifact_dirs: list[tuple[Path, str]]
    candidates: list[CandidateRun]
    model: RegisteredModelPayload


@dataclass
class TrainingTracker:
    """One MLflow run around a training; a context manager whose failures are only warnings."""

    enabled: bool
    quiet: bool = False
    tracking_uri: str | None = None
    status: TrackingStatus = "disabled"
    detail: str | None = None
    run_id: str | None = None
    registered_model: dict[str, str] | None = None
    warnings: list[str] = field(default_factory=list)
    _mlflow: Any = None

    def __enter__(self) -> TrainingTracker:
        if not self.enabled:
            self.detail = "tracking disabled with --no-mlflow"
            return self
        self.tracking_uri = resolve_tracking_uri()
        problem = probe_tracking_server(self.tracking_uri)
        if problem is not None:
            self._give_up(problem)
            return self
        try:
            self._start_run()
        except Exception as error:
            self._give_up(f"could not start an MLflow run: {_one_line(error)}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._mlflow is None or self.run_id is None:
            return
        try:
            self._mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")
        except Exception as error:
            self._warn(f"could not close the MLflow run: {_one_line(error)}")

    @property
    def active(self) -> bool:
        """True while there is a run to log to."""
        return self._mlflow is not None and self.status == "tracked"

    def log_run(self, payload: RunPayload) -> None:
        """Params, metrics, tags, artifacts, one nested run per candidate, the held-out split,
        and the model (registered with alias ``challenger`` where the store allows)."""
        if not self.active:
            return
        mlflow = self._mlflow
        try:
            mlflow.log_params(payload.params)
            mlflow.log_metrics(payload.metrics)
            mlflow.set_tags(payload.tags)
            for path, artifact_path in payload.artifact_files:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)
            for folder, artifact_path in payload.artifact_dirs:
                mlflow.log_artifacts(str(folder), artifact_path=artifact_path)
            for candidate in payload.candidates:
                self._log_candidate(candidate)
            self._log_held_out(payload.model)
        except Exception as error:
            self._give_up(f"logging to MLflow failed: {_one_line(error)}")
            return
        self._log_model(payload.model)

    def _log_candidate(self, candidate: CandidateRun) -> None:
        mlflow = self._mlflow
        with mlflow.start_run(run_name=candidate.name, nested=True):
            mlflow.log_params(candidate.params)
            mlflow.log_metrics(candidate.metrics)
            mlflow.set_tags({"candidate": candidate.name, "chosen": str(candidate.chosen).lower()})
            for plot in candidate.plots:
                mlflow.log_artifact(str(plot), artifact_path="plots")

    def _log_held_out(self, model: RegisteredModelPayload) -> None:
        """The test split (raw features + target): promote compares models on it."""
        from training.registry import HELD_OUT_ARTIFACT

        self._mlflow.log_text(model.held_out.to_csv(index=False), HELD_OUT_ARTIFACT)

    def log_manifest(self, manifest: dict[str, Any]) -> None:
        """The final manifest, so the run and the artifact folder point at each other."""
        if not self.active:
            return
        try:
            self._mlflow.log_dict(manifest, "manifest.json")
        except Exception as error:
            self._give_up(f"logging the manifest to MLflow failed: {_one_line(error)}")

    def summary(self) -> dict[str, Any]:
        """The manifest's ``mlflow`` entry."""
        return {
            "status": self.status,
            "tracking_uri": None if self.tracking_uri is None else redact(self.tracking_uri),
            "detail": None if self.detail is None else redact(self.detail),
            "registered_model": self.registered_model,
        }

    def _start_run(self) -> None:
        for name, value in MLFLOW_CLIENT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        install_log_redaction()  # MLflow's and urllib3's warnings name the URI they failed on
        import mlflow

        if self.quiet:
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
        assert self.tracking_uri is not None
        artifact_root = local_artifact_root(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(EXPERIMENT_NAME) is None:
            mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root)
        mlflow.set_experiment(EXPERIMENT_NAME)
        run = mlflow.start_run(run_name="training")
        self._mlflow = mlflow
        self.run_id = run.info.run_id
        self.status = "tracked"

    def _log_model(self, model: RegisteredModelPayload) -> None:
        import mlflow.pyfunc

        from training.registry import CHALLENGER, PYFUNC_MODEL_FILE, model_signature

        mlflow = self._mlflow
        try:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_MODEL_FILE),
                artifacts=model.artifacts,
                signature=model_signature(model.column_types),
                input_example=model.input_example,
                pip_requirements=model.pip_requirements,
            )
        except Exception as error:
            self._give_up(f"logging the model to MLflow failed: {_one_line(error)}")
            return
        try:
            # register_model prints its chatter to stderr itself; --quiet means quiet.
            chatter = redirect_stderr(io.StringIO()) if self.quiet else nullcontext()
            with chatter:
                version = mlflow.register_model(
                    info.model_uri,
                    REGISTERED_MODEL_NAME,
                    await_registration_for=10,
                    tags=model.tags,
                )
            client = mlflow.MlflowClient()
            client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHALLENGER, version.version)
        except Exception as error:
            self.detail = f"model logged but not registered: {_one_line(error)}"
            self._warn(self.detail)
            return
        self.registered_model = {
            "name": REGISTERED_MODEL_NAME,
            "version": str(version.version),
            "alias": CHALLENGER,
        }

    def _give_up(self, problem: str) -> None:
        self.status = "unreachable"
        self.detail = problem
        self._warn(f"MLflow tracking at {self.tracking_uri}: {problem}; training goes on")

    def _warn(self, message: str) -> None:
        message = redact(message)
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def local_artifact_root(uri: str) -> str | None:
    """For a local SQLite store, an ``mlruns/`` folder beside the database file.

    Without it MLflow puts a new experiment's artifacts under ``./mlruns`` of whatever folder
    training was started from; beside the database, runs and their files stay together. The
    database's folder is created here too, since SQLite will not create it. Other stores (a
    tracking server, Databricks) choose their own artifact location: None.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == f"{prefix}:memory:":
        return None
    database = Path(uri.removeprefix(prefix)).resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent / "mlruns").as_uri()


def resolve_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set and non-empty, else the repository's SQLite store."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return configured or DEFAULT_TRACKING_URI


def probe_tracking_server(uri: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """None when an HTTP(S) tracking server answers (or the store is local), else why not."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = None
    if not host:
        return f"tracking URI {redact(uri)!r} has no host or an invalid port"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        return f"cannot connect to {host}:{port} ({_one_line(error) or type(error).__name__})"
    request = _health_request(parts, host, port)
    health = request.full_url
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # http(s) only, checked above
            return None
    except urllib.error.HTTPError:
        return None  # the server answered (auth or a proxy may reject /health): reachable
    except (urllib.error.URLError, OSError) as error:
        return f"{health} did not answer within {timeout:g}s ({_one_line(error)})"


def _health_request(parts: SplitResult, host: str, port: int) -> urllib.request.Request:
    """``GET <server>/health``: urllib takes no userinfo in a URL, so the bare address, with
    the URI's credentials (if any) in a Basic authorization header."""
    netloc = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(
        f"{parts.scheme}://{netloc}:{port}{parts.path.rstrip('/')}/health"
    )
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + b64encode(credentials.encode()).decode())
    return request


def _one_line(error: BaseException) -> str:
    """The first line of ``error`` (redacted BEFORE it is cut, so no secret is half-shown)."""
    text = redact(str(error)).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
