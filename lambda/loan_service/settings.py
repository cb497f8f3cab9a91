"""Every setting the service reads.

The environment variable names are the documented interface (docs/serving.md, Environment),
defined once in ``loan_service.env_names``; ``Settings`` reads them once at import of ``main``.
Tests build ``Settings(...)`` directly instead of mutating ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loan_service.env_names import (
    ENV_API_BASE_PATH,
    ENV_ARTIFACT_DIR,
    ENV_AWS_LAMBDA_FUNCTION_NAME,
    ENV_ECS_CONTAINER_METADATA_URI,
    ENV_LOG_LEVEL,
    ENV_MLFLOW_EXPERIMENT_NAME,
    ENV_MLFLOW_TRACKING_TOKEN_SECRET_ARN,
    ENV_MLFLOW_TRACKING_URI,
    ENV_MODEL_RUNTIME,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    ENV_PREDICTION_LOG_QUEUE_SIZE,
    ENV_RECOVERY_RATE,
    ENV_SHADOW_SAMPLE_RATE,
)

ARTIFACT_DIR_NAME: Final = "artifacts"

ModelRuntime = Literal["onnx", "sklearn"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Service configuration; unknown env vars are ignored, empty ones count as unset."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    artifact_dir: Annotated[Path | None, Field(validation_alias=ENV_ARTIFACT_DIR)] = None
    model_runtime: Annotated[ModelRuntime, Field(validation_alias=ENV_MODEL_RUNTIME)] = "onnx"
    recovery_rate: Annotated[
        float, Field(validation_alias=ENV_RECOVERY_RATE, ge=0.0, le=1.0, allow_inf_nan=False)
    ] = 0.10
    log_level: Annotated[LogLevel, Field(validation_alias=ENV_LOG_LEVEL)] = "INFO"
    api_base_path: Annotated[str, Field(validation_alias=ENV_API_BASE_PATH)] = ""
    mlflow_tracking_uri: Annotated[str | None, Field(validation_alias=ENV_MLFLOW_TRACKING_URI)] = (
        None
    )
    mlflow_experiment_name: Annotated[
        str, Field(validation_alias=ENV_MLFLOW_EXPERIMENT_NAME, min_length=1)
    ] = "loan-default-serving"
    mlflow_tracking_token_secret_arn: Annotated[
        str | None, Field(validation_alias=ENV_MLFLOW_TRACKING_TOKEN_SECRET_ARN)
    ] = None
    prediction_log_queue_size: Annotated[
        int, Field(validation_alias=ENV_PREDICTION_LOG_QUEUE_SIZE, ge=1, le=1_000_000)
    ] = 1000
    shadow_sample_rate: Annotated[
        float, Field(validation_alias=ENV_SHADOW_SAMPLE_RATE, ge=0.0, le=1.0, allow_inf_nan=False)
    ] = 0.0
    service_name: Annotated[str, Field(validation_alias=ENV_POWERTOOLS_SERVICE_NAME)] = (
        "loan-default"
    )
    metrics_namespace: Annotated[str, Field(validation_alias=ENV_POWERTOOLS_METRICS_NAMESPACE)] = (
        "LoanDefault"
    )
    on_lambda: Annotated[bool, Field(validation_alias=ENV_AWS_LAMBDA_FUNCTION_NAME)] = False
    on_ecs: Annotated[bool, Field(validation_alias=ENV_ECS_CONTAINER_METADATA_URI)] = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("model_runtime", mode="before")
    @classmethod
    def _lower_runtime(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_base_path", mode="before")
    @classmethod
    def _normalize_base_path(cls, value: object) -> object:
        """``v1``, ``/v1`` and ``/v1/`` all mean the prefix ``/v1``; ``/`` means none."""
        if not isinstance(value, str):
            return value
        stripped = value.strip().strip("/")
        return f"/{stripped}" if stripped else ""

    @field_validator("on_lambda", "on_ecs", mode="before")
    @classmethod
    def _present_means_true(cls, value: object) -> object:
        """The platform variables hold a name or URL; their presence is what matters."""
        if isinstance(value, str):
            return bool(value.strip())
        return value

    @property
    def prediction_logging_enabled(self) -> bool:
        return bool(self.mlflow_tracking_uri and self.mlflow_tracking_uri.strip())

    def resolve_artifact_dir(self, code_root: Path) -> Path:
        """``ARTIFACT_DIR`` if set; else ``<code_root>/artifacts`` (the image's task root) when it
        exists; else ``<repo>/artifacts`` beside the ``lambda/`` source root."""
        if self.artifact_dir is not None:
            return self.artifact_dir
        beside_code = code_root / ARTIFACT_DIR_NAME
        if beside_code.is_dir():
            return beside_code
        return code_root.parent / ARTIFACT_DIR_NAME
