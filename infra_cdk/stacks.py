"""The deployable stacks: two front doors on the shared image (the serverless one also with the
scheduled stability check, which reads that function's logs), and batch scoring on EMR Serverless.

They are independent (no cross-stack references): deploy any of them. The two serving stacks
create the image construct with the same properties, so the asset hash - and the pushed image -
is shared; the batch stack uploads the same artifact folder as an S3 asset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra_cdk.batch_scoring import BatchScoring
from infra_cdk.fargate_service import FargateService
from infra_cdk.image import ServiceImage
from infra_cdk.serverless_api import ServerlessApi
from infra_cdk.settings import Settings
from infra_cdk.stability_monitor import StabilityMonitor


class ServerlessStack(Stack):
    """Lambda (container image) behind API Gateway REST: pay per request, scales to zero."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        project_root: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.image = ServiceImage(
            self,
            "Image",
            project_root=project_root,
            artifact_dir=settings.artifact_dir,
            architecture=settings.architecture,
        )
        self.api = ServerlessApi(self, "Serverless", image=self.image, settings=settings)
        self.stability = StabilityMonitor(
            self,
            "Stability",
            image=self.image,
            service_log_group=self.api.function_log_group,
            settings=settings,
        )
        CfnOutput(
            self,
            "ApiUrl",
            value=self.api.api.url,
            description="Base URL (stage /prod/ included): GET / is the web page",
        )
        if self.api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )
        CfnOutput(self, "FunctionName", value=self.api.function.function_name)
        CfnOutput(
            self,
            "StabilityAlarmTopic",
            value=self.stability.topic.topic_arn,
            description="Subscribe for the PSI/CSI alarms (investigate 0.10, significant 0.25)",
        )


class FargateStack(Stack):
    """The same image on ECS Fargate behind an ALB: always on, for steady high traffic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        project_root: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.image = ServiceImage(
            self,
            "Image",
            project_root=project_root,
            artifact_dir=settings.artifact_dir,
            architecture=settings.architecture,
        )
        self.fargate = FargateService(self, "Fargate", image=self.image, settings=settings)
        CfnOutput(
            self,
            "ServiceUrl",
            value=self.fargate.url,
            description="Base URL of the ALB (GET / is the web page)",
        )
        CfnOutput(self, "ClusterName", value=self.fargate.cluster.cluster_name)


class BatchStack(Stack):
    """Score the whole loan book: S3 in, EMR Serverless Spark, S3 out; nothing runs when idle."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        project_root: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.batch = BatchScoring(self, "Batch", settings=settings, project_root=project_root)
        outputs = {
            "ApplicationId": (self.batch.application.attr_application_id, "--application-id"),
            "JobRoleArn": (self.batch.job_role.role_arn, "--execution-role-arn"),
            "InputBucket": (self.batch.input_bucket.bucket_name, "loan books go here"),
            "OutputBucket": (
                self.batch.output_bucket.bucket_name,
                "scored books, rejects and job logs (logs/) go here",
            ),
            "EntryPoint": (self.batch.entry_point, "jobDriver.sparkSubmit.entryPoint"),
            "SparkSubmitParameters": (
                self.batch.spark_submit_parameters,
                "jobDriver.sparkSubmit.sparkSubmitParameters",
            ),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
