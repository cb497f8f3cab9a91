"""The Lambda entry: Mangum for the HTTP translation, Powertools for logs and EMF metrics.

``Mangum(app, lifespan="off")``: Mangum would otherwise run the ASGI lifespan on EVERY invocation,
so nothing may live there (the model is loaded at import). The path handling for API Gateway
stages and custom-domain base paths lives in ``ExternalPathMiddleware``, not in Mangum's
``api_gateway_base_path``, so ``/docs`` learns its prefix through ``root_path``.

Per invocation: Powertools' ``inject_lambda_context`` adds the Lambda request id and
``cold_start`` to log records; then one EMF document is printed through Powertools' serializer
(plus Powertools' ``ColdStart`` document on the first invocation). Powertools' ``log_metrics``
decorator is not used: with ``add_metric`` it cost ~100 us per invocation here (env reads,
eager debug formatting, a warning per empty flush); ``bench/serving.py`` prints the handler next
to the bare Mangum adapter so the wrapper's cost stays visible.
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

    @observability.logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = asgi_adapter(event, context)
        observability.emit_invocation_metrics(context)
        return response

    return handler
