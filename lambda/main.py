"""Entry points: ``app`` (the ASGI application, for uvicorn) and ``handler`` (AWS Lambda:
``main.handler``).

Importing this module verifies the artifact folder (every sha256), loads the model once and warms
it up; a bad artifact stops the import with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path

from loan_service import long_lived_startup, prepare_process

prepare_process()  # before anything imports numpy or pydantic

with long_lived_startup():
    from loan_service.application import build_service, create_app
    from loan_service.lambda_adapter import build_lambda_handler
    from loan_service.settings import Settings

    settings = Settings()
    service = build_service(settings, source_root=Path(__file__).resolve().parent)
    app = create_app(settings, service=service)
    handler = build_lambda_handler(app, service)
