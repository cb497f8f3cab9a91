"""The scheduled stability check: PSI of the score and CSI per feature from the service's own logs.

The same image runs a second function (``monitor_handler.handler``) on an EventBridge schedule
(daily by default). It sums the reference-bin counts every EMF document of the service carries
over the last window with one Logs Insights query, and publishes ``ScorePSI`` and ``FeatureCSI``
(namespace ``LoanDefault/Stability``, dimensions ``model_version`` and ``feature``). Two alarms
per figure - investigate at 0.10, significant at 0.25, the verdicts of ``loan-default monitor`` -
notify an SNS topic (encrypted with its own key; an optional e-mail subscription from context).

Least privilege: ``logs:StartQuery`` on the service's log group only; ``logs:GetQueryResults``
(which has no resource-level permissions) and ``cloudwatch:PutMetricData`` only into its namespace
(the ``cloudwatch:namespace`` condition); its own log group; nothing else.
"""

from __future__ import annotations

from typing import Any, Final

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra_cdk.environment import POWERTOOLS_SERVICE_NAME, TASK_ROOT
from infra_cdk.image import ServiceImage
from infra_cdk.log_groups import log_group
from infra_cdk.nag import Acknowledgement, acknowledge
from infra_cdk.service_contract import env
from infra_cdk.settings import Settings

HANDLER: Final = "monitor_handler.handler"
NAMESPACE: Final = "LoanDefault/Stability"
SCORE_METRIC: Final = "ScorePSI"
FEATURE_METRIC: Final = "FeatureCSI"
# The verdict thresholds of loan_service.stability: investigate from 0.10, significant from 0.25.
THRESHOLDS: Final = (("Investigate", 0.10), ("Significant", 0.25))
QUERY_DEADLINE_SECONDS: Final = 240
TIMEOUT_SECONDS: Final = 300  # the query deadline plus loading the reference and publishing


class StabilityMonitor(Construct):
    """The function, its schedule, its role, the topic and the alarms on its figures."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image: ServiceImage,
        service_log_group: logs.ILogGroup,
        settings: Settings,
    ) -> None:
        super().__init__(scope, construct_id)
        manifest: dict[str, Any] = image.manifest
        self.model_version = str(manifest["model_version"])
        features = [str(name) for name in manifest["features"]]

        self.log_group = log_group(self, "Logs", retention_days=settings.log_retention_days)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Stability check: query the service's logs, publish its stability metrics",
        )
        self.log_group.grant_write(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="QueryTheServiceLogs",
                actions=["logs:StartQuery"],
                resources=[service_log_group.log_group_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadQueryResults", actions=["logs:GetQueryResults"], resources=["*"]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishStabilityMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
            )
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="Loan-default stability check: PSI/CSI of the service's last window",
            code=image.lambda_code(HANDLER),
            architecture=image.lambda_architecture,
            memory_size=512,
            timeout=Duration.seconds(TIMEOUT_SECONDS),
            environment={
                env.ENV_ARTIFACT_DIR: f"{TASK_ROOT}/artifacts",
                env.ENV_LOG_LEVEL: settings.log_level,
                env.ENV_POWERTOOLS_SERVICE_NAME: f"{POWERTOOLS_SERVICE_NAME}-stability",
                "SERVICE_LOG_GROUP": service_log_group.log_group_name,
                "STABILITY_WINDOW_HOURS": str(settings.stability_window_hours),
                "STABILITY_METRICS_NAMESPACE": NAMESPACE,
                "STABILITY_QUERY_DEADLINE_SECONDS": str(QUERY_DEADLINE_SECONDS),
            },
            role=self.role,
            log_group=self.log_group,
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description="Run the stability check over the service's last window",
            schedule=events.Schedule.expression(settings.stability_schedule),
            targets=[targets.LambdaFunction(self.function, retry_attempts=2)],
        )

        # CloudWatch alarms publish to an encrypted topic only with a customer-managed key whose
        # policy lets CloudWatch use it (the AWS-managed aws/sns key cannot be granted).
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the stability alarm topic",
            enable_key_rotation=True,
        )
        self.key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Loan-default model stability",
            master_key=self.key,
            enforce_ssl=True,
        )
        if settings.stability_alarm_email:
            self.topic.add_subscription(
                subscriptions.EmailSubscription(settings.stability_alarm_email)
            )
        self.alarms: list[cloudwatch.Alarm] = []
        version = {"model_version": self.model_version}
        for name, dimensions, what in [
            (SCORE_METRIC, version, "the score"),
            *((FEATURE_METRIC, {**version, "feature": feature}, feature) for feature in features),
        ]:
            metric = cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name=name,
                dimensions_map=dimensions,
                statistic="Maximum",
                period=Duration.days(1),
            )
            label = "Score" if name == SCORE_METRIC else f"Feature-{feature_id(what)}"
            for level, threshold in THRESHOLDS:
                alarm = metric.create_alarm(
                    self,
                    f"{label}{level}",
                    alarm_description=(
                        f"{'PSI' if name == SCORE_METRIC else 'CSI'} of {what} "
                        f"(model {self.model_version}) reached {threshold:.2f}: "
                        f"{level.lower()} (docs/monitoring.md says what to do)"
                    ),
                    threshold=threshold,
                    evaluation_periods=1,
                    comparison_operator=(
                        cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                    ),
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
                alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
                self.alarms.append(alarm)

        acknowledge(
            self.role,
            Acknowledgement(
                "AwsSolutions-IAM5[Resource::*]",
                "logs:GetQueryResults has no resource-level permissions (AWS documents Resource "
                "'*'; the query itself is scoped to the service's log group by logs:StartQuery), "
                "and cloudwatch:PutMetricData has none either: it is limited to the stability "
                "namespace by the cloudwatch:namespace condition.",
            ),
        )


def feature_id(name: str) -> str:
    """A construct-id-safe form of a feature name."""
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_") if part)
