"""The service's environment variable names and its HTTP server's default limits: the contract
between the service and what deploys it, defined once.

Standard library only: ``loan_service.settings`` reads these, and the CDK app (which has neither
pydantic-settings nor ``lambda/`` on its path) loads this file by path
(``infra_cdk.service_contract``). Documented in docs/serving.md (Environment).
"""

from __future__ import annotations

from typing import Final

ENV_ARTIFACT_DIR: Final = "ARTIFACT_DIR"
ENV_MODEL_RUNTIME: Final = "MODEL_RUNTIME"
ENV_RECOVERY_RATE: Final = "RECOVERY_RATE"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"
ENV_API_BASE_PATH: Final = "API_BASE_PATH"
ENV_MLFLOW_TRACKING_URI: Final = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_EXPERIMENT_NAME: Final = "MLFLOW_EXPERIMENT_NAME"
ENV_MLFLOW_TRACKING_TOKEN_SECRET_ARN: Final = "MLFLOW_TRACKING_TOKEN_SECRET_ARN"
ENV_PREDICTION_LOG_QUEUE_SIZE: Final = "PREDICTION_LOG_QUEUE_SIZE"
# Share of requests the challenger (artifacts/challenger/) also scores, off the request path.
ENV_SHADOW_SAMPLE_RATE: Final = "SHADOW_SAMPLE_RATE"
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
# Set by the platforms themselves; read only to pick log format and metrics flushing.
ENV_AWS_LAMBDA_FUNCTION_NAME: Final = "AWS_LAMBDA_FUNCTION_NAME"
ENV_ECS_CONTAINER_METADATA_URI: Final = "ECS_CONTAINER_METADATA_URI_V4"
# The HTTP server (``loan-default serve``), read by loan_service/http_server.py,
# not by ``Settings``. The names are the ones uvicorn's own CLI reads, so an override set for
# ``python -m uvicorn`` means the same under the runner. Command-line options win over them.
ENV_SERVER_HOST: Final = "UVICORN_HOST"
ENV_SERVER_PORT: Final = "UVICORN_PORT"
ENV_SERVER_WORKERS: Final = "WEB_CONCURRENCY"
ENV_SERVER_LOG_LEVEL: Final = "UVICORN_LOG_LEVEL"
DEFAULT_SERVER_HOST: Final = "127.0.0.1"
DEFAULT_SERVER_PORT: Final = 8000
DEFAULT_SERVER_WORKERS: Final = 1
DEFAULT_SERVER_LOG_LEVEL: Final = "info"
# The server's own limits (docs/operations.md); the request-head size and request timeout live in
# loan_service/server_limits.py, which reads them in every worker process.
ENV_LIMIT_CONCURRENCY: Final = "SERVER_LIMIT_CONCURRENCY"
ENV_KEEP_ALIVE_TIMEOUT: Final = "SERVER_KEEP_ALIVE_TIMEOUT"
ENV_GRACEFUL_SHUTDOWN_TIMEOUT: Final = "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT"
DEFAULT_LIMIT_CONCURRENCY: Final = 1000
DEFAULT_KEEP_ALIVE_TIMEOUT: Final = 65
DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT: Final = 20
