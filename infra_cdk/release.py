"""How a new model reaches traffic on Lambda: a version per deployment, the ``live`` alias, a
CodeDeploy canary with a pre-traffic check, and alarms on the NEW version that roll it back.

* Version: ``function.current_version``. Its logical id is a hash of the function's
  configuration, and the image URI in it carries the image asset's hash, which changes whenever
  the artifact folder baked into the image changes (a retrained model, even with identical code).
  So every new model publishes a new version; a deployment with no change publishes none
  (CloudFormation keeps the resource) instead of failing with "a version for this function
  exists". The version's description names the model. Old versions are retained: rolling back
  by hand is pointing the alias at the previous one.
* Alias ``live``: what API Gateway invokes (never ``$LATEST``), optionally with provisioned
  concurrency (context ``provisioned_concurrency``).
* Deployment group: canary (default 10 % for 5 minutes), linear, or all at once; stops and rolls
  back on the pre-traffic hook's verdict, a failed or stopped deployment, or any alarm below.
* Alarms, each on the new version only: function errors and p99 duration (dimension
  ``ExecutedVersion``), throttles of the alias, and the model's behaviour - approval rate and
  mean PD that the service publishes per ``model_version`` (EMF) - against the values training
  recorded on held-out rows (``manifest.expected``), with configurable margins and a minimum
  number of predictions per minute before the rates count.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Final

from aws_cdk import Duration, Stage
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra_cdk import release_hook
from infra_cdk.environment import POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_SERVICE_NAME
from infra_cdk.log_groups import log_group
from infra_cdk.nag import Acknowledgement, acknowledge
from infra_cdk.settings import DeploymentStyle, Settings, SettingsError

ALIAS_NAME: Final = "live"
# The service's per-model EMF metrics (lambda/loan_service/observability.py publishes them with
# the dimensions service + model_version). Rates are ratios of sums, so batches weigh per loan.
PREDICTIONS_METRIC: Final = "Predictions"
DEFAULTS_METRIC: Final = "DefaultsPredicted"
PROBABILITY_SUM_METRIC: Final = "ProbabilitySum"
MODEL_VERSION_DIMENSION: Final = "model_version"
ALARM_PERIOD: Final = Duration.minutes(1)
HOOK_TIMEOUT: Final = Duration.minutes(2)
HOOK_ROUNDS: Final = 3
HOOK_SOURCE: Final = Path(release_hook.__file__)

_CONFIG = codedeploy.LambdaDeploymentConfig
_CANARY, _LINEAR = DeploymentStyle.CANARY, DeploymentStyle.LINEAR
# CodeDeploy's predefined configurations, by (style, percent, minutes); other shapes get their own.
_PREDEFINED: Final[dict[tuple[DeploymentStyle, int, int], codedeploy.ILambdaDeploymentConfig]] = {
    (_CANARY, 10, 5): _CONFIG.CANARY_10_PERCENT_5_MINUTES,
    (_CANARY, 10, 10): _CONFIG.CANARY_10_PERCENT_10_MINUTES,
    (_CANARY, 10, 15): _CONFIG.CANARY_10_PERCENT_15_MINUTES,
    (_CANARY, 10, 30): _CONFIG.CANARY_10_PERCENT_30_MINUTES,
    (_LINEAR, 10, 1): _CONFIG.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    (_LINEAR, 10, 2): _CONFIG.LINEAR_10_PERCENT_EVERY_2_MINUTES,
    (_LINEAR, 10, 3): _CONFIG.LINEAR_10_PERCENT_EVERY_3_MINUTES,
    (_LINEAR, 10, 10): _CONFIG.LINEAR_10_PERCENT_EVERY_10_MINUTES,
}


def expected_behaviour(manifest: dict[str, Any]) -> tuple[float, float]:
    """(approval rate, mean PD) recorded at training, or stop synthesis saying to retrain."""
    expected = manifest.get("expected")
    try:
        return float(expected["approval_rate"]), float(expected["mean_pd"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise SettingsError(
            "artifacts/manifest.json records no expected approval rate and mean PD: retrain "
            "(`make train`) - the canary's behaviour alarms compare the new model against them"
        ) from None


class LambdaRelease(Construct):
    """Version, ``live`` alias, alarms on the new version, pre-traffic hook, deployment group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        settings: Settings,
        manifest: dict[str, Any],
        golden_file: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model_version = str(manifest["model_version"])
        approval_rate, mean_pd = expected_behaviour(manifest)
        if not golden_file.is_file():
            raise SettingsError(
                f"{golden_file} is missing: retrain (`make train`) - the pre-traffic check "
                "sends the golden loans training writes to the new version"
            )
        self.version = function.current_version
        self.alias = lambda_.Alias(
            self,
            "LiveAlias",
            alias_name=ALIAS_NAME,
            version=self.version,
            description="What API Gateway invokes; CodeDeploy moves it to each new version",
            provisioned_concurrent_executions=settings.provisioned_concurrency,
        )

        new_version = {
            "FunctionName": function.function_name,
            "Resource": f"{function.function_name}:{ALIAS_NAME}",
            "ExecutedVersion": self.version.version,
        }
        self.errors_alarm = self._alarm(
            "NewVersionErrors",
            "Function errors (unhandled exceptions, timeouts) of the new version",
            self._lambda_metric("Errors", new_version, "Sum"),
            threshold=1,
        )
        self.throttles_alarm = self._alarm(
            "AliasThrottles",
            "Throttled invocations of the live alias while the new version takes traffic",
            self._lambda_metric(
                "Throttles",
                {"FunctionName": function.function_name, "Resource": new_version["Resource"]},
                "Sum",
            ),
            threshold=1,
        )
        self.duration_alarm = self._alarm(
            "NewVersionLatencyP99",
            f"p99 duration of the new version over {settings.latency_p99_budget_ms} ms",
            self._lambda_metric("Duration", new_version, "p99"),
            threshold=settings.latency_p99_budget_ms,
            strictly_greater=True,
        )
        self.approval_alarm = self._alarm(
            "NewModelApprovalRate",
            f"Approval rate of model {self.model_version} more than "
            f"{settings.approval_rate_margin:g} from {approval_rate:.4f} (held-out rows)",
            self._behaviour(
                "(n - x) / n",
                DEFAULTS_METRIC,
                approval_rate,
                settings.behaviour_min_predictions,
                "Approval rate distance from training",
            ),
            threshold=settings.approval_rate_margin,
            strictly_greater=True,
        )
        self.mean_pd_alarm = self._alarm(
            "NewModelMeanPd",
            f"Mean PD of model {self.model_version} more than {settings.mean_pd_margin:g} "
            f"from {mean_pd:.4f} (held-out rows)",
            self._behaviour(
                "x / n",
                PROBABILITY_SUM_METRIC,
                mean_pd,
                settings.behaviour_min_predictions,
                "Mean PD distance from training",
            ),
            threshold=settings.mean_pd_margin,
            strictly_greater=True,
        )
        self.alarms = (
            self.errors_alarm,
            self.throttles_alarm,
            self.duration_alarm,
            self.approval_alarm,
            self.mean_pd_alarm,
        )

        self.hook = self._pre_traffic_hook(settings, golden_file)
        self.application = codedeploy.LambdaApplication(self, "Application")
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            application=self.application,
            alias=self.alias,
            deployment_config=self._deployment_config(settings),
            alarms=list(self.alarms),
            pre_hook=self.hook,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        acknowledge(
            self.deployment_group.role,
            Acknowledgement(
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSCodeDeployRoleForLambdaLimited]",
                "CodeDeploy's documented service role policy for Lambda traffic shifting (alias "
                "updates, alarm reads); the 'Limited' variant, which invokes no function except "
                "hooks granted explicitly.",
            ),
            Acknowledgement(
                "AwsSolutions-IAM5[Resource::<ServerlessReleasePreTrafficHookA72C2B28.Arn>:*]",
                "The CDK grants CodeDeploy invoke on the pre-traffic hook function and its "
                "versions (ARN:*); that one function, nothing else.",
            ),
        )

    # -- alarms ---------------------------------------------------------------------------------

    def _lambda_metric(
        self, name: str, dimensions: dict[str, str], statistic: str
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=ALARM_PERIOD,
        )

    def _behaviour(
        self,
        rate: str,
        metric_x: str,
        expected: float,
        min_predictions: int,
        label: str,
    ) -> cloudwatch.MathExpression:
        """|rate - expected| of the new model (``n`` its predictions, ``x`` ``metric_x``, both
        summed per minute); 0 while it has fewer than ``min_predictions`` in the minute."""

        def metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=POWERTOOLS_METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={
                    "service": POWERTOOLS_SERVICE_NAME,
                    MODEL_VERSION_DIMENSION: self.model_version,
                },
                statistic="Sum",
                period=ALARM_PERIOD,
            )

        return cloudwatch.MathExpression(
            expression=f"IF(n >= {min_predictions}, ABS({rate} - {expected!r}), 0)",
            using_metrics={"x": metric(metric_x), "n": metric(PREDICTIONS_METRIC)},
            label=label,
            period=ALARM_PERIOD,
        )

    def _alarm(
        self,
        construct_id: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        strictly_greater: bool = False,
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison_operator=(
                cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
                if strictly_greater
                else cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
            ),
            # No traffic on the new version is not a reason to roll it back.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    # -- deployment -----------------------------------------------------------------------------

    def _deployment_config(self, settings: Settings) -> codedeploy.ILambdaDeploymentConfig:
        if settings.deployment is DeploymentStyle.ALL_AT_ONCE:
            return codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE
        key = (
            settings.deployment,
            settings.deployment_percent,
            settings.deployment_interval_minutes,
        )
        if key in _PREDEFINED:
            return _PREDEFINED[key]
        interval = Duration.minutes(settings.deployment_interval_minutes)
        routing: codedeploy.TrafficRouting = (
            codedeploy.TimeBasedCanaryTrafficRouting(
                interval=interval, percentage=settings.deployment_percent
            )
            if settings.deployment is DeploymentStyle.CANARY
            else codedeploy.TimeBasedLinearTrafficRouting(
                interval=interval, percentage=settings.deployment_percent
            )
        )
        return codedeploy.LambdaDeploymentConfig(self, "DeploymentConfig", traffic_routing=routing)

    def _pre_traffic_hook(self, settings: Settings, golden_file: Path) -> lambda_.Function:
        """The hook function: boto3 only, the golden loans beside its code, narrow rights."""
        source = Path(Stage.of(self).outdir) / f".release-hook-{self.node.addr}"  # type: ignore[union-attr]
        if source.exists():
            shutil.rmtree(source)
        source.mkdir(parents=True)
        shutil.copyfile(HOOK_SOURCE, source / HOOK_SOURCE.name)
        shutil.copyfile(golden_file, source / release_hook.GOLDEN_FILE_NAME)
        golden_loans = len(json.loads(golden_file.read_text(encoding="utf-8")).get("loans", []))

        logs = log_group(self, "HookLogs", retention_days=settings.log_retention_days)
        role = iam.Role(
            self,
            "HookRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Pre-traffic hook: invoke the new version, report to CodeDeploy, log",
        )
        logs.grant_write(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeOnlyTheNewVersion",
                actions=["lambda:InvokeFunction"],
                resources=[self.version.function_arn],
            )
        )
        hook = lambda_.Function(
            self,
            "PreTrafficHook",
            description=f"Pre-traffic check: {golden_loans} golden loans of model "
            f"{self.model_version}",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="release_hook.handler",
            code=lambda_.Code.from_asset(str(source)),
            memory_size=256,
            timeout=HOOK_TIMEOUT,
            role=role,
            log_group=logs,
            environment={
                release_hook.ENV_TARGET_FUNCTION_ARN: self.version.function_arn,
                release_hook.ENV_P99_BUDGET_MS: str(settings.latency_p99_budget_ms),
                release_hook.ENV_ROUNDS: str(HOOK_ROUNDS),
            },
        )
        return hook
