"""The serverless front door: a container-image Lambda function behind an API Gateway REST API.

REST rather than HTTP API because the auth options (API keys bound to usage plans, per-client
throttling and quotas), WAF association and execution logging exist only on REST APIs; HTTP
APIs are cheaper ($1.00 vs $3.50 per million) and a little faster, but would leave the
prediction routes with IAM/JWT only. docs/decisions.md carries the full comparison.
"""

from __future__ import annotations

import json
from typing import cast

from aws_cdk import CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra_cdk.environment import service_environment
from infra_cdk.image import ServiceImage
from infra_cdk.log_groups import log_group
from infra_cdk.nag import Acknowledgement, acknowledge
from infra_cdk.release import LambdaRelease
from infra_cdk.release_hook import GOLDEN_FILE_NAME
from infra_cdk.settings import AuthMode, Settings
from infra_cdk.web_acl import RegionalWebAcl

STAGE_NAME = "prod"
# Routes that only read: the web page, health, model card and API docs (via the proxy resource).
OPEN_GET_PATHS = ("/", "/health", "/model", "/docs", "/openapi.json")
PROTECTED_POST_PATHS = ("/predict", "/predict/batch")

ACCESS_LOG_FIELDS = {
    "requestId": apigw.AccessLogField.context_request_id(),
    "ip": apigw.AccessLogField.context_identity_source_ip(),
    "requestTime": apigw.AccessLogField.context_request_time(),
    "httpMethod": apigw.AccessLogField.context_http_method(),
    "resourcePath": apigw.AccessLogField.context_resource_path(),
    "path": apigw.AccessLogField.context_path(),
    "status": apigw.AccessLogField.context_status(),
    "responseLength": apigw.AccessLogField.context_response_length(),
    "responseLatency": apigw.AccessLogField.context_response_latency(),
    "integrationLatency": apigw.AccessLogField.context_integration_latency(),
    "integrationStatus": apigw.AccessLogField.context_integration_status(),
    "apiKeyId": apigw.AccessLogField.context_identity_api_key_id(),
    "caller": apigw.AccessLogField.context_identity_caller(),
    "errorType": apigw.AccessLogField.context_error_response_type(),
    "errorMessage": apigw.AccessLogField.context_error_message(),
    "xrayTraceId": apigw.AccessLogField.context_xray_trace_id(),
}

# Gateway-generated errors (missing key, throttled, ...) in the service's JSON error shape.
GATEWAY_ERROR_TEMPLATE = (
    '{"error": "$context.error.responseType", "message": $context.error.messageString, '
    '"request_id": "$context.requestId"}'
)


