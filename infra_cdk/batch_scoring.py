"""Batch scoring on EMR Serverless: the buckets, the Spark application, the job role, the assets.

What a job run needs, and nothing more:

* an input bucket (the loan books) and an output bucket (the scored books, their rejects and the
  job logs under ``logs/``): SSE-S3, SSL only, public access blocked, access logs, lifecycle rules;
* a Spark application on a pinned release label that starts on job submission and stops when idle,
  capped at the maximum capacity given in context;
* the job script (``loan_default/batch/spark.py``), the code zip for ``--py-files``, the trained
  artifact folder (``--archives ...#artifacts``) and the packed Python environment with
  onnxruntime, pyarrow and numpy (``--archives ...#environment``), uploaded as CDK assets;
* a job role that EMR Serverless assumes for this application only, which reads the input bucket
  and exactly those asset objects and writes the output bucket.

The stack's outputs are the ``aws emr-serverless start-job-run`` arguments (docs/batch-scoring.md).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_emrserverless as emrs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra_cdk.image import require_artifacts
from infra_cdk.nag import Acknowledgement, acknowledge
from infra_cdk.settings import Architecture, Settings
from loan_default.batch.code_zip import build_code_zip

JOB_SCRIPT = Path("loan_default") / "batch" / "spark.py"
CODE_ZIP = Path(".build") / "batch" / "loan_default_code.zip"  # built at synth, reproducibly
LOG_PREFIX = "logs/"
ENVIRONMENT_PYTHON = "./environment/bin/python"
ARCHITECTURE: dict[Architecture, str] = {
    Architecture.X86_64: "X86_64",
    Architecture.ARM64: "ARM64",
}


def spark_submit_parameters(code_zip: str, artifacts_zip: str, python_env: str | None) -> str:
    """``sparkSubmitParameters`` of a job run: the code, the model, the workers' Python."""
    archives = [f"{artifacts_zip}#artifacts"]
    parameters = [f"--py-files {code_zip}"]
    if python_env is not None:
        archives.append(f"{python_env}#environment")
    parameters.append(f"--archives {','.join(archives)}")
    if python_env is not None:
        parameters += [
            f"--conf spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON={ENVIRONMENT_PYTHON}",
            f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={ENVIRONMENT_PYTHON}",
            f"--conf spark.executorEnv.PYSPARK_PYTHON={ENVIRONMENT_PYTHON}",
        ]
    return " ".join(parameters)


