"""How ECS Fargate runs the Lambda image, defined once.

The task definition (``fargate_service.py``), the image emulation (``tools/image_emulation.py``)
and the tests that start the ECS entry all import these; no AWS CDK import here, so they are
cheap to read.

The entry is uvicorn's own CLI on the app factory, ``loan_service.http_server:load_app``: it
builds the app from the environment, and a bad artifact folder or setting is one line on stderr,
``refusing to start: ...``, and exit status 3 (uvicorn's own startup-failure status), no
traceback. The limits the server holds by itself (docs/operations.md) are uvicorn's flags, except
the request-head size and the request timeout, which the httptools protocol class given to
``--http`` holds (``loan_service.server_limits``; ``SERVER_MAX_HEADER_BYTES``,
``SERVER_REQUEST_TIMEOUT``). ``--h11-max-incomplete-event-size`` is not given: h11 is not used.

Exit status after SIGTERM: uvicorn drains (stops accepting, lets in-flight requests finish for up
to ``--timeout-graceful-shutdown`` seconds, runs the lifespan shutdown that flushes the
prediction log), then restores the default handler and re-raises the signal it drained for, by
design since uvicorn 0.29 ("cooperative signal handling"). So a graceful stop ends with 143
(128 + SIGTERM), or 0 when the process is the container's PID 1, where the kernel drops that
self-sent signal. ECS stops a task with SIGTERM, so either is the normal end of a stop; the
tests check that the drain happened, not the number.
"""

from __future__ import annotations

import signal
from typing import Final

from infra_cdk.service_contract import env

CONTAINER_PORT: Final = 8080
APP_FACTORY: Final = "loan_service.http_server:load_app"
HTTP_PROTOCOL: Final = "loan_service.server_limits:BoundedHttpToolsProtocol"
# The server's own defaults, as ``loan-default serve`` has them: connections + tasks per task
# before uvicorn answers 503; a keep-alive longer than the ALB's 60 s idle timeout, so the
# balancer never reuses a connection being closed; a drain well inside ECS's 30 s stop timeout.
LIMIT_CONCURRENCY: Final[int] = env.DEFAULT_LIMIT_CONCURRENCY
KEEP_ALIVE_TIMEOUT_SECONDS: Final[int] = env.DEFAULT_KEEP_ALIVE_TIMEOUT
GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: Final[int] = env.DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT
ENTRY_POINT: Final = ["python3", "-m", "uvicorn"]
COMMAND: Final = [
    "--factory",
    APP_FACTORY,
    "--host",
    "0.0.0.0",
    "--port",
    str(CONTAINER_PORT),
    "--http",
    HTTP_PROTOCOL,
    "--loop",
    "uvloop",
    "--ws",
    "none",
    "--limit-concurrency",
    str(LIMIT_CONCURRENCY),
    "--timeout-keep-alive",
    str(KEEP_ALIVE_TIMEOUT_SECONDS),
    "--timeout-graceful-shutdown",
    str(GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS),
]
# What a graceful stop ends with: 0 as PID 1, killed by the re-raised SIGTERM otherwise (143 in a
# shell, -15 from subprocess).
GRACEFUL_STOP_STATUSES: Final = (0, 128 + signal.SIGTERM, -signal.SIGTERM)
# Non-root: any uid works, the image needs no /etc/passwd entry for it.
CONTAINER_USER: Final = "1000"
