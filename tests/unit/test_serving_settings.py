"""Settings: the documented environment variables, their defaults and their validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loan_service import settings as settings_module
from loan_service.settings import Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No serving variable leaks in from the machine running the tests."""
    for name in dir(settings_module):
        if name.startswith("ENV_"):
            monkeypatch.delenv(getattr(settings_module, name), raising=False)
    return monkeypatch


def test_every_documented_environment_variable_name_is_a_constant() -> None:
    names = {getattr(settings_module, n) for n in dir(settings_module) if n.startswith("ENV_")}
    assert {
        "ARTIFACT_DIR",
        "MLFLOW_TRACKING_URI",
        "LOG_LEVEL",
        "MODEL_RUNTIME",
        "RECOVERY_RATE",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_TRACKING_TOKEN_SECRET_ARN",
        "API_BASE_PATH",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    } <= names


def test_defaults_match_the_contract(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.model_runtime == "onnx"
    assert settings.recovery_rate == pytest.approx(0.10)
    assert settings.log_level == "INFO"
    assert settings.mlflow_experiment_name == "loan-default-serving"
    assert settings.service_name == "loan-default"
    assert settings.metrics_namespace == "LoanDefault"
    assert settings.prediction_logging_enabled is False
    assert settings.on_lambda is False


def test_values_are_read_from_the_documented_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RECOVERY_RATE", "0.4")
    clean_env.setenv("MODEL_RUNTIME", "SKLEARN")
    clean_env.setenv("LOG_LEVEL", "debug")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    clean_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "loan-default-predict")
    settings = Settings()
    assert settings.recovery_rate == pytest.approx(0.4)
    assert settings.model_runtime == "sklearn"
    assert settings.log_level == "DEBUG"
    assert settings.prediction_logging_enabled is True
    assert settings.on_lambda is True


@pytest.mark.parametrize("value", ["-0.01", "1.01", "nan", "inf", "ten percent"])
def test_recovery_rate_outside_zero_to_one_is_refused(
    clean_env: pytest.MonkeyPatch, value: str
) -> None:
    clean_env.setenv("RECOVERY_RATE", value)
    with pytest.raises(ValidationError, match=r"recovery_rate|RECOVERY_RATE"):
        Settings()


@pytest.mark.parametrize("value", ["0", "1", "0.0", "1.0"])
def test_recovery_rate_bounds_are_inclusive(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("RECOVERY_RATE", value)
    assert Settings().recovery_rate == float(value)


def test_an_empty_tracking_uri_means_logging_is_off(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MLFLOW_TRACKING_URI", "")
    assert Settings().prediction_logging_enabled is False


def test_unknown_model_runtime_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MODEL_RUNTIME", "tensorflow")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("raw", "normalized"), [("v1", "/v1"), ("/v1", "/v1"), ("/v1/", "/v1"), ("/", ""), ("", "")]
)
def test_api_base_path_is_normalized_to_a_leading_slash_prefix(
    clean_env: pytest.MonkeyPatch, raw: str, normalized: str
) -> None:
    assert Settings(api_base_path=raw).api_base_path == normalized


def test_artifact_dir_prefers_the_environment(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("ARTIFACT_DIR", str(tmp_path / "elsewhere"))
    assert Settings().resolve_artifact_dir(tmp_path) == tmp_path / "elsewhere"


def test_artifact_dir_defaults_to_the_folder_beside_main_when_it_exists(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """The image's task root holds main.py and artifacts/ side by side."""
    task_root = tmp_path / "task"
    (task_root / "artifacts").mkdir(parents=True)
    assert Settings().resolve_artifact_dir(task_root) == task_root / "artifacts"


def test_artifact_dir_falls_back_to_the_repository_artifacts(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    source_root = tmp_path / "repo" / "lambda"
    source_root.mkdir(parents=True)
    assert Settings().resolve_artifact_dir(source_root) == tmp_path / "repo" / "artifacts"
