"""The CDK app: read settings once from context, build the three stacks, run cdk-nag on them.

``cdk.json`` runs ``.venv/bin/python -m infra_cdk``, which calls :func:`main`. Tests call
:func:`build_app` with their own context and project root and synthesize in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Tags

from infra_cdk.nag import enable_aws_solutions_checks
from infra_cdk.settings import Settings
from infra_cdk.stacks import BatchStack, FargateStack, ServerlessStack

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cdk_json_context(project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The ``context`` block of ``cdk.json`` (feature flags), as the CDK CLI would pass it."""
    context = json.loads((project_root / "cdk.json").read_text(encoding="utf-8"))["context"]
    return dict(context)


def build_app(
    context: dict[str, Any] | None = None,
    *,
    project_root: Path = PROJECT_ROOT,
    outdir: str | None = None,
) -> App:
    """The three stacks in one app. ``project_root`` holds Dockerfile.lambda and the artifacts."""
    app = App(context=context, outdir=outdir)
    settings = Settings.from_context(app.node.try_get_context)
    environment = Environment(account=settings.account, region=settings.region)

    ServerlessStack(
        app,
        f"{settings.stack_prefix}Serverless",
        settings=settings,
        project_root=project_root,
        env=environment,
        description="Loan-default PD service: Lambda container image behind API Gateway (REST)",
    )
    FargateStack(
        app,
        f"{settings.stack_prefix}Fargate",
        settings=settings,
        project_root=project_root,
        env=environment,
        description="Loan-default PD service: the same image on ECS Fargate behind an ALB",
    )
    BatchStack(
        app,
        f"{settings.stack_prefix}Batch",
        settings=settings,
        project_root=project_root,
        env=environment,
        description="Loan-default PD batch scoring: S3 in and out, Spark on EMR Serverless",
    )
    Tags.of(app).add("project", "loan-default")
    enable_aws_solutions_checks(app)
    return app


def main() -> None:
    """Entry point for the CDK CLI (context arrives through the CLI's environment)."""
    build_app().synth()
