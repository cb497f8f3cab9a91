"""The CDK app synthesized in memory, offline, on a copy of the repository with a real model.

Each variant of the app is synthesized once per module (jsii is slow to start); the tests then
read the CloudFormation templates through ``aws_cdk.assertions.Template`` and plain JSON.
Synthesis itself runs cdk-nag, so every successful fixture is already "nag clean"; the nag tests
below make the findings explicit and prove each acknowledgement is still needed.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

import infra_cdk.nag as nag_module
from infra_cdk.app import build_app, cdk_json_context
from infra_cdk.ecs_entry import COMMAND, CONTAINER_USER, ENTRY_POINT
from infra_cdk.image import MissingArtifactsError
from infra_cdk.nag import recorded_acknowledgements
from infra_cdk.settings import SettingsError
from infra_cdk.stability_monitor import HANDLER as STABILITY_HANDLER
from infra_cdk.stability_monitor import NAMESPACE as STABILITY_NAMESPACE
from tests.support.cfn_lint import lint_errors_and_warnings

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:mlflow-token-AbC123"
CERTIFICATE_ARN = (
    "arn:aws:acm:eu-west-1:111122223333:certificate/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
)
LOOKED_UP_VPC_ID = "vpc-0a1b2c3d4e5f60718"
LOOKED_UP_PUBLIC = ("subnet-0aaaa00000000000a", "subnet-0aaaa00000000000b")
LOOKED_UP_PRIVATE = ("subnet-0bbbb00000000000a", "subnet-0bbbb00000000000b")
LOOKUP_ACCOUNT = "111122223333"
LOOKUP_REGION = "eu-west-1"
TEST_PYTHON_ENV = "build/test-env/pyspark_env.tar.gz"

# Never copied into the test project: build outputs and caches (the real repo may hold GBs).
_NOT_COPIED = {
    ".git",
    ".venv",
    "node_modules",
    "cdk.out",
    "artifacts",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    ".build",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
}
# Planted in the test project: must never reach the staged Docker build context.
_DECOY_BYTES = 8 * 1024 * 1024
_DECOYS = (".venv/lib/decoy.bin", "node_modules/decoy.bin", ".build/decoy.bin", "mlruns/decoy.bin")


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: its construct tree, cloud assembly folder and both templates."""

    app: App
    context: dict[str, Any]
    outdir: Path
    serverless_json: dict[str, Any]
    fargate_json: dict[str, Any]
    batch_json: dict[str, Any]

    @property
    def serverless(self) -> Template:
        return Template.from_json(self.serverless_json)

    @property
    def fargate(self) -> Template:
        return Template.from_json(self.fargate_json)