class ServerlessApi(Construct):
    """The function, its log groups and role, and the REST API with auth, throttling and logs."""

    def __init__(
        self, scope: Construct, construct_id: str, *, image: ServiceImage, settings: Settings
    ) -> None:
        super().__init__(scope, construct_id)
        self.function_log_group = log_group(
            self, "FunctionLogs", retention_days=settings.log_retention_days
        )
        self.role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Loan-default function: its own log group (+ the MLflow token if set)",
        )
        # Only its own log group, instead of AWSLambdaBasicExecutionRole (every group: "*").
        self.function_log_group.grant_write(self.role)
        if settings.mlflow_tracking_token_secret_arn:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadMlflowTrackingToken",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[settings.mlflow_tracking_token_secret_arn],
                )
            )

        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="Loan-default PD model: FastAPI + Mangum, model baked into the image",
            code=image.lambda_code(),
            architecture=image.lambda_architecture,
            memory_size=settings.lambda_memory_mb,
            timeout=Duration.seconds(settings.lambda_timeout_seconds),
            environment=service_environment(settings),
            role=self.role,
            log_group=self.function_log_group,
            tracing=lambda_.Tracing.ACTIVE if settings.tracing else lambda_.Tracing.DISABLED,
            reserved_concurrent_executions=settings.reserved_concurrency,
            # Each deployment of a new image publishes a version named after its model; old
            # versions stay, so the alias can be pointed back at one by hand.
            current_version_options=lambda_.VersionOptions(
                description=f"model {image.manifest['model_version']}",
                removal_policy=RemovalPolicy.RETAIN,
            ),
        )
        # SAM CLI (`sam local invoke -t cdk.out/...`) finds the image to build from this metadata.
        function_resource = cast(CfnResource, self.function.node.default_child)
        image.asset.add_resource_metadata(function_resource, "Code.ImageUri")

        self.access_log_group = log_group(
            self, "ApiAccessLogs", retention_days=settings.log_retention_days
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{Stack.of(self).stack_name}-api",
            description="Loan-default prediction API (the web page, health, model card, predict)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Execution logs (errors only) need the account-level CloudWatch role.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=settings.throttle_rate_limit,
                throttling_burst_limit=settings.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                # Request bodies are applicants' financial data: never copy them into logs.
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=settings.tracing,
            ),
        )
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX):
            self.api.add_gateway_response(
                f"Gateway{response_type.response_type}",
                type=response_type,
                templates={"application/json": GATEWAY_ERROR_TEMPLATE},
            )

        self.release = LambdaRelease(
            self,
            "Release",
            function=self.function,
            settings=settings,
            manifest=image.manifest,
            golden_file=image.artifact_folder / GOLDEN_FILE_NAME,
        )
        self.alias = self.release.alias
        # API Gateway invokes the live alias, never $LATEST.
        integration = apigw.LambdaIntegration(self.alias, allow_test_invoke=False)
        open_get = self.api.root.add_method("GET", integration)
        proxy = self.api.root.add_resource("{proxy+}")
        proxy_get = proxy.add_method("GET", integration)

        # api_key: the key is checked against the usage plan; iam: SigV4 + execute-api:Invoke.
        api_key_required = settings.auth is AuthMode.API_KEY
        authorization_type = (
            apigw.AuthorizationType.IAM
            if settings.auth is AuthMode.IAM
            else apigw.AuthorizationType.NONE
        )
        predict = self.api.root.add_resource("predict")
        predict_post = predict.add_method(
            "POST",
            integration,
            api_key_required=api_key_required,
            authorization_type=authorization_type,
        )
        batch_post = predict.add_resource("batch").add_method(
            "POST",
            integration,
            api_key_required=api_key_required,
            authorization_type=authorization_type,
        )
        self.protected_methods = (predict_post, batch_post)
        self.open_methods = (open_get, proxy_get)

        self.api_key: apigw.IApiKey | None = None
        if settings.auth is AuthMode.API_KEY:
            self.api_key = self.api.add_api_key(
                "ApiKey", description="Key for POST /predict and /predict/batch"
            )
            plan = self.api.add_usage_plan(
                "UsagePlan",
                description="Per-key throttling for the prediction routes",
                throttle=apigw.ThrottleSettings(
                    rate_limit=settings.throttle_rate_limit,
                    burst_limit=settings.throttle_burst_limit,
                ),
                api_stages=[
                    apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)
                ],
            )
            plan.add_api_key(self.api_key)

        if settings.waf:
            RegionalWebAcl(self, "Waf", resource_arn=self.api.deployment_stage.stage_arn)
        self._acknowledge_findings(settings)

    def _acknowledge_findings(self, settings: Settings) -> None:
        """Each accepted AwsSolutions finding, on the narrowest construct, with its reason."""
        for method in self.open_methods:
            acknowledge(
                method,
                Acknowledgement(
                    "AwsSolutions-APIG4",
                    "Read-only routes (web page, /health, /model, /docs, /openapi.json) are public "
                    "by design: the browser page and load checks must work without credentials; "
                    "they expose no applicant data.",
                ),
                Acknowledgement(
                    "AwsSolutions-COG4",
                    "Public read-only routes need no Cognito authorizer: there is no end-user "
                    "identity in this service, only the model's public card and docs.",
                ),
            )
        for method in self.protected_methods:
            acknowledge(
                method,
                Acknowledgement(
                    "AwsSolutions-COG4",
                    "Callers are bank systems, not end users: prediction routes use an API key "
                    "with a usage plan or IAM SigV4 (context 'auth'), not a Cognito user pool.",
                ),
            )
            if settings.auth is not AuthMode.IAM:
                acknowledge(
                    method,
                    Acknowledgement(
                        "AwsSolutions-APIG4",
                        "With auth=api_key the routes require x-api-key bound to a usage plan "
                        "(nag counts only IAM/Cognito/Lambda authorizers); with auth=none the "
                        "operator opted out explicitly in context for a private demo.",
                    ),
                )
        if settings.tracing:
            acknowledge(
                self.role,
                Acknowledgement(
                    "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords have no "
                    "resource-level permissions (AWS documents Resource '*'); added only when "
                    "context tracing=true.",
                ),
            )
        acknowledge(
            self.api,
            Acknowledgement(
                "AwsSolutions-APIG2",
                "Request validation is the application's job: strict pydantic types return the "
                "contract's 422/413/415 JSON; a gateway model would duplicate the schema and "
                "answer in a different error shape.",
            ),
        )
        if not settings.waf:
            acknowledge(
                self.api,
                Acknowledgement(
                    "AwsSolutions-APIG3",
                    "WAF is opt-in (context waf=true): it costs more than the whole stack at low "
                    "traffic; stage throttling, the usage plan and strict validation are the "
                    "baseline protection.",
                ),
            )
        cloud_watch_role = self.api.node.try_find_child("CloudWatchRole")
        if cloud_watch_role is not None:
            acknowledge(
                cloud_watch_role,
                Acknowledgement(
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    "API Gateway's account-level logging role is the documented AWS-managed "
                    "service role policy; it lets the service (not our code) write execution logs.",
                ),
            )
