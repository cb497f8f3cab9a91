"""Start, probe and stop the HTTP servers the benchmark and the load/fault tests talk to.

One place knows the exact command lines, so the benchmark, the load test and the fault tests run
the service the way it is deployed and documented (uvicorn with httptools and uvloop, two
workers; ECS: uvicorn's CLI on the app factory, ``infra_cdk.ecs_entry``), the reference design
the way the original system ran (gunicorn, 2 workers x 2 threads), and a real MLflow tracking
server for the prediction-logging tests and benchmark. Servers get their own process group, so
stopping one never touches anything else on the machine.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from infra_cdk.ecs_entry import COMMAND, ENTRY_POINT
from tests.support.loans import TYPICAL_LOAN
from tests.support.paths import LAMBDA_ROOT, REPO_ROOT

READY_TIMEOUT_SECONDS: Final = 60.0
STOP_TIMEOUT_SECONDS: Final = 30.0
# A first start creates and migrates the SQLite schema: tens of seconds on a busy machine.
MLFLOW_READY_TIMEOUT_SECONDS: Final = 240.0
MLFLOW_CLI: Final = Path(sys.executable).with_name("mlflow")
# No job runner: by default the server starts huey consumers for its GenAI jobs, which no test
# uses; without them a server is ready sooner and stops in about a second instead of ~20 s.
MLFLOW_SERVER_ENV: Final = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def uvicorn_command(
    port: int, workers: int = 2, access_log: bool = False, log_level: str = "warning"
) -> list[str]:
    """The service on uvicorn with httptools + uvloop, ``main:app``."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--log-level",
        log_level,
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    if not access_log:
        command.append("--no-access-log")
    return command


def ecs_command(port: int, workers: int = 1) -> list[str]:
    """The ECS task's entry point and command (``infra_cdk.ecs_entry``) run by this interpreter
    on 127.0.0.1:``port``, not 0.0.0.0:8080; ``workers`` > 1 adds ``--workers``."""
    command = [sys.executable, *ENTRY_POINT[1:], *COMMAND]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


def gunicorn_command(port: int, workers: int = 2, threads: int = 2) -> list[str]:
    """The original design: gunicorn's threaded workers in front of the Flask app."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "bench.reference_app:create_app()",
    ]


def pinned(command: Sequence[str], cpus: str | None) -> list[str]:
    """``taskset -c CPUS command`` when ``cpus`` is given; children inherit the CPU mask."""
    return ["taskset", "-c", cpus, *command] if cpus else list(command)


def post_json(
    port: int, path: str, body: Any, timeout: float = 10.0, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """One POST on a fresh connection; returns (status, parsed JSON or raw text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request(
            "POST", path, payload, {"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def get_json(port: int, path: str, timeout: float = 10.0) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, json.loads(raw)


@dataclass
class Server:
    """A running server process (and its workers) that this code started."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log_handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def process_tree(self) -> list[int]:
        """The server's pid and every descendant (uvicorn/gunicorn workers)."""
        return [self.pid, *descendants(self.pid)]

    def resident_bytes(self) -> int:
        """Resident memory of the whole process tree (VmRSS summed)."""
        return sum(resident_bytes(pid) for pid in self.process_tree())

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Poll ``POST /predict`` until it answers 200 with a probability; return the wait."""
        started = time.perf_counter()
        deadline = started + timeout
        last_error = "no answer yet"
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before answering:\n"
                    f"{self.log_text()[-4000:]}"
                )
            try:
                status, body = post_json(self.port, "/predict", TYPICAL_LOAN, timeout=5.0)
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.005)
                continue
            if status == 200 and isinstance(body, dict) and "probability" in body:
                return time.perf_counter() - started
            last_error = f"HTTP {status}: {str(body)[:300]}"
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s ({last_error})")

    def wait_until_get_ok(self, path: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Poll ``GET path`` until it answers 200 (for servers that are not the service)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before answering:\n"
                    f"{self.log_text()[-4000:]}"
                )
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
            try:
                connection.request("GET", path)
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.3)
        raise TimeoutError(
            f"{self.name} did not answer GET {path} within {timeout:.0f} s:\n"
            f"{self.log_text()[-4000:]}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM (graceful shutdown); SIGKILL the process group only if that times out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return self.process.returncode


def start_server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
) -> Server:
    """Start ``command`` in its own session (process group); stdout and stderr go to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = log_path.open("wb")
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(name=name, process=process, port=port, log_path=log_path, _log_handle=handle)


def service_env(artifact_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without MLflow, pointed at ``artifact_dir``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "AWS_LAMBDA_", "ECS_CONTAINER_METADATA"))
    }
    env.update({"ARTIFACT_DIR": str(artifact_dir), "PYTHONDONTWRITEBYTECODE": "1", **extra})
    return env


def reference_env(model_dir: Path) -> dict[str, str]:
    from bench.reference_app import REFERENCE_MODEL_DIR_ENV

    env = dict(os.environ)
    env.update({REFERENCE_MODEL_DIR_ENV: str(model_dir), "PYTHONPATH": str(REPO_ROOT)})
    return env


@contextlib.contextmanager
def running_service(
    artifact_dir: Path,
    log_path: Path,
    *,
    workers: int = 2,
    cpus: str | None = None,
    access_log: bool = False,
    log_level: str = "warning",
    **extra_env: str,
) -> Iterator[Server]:
    """uvicorn ``main:app`` on a free port, ready to answer; stopped (SIGTERM) on exit."""
    port = free_port()
    server = start_server(
        "service (uvicorn)",
        pinned(uvicorn_command(port, workers, access_log, log_level), cpus),
        port=port,
        cwd=LAMBDA_ROOT,
        env=service_env(artifact_dir, **extra_env),
        log_path=log_path,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_reference(
    model_dir: Path, log_path: Path, *, workers: int = 2, threads: int = 2, cpus: str | None = None
) -> Iterator[Server]:
    """gunicorn + Flask (the original design) on a free port; stopped on exit."""
    port = free_port()
    server = start_server(
        "reference (gunicorn + Flask)",
        pinned(gunicorn_command(port, workers, threads), cpus),
        port=port,
        cwd=REPO_ROOT,
        env=reference_env(model_dir),
        log_path=log_path,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def mlflow_server_command(home: Path, port: int) -> list[str]:
    """``mlflow server``: SQLite store and proxied artifacts in ``home``, one worker, loopback."""
    return [
        str(MLFLOW_CLI),
        "server",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


@contextlib.contextmanager
def running_mlflow_server(
    home: Path, ready_timeout: float = MLFLOW_READY_TIMEOUT_SECONDS
) -> Iterator[str]:
    """A real tracking server on a free port; yields its URL once ``/health`` answers.

    Its log is ``home/server.log``; stopped (SIGTERM) on exit.
    """
    if not MLFLOW_CLI.exists():
        raise RuntimeError(f"{MLFLOW_CLI} not found: run `make install` (requirements/dev.txt)")
    port = free_port()
    server = start_server(
        "mlflow server",
        mlflow_server_command(home, port),
        port=port,
        cwd=home,
        env={**os.environ, **MLFLOW_SERVER_ENV},
        log_path=home / "server.log",
    )
    try:
        server.wait_until_get_ok("/health", ready_timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc (no psutil needed)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for children_file in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in children_file.read_text().split():
                    found.append(int(child))
                    pending.append(int(child))
    return found


def resident_bytes(pid: int) -> int:
    """VmRSS of one process in bytes (0 when it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
