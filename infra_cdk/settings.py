"""Deployment settings, read once from CDK context (``cdk.json`` or ``cdk synth -c key=value``).

Every knob has a safe default, so ``cdk synth`` needs no context at all. Values given on the
command line arrive as strings (``-c tracing=true``), so every reader here parses strings as well
as native JSON values, and a bad value stops synthesis with a message that names the context key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

# API Gateway cuts every integration at 29 s; the function must give up before that so the
# client gets the function's own error instead of a gateway 504.
API_GATEWAY_INTEGRATION_LIMIT_SECONDS = 29

# The retention periods CloudWatch Logs accepts, in days.
VALID_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

# The ALB's default audience: the whole internet (narrow it with context alb_ingress_cidr).
ANYWHERE_IPV4 = "0.0.0.0/0"

# Region used when neither context nor the environment names one: synthesis must work offline,
# on a machine with no AWS configuration at all.
OFFLINE_FALLBACK_REGION = "us-east-1"

_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")
_CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[\w-]+$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EMR_RELEASE = re.compile(r"^emr-\d+\.\d+\.\d+$")

_E = TypeVar("_E", bound=StrEnum)


class SettingsError(ValueError):
    """A context value is missing, malformed or out of range; the message names the key."""


class Architecture(StrEnum):
    """CPU architecture of the image, the Lambda function and the Fargate task (one for all)."""

    X86_64 = "x86_64"  # builds on any machine without emulation
    ARM64 = "arm64"  # Graviton: about 20 % cheaper per GB-second / vCPU-hour


class DeploymentStyle(StrEnum):
    """How CodeDeploy moves the ``live`` alias to a new version."""

    CANARY = "canary"  # deployment_percent for deployment_interval_minutes, then the rest
    LINEAR = "linear"  # deployment_percent more every deployment_interval_minutes
    ALL_AT_ONCE = "all_at_once"  # still behind the pre-traffic check and the alarms


class AuthMode(StrEnum):
    """Who may call POST /predict and POST /predict/batch (the GET routes are always open)."""

    API_KEY = "api_key"  # x-api-key header, an API key bound to a usage plan (the default)
    IAM = "iam"  # SigV4-signed requests from IAM principals allowed execute-api:Invoke
    NONE = "none"  # open; only for a private demo, acknowledged explicitly in cdk-nag


@dataclass(frozen=True)
class Settings:
    """Everything the two stacks can be tuned with; built once per app by :meth:`from_context`."""

    account: str | None = None
    region: str = OFFLINE_FALLBACK_REGION
    stack_prefix: str = "LoanDefault"
    artifact_dir: str = "artifacts"
    architecture: Architecture = Architecture.X86_64
    log_level: str = "INFO"
    log_retention_days: int = 30
    tracing: bool = False
    mlflow_tracking_uri: str | None = None
    mlflow_tracking_token_secret_arn: str | None = None
    # Serverless stack
    lambda_memory_mb: int = 1024
    lambda_timeout_seconds: int = 15
    reserved_concurrency: int | None = None
    auth: AuthMode = AuthMode.API_KEY
    throttle_rate_limit: int = 100
    throttle_burst_limit: int = 200
    waf: bool = False
    # Release (versions, the live alias, CodeDeploy, alarms on the new version)
    provisioned_concurrency: int | None = None
    deployment: DeploymentStyle = DeploymentStyle.CANARY
    deployment_percent: int = 10
    deployment_interval_minutes: int = 5
    latency_p99_budget_ms: int = 300
    approval_rate_margin: float = 0.05
    mean_pd_margin: float = 0.03
    behaviour_min_predictions: int = 100
    shadow_sample_rate: float = 0.0  # share the image's challenger also scores (both front doors)
    # Scheduled stability check (PSI/CSI from the service's logs; serverless stack)
    stability_schedule: str = "rate(1 day)"
    stability_window_hours: int = 24
    stability_alarm_email: str | None = None
    # Fargate stack
    vpc_id: str | None = None
    nat_gateways: int = 1
    certificate_arn: str | None = None
    domain_name: str | None = None
    alb_ingress_cidr: str = ANYWHERE_IPV4
    fargate_cpu: int = 512
    fargate_memory_mb: int = 1024
    min_tasks: int = 2
    max_tasks: int = 10
    cpu_target_percent: int = 60
    requests_per_target: int = 30_000
    alb_log_retention_days: int = 90
    # Batch stack (EMR Serverless)
    batch_release_label: str = "emr-7.5.0"  # pinned: Spark 3.5, Amazon Linux 2023
    batch_max_vcpu: int = 32
    batch_max_memory_gb: int = 128
    batch_max_disk_gb: int = 1000
    batch_idle_minutes: int = 15
    batch_input_retention_days: int = 30
    batch_output_retention_days: int = 400
    batch_python_env: str = "build/batch-env/pyspark_env.tar.gz"

    @classmethod
    def from_context(
        cls, context: Callable[[str], Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Read every setting through ``context(key)`` (``node.try_get_context``), with fallbacks.

        Account and region come from context, else from the environment the CDK CLI sets
        (``CDK_DEFAULT_ACCOUNT``/``CDK_DEFAULT_REGION``), else the region falls back to
        ``us-east-1`` and the account stays unknown: the stacks are then account-agnostic and
        synthesize without credentials.
        """
        env = os.environ if environ is None else environ
        reader = _ContextReader(context)
        defaults = cls()

        account = reader.text("account") or env.get("CDK_DEFAULT_ACCOUNT") or None
        if account is not None and not _ACCOUNT.match(account):
            raise SettingsError(f"context 'account': expected 12 digits, got {account!r}")
        region = (
            reader.text("region")
            or env.get("CDK_DEFAULT_REGION")
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or OFFLINE_FALLBACK_REGION
        )
        if not _REGION.match(region):
            raise SettingsError(f"context 'region': not an AWS region name: {region!r}")

        settings = cls(
            account=account,
            region=region,
            stack_prefix=reader.text("stack_prefix") or defaults.stack_prefix,
            artifact_dir=reader.text("artifact_dir") or defaults.artifact_dir,
            architecture=reader.choice("architecture", Architecture, defaults.architecture),
            log_level=(reader.text("log_level") or defaults.log_level).upper(),
            log_retention_days=reader.integer("log_retention_days", defaults.log_retention_days),
            tracing=reader.boolean("tracing", defaults.tracing),
            mlflow_tracking_uri=reader.text("mlflow_tracking_uri"),
            mlflow_tracking_token_secret_arn=reader.text("mlflow_tracking_token_secret_arn"),
            lambda_memory_mb=reader.integer("lambda_memory_mb", defaults.lambda_memory_mb),
            lambda_timeout_seconds=reader.integer(
                "lambda_timeout_seconds", defaults.lambda_timeout_seconds
            ),
            reserved_concurrency=reader.optional_integer("reserved_concurrency"),
            auth=reader.choice("auth", AuthMode, defaults.auth),
            throttle_rate_limit=reader.integer("throttle_rate_limit", defaults.throttle_rate_limit),
            throttle_burst_limit=reader.integer(
                "throttle_burst_limit", defaults.throttle_burst_limit
            ),
            waf=reader.boolean("waf", defaults.waf),
            provisioned_concurrency=reader.optional_integer("provisioned_concurrency"),
            deployment=reader.choice("deployment", DeploymentStyle, defaults.deployment),
            deployment_percent=reader.integer("deployment_percent", defaults.deployment_percent),
            deployment_interval_minutes=reader.integer(
                "deployment_interval_minutes", defaults.deployment_interval_minutes
            ),
            latency_p99_budget_ms=reader.integer(
                "latency_p99_budget_ms", defaults.latency_p99_budget_ms
            ),
            approval_rate_margin=reader.fraction(
                "approval_rate_margin", defaults.approval_rate_margin
            ),
            mean_pd_margin=reader.fraction("mean_pd_margin", defaults.mean_pd_margin),
            behaviour_min_predictions=reader.integer(
                "behaviour_min_predictions", defaults.behaviour_min_predictions
            ),
            shadow_sample_rate=reader.fraction(
                "shadow_sample_rate", defaults.shadow_sample_rate, inclusive=True
            ),
            stability_schedule=reader.text("stability_schedule") or defaults.stability_schedule,
            stability_window_hours=reader.integer(
                "stability_window_hours", defaults.stability_window_hours
            ),
            stability_alarm_email=reader.text("stability_alarm_email"),
            vpc_id=reader.text("vpc_id"),
            nat_gateways=reader.integer("nat_gateways", defaults.nat_gateways),
            certificate_arn=reader.text("certificate_arn"),
            domain_name=reader.text("domain_name"),
            alb_ingress_cidr=reader.text("alb_ingress_cidr") or defaults.alb_ingress_cidr,
            fargate_cpu=reader.integer("fargate_cpu", defaults.fargate_cpu),
            fargate_memory_mb=reader.integer("fargate_memory_mb", defaults.fargate_memory_mb),
            min_tasks=reader.integer("min_tasks", defaults.min_tasks),
            max_tasks=reader.integer("max_tasks", defaults.max_tasks),
            cpu_target_percent=reader.integer("cpu_target_percent", defaults.cpu_target_percent),
            requests_per_target=reader.integer("requests_per_target", defaults.requests_per_target),
            alb_log_retention_days=reader.integer(
                "alb_log_retention_days", defaults.alb_log_retention_days
            ),
            batch_release_label=reader.text("batch_release_label") or defaults.batch_release_label,
            batch_max_vcpu=reader.integer("batch_max_vcpu", defaults.batch_max_vcpu),
            batch_max_memory_gb=reader.integer("batch_max_memory_gb", defaults.batch_max_memory_gb),
            batch_max_disk_gb=reader.integer("batch_max_disk_gb", defaults.batch_max_disk_gb),
            batch_idle_minutes=reader.integer("batch_idle_minutes", defaults.batch_idle_minutes),
            batch_input_retention_days=reader.integer(
                "batch_input_retention_days", defaults.batch_input_retention_days
            ),
            batch_output_retention_days=reader.integer(
                "batch_output_retention_days", defaults.batch_output_retention_days
            ),
            batch_python_env=reader.text("batch_python_env") or defaults.batch_python_env,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject combinations AWS would reject at deploy time, while it is still cheap to fix."""
        _check(
            self.log_level in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"},
            "log_level",
            f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {self.log_level!r}",
        )
        _check(
            self.log_retention_days in VALID_RETENTION_DAYS,
            "log_retention_days",
            f"CloudWatch accepts only {VALID_RETENTION_DAYS}, got {self.log_retention_days}",
        )
        _check(
            128 <= self.lambda_memory_mb <= 10_240,
            "lambda_memory_mb",
            f"Lambda memory is 128..10240 MB, got {self.lambda_memory_mb}",
        )
        _check(
            1 <= self.lambda_timeout_seconds < API_GATEWAY_INTEGRATION_LIMIT_SECONDS,
            "lambda_timeout_seconds",
            f"must be 1..{API_GATEWAY_INTEGRATION_LIMIT_SECONDS - 1} s (API Gateway stops "
            f"waiting at {API_GATEWAY_INTEGRATION_LIMIT_SECONDS} s), got "
            f"{self.lambda_timeout_seconds}",
        )
        _check(
            self.reserved_concurrency is None or self.reserved_concurrency >= 1,
            "reserved_concurrency",
            f"must be a positive integer (omit it for no reservation), got "
            f"{self.reserved_concurrency}",
        )
        _check(
            self.provisioned_concurrency is None or self.provisioned_concurrency >= 1,
            "provisioned_concurrency",
            f"must be a positive integer (omit it for none), got {self.provisioned_concurrency}",
        )
        _check(
            self.provisioned_concurrency is None
            or self.reserved_concurrency is None
            or self.provisioned_concurrency <= self.reserved_concurrency,
            "provisioned_concurrency",
            f"cannot exceed reserved_concurrency ({self.reserved_concurrency})",
        )
        _check(
            1 <= self.deployment_percent <= 99,
            "deployment_percent",
            f"must be 1..99 percent of traffic, got {self.deployment_percent}",
        )
        _check(
            1 <= self.deployment_interval_minutes <= 2880,
            "deployment_interval_minutes",
            f"CodeDeploy takes 1..2880 minutes, got {self.deployment_interval_minutes}",
        )
        _check(
            1 <= self.latency_p99_budget_ms <= self.lambda_timeout_seconds * 1000,
            "latency_p99_budget_ms",
            f"must be 1..{self.lambda_timeout_seconds * 1000} ms (the function timeout), got "
            f"{self.latency_p99_budget_ms}",
        )
        _check(self.behaviour_min_predictions >= 1, "behaviour_min_predictions", "must be >= 1")
        _check(
            bool(_SCHEDULE.match(self.stability_schedule)),
            "stability_schedule",
            "expected an EventBridge schedule such as 'rate(1 day)' or 'cron(0 6 * * ? *)', "
            f"got {self.stability_schedule!r}",
        )
        _check(
            1 <= self.stability_window_hours <= 24 * 14,
            "stability_window_hours",
            f"must be 1..336 hours, got {self.stability_window_hours}",
        )
        _check(
            self.stability_alarm_email is None or bool(_EMAIL.match(self.stability_alarm_email)),
            "stability_alarm_email",
            f"expected an e-mail address, got {self.stability_alarm_email!r}",
        )
        _check(self.throttle_rate_limit >= 1, "throttle_rate_limit", "must be >= 1 request/s")
        _check(
            self.throttle_burst_limit >= self.throttle_rate_limit,
            "throttle_burst_limit",
            f"must be >= throttle_rate_limit ({self.throttle_rate_limit}), got "
            f"{self.throttle_burst_limit}",
        )
        _check(
            self.mlflow_tracking_token_secret_arn is None
            or bool(_SECRET_ARN.match(self.mlflow_tracking_token_secret_arn)),
            "mlflow_tracking_token_secret_arn",
            "expected the complete Secrets Manager ARN "
            "(arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 chars>)",
        )
        _check(
            self.vpc_id is None or bool(_VPC_ID.match(self.vpc_id)),
            "vpc_id",
            f"expected vpc-<hex>, got {self.vpc_id!r}",
        )
        _check(
            self.vpc_id is None or self.account is not None,
            "vpc_id",
            "looking a VPC up needs a concrete account and region: pass -c account=... "
            "-c region=... or run the CDK CLI with AWS credentials",
        )
        _check(self.nat_gateways >= 1, "nat_gateways", "tasks run in private subnets: need >= 1")
        _check(
            self.certificate_arn is None or bool(_CERTIFICATE_ARN.match(self.certificate_arn)),
            "certificate_arn",
            f"expected an ACM certificate ARN, got {self.certificate_arn!r}",
        )
        _check(
            self.domain_name is None or self.certificate_arn is not None,
            "domain_name",
            "a domain name is only used with HTTPS: also pass certificate_arn",
        )
        _check(
            _is_ipv4_network(self.alb_ingress_cidr),
            "alb_ingress_cidr",
            f"expected an IPv4 CIDR such as 203.0.113.0/24, got {self.alb_ingress_cidr!r}",
        )
        _check(
            (self.fargate_cpu, self.fargate_memory_mb) in _FARGATE_SIZES,
            "fargate_cpu",
            f"Fargate has no task size cpu={self.fargate_cpu} memory={self.fargate_memory_mb} MB",
        )
        _check(
            1 <= self.min_tasks <= self.max_tasks,
            "min_tasks",
            f"need 1 <= min_tasks <= max_tasks, got {self.min_tasks}..{self.max_tasks}",
        )
        _check(10 <= self.cpu_target_percent <= 90, "cpu_target_percent", "must be 10..90 percent")
        _check(self.requests_per_target >= 1, "requests_per_target", "must be >= 1")
        _check(self.alb_log_retention_days >= 1, "alb_log_retention_days", "must be >= 1 day")
        _check(
            bool(_EMR_RELEASE.match(self.batch_release_label)),
            "batch_release_label",
            f"expected an EMR release label such as emr-7.5.0, got {self.batch_release_label!r}",
        )
        # EMR Serverless: a worker has 1..16 vCPU (2..120 GB); the application's limit must
        # hold at least one driver and one executor of the default size (4 vCPU, 16 GB each).
        _check(self.batch_max_vcpu >= 8, "batch_max_vcpu", "must be >= 8 (a driver + an executor)")
        _check(
            self.batch_max_memory_gb >= 32,
            "batch_max_memory_gb",
            "must be >= 32 GB (a driver + an executor of 16 GB)",
        )
        _check(
            self.batch_max_disk_gb >= 40,
            "batch_max_disk_gb",
            "must be >= 40 GB (20 GB per worker is the least EMR Serverless gives)",
        )
        _check(
            1 <= self.batch_idle_minutes <= 10_080,
            "batch_idle_minutes",
            f"EMR Serverless stops an idle application after 1..10080 minutes, got "
            f"{self.batch_idle_minutes}",
        )
        _check(
            self.batch_input_retention_days >= 1, "batch_input_retention_days", "must be >= 1 day"
        )
        _check(
            self.batch_output_retention_days >= 1, "batch_output_retention_days", "must be >= 1 day"
        )


# Valid Fargate (cpu units, memory MB) pairs for the sizes this service can sensibly use.
_FARGATE_SIZES: frozenset[tuple[int, int]] = frozenset(
    [(256, m) for m in (512, 1024, 2048)]
    + [(512, m) for m in range(1024, 4097, 1024)]
    + [(1024, m) for m in range(2048, 8193, 1024)]
    + [(2048, m) for m in range(4096, 16385, 1024)]
    + [(4096, m) for m in range(8192, 30721, 1024)]
)


def _is_ipv4_network(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_network(text, strict=True), ipaddress.IPv4Network)
    except ValueError:
        return False


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise SettingsError(f"context '{key}': {message}")


class _ContextReader:
    """Parses context values that may be JSON-typed (cdk.json) or strings (``-c key=value``)."""

    def __init__(self, context: Callable[[str], Any]) -> None:
        self._context = context

    def text(self, key: str) -> str | None:
        value = self._context(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise SettingsError(f"context '{key}': expected a string, got {value!r}")
        return value.strip() or None

    def boolean(self, key: str, default: bool) -> bool:
        value = self._context(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
            return False
        raise SettingsError(f"context '{key}': expected true or false, got {value!r}")

    def optional_integer(self, key: str) -> int | None:
        value = self._context(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, bool):
            raise SettingsError(f"context '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise SettingsError(f"context '{key}': expected an integer, got {value!r}")

    def fraction(self, key: str, default: float, *, inclusive: bool = False) -> float:
        """A number in (0, 1) - [0, 1] when ``inclusive`` - as JSON or a string like ``0.05``."""
        value = self._context(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise SettingsError(f"context '{key}': expected a number, got {value!r}") from None
        if not (0.0 <= number <= 1.0 if inclusive else 0.0 < number < 1.0):
            bounds = "[0, 1]" if inclusive else "(0, 1)"
            raise SettingsError(f"context '{key}': expected a fraction in {bounds}, got {value!r}")
        return number

    def integer(self, key: str, default: int) -> int:
        value = self.optional_integer(key)
        return default if value is None else value

    def choice(self, key: str, kind: type[_E], default: _E) -> _E:
        value = self.text(key)
        if value is None:
            return default
        try:
            return kind(value.lower())
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise SettingsError(
                f"context '{key}': expected one of {allowed}, got {value!r}"
            ) from None
