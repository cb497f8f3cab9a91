"""The always-on alternative: the same image on ECS Fargate behind an Application Load Balancer.

The Lambda base image's entry point is the Runtime Interface Client; here the task overrides it
with uvicorn's own CLI on the app factory (``infra_cdk.ecs_entry``: port 8080, the bounded
httptools protocol, a graceful drain on SIGTERM) and runs as an
unprivileged uid on a read-only root file system.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra_cdk.ecs_entry import COMMAND, CONTAINER_PORT, CONTAINER_USER, ENTRY_POINT
from infra_cdk.environment import TASK_ROOT, service_environment
from infra_cdk.image import ServiceImage
from infra_cdk.log_groups import log_group
from infra_cdk.nag import Acknowledgement, acknowledge
from infra_cdk.settings import ANYWHERE_IPV4, Settings
from infra_cdk.web_acl import RegionalWebAcl

CONTAINER_NAME = "Service"
HEALTH_CHECK_PATH = "/health"
DEPLOYMENT_ALARM_PERIOD = Duration.minutes(1)


class FargateService(Construct):
    """VPC, cluster, task, service, ALB with access logs, autoscaling, optional WAF and HTTPS."""

    def __init__(
        self, scope: Construct, construct_id: str, *, image: ServiceImage, settings: Settings
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = self._vpc(settings)

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.log_group = log_group(self, "ServiceLogs", retention_days=settings.log_retention_days)

        # The application calls no AWS API except, optionally, reading the MLflow token.
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="Loan-default task: no AWS access beyond the optional MLflow token",
        )
        if settings.mlflow_tracking_token_secret_arn:
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadMlflowTrackingToken",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[settings.mlflow_tracking_token_secret_arn],
                )
            )

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=settings.fargate_cpu,
            memory_limit_mib=settings.fargate_memory_mb,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=image.ecs_cpu_architecture,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            volumes=[ecs.Volume(name="tmp")],
        )
        self.container = self.task_definition.add_container(
            CONTAINER_NAME,
            image=image.container_image(),
            entry_point=ENTRY_POINT,
            command=COMMAND,
            working_directory=TASK_ROOT,
            user=CONTAINER_USER,
            environment={
                **service_environment(settings),
                "PYTHONDONTWRITEBYTECODE": "1",
                # uid 1000 has no passwd entry; libraries that look for ~ get a writable one.
                "HOME": "/tmp",
            },
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT, name="http")],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="service", log_group=self.log_group),
            readonly_root_filesystem=True,
            essential=True,
        )
        self.container.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=settings.min_tasks,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            health_check_grace_period=Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

        self.access_log_bucket = s3.Bucket(
            self,
            "AlbAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # ALB log delivery supports SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(settings.alb_log_retention_days))
            ],
            # Access logs are audit evidence: they outlive the stack (docs/deployment.md: Teardown).
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
        )
        self.load_balancer.log_access_logs(self.access_log_bucket, prefix="alb")

        if settings.certificate_arn:
            listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(settings.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
            )
            self.load_balancer.add_redirect(source_port=80, target_port=443, open=False)
            host = settings.domain_name or self.load_balancer.load_balancer_dns_name
            self.url = f"https://{host}"
        else:
            listener = self.load_balancer.add_listener("Http", port=80, open=False)
            self.url = f"http://{self.load_balancer.load_balancer_dns_name}"
        self.listener = listener
        # Who may reach the ALB at all: the internet by default, or one CIDR from context.
        for port in (80, 443) if settings.certificate_arn else (80,):
            self.load_balancer.connections.allow_from(
                ec2.Peer.ipv4(settings.alb_ingress_cidr),
                ec2.Port.tcp(port),
                f"HTTP(S) clients ({settings.alb_ingress_cidr})",
            )

        self.target_group = listener.add_targets(
            "Service",
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[
                self.service.load_balancer_target(
                    container_name=CONTAINER_NAME, container_port=CONTAINER_PORT
                )
            ],
            health_check=elbv2.HealthCheck(
                path=HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            deregistration_delay=Duration.seconds(30),
        )

        self.deployment_alarms = self._deployment_alarms(settings)

        scaling = self.service.auto_scale_task_count(
            min_capacity=settings.min_tasks, max_capacity=settings.max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "CpuScaling",
            target_utilization_percent=settings.cpu_target_percent,
            scale_in_cooldown=Duration.seconds(300),
            scale_out_cooldown=Duration.seconds(60),
        )
        scaling.scale_on_request_count(
            "RequestCountScaling",
            requests_per_target=settings.requests_per_target,
            target_group=self.target_group,
            scale_in_cooldown=Duration.seconds(300),
            scale_out_cooldown=Duration.seconds(60),
        )

        if settings.waf:
            RegionalWebAcl(self, "Waf", resource_arn=self.load_balancer.load_balancer_arn)
        self._acknowledge_findings(settings)

    def _deployment_alarms(self, settings: Settings) -> tuple[cloudwatch.Alarm, ...]:
        """Target 5xx answers and p99 response time: either in alarm during a rolling deployment
        rolls it back (on top of the circuit breaker, which only sees tasks that fail to start).
        """
        metrics = self.target_group.metrics
        errors = cloudwatch.Alarm(
            self,
            "Target5xxAlarm",
            alarm_description="5xx answers from the service's tasks (not the load balancer's own)",
            metric=metrics.http_code_target(
                elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
                period=DEPLOYMENT_ALARM_PERIOD,
                statistic="Sum",
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = cloudwatch.Alarm(
            self,
            "TargetLatencyP99Alarm",
            alarm_description=f"p99 target response time over {settings.latency_p99_budget_ms} ms",
            metric=metrics.target_response_time(period=DEPLOYMENT_ALARM_PERIOD, statistic="p99"),
            threshold=settings.latency_p99_budget_ms / 1000.0,  # the metric is in seconds
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarms = (errors, latency)
        self.service.enable_deployment_alarms(
            [alarm.alarm_name for alarm in alarms], behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM
        )
        return alarms

    def _vpc(self, settings: Settings) -> ec2.IVpc:
        """A looked-up VPC (context ``vpc_id``) or a new two-AZ VPC with flow logs."""
        if settings.vpc_id:
            return ec2.Vpc.from_lookup(self, "Vpc", vpc_id=settings.vpc_id)
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=settings.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24
                ),
            ],
        )
        flow_logs = log_group(self, "VpcFlowLogs", retention_days=settings.log_retention_days)
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            # Rejected traffic is the security signal; accepted-flow logs would cost more than
            # the tasks at high request rates.
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    def _acknowledge_findings(self, settings: Settings) -> None:
        """Each accepted AwsSolutions finding, on the narrowest construct, with its reason."""
        if settings.alb_ingress_cidr == ANYWHERE_IPV4:
            for security_group in self.load_balancer.connections.security_groups:
                acknowledge(
                    security_group,
                    Acknowledgement(
                        "AwsSolutions-EC23",
                        "The internet-facing ALB accepts HTTP(S) from anywhere by default: it is "
                        "the public endpoint (narrow it with context alb_ingress_cidr); the tasks' "
                        "own security group admits only the ALB.",
                    ),
                )
        acknowledge(
            self.task_definition,
            Acknowledgement(
                "AwsSolutions-ECS2",
                "Environment variables hold plain configuration only (artifact path, log level, "
                "Powertools names, MLflow URI); the MLflow token is passed as a Secrets Manager "
                "ARN and read at run time.",
            ),
        )
        acknowledge(
            self.task_definition.obtain_execution_role(),
            Acknowledgement(
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken has no resource-level permissions (AWS documents "
                "Resource '*'); the layer-pull actions in the same policy are scoped to the "
                "asset repository and logs to the service's own log group.",
            ),
        )
        acknowledge(
            self.access_log_bucket,
            Acknowledgement(
                "AwsSolutions-S1",
                "This bucket receives the ALB access logs; logging access to the log bucket "
                "would need yet another bucket, recursively. Public access is blocked and SSL "
                "enforced.",
            ),
        )
