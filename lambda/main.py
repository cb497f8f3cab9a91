"""Entry points: ``app`` (FastAPI, for uvicorn) and ``handler`` (AWS Lambda: ``main.handler``).

Importing this module verifies the artifact folder (every sha256), loads the model once and warms
it up; a bad artifact stops the import with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path

from loan_service import limit_blas_threads

limit_blas_threads()  # before anything imports numpy

from loan_service.application import build_service, create_app  # noqa: E402
from loan_service.lambda_adapter import build_lambda_handler  # noqa: E402
from loan_service.settings import Settings  # noqa: E402

settings = Settings()
service = build_service(settings, source_root=Path(__file__).resolve().parent)
app = create_app(settings, service=service)
handler = build_lambda_handler(app, service)