def synthesize(project_root: Path, outdir: Path, **context: Any) -> Synthesized:
    """Build and synthesize the app exactly as ``cdk synth`` would (cdk.json flags + context)."""
    full_context = {**cdk_json_context(REPO_ROOT), **context}
    app = build_app(full_context, project_root=project_root, outdir=str(outdir))
    app.synth()
    prefix = context.get("stack_prefix", "LoanDefault")
    return Synthesized(
        app=app,
        context=full_context,
        outdir=outdir,
        serverless_json=json.loads((outdir / f"{prefix}Serverless.template.json").read_text()),
        fargate_json=json.loads((outdir / f"{prefix}Fargate.template.json").read_text()),
        batch_json=json.loads((outdir / f"{prefix}Batch.template.json").read_text()),
    )


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only_resource(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def image_functions(template: dict[str, Any], handler: str | None) -> dict[str, dict[str, Any]]:
    """Container-image functions with this CMD override (None: the image's own, main.handler)."""
    return {
        logical_id: resource
        for logical_id, resource in resources_of(template, "AWS::Lambda::Function").items()
        if resource["Properties"].get("PackageType") == "Image"
        and resource["Properties"].get("ImageConfig", {}).get("Command", [None])[0] == handler
    }


def service_function_id(template: dict[str, Any]) -> str:
    """The service's function (the others: the release hook and the stability check)."""
    found = image_functions(template, None)
    assert len(found) == 1, f"expected one service function, found {sorted(found)}"
    return next(iter(found))


def service_function(template: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = template["Resources"][service_function_id(template)]
    return resource


def stability_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = image_functions(template, STABILITY_HANDLER).items()
    return found


def rest_routes(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(http_method, path): method properties}`` rebuilt from the Resource parent chain."""
    resources = resources_of(template, "AWS::ApiGateway::Resource")

    def path_of(resource_ref: Any) -> str:
        if isinstance(resource_ref, dict) and "Fn::GetAtt" in resource_ref:
            return ""  # the RestApi's RootResourceId
        resource = resources[resource_ref["Ref"]]["Properties"]
        return f"{path_of(resource['ParentId'])}/{resource['PathPart']}"

    return {
        (method["Properties"]["HttpMethod"], path_of(method["Properties"]["ResourceId"]) or "/"): (
            method["Properties"]
        )
        for method in resources_of(template, "AWS::ApiGateway::Method").values()
    }


def image_tag(image_reference: Any) -> str:
    """The tag (asset hash) at the end of an ECR image URI built by the CDK."""
    rendered = json.dumps(image_reference)
    tag = rendered.rsplit(":", 1)[-1]
    return tag.strip('"]} ')


def log_group_retention(template: dict[str, Any], logical_id: str) -> int:
    return int(template["Resources"][logical_id]["Properties"]["RetentionInDays"])


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory, trained_artifacts: Path) -> Path:
    """A copy of the repository with a real trained model, plus large decoys in build folders."""
    root = tmp_path_factory.mktemp("infra-project") / "repo"
    shutil.copytree(
        REPO_ROOT,
        root,
        ignore=lambda _folder, names: [name for name in names if name in _NOT_COPIED],
    )
    shutil.copytree(trained_artifacts, root / "artifacts")
    packed_env = root / TEST_PYTHON_ENV  # what `make batch-env` writes (Docker), for the tuned app
    packed_env.parent.mkdir(parents=True)
    with tarfile.open(packed_env, "w:gz") as archive:
        archive.add(root / "requirements" / "batch.txt", arcname="bin/requirements.txt")
    for decoy in _DECOYS:
        (root / decoy).parent.mkdir(parents=True, exist_ok=True)
        (root / decoy).write_bytes(os.urandom(_DECOY_BYTES))
    return root


@pytest.fixture(scope="module")
def default_app(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """No context at all: the documented defaults."""
    return synthesize(project_root, tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="module")
def tuned_app(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Every knob turned, given as strings the way ``cdk synth -c key=value`` passes them."""
    return synthesize(
        project_root,
        tmp_path_factory.mktemp("cdk-tuned"),
        account=LOOKUP_ACCOUNT,
        region=LOOKUP_REGION,
        architecture="arm64",
        auth="iam",
        tracing="true",
        waf="true",
        mlflow_tracking_uri="https://mlflow.example.com",
        mlflow_tracking_token_secret_arn=SECRET_ARN,
        reserved_concurrency="5",
        deployment="linear",
        deployment_percent="20",
        deployment_interval_minutes="4",
        latency_p99_budget_ms="150",
        approval_rate_margin="0.02",
        mean_pd_margin="0.01",
        behaviour_min_predictions="500",
        shadow_sample_rate="0.25",
        lambda_memory_mb="2048",
        lambda_timeout_seconds="20",
        log_retention_days="90",
        log_level="debug",
        throttle_rate_limit="50",
        throttle_burst_limit="80",
        certificate_arn=CERTIFICATE_ARN,
        domain_name="pd.example.com",
        alb_ingress_cidr="203.0.113.0/24",
        min_tasks="3",
        max_tasks="6",
        cpu_target_percent="50",
        requests_per_target="12000",
        stability_schedule="cron(0 6 * * ? *)",
        stability_window_hours="6",
        stability_alarm_email="risk-team@example.com",
        batch_release_label="emr-7.2.0",
        batch_max_vcpu="64",
        batch_max_memory_gb="256",
        batch_max_disk_gb="2000",
        batch_idle_minutes="5",
        batch_input_retention_days="7",
        batch_output_retention_days="90",
        batch_python_env=TEST_PYTHON_ENV,
    )


@pytest.fixture(scope="module")
def open_app(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(project_root, tmp_path_factory.mktemp("cdk-open"), auth="none")


@pytest.fixture(scope="module")
def looked_up_vpc_app(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """``vpc_id`` with the lookup answer cached in context, as cdk.context.json would hold it."""
    lookup_key = (
        f"vpc-provider:account={LOOKUP_ACCOUNT}:filter.vpc-id={LOOKED_UP_VPC_ID}:"
        f"region={LOOKUP_REGION}:returnAsymmetricSubnets=true"
    )

    def subnets(subnet_ids: tuple[str, str], third_octet: int) -> list[dict[str, str]]:
        return [
            {
                "subnetId": subnet_id,
                "cidr": f"10.20.{third_octet + index}.0/24",
                "availabilityZone": f"{LOOKUP_REGION}{zone}",
                "routeTableId": f"rtb-0{third_octet + index:016x}",
            }
            for index, (zone, subnet_id) in enumerate(zip("ab", subnet_ids, strict=True))
        ]

    lookup_answer = {
        "vpcId": LOOKED_UP_VPC_ID,
        "vpcCidrBlock": "10.20.0.0/16",
        "ownerAccountId": LOOKUP_ACCOUNT,
        "availabilityZones": [],
        "subnetGroups": [
            {"name": "Public", "type": "Public", "subnets": subnets(LOOKED_UP_PUBLIC, 0)},
            {"name": "Private", "type": "Private", "subnets": subnets(LOOKED_UP_PRIVATE, 10)},
        ],
    }
    return synthesize(
        project_root,
        tmp_path_factory.mktemp("cdk-lookup"),
        account=LOOKUP_ACCOUNT,
        region=LOOKUP_REGION,
        vpc_id=LOOKED_UP_VPC_ID,
        **{lookup_key: lookup_answer},
    )


# ---------------------------------------------------------------------------------------------
# The image: one asset, platform pinned, shared by both stacks, a small build context.


def test_both_stacks_run_the_same_image_asset_hash(default_app: Synthesized) -> None:
    function = service_function(default_app.serverless_json)
    task = only_resource(default_app.fargate_json, "AWS::ECS::TaskDefinition")
    lambda_tag = image_tag(function["Properties"]["Code"]["ImageUri"])
    ecs_tag = image_tag(task["Properties"]["ContainerDefinitions"][0]["Image"])

    assert len(lambda_tag) == 64
    assert lambda_tag == ecs_tag
    for stack in ("LoanDefaultServerless", "LoanDefaultFargate"):
        manifest = json.loads((default_app.outdir / f"{stack}.assets.json").read_text())
        assert list(manifest["dockerImages"]) == [lambda_tag]
        source = manifest["dockerImages"][lambda_tag]["source"]
        assert source["dockerFile"] == "Dockerfile.lambda"
        assert source["platform"] == "linux/amd64"


def test_arm64_context_pins_the_image_platform_and_both_compute_architectures(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    function = service_function(tuned_app.serverless_json)
    task = only_resource(tuned_app.fargate_json, "AWS::ECS::TaskDefinition")
    tag = image_tag(function["Properties"]["Code"]["ImageUri"])

    assert function["Properties"]["Architectures"] == ["arm64"]
    assert task["Properties"]["RuntimePlatform"] == {
        "CpuArchitecture": "ARM64",
        "OperatingSystemFamily": "LINUX",
    }
    assert image_tag(task["Properties"]["ContainerDefinitions"][0]["Image"]) == tag
    manifest = json.loads((tuned_app.outdir / "LoanDefaultFargate.assets.json").read_text())
    assert manifest["dockerImages"][tag]["source"]["platform"] == "linux/arm64"
    default_function = service_function(default_app.serverless_json)
    assert tag != image_tag(default_function["Properties"]["Code"]["ImageUri"])


def test_staged_build_context_holds_only_what_the_dockerfile_reads(
    default_app: Synthesized, project_root: Path
) -> None:
    """GIVEN 8 MB decoys in .venv, node_modules, .build and mlruns, and the real Data/, tests/
    WHEN the app is synthesized THEN the staged context is small and holds none of them."""
    function = service_function(default_app.serverless_json)
    staged = default_app.outdir / f"asset.{image_tag(function['Properties']['Code']['ImageUri'])}"
    files = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
    total_bytes = sum((staged / name).stat().st_size for name in files)

    assert total_bytes < 5 * 1024 * 1024, f"staged context is {total_bytes} bytes"
    assert {name.split("/", 1)[0] for name in files} <= {
        "Dockerfile.lambda",
        ".dockerignore",
        "requirements",
        "lambda",
        "artifacts",
    }
    assert {"Dockerfile.lambda", "requirements/runtime.txt", "artifacts/manifest.json"} <= files
    assert {"artifacts/model.onnx", "artifacts/stats.json", "artifacts/best_model.pkl"} <= files
    served_code = {
        path.relative_to(project_root).as_posix()
        for path in (project_root / "lambda").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert served_code, "the copied project has no serving code"
    assert served_code <= files


def test_synthesis_without_a_trained_model_says_to_run_make_train(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "Dockerfile.lambda", tmp_path / "Dockerfile.lambda")

    with pytest.raises(MissingArtifactsError, match="make train"):
        build_app(cdk_json_context(REPO_ROOT), project_root=tmp_path)


def test_artifact_dir_other_than_the_baked_folder_is_rejected(project_root: Path) -> None:
    with pytest.raises(SettingsError, match="artifact_dir"):
        build_app(
            {**cdk_json_context(REPO_ROOT), "artifact_dir": "elsewhere"},
            project_root=project_root,
        )


# ---------------------------------------------------------------------------------------------
# Serverless stack: the function.


def test_function_is_a_container_image_with_memory_timeout_architecture_and_env(
    default_app: Synthesized,
) -> None:
    default_app.serverless.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "PackageType": "Image",
            "MemorySize": 1024,
            "Timeout": 15,
            "Architectures": ["x86_64"],
            "Environment": {
                "Variables": {
                    "ARTIFACT_DIR": "/var/task/artifacts",
                    "LOG_LEVEL": "INFO",
                    "POWERTOOLS_SERVICE_NAME": "loan-default",
                    "POWERTOOLS_METRICS_NAMESPACE": "LoanDefault",
                }
            },
        },
    )
    properties = service_function(default_app.serverless_json)["Properties"]
    assert properties["Timeout"] < 29, "must give up before API Gateway's 29 s limit"
    assert "MLFLOW_TRACKING_URI" not in properties["Environment"]["Variables"]
    assert "ReservedConcurrentExecutions" not in properties
    assert properties.get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": "PassThrough"}


def test_function_logs_to_its_own_log_group_with_retention(default_app: Synthesized) -> None:
    properties = service_function(default_app.serverless_json)["Properties"]
    log_group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]

    assert log_group_retention(default_app.serverless_json, log_group_id) == 30
    for log_group in resources_of(default_app.serverless_json, "AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["RetentionInDays"] == 30


def test_tuned_function_takes_memory_timeout_concurrency_tracing_and_mlflow_from_context(
    tuned_app: Synthesized,
) -> None:
    properties = service_function(tuned_app.serverless_json)["Properties"]

    assert properties["MemorySize"] == 2048
    assert properties["Timeout"] == 20
    assert properties["ReservedConcurrentExecutions"] == 5
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["Environment"]["Variables"] == {
        "ARTIFACT_DIR": "/var/task/artifacts",
        "LOG_LEVEL": "DEBUG",
        "POWERTOOLS_SERVICE_NAME": "loan-default",
        "POWERTOOLS_METRICS_NAMESPACE": "LoanDefault",
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
        "SHADOW_SAMPLE_RATE": "0.25",
        "MLFLOW_TRACKING_TOKEN_SECRET_ARN": SECRET_ARN,
    }
    log_group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]
    assert log_group_retention(tuned_app.serverless_json, log_group_id) == 90
    tuned_app.serverless.has_resource_properties(
        "AWS::ApiGateway::Stage", {"StageName": "prod", "TracingEnabled": True}
    )


def test_function_role_reads_exactly_the_configured_secret_and_nothing_else(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    def function_policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
        role_id = service_function(template)["Properties"]["Role"]["Fn::GetAtt"][0]
        return [
            statement
            for policy in resources_of(template, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]

    secret_statements = [
        s
        for s in function_policy_statements(tuned_app.serverless_json)
        if "secretsmanager" in json.dumps(s["Action"])
    ]
    assert secret_statements == [
        {
            "Sid": "ReadMlflowTrackingToken",
            "Action": "secretsmanager:GetSecretValue",
            "Effect": "Allow",
            "Resource": SECRET_ARN,
        }
    ]
    assert "secretsmanager" not in json.dumps(
        function_policy_statements(default_app.serverless_json)
    )
    function_log_group = service_function(default_app.serverless_json)["Properties"][
        "LoggingConfig"
    ]["LogGroup"]["Ref"]
    assert function_policy_statements(default_app.serverless_json) == [
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [function_log_group, "Arn"]},
        }
    ]
    secret_text = json.dumps(tuned_app.serverless_json)
    assert "mlflow-token-AbC123" in secret_text  # the ARN, as a reference ...
    assert "SecretString" not in secret_text  # ... never a secret value


# ---------------------------------------------------------------------------------------------
# Serverless stack: the REST API.


def test_rest_api_routes_protect_predict_with_an_api_key_and_leave_reads_open(
    default_app: Synthesized,
) -> None:
    routes = rest_routes(default_app.serverless_json)
    alias_id = next(iter(resources_of(default_app.serverless_json, "AWS::Lambda::Alias")))

    assert set(routes) == {
        ("GET", "/"),
        ("GET", "/{proxy+}"),
        ("POST", "/predict"),
        ("POST", "/predict/batch"),
    }
    for route in (("POST", "/predict"), ("POST", "/predict/batch")):
        assert routes[route]["ApiKeyRequired"] is True
        assert routes[route]["AuthorizationType"] == "NONE"
    for route in (("GET", "/"), ("GET", "/{proxy+}")):
        assert routes[route].get("ApiKeyRequired", False) is False
        assert routes[route]["AuthorizationType"] == "NONE"
    for method in routes.values():
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert method["Integration"]["IntegrationHttpMethod"] == "POST"
        assert json.dumps(method["Integration"]["Uri"]).count(f'{{"Ref": "{alias_id}"}}') == 1


def test_api_key_is_bound_to_a_usage_plan_with_the_same_throttling_as_the_stage(
    default_app: Synthesized,
) -> None:
    template = default_app.serverless
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 100, "BurstLimit": 200},
            "ApiStages": [{"ApiId": Match.any_value(), "Stage": Match.any_value()}],
        },
    )
    key_id = next(iter(resources_of(default_app.serverless_json, "AWS::ApiGateway::ApiKey")))
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlanKey", {"KeyId": {"Ref": key_id}, "KeyType": "API_KEY"}
    )
    assert default_app.serverless_json["Outputs"]["ApiKeyId"]["Value"] == {"Ref": key_id}


