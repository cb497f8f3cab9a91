"""Deployment settings read from CDK context: defaults, CLI strings, fallbacks and refusals.

``Settings.from_context`` takes any ``key -> value`` reader, so these tests feed plain dicts and
an explicit environment; no CDK app (and no jsii process) is involved.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra_cdk.settings import (
    API_GATEWAY_INTEGRATION_LIMIT_SECONDS,
    OFFLINE_FALLBACK_REGION,
    Architecture,
    AuthMode,
    DeploymentStyle,
    Settings,
    SettingsError,
)

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:mlflow-token-AbC123"


def settings_from(context: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return Settings.from_context(context.get, environ or {})


def test_empty_context_and_environment_give_the_documented_offline_defaults() -> None:
    settings = settings_from({})

    assert settings.account is None  # account-agnostic stacks: synthesis needs no AWS account
    assert settings.region == OFFLINE_FALLBACK_REGION == "us-east-1"
    assert settings.architecture is Architecture.X86_64
    assert settings.auth is AuthMode.API_KEY
    assert settings.artifact_dir == "artifacts"
    assert settings.tracing is False
    assert settings.waf is False
    assert settings.reserved_concurrency is None
    assert settings.mlflow_tracking_uri is None
    assert settings.mlflow_tracking_token_secret_arn is None
    assert settings.lambda_timeout_seconds < API_GATEWAY_INTEGRATION_LIMIT_SECONDS
    assert (settings.lambda_memory_mb, settings.log_retention_days) == (1024, 30)
    assert (settings.throttle_rate_limit, settings.throttle_burst_limit) == (100, 200)
    assert (settings.min_tasks, settings.max_tasks) == (2, 10)
    # Release: canary 10 % for 5 minutes, no provisioned concurrency unless asked for.
    assert settings.deployment is DeploymentStyle.CANARY
    assert (settings.deployment_percent, settings.deployment_interval_minutes) == (10, 5)
    assert settings.provisioned_concurrency is None
    assert settings.latency_p99_budget_ms == 300
    assert (settings.approval_rate_margin, settings.mean_pd_margin) == (0.05, 0.03)


def test_release_settings_from_command_line_strings() -> None:
    settings = settings_from(
        {
            "deployment": "ALL_AT_ONCE",
            "provisioned_concurrency": "3",
            "approval_rate_margin": "0.1",
            "mean_pd_margin": 0.02,
            "latency_p99_budget_ms": "120",
            "shadow_sample_rate": "1",
        }
    )
    assert settings.shadow_sample_rate == 1.0
    assert settings.deployment is DeploymentStyle.ALL_AT_ONCE
    assert settings.provisioned_concurrency == 3
    assert (settings.approval_rate_margin, settings.mean_pd_margin) == (0.1, 0.02)
    assert settings.latency_p99_budget_ms == 120


def test_account_and_region_come_from_the_cli_environment_when_context_is_silent() -> None:
    settings = settings_from(
        {}, {"CDK_DEFAULT_ACCOUNT": "123456789012", "CDK_DEFAULT_REGION": "eu-central-1"}
    )
    assert (settings.account, settings.region) == ("123456789012", "eu-central-1")


def test_region_falls_back_to_the_aws_sdk_variables_before_the_offline_default() -> None:
    assert settings_from({}, {"AWS_REGION": "ap-southeast-2"}).region == "ap-southeast-2"
    assert settings_from({}, {"AWS_DEFAULT_REGION": "ca-central-1"}).region == "ca-central-1"


def test_context_wins_over_the_environment() -> None:
    settings = settings_from(
        {"account": "210987654321", "region": "eu-west-1"},
        {"CDK_DEFAULT_ACCOUNT": "123456789012", "CDK_DEFAULT_REGION": "us-west-2"},
    )
    assert (settings.account, settings.region) == ("210987654321", "eu-west-1")


def test_command_line_strings_are_parsed_like_json_values() -> None:
    """``cdk synth -c tracing=true -c reserved_concurrency=5`` delivers strings."""
    settings = settings_from(
        {
            "tracing": "true",
            "waf": "off",
            "reserved_concurrency": "5",
            "lambda_memory_mb": "2048",
            "architecture": "ARM64",
            "auth": "IAM",
            "log_level": "debug",
        }
    )

    assert settings.tracing is True
    assert settings.waf is False
    assert settings.reserved_concurrency == 5
    assert settings.lambda_memory_mb == 2048
    assert settings.architecture is Architecture.ARM64
    assert settings.auth is AuthMode.IAM
    assert settings.log_level == "DEBUG"


def test_json_typed_values_from_cdk_json_are_accepted_as_they_are() -> None:
    settings = settings_from({"tracing": True, "reserved_concurrency": 3, "min_tasks": 1})
    assert (settings.tracing, settings.reserved_concurrency, settings.min_tasks) == (True, 3, 1)


def test_mlflow_token_is_configured_by_secret_arn() -> None:
    settings = settings_from(
        {
            "mlflow_tracking_uri": "https://mlflow.example.com",
            "mlflow_tracking_token_secret_arn": SECRET_ARN,
        }
    )
    assert settings.mlflow_tracking_token_secret_arn == SECRET_ARN


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"architecture": "sparc"}, "architecture"),
        ({"auth": "cognito"}, "auth"),
        ({"tracing": "maybe"}, "tracing"),
        ({"reserved_concurrency": "five"}, "reserved_concurrency"),
        ({"reserved_concurrency": 0}, "reserved_concurrency"),
        ({"reserved_concurrency": True}, "reserved_concurrency"),
        (
            {"lambda_timeout_seconds": API_GATEWAY_INTEGRATION_LIMIT_SECONDS},
            "lambda_timeout_seconds",
        ),
        ({"lambda_timeout_seconds": 0}, "lambda_timeout_seconds"),
        ({"lambda_memory_mb": 64}, "lambda_memory_mb"),
        ({"log_retention_days": 31}, "log_retention_days"),
        ({"log_level": "chatty"}, "log_level"),
        ({"throttle_rate_limit": 100, "throttle_burst_limit": 50}, "throttle_burst_limit"),
        (
            {"mlflow_tracking_token_secret_arn": "s3cr3t-token-value"},
            "mlflow_tracking_token_secret_arn",
        ),
        ({"vpc_id": "vpc-0123456789abcdef0"}, "vpc_id"),
        ({"vpc_id": "my-vpc", "account": "123456789012"}, "vpc_id"),
        ({"domain_name": "pd.example.com"}, "domain_name"),
        ({"certificate_arn": "not-an-arn"}, "certificate_arn"),
        ({"fargate_cpu": 256, "fargate_memory_mb": 4096}, "fargate_cpu"),
        ({"min_tasks": 5, "max_tasks": 2}, "min_tasks"),
        ({"nat_gateways": 0}, "nat_gateways"),
        ({"alb_ingress_cidr": "10.0.0.1/8"}, "alb_ingress_cidr"),
        ({"alb_ingress_cidr": "2001:db8::/32"}, "alb_ingress_cidr"),
        ({"cpu_target_percent": 95}, "cpu_target_percent"),
        ({"account": "12345"}, "account"),
        ({"region": "mars-north-1a"}, "region"),
        ({"stack_prefix": 42}, "stack_prefix"),
        ({"provisioned_concurrency": 0}, "provisioned_concurrency"),
        ({"provisioned_concurrency": 6, "reserved_concurrency": 5}, "provisioned_concurrency"),
        ({"deployment": "blue_green"}, "deployment"),
        ({"deployment_percent": 100}, "deployment_percent"),
        ({"deployment_interval_minutes": 0}, "deployment_interval_minutes"),
        ({"latency_p99_budget_ms": 16_000}, "latency_p99_budget_ms"),
        ({"approval_rate_margin": "1.5"}, "approval_rate_margin"),
        ({"approval_rate_margin": "wide"}, "approval_rate_margin"),
        ({"mean_pd_margin": True}, "mean_pd_margin"),
        ({"behaviour_min_predictions": 0}, "behaviour_min_predictions"),
        ({"shadow_sample_rate": "1.5"}, "shadow_sample_rate"),
        ({"batch_release_label": "latest"}, "batch_release_label"),
        ({"batch_release_label": "emr-7"}, "batch_release_label"),
        ({"batch_max_vcpu": 4}, "batch_max_vcpu"),
        ({"batch_max_memory_gb": "lots"}, "batch_max_memory_gb"),
        ({"batch_max_disk_gb": 10}, "batch_max_disk_gb"),
        ({"batch_idle_minutes": 0}, "batch_idle_minutes"),
        ({"batch_input_retention_days": 0}, "batch_input_retention_days"),
        ({"batch_output_retention_days": -1}, "batch_output_retention_days"),
    ],
)
def test_bad_context_values_stop_synthesis_with_a_message_naming_the_key(
    context: dict[str, Any], key: str
) -> None:
    with pytest.raises(SettingsError, match=f"context '{key}'"):
        settings_from(context)


def test_a_plain_secret_value_is_refused_where_a_secret_arn_belongs() -> None:
    """The token itself must never land in an environment variable or a template."""
    with pytest.raises(SettingsError, match="Secrets Manager ARN") as refused:
        settings_from({"mlflow_tracking_token_secret_arn": "tok_live_51Habc"})
    assert "tok_live_51Habc" not in str(refused.value)


def test_vpc_lookup_is_allowed_once_the_account_is_known() -> None:
    settings = settings_from(
        {"vpc_id": "vpc-0123456789abcdef0", "account": "123456789012", "region": "eu-west-1"}
    )
    assert settings.vpc_id == "vpc-0123456789abcdef0"


def test_batch_settings_default_to_a_pinned_release_and_bounded_capacity() -> None:
    settings = settings_from({})
    assert settings.batch_release_label == "emr-7.5.0"
    assert (settings.batch_max_vcpu, settings.batch_max_memory_gb) == (32, 128)
    assert settings.batch_idle_minutes == 15
    assert settings.batch_python_env == "build/batch-env/pyspark_env.tar.gz"
    tuned = settings_from({"batch_max_vcpu": "64", "batch_release_label": "emr-7.2.0"})
    assert (tuned.batch_max_vcpu, tuned.batch_release_label) == (64, "emr-7.2.0")
