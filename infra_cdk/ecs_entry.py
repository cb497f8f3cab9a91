"""How ECS Fargate runs the Lambda image, defined once.

The task definition (``fargate_service.py``), the image emulation (``tools/image_emulation.py``)
and the tests that start the ECS entry all import these; no AWS CDK import here, so they are
cheap to read.
"""

from __future__ import annotations

from typing import Final

CONTAINER_PORT: Final = 8080
# The ECS entry point and command for the Lambda image. Not `python3 -m uvicorn main:app`:
# after a graceful stop uvicorn re-raises the SIGTERM it drained for, so that process ends with 143
# unless it happens to be the container's PID 1 (no init process); the runner exits 0 either way,
# and refuses a bad artifact folder with one line and status 3.
ENTRY_POINT: Final = ["python3", "-m", "http_server"]
COMMAND: Final = ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]
# Non-root: any uid works, the image needs no /etc/passwd entry for it.
CONTAINER_USER: Final = "1000"