def test_stage_throttles_logs_errors_and_writes_json_access_logs(default_app: Synthesized) -> None:
    stage = only_resource(default_app.serverless_json, "AWS::ApiGateway::Stage")["Properties"]

    assert stage["StageName"] == "prod"
    assert stage["MethodSettings"] == [
        {
            "DataTraceEnabled": False,
            "HttpMethod": "*",
            "LoggingLevel": "ERROR",
            "MetricsEnabled": True,
            "ResourcePath": "/*",
            "ThrottlingBurstLimit": 200,
            "ThrottlingRateLimit": 100,
        }
    ]
    assert stage.get("TracingEnabled", False) is False
    destination = stage["AccessLogSetting"]["DestinationArn"]["Fn::Join"][1]
    assert destination[-2] == ":log-group:"
    access_log_group = destination[-1]["Ref"]
    assert log_group_retention(default_app.serverless_json, access_log_group) == 30
    access_log_fields = json.loads(stage["AccessLogSetting"]["Format"])
    assert access_log_fields["requestId"] == "$context.requestId"
    assert access_log_fields["status"] == "$context.status"
    assert access_log_fields["apiKeyId"] == "$context.identity.apiKeyId"


def test_gateway_errors_answer_in_the_services_json_error_shape(default_app: Synthesized) -> None:
    responses = resources_of(default_app.serverless_json, "AWS::ApiGateway::GatewayResponse")
    assert {r["Properties"]["ResponseType"] for r in responses.values()} == {
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    }
    for response in responses.values():
        body = response["Properties"]["ResponseTemplates"]["application/json"]
        assert '"error":' in body
        assert '"request_id": "$context.requestId"' in body


def test_iam_auth_signs_predict_routes_and_creates_no_api_key(tuned_app: Synthesized) -> None:
    routes = rest_routes(tuned_app.serverless_json)

    for route in (("POST", "/predict"), ("POST", "/predict/batch")):
        assert routes[route]["AuthorizationType"] == "AWS_IAM"
        assert routes[route].get("ApiKeyRequired", False) is False
    assert routes[("GET", "/")]["AuthorizationType"] == "NONE"
    tuned_app.serverless.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    tuned_app.serverless.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    assert "ApiKeyId" not in tuned_app.serverless_json["Outputs"]
    tuned_app.serverless.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "MethodSettings": [
                Match.object_like({"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 80})
            ]
        },
    )


def test_auth_none_leaves_predict_open_without_key_or_signature(open_app: Synthesized) -> None:
    routes = rest_routes(open_app.serverless_json)

    for route in (("POST", "/predict"), ("POST", "/predict/batch")):
        assert routes[route]["AuthorizationType"] == "NONE"
        assert routes[route].get("ApiKeyRequired", False) is False
    open_app.serverless.resource_count_is("AWS::ApiGateway::ApiKey", 0)


def test_lambda_permissions_are_scoped_to_each_route(default_app: Synthesized) -> None:
    permissions = resources_of(default_app.serverless_json, "AWS::Lambda::Permission")
    suffixes = sorted(
        json.dumps(p["Properties"]["SourceArn"]).rsplit('"', 2)[-2]
        for p in permissions.values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    )
    assert suffixes == ["/GET/", "/GET/*", "/POST/predict", "/POST/predict/batch"]


def test_api_url_output_points_at_the_prod_stage(default_app: Synthesized) -> None:
    url = json.dumps(default_app.serverless_json["Outputs"]["ApiUrl"]["Value"])
    assert url.startswith('{"Fn::Join": ["", ["https://"')
    assert ".execute-api.us-east-1." in url
    stage_id = next(iter(resources_of(default_app.serverless_json, "AWS::ApiGateway::Stage")))
    assert stage_id in url


def test_waf_context_attaches_a_web_acl_to_the_stage_and_the_alb(tuned_app: Synthesized) -> None:
    for template, target_type in (
        (tuned_app.serverless_json, "AWS::ApiGateway::Stage"),
        (tuned_app.fargate_json, "AWS::ElasticLoadBalancingV2::LoadBalancer"),
    ):
        acl = only_resource(template, "AWS::WAFv2::WebACL")["Properties"]
        assert acl["Scope"] == "REGIONAL"
        assert {rule["Name"] for rule in acl["Rules"]} >= {
            "AWSManagedRulesCommonRuleSet",
            "RateLimitPerIp",
        }
        association = only_resource(template, "AWS::WAFv2::WebACLAssociation")["Properties"]
        target_id = next(iter(resources_of(template, target_type)))
        assert target_id in json.dumps(association["ResourceArn"])


# ---------------------------------------------------------------------------------------------
# Fargate stack.


def test_fargate_service_rolls_back_failed_deployments_behind_the_alb(
    default_app: Synthesized,
) -> None:
    default_app.fargate.has_resource_properties(
        "AWS::ECS::Service",
        {
            "LaunchType": "FARGATE",
            "DesiredCount": 2,
            "DeploymentConfiguration": {
                "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                "MinimumHealthyPercent": 100,
                "MaximumPercent": 200,
            },
            "HealthCheckGracePeriodSeconds": 60,
            "LoadBalancers": [
                {
                    "ContainerName": "Service",
                    "ContainerPort": 8080,
                    "TargetGroupArn": Match.any_value(),
                }
            ],
            "NetworkConfiguration": {
                "AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "DISABLED"})
            },
        },
    )


