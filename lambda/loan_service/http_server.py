"""The HTTP server's app factory (the ECS entry) and ``loan-default serve``.

ECS runs uvicorn's own CLI on the factory (``infra_cdk/ecs_entry.py`` defines the command)::

    python3 -m uvicorn --factory loan_service.http_server:load_app --host 0.0.0.0 --port 8080 ...
    loan-default serve --workers 2 --no-access-log        # the same server, with options; or
                                                          # UVICORN_HOST, UVICORN_PORT,
                                                          # WEB_CONCURRENCY, UVICORN_LOG_LEVEL

``load_app`` builds the app ``main.app`` is. A bad artifact folder or setting raises
``ArtifactError`` naming the file, or pydantic's ``ValidationError`` naming the environment
variable (``RECOVERY_RATE=2``); uvicorn would print the whole traceback. Here it is one line on
stderr, ``refusing to start: <message>``, and status ``EXIT_NOT_STARTED`` (3, uvicorn's own
startup-failure status, which its ``--workers`` supervisor takes as "stop, do not restart").

After SIGTERM uvicorn drains (stops accepting, lets in-flight requests finish, runs the lifespan
shutdown), restores the handlers it found and re-raises the signal. Under the ECS command that is
Python's default action: the process ends killed by SIGTERM (143) unless it is PID 1, a normal
stop for ECS. ``loan-default serve`` installs a handler first, so it exits 0 after the drain
(Ctrl-C in a terminal), and it runs ``--workers N`` through uvicorn's supervisor, ending with 3
when a worker refused the artifact folder.

The HTTP parser is ``server_limits.BoundedHttpToolsProtocol`` where httptools is installed (the
runtime set has it), h11 otherwise; the event loop is uvicorn's ``auto`` choice (uvloop where
installed). The model is loaded once, by the factory, in each worker.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, NoReturn

import uvicorn
from uvicorn.config import LOG_LEVELS, STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from loan_service import long_lived_startup, prepare_process
from loan_service.env_names import (
    DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_LIMIT_CONCURRENCY,
    DEFAULT_SERVER_HOST,
    DEFAULT_SERVER_LOG_LEVEL,
    DEFAULT_SERVER_PORT,
    DEFAULT_SERVER_WORKERS,
    ENV_GRACEFUL_SHUTDOWN_TIMEOUT,
    ENV_KEEP_ALIVE_TIMEOUT,
    ENV_LIMIT_CONCURRENCY,
    ENV_SERVER_HOST,
    ENV_SERVER_LOG_LEVEL,
    ENV_SERVER_PORT,
    ENV_SERVER_WORKERS,
)
from loan_service.server_limits import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ENV_MAX_HEADER_BYTES,
    ENV_REQUEST_TIMEOUT,
)

if TYPE_CHECKING:
    from pydantic import ValidationError

    from loan_service.application import ServiceApp

# uvicorn imports the app through this factory, in this process or in each worker process.
APP_FACTORY: Final = "loan_service.http_server:load_app"
REFUSAL_PREFIX: Final = "refusing to start: "
EXIT_NOT_STARTED: Final = STARTUP_FAILURE
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def load_app() -> ServiceApp:
    """The app ``main.app`` is, built from the environment; an unusable artifact folder or an
    invalid setting ends the process with one line, not a traceback."""
    prepare_process()
    with long_lived_startup():
        from pydantic import ValidationError

        from loan_service.application import create_app
        from loan_service.artifacts import ArtifactError
        from loan_service.settings import Settings

        try:
            app = create_app()
            app.api  # noqa: B018 - a server builds FastAPI now, before its first request
        except ArtifactError as error:
            refuse(str(error))
        except ValidationError as error:
            if error.title != Settings.__name__:
                raise  # not a setting: a bug, and its traceback is what helps
            refuse(f"invalid setting: {settings_problems(error)}")
    return app


def settings_problems(error: ValidationError) -> str:
    """``RECOVERY_RATE: Input should be less than or equal to 1`` for each bad variable."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_url=False)
    )


def refuse(message: str) -> NoReturn:
    print(f"{REFUSAL_PREFIX}{message}", file=sys.stderr, flush=True)
    # uvicorn's supervisor recognises this status and stops instead of restarting the worker.
    raise SystemExit(EXIT_NOT_STARTED) from None


def _whole_number(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _port(value: str) -> int:
    port = _whole_number(value)
    if port is None or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a TCP port 0..65535 (--port or ${ENV_SERVER_PORT})"
        )
    return port


def _workers(value: str) -> int:
    workers = _whole_number(value)
    if workers is None or workers < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of processes >= 1 (--workers or ${ENV_SERVER_WORKERS})"
        )
    return workers


def _positive_int(value: str) -> int:
    number = _whole_number(value)
    if number is None or number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds > 0")
    return number


def _log_level(value: str) -> str:
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not one of {', '.join(LOG_LEVELS)} "
            f"(--log-level or ${ENV_SERVER_LOG_LEVEL})"
        )
    return level


