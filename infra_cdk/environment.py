"""The serving environment variables, identical on Lambda and on Fargate."""

from __future__ import annotations

from infra_cdk.service_contract import env
from infra_cdk.settings import Settings

# The image's task root: main.py, loan_service/ and artifacts/ live here (Dockerfile.lambda).
TASK_ROOT = "/var/task"
POWERTOOLS_SERVICE_NAME = "loan-default"
POWERTOOLS_METRICS_NAMESPACE = "LoanDefault"


def service_environment(settings: Settings) -> dict[str, str]:
    """Plain configuration only: the MLflow token travels as a Secrets Manager ARN, not a value."""
    environment = {
        env.ENV_ARTIFACT_DIR: f"{TASK_ROOT}/artifacts",
        env.ENV_LOG_LEVEL: settings.log_level,
        env.ENV_POWERTOOLS_SERVICE_NAME: POWERTOOLS_SERVICE_NAME,
        env.ENV_POWERTOOLS_METRICS_NAMESPACE: POWERTOOLS_METRICS_NAMESPACE,
    }
    if settings.mlflow_tracking_uri:
        environment[env.ENV_MLFLOW_TRACKING_URI] = settings.mlflow_tracking_uri
    if settings.shadow_sample_rate > 0:
        # The image's artifacts/challenger/ scores this share of requests off the request path.
        environment[env.ENV_SHADOW_SAMPLE_RATE] = f"{settings.shadow_sample_rate:g}"
    if settings.mlflow_tracking_token_secret_arn:
        arn = settings.mlflow_tracking_token_secret_arn
        environment[env.ENV_MLFLOW_TRACKING_TOKEN_SECRET_ARN] = arn
    return environment