def test_task_runs_the_http_server_runner_on_8080_as_non_root_on_a_read_only_root(
    default_app: Synthesized,
) -> None:
    task = only_resource(default_app.fargate_json, "AWS::ECS::TaskDefinition")["Properties"]
    (container,) = task["ContainerDefinitions"]

    assert task["Cpu"] == "512"
    assert task["Memory"] == "1024"
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": "X86_64",
        "OperatingSystemFamily": "LINUX",
    }
    # The one definition the emulated image (make lambda-check) and the fault tests start it from.
    assert container["EntryPoint"] == ENTRY_POINT
    assert container["Command"] == COMMAND
    assert container["User"] == CONTAINER_USER
    assert container["WorkingDirectory"] == "/var/task"
    assert container["ReadonlyRootFilesystem"] is True
    assert container["PortMappings"] == [{"ContainerPort": 8080, "Name": "http", "Protocol": "tcp"}]
    assert container["MountPoints"] == [
        {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}
    ]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment == {
        "ARTIFACT_DIR": "/var/task/artifacts",
        "LOG_LEVEL": "INFO",
        "POWERTOOLS_SERVICE_NAME": "loan-default",
        "POWERTOOLS_METRICS_NAMESPACE": "LoanDefault",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",
    }
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    log_group_id = container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert log_group_retention(default_app.fargate_json, log_group_id) == 30


def test_target_group_health_check_is_get_health_on_the_container_port(
    default_app: Synthesized,
) -> None:
    default_app.fargate.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "HealthCheckPath": "/health",
            "Matcher": {"HttpCode": "200"},
            "Port": 8080,
            "Protocol": "HTTP",
            "TargetType": "ip",
            "HealthCheckIntervalSeconds": 15,
        },
    )


def test_service_scales_on_cpu_and_on_alb_requests_per_target(default_app: Synthesized) -> None:
    default_app.fargate.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": 2, "MaxCapacity": 10, "ScalableDimension": "ecs:service:DesiredCount"},
    )
    policies = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in resources_of(
            default_app.fargate_json, "AWS::ApplicationAutoScaling::ScalingPolicy"
        ).values()
    ]
    by_metric = {p["PredefinedMetricSpecification"]["PredefinedMetricType"]: p for p in policies}

    assert set(by_metric) == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    assert by_metric["ECSServiceAverageCPUUtilization"]["TargetValue"] == 60
    assert by_metric["ALBRequestCountPerTarget"]["TargetValue"] == 30000
    target_group_id = next(
        iter(resources_of(default_app.fargate_json, "AWS::ElasticLoadBalancingV2::TargetGroup"))
    )
    resource_label = by_metric["ALBRequestCountPerTarget"]["PredefinedMetricSpecification"][
        "ResourceLabel"
    ]
    assert target_group_id in json.dumps(resource_label)


def test_tuned_scaling_bounds_and_targets_come_from_context(tuned_app: Synthesized) -> None:
    tuned_app.fargate.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 3, "MaxCapacity": 6}
    )
    targets = sorted(
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
        for p in resources_of(
            tuned_app.fargate_json, "AWS::ApplicationAutoScaling::ScalingPolicy"
        ).values()
    )
    assert targets == [50, 12000]


def test_cluster_has_container_insights_and_every_log_group_expires(
    default_app: Synthesized,
) -> None:
    default_app.fargate.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )
    log_groups = resources_of(default_app.fargate_json, "AWS::Logs::LogGroup")
    assert len(log_groups) == 2  # the service's logs and the VPC flow logs
    assert {g["Properties"]["RetentionInDays"] for g in log_groups.values()} == {30}


def test_alb_writes_access_logs_to_a_private_ssl_only_bucket(default_app: Synthesized) -> None:
    template = default_app.fargate_json
    bucket_id, bucket = next(iter(resources_of(template, "AWS::S3::Bucket").items()))
    attributes = {
        a["Key"]: a["Value"]
        for a in only_resource(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"][
            "LoadBalancerAttributes"
        ]
    }

    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": bucket_id}
    assert attributes["access_logs.s3.prefix"] == "alb"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90
    assert bucket["DeletionPolicy"] == "Retain"
    statements = only_resource(template, "AWS::S3::BucketPolicy")["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert any(
        s["Effect"] == "Deny"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and s["Action"] == "s3:*"
        for s in statements
    )


def test_http_listener_without_certificate_and_https_with_redirect_when_one_is_given(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    default_listeners = resources_of(
        default_app.fargate_json, "AWS::ElasticLoadBalancingV2::Listener"
    )
    assert [
        (listener["Properties"]["Port"], listener["Properties"]["Protocol"])
        for listener in default_listeners.values()
    ] == [(80, "HTTP")]
    assert json.dumps(default_app.fargate_json["Outputs"]["ServiceUrl"]["Value"]).startswith(
        '{"Fn::Join": ["", ["http://"'
    )

    listeners = {
        listener["Properties"]["Port"]: listener["Properties"]
        for listener in resources_of(
            tuned_app.fargate_json, "AWS::ElasticLoadBalancingV2::Listener"
        ).values()
    }
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": CERTIFICATE_ARN}]
    assert listeners[443]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    assert listeners[80]["DefaultActions"][0]["RedirectConfig"]["Port"] == "443"
    assert tuned_app.fargate_json["Outputs"]["ServiceUrl"]["Value"] == "https://pd.example.com"


def test_new_vpc_has_two_azs_one_nat_and_rejected_traffic_flow_logs(
    default_app: Synthesized,
) -> None:
    template = default_app.fargate
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::Subnet", 4)
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"TrafficType": "REJECT", "LogDestinationType": "cloud-watch-logs"},
    )


def _alb_ingress(template: dict[str, Any]) -> list[tuple[str, int, int]]:
    alb = only_resource(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]
    alb_security_group = alb["SecurityGroups"][0]["Fn::GetAtt"][0]
    rules = template["Resources"][alb_security_group]["Properties"]["SecurityGroupIngress"]
    return sorted((rule["CidrIp"], rule["FromPort"], rule["ToPort"]) for rule in rules)


