"""On Lambda: drain the prediction log when the sandbox is reclaimed, instead of losing its queue.

Lambda sends the runtime SIGTERM before it reclaims a sandbox only when the function has a
registered extension. So, during init (the import of ``main``), the service registers an
*internal* extension for no events (``{"events": []}``) through the Extensions API, and a daemon
thread waits on its ``event/next`` (which, with no events, only ends with the sandbox). The
SIGTERM handler then drains the prediction log for at most ``SHUTDOWN_DRAIN_SECONDS`` - Lambda
allows a runtime with an internal extension 500 ms - logs one line and exits 0.

Outside Lambda (no ``AWS_LAMBDA_RUNTIME_API``) nothing is registered. A registration that fails
is one WARNING line; the service serves as before (records queued at reclaim may then be lost).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import urllib.request
from types import FrameType
from typing import Final

from loan_service.prediction_log import PredictionLog

ENV_RUNTIME_API: Final = "AWS_LAMBDA_RUNTIME_API"
EXTENSION_NAME: Final = "loan-default-prediction-log"
EXTENSIONS_API: Final = "2020-01-01/extension"
NAME_HEADER: Final = "Lambda-Extension-Name"
IDENTIFIER_HEADER: Final = "Lambda-Extension-Identifier"
SHUTDOWN_DRAIN_SECONDS: Final = 0.4
REGISTER_TIMEOUT_SECONDS: Final = 2.0

_log = logging.getLogger(__name__)


def register_internal_extension(runtime_api: str) -> str:
    """Register for no events; returns the extension identifier (raises ``OSError``)."""
    request = urllib.request.Request(
        f"http://{runtime_api}/{EXTENSIONS_API}/register",
        data=json.dumps({"events": []}).encode(),
        headers={NAME_HEADER: EXTENSION_NAME, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=REGISTER_TIMEOUT_SECONDS) as response:
        identifier = response.headers.get(IDENTIFIER_HEADER)
    if not identifier:
        raise OSError(f"the Extensions API answered without {IDENTIFIER_HEADER}")
    return str(identifier)


def _wait_for_the_end(runtime_api: str, identifier: str) -> None:
    """The extension's ``event/next``: with no events it returns only at shutdown."""
    request = urllib.request.Request(
        f"http://{runtime_api}/{EXTENSIONS_API}/event/next", headers={IDENTIFIER_HEADER: identifier}
    )
    try:
        with urllib.request.urlopen(request) as response:
            response.read()
    except OSError:
        pass  # the sandbox is going away, or the API is: SIGTERM does the rest


def install_shutdown_drain(prediction_log: PredictionLog, runtime_api: str | None = None) -> bool:
    """True when the extension is registered and the SIGTERM handler installed."""
    runtime_api = runtime_api or os.environ.get(ENV_RUNTIME_API)
    if not runtime_api:
        return False
    try:
        identifier = register_internal_extension(runtime_api)
    except OSError as error:
        _log.warning("could not register the shutdown extension (%s)", error)
        return False
    threading.Thread(
        target=_wait_for_the_end, args=(runtime_api, identifier), name=EXTENSION_NAME, daemon=True
    ).start()

    def drain_and_exit(signum: int, frame: FrameType | None) -> None:
        prediction_log.close(SHUTDOWN_DRAIN_SECONDS)
        status = prediction_log.status()
        _log.info(
            "SIGTERM: prediction log drained (queued %d, exported %d, dropped %d, failed %d)",
            status.queued,
            status.exported,
            status.dropped,
            status.failed,
        )
        sys.exit(0)

    signal.signal(signal.SIGTERM, drain_and_exit)
    return True