def _data_bucket(
    scope: Construct, construct_id: str, *, access_logs: s3.IBucket, expire_days: int
) -> s3.Bucket:
    """A bucket for customers' loan data: private, SSL only, encrypted, expiring."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{construct_id.lower()}/",
        lifecycle_rules=[
            s3.LifecycleRule(
                id="expire-loan-data",
                expiration=Duration.days(expire_days),
                noncurrent_version_expiration=Duration.days(7),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
        ],
        removal_policy=RemovalPolicy.RETAIN,  # loan data outlives the stack
    )


class BatchScoring(Construct):
    """The EMR Serverless application and everything its job runs read and write."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, project_root: Path
    ) -> None:
        super().__init__(scope, construct_id)
        artifact_folder = require_artifacts(project_root, settings.artifact_dir)

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 log delivery supports SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.input_bucket = _data_bucket(
            self,
            "Input",
            access_logs=self.access_logs,
            expire_days=settings.batch_input_retention_days,
        )
        self.output_bucket = _data_bucket(
            self,
            "Output",
            access_logs=self.access_logs,
            expire_days=settings.batch_output_retention_days,
        )

        self.job_script = s3_assets.Asset(
            self, "JobScript", path=str(project_root / JOB_SCRIPT), display_name="batch-job-script"
        )
        code_zip = project_root / CODE_ZIP
        build_code_zip(code_zip, project_root)
        self.code = s3_assets.Asset(self, "Code", path=str(code_zip), display_name="batch-job-code")
        self.artifacts = s3_assets.Asset(  # a folder: the CDK zips it
            self, "Artifacts", path=str(artifact_folder), display_name="batch-model-artifacts"
        )
        env_path = project_root / settings.batch_python_env
        self.python_env: s3_assets.Asset | None = None
        if env_path.is_file():
            self.python_env = s3_assets.Asset(
                self, "PythonEnvironment", path=str(env_path), display_name="batch-python-env"
            )
        else:
            Annotations.of(self).add_warning_v2(
                "loan-default:batch-python-env",
                f"no packed Python environment at {env_path}: run `make batch-env` (Docker) "
                "before deploying, or the job's workers have no onnxruntime or pyarrow",
            )

        self.application = emrs.CfnApplication(
            self,
            "Application",
            name=f"{settings.stack_prefix.lower()}-batch-scoring",
            release_label=settings.batch_release_label,
            type="Spark",
            architecture=ARCHITECTURE[settings.architecture],
            auto_start_configuration=emrs.CfnApplication.AutoStartConfigurationProperty(
                enabled=True
            ),
            auto_stop_configuration=emrs.CfnApplication.AutoStopConfigurationProperty(
                enabled=True, idle_timeout_minutes=settings.batch_idle_minutes
            ),
            maximum_capacity=emrs.CfnApplication.MaximumAllowedResourcesProperty(
                cpu=f"{settings.batch_max_vcpu} vCPU",
                memory=f"{settings.batch_max_memory_gb} GB",
                disk=f"{settings.batch_max_disk_gb} GB",
            ),
            monitoring_configuration=emrs.CfnApplication.MonitoringConfigurationProperty(
                s3_monitoring_configuration=emrs.CfnApplication.S3MonitoringConfigurationProperty(
                    log_uri=self.output_bucket.s3_url_for_object(LOG_PREFIX)
                )
            ),
        )

        self.job_role = iam.Role(
            self,
            "JobRole",
            description="EMR Serverless batch scoring: read loan books and the job, write scores",
            assumed_by=iam.ServicePrincipal(
                "emr-serverless.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": self.application.attr_arn},
                },
            ),
        )
        self._grant(settings)

        self.entry_point = self.job_script.s3_object_url
        self.spark_submit_parameters = spark_submit_parameters(
            self.code.s3_object_url,
            self.artifacts.s3_object_url,
            None if self.python_env is None else self.python_env.s3_object_url,
        )

    def _grant(self, settings: Settings) -> None:
        """Exactly what a job run touches: no wildcard actions, no other bucket."""
        policy = iam.Policy(self, "JobPolicy")
        policy.add_statements(
            iam.PolicyStatement(
                sid="ListInput",
                actions=["s3:ListBucket"],
                resources=[self.input_bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="ReadInput",
                actions=["s3:GetObject"],
                resources=[self.input_bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                sid="ListOutput",
                actions=["s3:ListBucket"],  # a run's parts: found, replaced, deleted
                resources=[self.output_bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                # The workers upload their parts (multipart for large ones; a failed upload is
                # aborted), the driver looks them up and deletes a replaced or stopped run's.
                sid="WriteOutput",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self.output_bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                sid="ReadJobAssets",
                actions=["s3:GetObject"],
                resources=[
                    f"arn:{Aws.PARTITION}:s3:::{asset.s3_bucket_name}/{asset.s3_object_key}"
                    for asset in self.assets
                ],
            ),
        )
        policy.attach_to_role(self.job_role)
        acknowledge(
            policy,
            Acknowledgement(
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.input_bucket)}.Arn>/*]",
                "A job reads whichever loan book it is given: any object of the input bucket, "
                "read only, and no other bucket.",
            ),
            Acknowledgement(
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.output_bucket)}.Arn>/*]",
                "A job writes its output, rejects and logs under names it chooses at run time: "
                "any object of the output bucket only.",
            ),
        )

    @property
    def assets(self) -> list[s3_assets.Asset]:
        found = [self.job_script, self.code, self.artifacts]
        return found if self.python_env is None else [*found, self.python_env]


def _logical_id(bucket: s3.Bucket) -> str:
    """The bucket's CloudFormation logical id, as cdk-nag names it in a finding."""
    stack = Stack.of(bucket)
    return str(stack.resolve(stack.get_logical_id(bucket.node.default_child)))  # type: ignore[arg-type]