def test_alb_admits_the_internet_on_http_by_default_and_only_the_context_cidr_when_set(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    assert _alb_ingress(default_app.fargate_json) == [("0.0.0.0/0", 80, 80)]
    assert _alb_ingress(tuned_app.fargate_json) == [
        ("203.0.113.0/24", 80, 80),
        ("203.0.113.0/24", 443, 443),
    ]


def test_tasks_accept_traffic_only_from_the_load_balancer(default_app: Synthesized) -> None:
    template = default_app.fargate_json
    ingress = only_resource(template, "AWS::EC2::SecurityGroupIngress")["Properties"]
    alb_security_group = only_resource(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")[
        "Properties"
    ]["SecurityGroups"][0]["Fn::GetAtt"][0]

    assert ingress["FromPort"] == ingress["ToPort"] == 8080
    assert ingress["SourceSecurityGroupId"] == {"Fn::GetAtt": [alb_security_group, "GroupId"]}


def test_looked_up_vpc_places_tasks_and_alb_in_its_existing_subnets(
    looked_up_vpc_app: Synthesized,
) -> None:
    template = looked_up_vpc_app.fargate_json
    service = only_resource(template, "AWS::ECS::Service")["Properties"]
    alb = only_resource(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]

    assert resources_of(template, "AWS::EC2::VPC") == {}
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == list(
        LOOKED_UP_PRIVATE
    )
    assert alb["Subnets"] == list(LOOKED_UP_PUBLIC)
    group = only_resource(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["Properties"]["VpcId"] == LOOKED_UP_VPC_ID


# ---------------------------------------------------------------------------------------------
# IAM: least privilege in both stacks.

# Actions AWS only grants on Resource "*" (no resource-level permissions).
_RESOURCE_STAR_ALLOWED = {
    "ecr:GetAuthorizationToken",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "logs:GetQueryResults",
    "cloudwatch:PutMetricData",  # only with a cloudwatch:namespace condition (checked below)
}
# AWS-managed policies that remain, each with its reason.
_MANAGED_POLICIES_ALLOWED = {
    # API Gateway's account-level CloudWatch role (acknowledged in cdk-nag).
    "AmazonAPIGatewayPushToCloudWatchLogs",
    # The CDK's own provider that strips the new VPC's default security group rules.
    "AWSLambdaBasicExecutionRole",
    # CodeDeploy's service role for Lambda traffic shifting, the 'Limited' variant (acknowledged).
    "AWSCodeDeployRoleForLambdaLimited",
}


def _policy_statements(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            yield from resource["Properties"]["PolicyDocument"]["Statement"]
        if resource["Type"] == "AWS::IAM::Role":
            for inline in resource["Properties"].get("Policies", []):
                yield from inline["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("variant", ["default_app", "tuned_app"])
def test_no_policy_grants_wildcard_actions_or_resources_beyond_aws_limits(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    for template in (synthesized.serverless_json, synthesized.fargate_json, synthesized.batch_json):
        for statement in _policy_statements(template):
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            for action in actions:
                assert action != "*", statement
                assert not action.endswith(":*"), statement
            if statement.get("Resource") == "*":
                assert set(actions) <= _RESOURCE_STAR_ALLOWED, statement
                if "cloudwatch:PutMetricData" in actions:
                    assert statement["Condition"]["StringEquals"]["cloudwatch:namespace"], statement
        for role in resources_of(template, "AWS::IAM::Role").values():
            for arn in role["Properties"].get("ManagedPolicyArns", []):
                assert json.dumps(arn).rsplit("/", 1)[-1].split('"')[0] in (
                    _MANAGED_POLICIES_ALLOWED
                ), arn


def test_task_role_has_no_permissions_unless_a_secret_is_configured(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    def task_role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
        task = only_resource(template, "AWS::ECS::TaskDefinition")["Properties"]
        role_id = task["TaskRoleArn"]["Fn::GetAtt"][0]
        return [
            statement
            for policy in resources_of(template, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]

    assert task_role_statements(default_app.fargate_json) == []
    assert task_role_statements(tuned_app.fargate_json) == [
        {
            "Sid": "ReadMlflowTrackingToken",
            "Action": "secretsmanager:GetSecretValue",
            "Effect": "Allow",
            "Resource": SECRET_ARN,
        }
    ]


# ---------------------------------------------------------------------------------------------
# cdk-nag: no unacknowledged AwsSolutions finding; every acknowledgement reasoned and needed.


@pytest.mark.parametrize("variant", ["default_app", "tuned_app", "open_app", "looked_up_vpc_app"])
def test_cdk_nag_aws_solutions_reports_nothing_unacknowledged_in_either_stack(
    variant: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    for stack in synthesized.app.node.children:
        report = AwsSolutionsChecks().validate_scope(stack)
        findings = [
            f"{violation.rule_name} ({violation.severity}) at "
            + ", ".join(r.construct_path or "?" for r in violation.violating_resources)
            for violation in report.violations
        ]
        assert findings == [], f"{stack.node.id}: unacknowledged findings:\n" + "\n".join(findings)


@pytest.mark.parametrize("variant", ["default_app", "tuned_app"])
def test_every_acknowledgement_has_a_reason_and_answers_a_real_finding(
    variant: str,
    request: pytest.FixtureRequest,
    project_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Build the same app with acknowledgements switched off: each acknowledged rule must then
    show up on (or below) the construct it was acknowledged on - no stale suppressions."""
    synthesized: Synthesized = request.getfixturevalue(variant)
    acknowledged = [
        a
        for a in recorded_acknowledgements(synthesized.app)
        if a.rule_id.startswith("AwsSolutions-")
    ]
    monkeypatch.setattr(nag_module, "_record", lambda _scope, _item: None)
    bare_app = build_app(synthesized.context, project_root=project_root)
    raw = AwsSolutionsChecks().validate_scope(bare_app)
    raw_findings = {
        (violation.rule_name, resource.construct_path or "")
        for violation in raw.violations
        for resource in violation.violating_resources
    }

    assert len(acknowledged) >= 8
    for ack in acknowledged:
        assert len(ack.reason) >= nag_module.MIN_REASON_LENGTH, ack
        assert any(
            rule == ack.rule_id and path.startswith(ack.construct_path + "/")
            for rule, path in raw_findings
        ), f"stale acknowledgement: {ack}"
    assert len(raw_findings) >= len({(a.rule_id, a.construct_path) for a in acknowledged})


def test_acknowledgements_are_written_into_the_templates_as_an_audit_trail(
    default_app: Synthesized,
) -> None:
    method = next(
        m
        for m in resources_of(default_app.serverless_json, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
    )
    rules = {r["id"]: r["reason"] for r in method["Metadata"]["cdk_nag"]["rules_to_suppress"]}
    # Its own acknowledgements plus those inherited from the RestApi above it.
    assert set(rules) == {
        "AwsSolutions-APIG4",
        "AwsSolutions-COG4",
        "AwsSolutions-APIG2",
        "AwsSolutions-APIG3",
    }
    assert all(len(reason) >= 40 for reason in rules.values())


def test_function_carries_the_asset_metadata_sam_local_invoke_builds_the_image_from(
    project_root: Path, tmp_path: Path
) -> None:
    """GIVEN asset metadata on (the CDK CLI's default) WHEN the app is synthesized THEN the
    function names Dockerfile.lambda and its build context, so `sam local invoke -t cdk.out/...`
    can build and run the same image locally."""
    synthesized = synthesize(
        project_root, tmp_path / "cdk.out", **{"aws:cdk:enable-asset-metadata": True}
    )

    function = service_function(synthesized.serverless_json)
    metadata = function["Metadata"]
    assert metadata["aws:asset:property"] == "Code.ImageUri"
    assert metadata["aws:asset:dockerfile-path"] == "Dockerfile.lambda"
    assert (tmp_path / "cdk.out" / metadata["aws:asset:path"] / "Dockerfile.lambda").is_file()


# ---------------------------------------------------------------------------------------------
# Release: versions, the live alias, CodeDeploy, alarms on the new version, the pre-traffic hook.


@pytest.fixture(scope="module")
def retrained_app(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The same code with another model baked in, all at once, with provisioned concurrency."""
    root = tmp_path_factory.mktemp("retrained") / "repo"
    shutil.copytree(project_root, root, ignore=shutil.ignore_patterns(*_NOT_COPIED - {"artifacts"}))
    manifest_path = root / "artifacts" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model_version"] = "20991231.235959-retrained"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return synthesize(
        root,
        tmp_path_factory.mktemp("cdk-retrained"),
        deployment="all_at_once",
        provisioned_concurrency="2",
    )


def manifest_of(project_root: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        (project_root / "artifacts" / "manifest.json").read_text()
    )
    return manifest


def logical_id(template: dict[str, Any], resource_type: str) -> str:
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found))


def alarms_by_metric(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{metric name or expression: (logical id, properties)}`` of every release alarm (the
    stability check's PSI/CSI alarms are not deployment alarms)."""
    found = {}
    for alarm_id, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        if properties.get("Namespace") == STABILITY_NAMESPACE:
            continue
        key = properties.get("MetricName") or next(
            m["Expression"] for m in properties["Metrics"] if "Expression" in m
        )
        found[key] = (alarm_id, properties)
    return found


def hook_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical, resource)
        for logical, resource in resources_of(template, "AWS::Lambda::Function").items()
        if resource["Properties"].get("Handler") == "release_hook.handler"
    ]
    return found


def test_api_gateway_invokes_the_live_alias_of_the_published_version_never_latest(
    default_app: Synthesized, project_root: Path
) -> None:
    template = default_app.serverless_json
    version_id = logical_id(template, "AWS::Lambda::Version")
    alias_id = logical_id(template, "AWS::Lambda::Alias")
    function_id = service_function_id(template)
    version = template["Resources"][version_id]
    alias = template["Resources"][alias_id]["Properties"]

    assert version["Properties"] == {
        "Description": f"model {manifest_of(project_root)['model_version']}",
        "FunctionName": {"Ref": function_id},
    }
    assert version["DeletionPolicy"] == "Retain"  # rolling back by hand needs the old versions
    assert alias["Name"] == "live"
    assert alias["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert "ProvisionedConcurrencyConfig" not in alias
    for permission in resources_of(template, "AWS::Lambda::Permission").values():
        if permission["Properties"]["Principal"] == "apigateway.amazonaws.com":
            assert permission["Properties"]["FunctionName"] == {"Ref": alias_id}
    for method in rest_routes(template).values():
        assert f'{{"Ref": "{function_id}"}}' not in json.dumps(method["Integration"]["Uri"])


def test_a_retrained_model_publishes_a_new_version_with_the_same_code(
    default_app: Synthesized, retrained_app: Synthesized
) -> None:
    """The image asset hash covers the baked-in artifact folder, so the function's image URI -
    and with it the version's logical id - changes with the model alone."""
    before = logical_id(default_app.serverless_json, "AWS::Lambda::Version")
    after = logical_id(retrained_app.serverless_json, "AWS::Lambda::Version")

    assert before != after
    assert retrained_app.serverless_json["Resources"][after]["Properties"]["Description"] == (
        "model 20991231.235959-retrained"
    )
    tags = {
        image_tag(service_function(app.serverless_json)["Properties"]["Code"]["ImageUri"])
        for app in (default_app, retrained_app)
    }
    assert len(tags) == 2


def test_provisioned_concurrency_on_the_alias_is_opt_in(retrained_app: Synthesized) -> None:
    alias = only_resource(retrained_app.serverless_json, "AWS::Lambda::Alias")["Properties"]
    assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}


def test_the_deployment_group_shifts_the_alias_by_canary_and_rolls_back_on_every_alarm(
    default_app: Synthesized,
) -> None:
    template = default_app.serverless_json
    group = only_resource(template, "AWS::CodeDeploy::DeploymentGroup")["Properties"]
    alias = only_resource(template, "AWS::Lambda::Alias")
    hook_id, _hook = hook_function(template)
    alarm_ids = {alarm_id for alarm_id, _ in alarms_by_metric(template).values()}

    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert group["DeploymentStyle"] == {
        "DeploymentOption": "WITH_TRAFFIC_CONTROL",
        "DeploymentType": "BLUE_GREEN",
    }
    assert group["AlarmConfiguration"]["Enabled"] is True
    assert {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]} == alarm_ids
    assert len(alarm_ids) == 5
    assert group["AutoRollbackConfiguration"] == {
        "Enabled": True,
        "Events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_STOP_ON_ALARM"],
    }
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["BeforeAllowTrafficHook"] == {"Ref": hook_id}
    assert update["DeploymentGroupName"] == {
        "Ref": logical_id(template, "AWS::CodeDeploy::DeploymentGroup")
    }


def test_linear_and_all_at_once_deployments_come_from_context(
    tuned_app: Synthesized, retrained_app: Synthesized
) -> None:
    config = only_resource(tuned_app.serverless_json, "AWS::CodeDeploy::DeploymentConfig")
    assert config["Properties"]["TrafficRoutingConfig"] == {
        "Type": "TimeBasedLinear",
        "TimeBasedLinear": {"LinearInterval": 4, "LinearPercentage": 20},
    }
    group = only_resource(tuned_app.serverless_json, "AWS::CodeDeploy::DeploymentGroup")
    config_id = logical_id(tuned_app.serverless_json, "AWS::CodeDeploy::DeploymentConfig")
    assert group["Properties"]["DeploymentConfigName"] == {"Ref": config_id}
    retrained = only_resource(retrained_app.serverless_json, "AWS::CodeDeploy::DeploymentGroup")
    assert retrained["Properties"]["DeploymentConfigName"] == "CodeDeployDefault.LambdaAllAtOnce"


def test_error_and_latency_alarms_watch_only_the_new_version(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    for app, budget in ((default_app, 300), (tuned_app, 150)):
        template = app.serverless_json
        version_id = logical_id(template, "AWS::Lambda::Version")
        alarms = alarms_by_metric(template)
        new_version = {"Fn::GetAtt": [version_id, "Version"]}

        errors = alarms["Errors"][1]
        duration = alarms["Duration"][1]
        throttles = alarms["Throttles"][1]
        for alarm in (errors, duration):
            dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
            assert dimensions["ExecutedVersion"] == new_version
            assert "live" in json.dumps(dimensions["Resource"])
        assert (errors["Statistic"], errors["Threshold"], errors["ComparisonOperator"]) == (
            "Sum",
            1,
            "GreaterThanOrEqualToThreshold",
        )
        assert (duration["ExtendedStatistic"], duration["Threshold"]) == ("p99", budget)
        assert duration["ComparisonOperator"] == "GreaterThanThreshold"
        assert {d["Name"] for d in throttles["Dimensions"]} == {"FunctionName", "Resource"}
        for _alarm_id, alarm in alarms.values():
            assert alarm["Period" if "Period" in alarm else "EvaluationPeriods"] in (60, 1)
            assert alarm["TreatMissingData"] == "notBreaching"


def test_behaviour_alarms_compare_the_new_model_with_its_training_figures(
    default_app: Synthesized, tuned_app: Synthesized, project_root: Path
) -> None:
    manifest = manifest_of(project_root)
    expected = manifest["expected"]
    for app, margins, minimum in ((default_app, (0.05, 0.03), 100), (tuned_app, (0.02, 0.01), 500)):
        alarms = alarms_by_metric(app.serverless_json)
        approval = alarms[
            f"IF(n >= {minimum}, ABS((n - x) / n - {expected['approval_rate']!r}), 0)"
        ]
        mean_pd = alarms[f"IF(n >= {minimum}, ABS(x / n - {expected['mean_pd']!r}), 0)"]

        for (_alarm_id, alarm), metric_x, margin in (
            (approval, "DefaultsPredicted", margins[0]),
            (mean_pd, "ProbabilitySum", margins[1]),
        ):
            assert alarm["Threshold"] == margin
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
            stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
            assert stats["x"]["Metric"]["MetricName"] == metric_x
            assert stats["n"]["Metric"]["MetricName"] == "Predictions"
            for stat in stats.values():
                assert stat["Stat"] == "Sum"
                assert stat["Metric"]["Namespace"] == "LoanDefault"
                assert {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} == {
                    "service": "loan-default",
                    "model_version": manifest["model_version"],
                }


def test_the_pre_traffic_hook_carries_the_golden_loans_and_may_only_invoke_the_new_version(
    default_app: Synthesized, project_root: Path
) -> None:
    template = default_app.serverless_json
    hook_id, hook = hook_function(template)
    version_id = logical_id(template, "AWS::Lambda::Version")
    properties = hook["Properties"]
    role_id = properties["Role"]["Fn::GetAtt"][0]

    assert properties["Environment"]["Variables"] == {
        "TARGET_FUNCTION_ARN": {"Ref": version_id},
        "P99_BUDGET_MS": "300",
        "ROUNDS": "3",
    }
    assert properties["Runtime"].startswith("python3.")
    statements = [
        statement
        for policy in resources_of(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_action = {json.dumps(s["Action"]): s for s in statements}
    assert set(by_action) == {
        '["logs:CreateLogStream", "logs:PutLogEvents"]',
        '"lambda:InvokeFunction"',
        '"codedeploy:PutLifecycleEventHookExecutionStatus"',
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    assert by_action['"lambda:InvokeFunction"']["Resource"] == {"Ref": version_id}
    report_to = json.dumps(
        by_action['"codedeploy:PutLifecycleEventHookExecutionStatus"']["Resource"]
    )
    assert ":deploymentgroup:" in report_to
    assert logical_id(template, "AWS::CodeDeploy::DeploymentGroup") in report_to
    log_group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]
    assert by_action['["logs:CreateLogStream", "logs:PutLogEvents"]']["Resource"] == {
        "Fn::GetAtt": [log_group_id, "Arn"]
    }
    role = template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert "Policies" not in role

    staged = default_app.outdir / f"asset.{properties['Code']['S3Key'].removesuffix('.zip')}"
    assert sorted(p.name for p in staged.iterdir()) == ["golden_loans.json", "release_hook.py"]
    assert (staged / "golden_loans.json").read_bytes() == (
        project_root / "artifacts" / "golden_loans.json"
    ).read_bytes()
    assert hook_id in json.dumps(template["Resources"][logical_id(template, "AWS::Lambda::Alias")])


def test_synthesis_without_the_training_figures_says_to_retrain(
    project_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(project_root, root, ignore=shutil.ignore_patterns(*_NOT_COPIED - {"artifacts"}))
    manifest = manifest_of(root)
    del manifest["expected"]
    (root / "artifacts" / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(SettingsError, match=r"expected approval rate.*make train"):
        build_app(cdk_json_context(REPO_ROOT), project_root=root)


def test_fargate_rolls_back_on_target_errors_and_p99_latency_as_well_as_the_circuit_breaker(
    default_app: Synthesized,
) -> None:
    template = default_app.fargate_json
    deployment = only_resource(template, "AWS::ECS::Service")["Properties"][
        "DeploymentConfiguration"
    ]
    alarms = alarms_by_metric(template)
    errors_id, errors = alarms["HTTPCode_Target_5XX_Count"]
    latency_id, latency = alarms["TargetResponseTime"]

    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["Alarms"]["Enable"] is True
    assert deployment["Alarms"]["Rollback"] is True
    assert {a["Ref"] for a in deployment["Alarms"]["AlarmNames"]} == {errors_id, latency_id}
    assert (errors["Statistic"], errors["Threshold"]) == ("Sum", 1)
    assert (latency["ExtendedStatistic"], latency["Threshold"]) == ("p99", 0.3)  # seconds
    for alarm in (errors, latency):
        assert {d["Name"] for d in alarm["Dimensions"]} == {"LoadBalancer", "TargetGroup"}


def test_cfn_lint_finds_no_errors_in_any_synthesized_variant(
    default_app: Synthesized, tuned_app: Synthesized, retrained_app: Synthesized
) -> None:
    templates = [
        app.outdir / f"LoanDefault{stack}.template.json"
        for app in (default_app, tuned_app, retrained_app)
        for stack in ("Serverless", "Fargate", "Batch")
    ]
    errors, _warnings = lint_errors_and_warnings(templates)
    assert errors == [], json.dumps(errors, indent=1)


# ---------------------------------------------------------------------------------------------
# The scheduled stability check: same image, its own handler, least privilege, alarms to SNS.


def test_the_stability_check_runs_the_same_image_on_a_daily_schedule_over_the_service_logs(
    default_app: Synthesized,
) -> None:
    template = default_app.serverless_json
    function_id, function = stability_function(template)
    properties = function["Properties"]
    assert image_tag(properties["Code"]["ImageUri"]) == image_tag(
        service_function(template)["Properties"]["Code"]["ImageUri"]
    )
    assert properties["ImageConfig"] == {"Command": ["monitor_handler.handler"]}
    service_logs = service_function(template)["Properties"]["LoggingConfig"]["LogGroup"]
    environment = properties["Environment"]["Variables"]
    assert environment["SERVICE_LOG_GROUP"] == service_logs
    assert environment["STABILITY_WINDOW_HOURS"] == "24"
    assert environment["STABILITY_METRICS_NAMESPACE"] == "LoanDefault/Stability"
    assert properties["LoggingConfig"]["LogGroup"] != service_logs  # its own log group
    (rule,) = resources_of(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    (invoke,) = [
        p
        for p in resources_of(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert invoke["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_the_stability_role_queries_only_the_service_logs_and_publishes_only_its_namespace(
    default_app: Synthesized,
) -> None:
    template = default_app.serverless_json
    _, function = stability_function(template)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert "Policies" not in role
    (policy,) = [
        p
        for p in resources_of(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    service_logs = service_function(template)["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    own_logs = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert [(s["Action"], s["Resource"], s.get("Condition")) for s in statements] == [
        (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::GetAtt": [own_logs, "Arn"]}, None),
        ("logs:StartQuery", {"Fn::GetAtt": [service_logs, "Arn"]}, None),
        ("logs:GetQueryResults", "*", None),
        (
            "cloudwatch:PutMetricData",
            "*",
            {"StringEquals": {"cloudwatch:namespace": "LoanDefault/Stability"}},
        ),
    ]
    reasons = [
        a.reason
        for a in recorded_acknowledgements(default_app.app)
        if a.construct_path.endswith("Stability/Role")
    ]
    assert len(reasons) == 1
    assert "no resource-level permissions" in reasons[0]


def test_psi_and_csi_alarm_at_the_monitor_verdict_thresholds_into_an_encrypted_topic(
    default_app: Synthesized, project_root: Path
) -> None:
    from loan_service.stability import SIGNIFICANT_FROM, STABLE_BELOW

    template = default_app.serverless_json
    manifest = manifest_of(project_root)
    version = {"Name": "model_version", "Value": manifest["model_version"]}
    topic_id = logical_id(template, "AWS::SNS::Topic")
    found: dict[tuple[str, str | None], list[float]] = {}
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if properties.get("Namespace") != "LoanDefault/Stability":
            continue
        assert properties["AlarmActions"] == [{"Ref": topic_id}]
        assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert properties["TreatMissingData"] == "notBreaching"
        assert properties["Statistic"] == "Maximum"
        assert version in properties["Dimensions"]
        feature = next(
            (d["Value"] for d in properties["Dimensions"] if d["Name"] == "feature"), None
        )
        found.setdefault((properties["MetricName"], feature), []).append(properties["Threshold"])
    expected = {("ScorePSI", None)} | {("FeatureCSI", name) for name in manifest["features"]}
    assert set(found) == expected
    for thresholds in found.values():
        assert sorted(thresholds) == [STABLE_BELOW, SIGNIFICANT_FROM]

    topic = template["Resources"][topic_id]["Properties"]
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = template["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    grants = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert grants
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])
    (topic_policy,) = resources_of(template, "AWS::SNS::TopicPolicy").values()
    (deny,) = topic_policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    default_app.serverless.resource_count_is("AWS::SNS::Subscription", 0)


def test_the_schedule_window_and_an_alarm_e_mail_come_from_context(tuned_app: Synthesized) -> None:
    template = tuned_app.serverless_json
    _, function = stability_function(template)
    assert function["Properties"]["Environment"]["Variables"]["STABILITY_WINDOW_HOURS"] == "6"
    (rule,) = resources_of(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "cron(0 6 * * ? *)"
    (subscription,) = resources_of(template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "risk-team@example.com"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("stability_schedule", "daily", "expected an EventBridge schedule"),
        ("stability_window_hours", "0", "must be 1..336 hours"),
        ("stability_alarm_email", "risk-team", "expected an e-mail address"),
    ],
)
def test_bad_stability_context_is_refused_naming_the_key(
    project_root: Path, tmp_path: Path, key: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"context '{key}': {message}"):
        synthesize(project_root, tmp_path, **{key: value})


# ---------------------------------------------------------------------------------------------
# The batch stack: EMR Serverless, its buckets, its job role, its assets and outputs.


def _batch_buckets(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"Input" | "Output" | "AccessLogs": bucket properties}`` by construct id."""
    return {
        logical_id.removeprefix("Batch")[:-8]: resource["Properties"]
        for logical_id, resource in resources_of(template, "AWS::S3::Bucket").items()
    }


def test_batch_buckets_are_private_encrypted_ssl_only_logged_and_expire(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    for app, (input_days, output_days) in ((default_app, (30, 400)), (tuned_app, (7, 90))):
        template = app.batch_json
        buckets = _batch_buckets(template)
        assert set(buckets) == {"Input", "Output", "AccessLogs"}
        for name, bucket in buckets.items():
            assert bucket["PublicAccessBlockConfiguration"] == {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }, name
            encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert encryption == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}], (
                name
            )
            assert bucket["LifecycleConfiguration"]["Rules"], name
        for name, days in (("Input", input_days), ("Output", output_days)):
            bucket = buckets[name]
            assert bucket["LoggingConfiguration"]["LogFilePrefix"] == f"{name.lower()}/"
            rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
            assert rules["expire-loan-data"]["ExpirationInDays"] == days
            assert rules["expire-loan-data"]["AbortIncompleteMultipartUpload"] == {
                "DaysAfterInitiation": 1
            }
        denied = [
            statement
            for policy in resources_of(template, "AWS::S3::BucketPolicy").values()
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Deny"
        ]
        assert len(denied) == 3
        assert all(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denied)
        for bucket in resources_of(template, "AWS::S3::Bucket").values():
            assert bucket["DeletionPolicy"] == "Retain"


def test_emr_serverless_application_is_pinned_auto_starts_stops_and_caps_capacity(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    default = only_resource(default_app.batch_json, "AWS::EMRServerless::Application")
    tuned = only_resource(tuned_app.batch_json, "AWS::EMRServerless::Application")
    for application in (default, tuned):
        properties = application["Properties"]
        assert properties["Type"] == "Spark"
        assert properties["AutoStartConfiguration"] == {"Enabled": True}
        assert properties["MonitoringConfiguration"]["S3MonitoringConfiguration"]["LogUri"]
    assert default["Properties"]["ReleaseLabel"] == "emr-7.5.0"
    assert default["Properties"]["Architecture"] == "X86_64"
    assert default["Properties"]["AutoStopConfiguration"] == {
        "Enabled": True,
        "IdleTimeoutMinutes": 15,
    }
    assert default["Properties"]["MaximumCapacity"] == {
        "Cpu": "32 vCPU",
        "Memory": "128 GB",
        "Disk": "1000 GB",
    }
    assert tuned["Properties"]["ReleaseLabel"] == "emr-7.2.0"
    assert tuned["Properties"]["Architecture"] == "ARM64"
    assert tuned["Properties"]["AutoStopConfiguration"]["IdleTimeoutMinutes"] == 5
    assert tuned["Properties"]["MaximumCapacity"] == {
        "Cpu": "64 vCPU",
        "Memory": "256 GB",
        "Disk": "2000 GB",
    }


def _asset_keys(template: dict[str, Any]) -> set[str]:
    """The S3 object keys of the job assets the job role may read."""
    statements = [s for s in _policy_statements(template) if s.get("Sid") == "ReadJobAssets"]
    assert len(statements) == 1
    return {json.dumps(r).rsplit("/", 1)[-1].split('"')[0] for r in statements[0]["Resource"]}


def test_job_role_reads_the_input_and_the_job_assets_writes_the_output_and_nothing_else(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    template = default_app.batch_json
    role_id, role = next(iter(resources_of(template, "AWS::IAM::Role").items()))
    assert len(resources_of(template, "AWS::IAM::Role")) == 1
    assert "ManagedPolicyArns" not in role["Properties"]
    assert "Policies" not in role["Properties"]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "emr-serverless.amazonaws.com"}]
    application_id = next(iter(resources_of(template, "AWS::EMRServerless::Application")))
    assert trust[0]["Condition"]["ArnLike"] == {
        "aws:SourceArn": {"Fn::GetAtt": [application_id, "Arn"]}
    }
    policies = [
        p
        for p in resources_of(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    assert len(policies) == 1 == len(resources_of(template, "AWS::IAM::Policy"))
    buckets = {
        logical_id.removeprefix("Batch")[:-8]: logical_id
        for logical_id in resources_of(template, "AWS::S3::Bucket")
    }

    def on(bucket: str, objects: bool) -> Any:
        arn = {"Fn::GetAtt": [buckets[bucket], "Arn"]}
        return {"Fn::Join": ["", [arn, "/*"]]} if objects else arn

    statements = {
        s["Sid"]: (
            sorted(s["Action"]) if isinstance(s["Action"], list) else [s["Action"]],
            s["Resource"],
        )
        for s in policies[0]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert statements.pop("ReadJobAssets")[0] == ["s3:GetObject"]
    assert statements == {
        "ListInput": (["s3:ListBucket"], on("Input", False)),
        "ReadInput": (["s3:GetObject"], on("Input", True)),
        "ListOutput": (["s3:ListBucket"], on("Output", False)),
        "WriteOutput": (
            sorted(
                [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ]
            ),
            on("Output", True),
        ),
    }
    keys = _asset_keys(template)
    assert len(keys) == 3  # job script, code zip, artifact folder: no packed env given
    assert {key.rsplit(".", 1)[-1] for key in keys} == {"py", "zip"}
    assert len(_asset_keys(tuned_app.batch_json)) == 4  # + the packed Python environment


def _assets_by_name(app: Synthesized) -> dict[str, dict[str, Any]]:
    manifest = json.loads((app.outdir / "LoanDefaultBatch.assets.json").read_text())
    return {
        asset["displayName"]: {"hash": asset_hash, **asset}
        for asset_hash, asset in manifest["files"].items()
        if asset.get("displayName", "").startswith("batch-")
    }


def test_the_job_script_code_zip_and_artifact_folder_are_uploaded_as_assets(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    assets = _assets_by_name(default_app)
    assert set(assets) == {"batch-job-script", "batch-job-code", "batch-model-artifacts"}
    staged = default_app.outdir

    def staged_path(name: str) -> Path:
        return staged / assets[name]["source"]["path"]

    assert (
        staged_path("batch-job-script").read_bytes()
        == (REPO_ROOT / "loan_default" / "batch" / "spark.py").read_bytes()
    )
    with zipfile.ZipFile(staged_path("batch-job-code")) as code:
        names = set(code.namelist())
    assert {"loan_default/batch/spark.py", "loan_service/scoring.py", "loan_service/book.py"} <= (
        names
    )
    assert not any("__pycache__" in name for name in names)
    artifacts = staged_path("batch-model-artifacts")
    assert (artifacts / "manifest.json").is_file()
    assert (artifacts / "model.onnx").is_file()
    assert assets["batch-model-artifacts"]["source"]["packaging"] == "zip"
    # Reproducible: the same code gives the same asset (hash) in another synthesis.
    tuned = _assets_by_name(tuned_app)
    assert tuned["batch-job-code"]["hash"] == assets["batch-job-code"]["hash"]
    assert "batch-python-env" in tuned


def _output_text(value: Any) -> str:
    return json.dumps(value)


def test_outputs_give_every_argument_of_start_job_run(
    default_app: Synthesized, tuned_app: Synthesized
) -> None:
    outputs = default_app.batch_json["Outputs"]
    assert set(outputs) == {
        "ApplicationId",
        "JobRoleArn",
        "InputBucket",
        "OutputBucket",
        "EntryPoint",
        "SparkSubmitParameters",
    }
    application_id = next(
        iter(resources_of(default_app.batch_json, "AWS::EMRServerless::Application"))
    )
    assert outputs["ApplicationId"]["Value"] == {"Fn::GetAtt": [application_id, "ApplicationId"]}
    assert _output_text(outputs["EntryPoint"]["Value"]).endswith('.py"}')
    parameters = _output_text(outputs["SparkSubmitParameters"]["Value"])
    assert "--py-files " in parameters
    assert "#artifacts" in parameters
    assert "#environment" not in parameters
    tuned = _output_text(tuned_app.batch_json["Outputs"]["SparkSubmitParameters"]["Value"])
    assert "#environment" in tuned
    for conf in (
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON=./environment/bin/python",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON=./environment/bin/python",
        "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
    ):
        assert f"--conf {conf}" in tuned


def test_synthesis_without_a_packed_python_environment_warns_with_the_command(
    default_app: Synthesized,
) -> None:
    batch = default_app.app.node.find_child("LoanDefaultBatch").node.find_child("Batch")
    warnings = [str(entry.data) for entry in batch.node.metadata if entry.type == "aws:cdk:warning"]
    assert len(warnings) == 1
    assert "make batch-env" in warnings[0]
    assert "onnxruntime" in warnings[0]
