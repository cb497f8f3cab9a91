"""Entry points: ``app`` (FastAPI, for uvicorn) and ``handler`` (AWS Lambda: ``main.handler``).

Importing this module verifies the artifact folder (every sha256), loads the model once and warms
it up; a bad artifact stops the import with a message naming the file.
"""

from __future__ import annotations

import os

# Before anything imports numpy: its OpenBLAS would start a thread per core at import, ~60 ms of
# CPU on this 2-core machine (a tenth of the cold start), and threads that compete with the
# uvicorn workers. Serving multiplies a few 7 x 6 matrices; one BLAS thread is plenty. An
# explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path

from loan_service.application import build_service, create_app
from loan_service.lambda_adapter import build_lambda_handler
from loan_service.settings import Settings

settings = Settings()
service = build_service(settings, source_root=Path(__file__).resolve().parent)
app = create_app(settings, service=service)
handler = build_lambda_handler(app, service)