def parse_options(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    prog: str = "loan-default serve",
) -> argparse.Namespace:
    """Command-line options; each falls back to its environment variable, then to the default.

    argparse converts string defaults with the option's type, so an environment value is
    validated exactly like the same value on the command line.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the loan-default API with uvicorn; "
        "exit 0 after a graceful SIGTERM/SIGINT drain.",
    )
    # flag, type, environment variable, default, what it sets: each falls back the same way.
    options: tuple[tuple[str, Callable[[str], Any], str, object, str], ...] = (
        ("--host", str, ENV_SERVER_HOST, DEFAULT_SERVER_HOST, "address to bind"),
        ("--port", _port, ENV_SERVER_PORT, DEFAULT_SERVER_PORT, "port to bind"),
        ("--workers", _workers, ENV_SERVER_WORKERS, DEFAULT_SERVER_WORKERS, "worker processes"),
        (
            "--log-level",
            _log_level,
            ENV_SERVER_LOG_LEVEL,
            DEFAULT_SERVER_LOG_LEVEL,
            "uvicorn's log level; the service's own logger follows LOG_LEVEL",
        ),
        (
            "--max-header-bytes",
            _positive_int,
            ENV_MAX_HEADER_BYTES,
            DEFAULT_MAX_HEADER_BYTES,
            "largest request head, else 431",
        ),
        (
            "--request-timeout",
            _positive_float,
            ENV_REQUEST_TIMEOUT,
            DEFAULT_REQUEST_TIMEOUT_SECONDS,
            "seconds to receive a whole request, else 408",
        ),
        (
            "--limit-concurrency",
            _positive_int,
            ENV_LIMIT_CONCURRENCY,
            DEFAULT_LIMIT_CONCURRENCY,
            "connections per worker before 503",
        ),
        (
            "--keep-alive-timeout",
            _positive_int,
            ENV_KEEP_ALIVE_TIMEOUT,
            DEFAULT_KEEP_ALIVE_TIMEOUT,
            "seconds an idle connection stays open",
        ),
        (
            "--graceful-shutdown-timeout",
            _positive_int,
            ENV_GRACEFUL_SHUTDOWN_TIMEOUT,
            DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT,
            "seconds in-flight requests get after SIGTERM",
        ),
    )
    for flag, kind, env, default, what in options:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        parser.add_argument(
            flag,
            type=kind,
            default=environ.get(env, str(default)),
            help=f"{what} (${env}, default {shown})",
        )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no line per request (uvicorn's access log is on by default)",
    )
    return parser.parse_args(argv)


def server_config(options: argparse.Namespace) -> uvicorn.Config:
    """uvicorn's defaults, except: the app through ``load_app``, no WebSocket support to load
    (the API has no WebSocket route), and the limits below (docs/operations.md).

    * httptools: ``server_limits.BoundedHttpToolsProtocol`` (request-head size, request timeout);
      h11 where httptools is absent (head size through h11's own incomplete-event limit).
    * ``limit_concurrency``: connections + tasks per worker past which uvicorn answers 503.
    * ``timeout_keep_alive``: an idle keep-alive connection is closed after this many seconds;
      longer than the ALB's 60 s idle timeout, so the balancer never reuses a connection the
      server is closing (a 502).
    * ``timeout_graceful_shutdown``: after SIGTERM, requests still running (a half-sent body)
      are cancelled after this many seconds - well inside ECS's 30 s stop timeout.
    """
    os.environ[ENV_MAX_HEADER_BYTES] = str(options.max_header_bytes)
    os.environ[ENV_REQUEST_TIMEOUT] = str(options.request_timeout)
    http: Any = "h11"
    if importlib.util.find_spec("httptools") is not None:
        from loan_service.server_limits import BoundedHttpToolsProtocol

        BoundedHttpToolsProtocol.max_header_bytes = options.max_header_bytes
        BoundedHttpToolsProtocol.request_timeout = options.request_timeout
        http = BoundedHttpToolsProtocol
    return uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        log_level=options.log_level,
        access_log=options.access_log,
        ws="none",
        http=http,
        h11_max_incomplete_event_size=options.max_header_bytes,
        limit_concurrency=options.limit_concurrency,
        timeout_keep_alive=options.keep_alive_timeout,
        timeout_graceful_shutdown=options.graceful_shutdown_timeout,
    )


def serve(config: uvicorn.Config) -> int:
    """One process: import the app, serve until SIGTERM/SIGINT, drain; 0 when it served."""
    server = uvicorn.Server(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        # While uvicorn serves, its own handler runs instead of this one; after the drain it
        # re-raises the signal here, where there is nothing left to do. Before it serves (main
        # is being imported), this makes uvicorn start up and go straight to its shutdown.
        server.should_exit = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    config.load()  # imports main: verifies the artifact folder and loads the model
    server.run()
    return 0 if server.started else EXIT_NOT_STARTED


def supervise(config: uvicorn.Config) -> int:
    """``--workers N``: uvicorn's supervisor (it handles the signals); 3 if a worker refused."""
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        return EXIT_NOT_STARTED
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    options = parse_options(argv) if prog is None else parse_options(argv, prog=prog)
    config = server_config(options)
    return supervise(config) if config.workers > 1 else serve(config)
