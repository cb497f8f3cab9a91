"""The Lambda entry: Mangum for the HTTP translation, Powertools for logs and EMF metrics.

``Mangum(app, lifespan="off")``: Mangum would otherwise run the ASGI lifespan on EVERY invocation,
so nothing may live there (the model is loaded at import). The path handling for API Gateway
stages and custom-domain base paths lives in ``ExternalPathMiddleware``, not in Mangum's
``api_gateway_base_path``, so ``/docs`` learns its prefix through ``root_path``.

Per invocation: ``inject_lambda_context`` adds the Lambda request id and ``cold_start`` to log
records; ``log_metrics`` prints one EMF document after the answer is built (plus ``ColdStart`` on
the first invocation). Measured cost of both together: tens of microseconds (bench/serving.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from loan_service.service import PredictionService

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def build_lambda_handler(app: FastAPI, service: PredictionService) -> LambdaHandler:
    asgi_adapter = Mangum(app, lifespan="off")
    observability = service.observability

    @observability.logger.inject_lambda_context(clear_state=True)
    @observability.metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = asgi_adapter(event, context)
        observability.publish_invocation_metrics()
        return response

    return handler
