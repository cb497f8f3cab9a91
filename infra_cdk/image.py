"""The service image: one Docker image asset built from ``Dockerfile.lambda`` at the repo root.

Both stacks create this construct with identical properties, so both get the same asset hash:
the CDK CLI builds and pushes the image once, and the Lambda function and the Fargate task run
exactly the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra_cdk.settings import Architecture, SettingsError

DOCKERFILE = "Dockerfile.lambda"

# The Docker build context is the repository root. The CDK stages (copies) it into cdk.out and
# hashes it on every synth, honouring `.dockerignore` (an allow-list of exactly what
# Dockerfile.lambda reads). These big build outputs are excluded here as well, whatever
# .dockerignore says, so a broken ignore file can never make a synth copy gigabytes.
NEVER_STAGED: tuple[str, ...] = (
    ".git",
    ".venv",
    "node_modules",
    "cdk.out",
    "Data",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    ".build",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)

# Dockerfile.lambda always bakes this folder (relative to the build context) into the image.
BAKED_ARTIFACT_DIR = "artifacts"

PLATFORM_BY_ARCHITECTURE: dict[Architecture, ecr_assets.Platform] = {
    Architecture.X86_64: ecr_assets.Platform.LINUX_AMD64,
    Architecture.ARM64: ecr_assets.Platform.LINUX_ARM64,
}


class MissingArtifactsError(FileNotFoundError):
    """The trained artifact folder is absent: the image would ship without a model."""


def require_artifacts(project_root: Path, artifact_dir: str) -> Path:
    """Return the artifact folder, or stop synthesis with the command that creates it."""
    folder = project_root / artifact_dir
    if folder.resolve() != (project_root / BAKED_ARTIFACT_DIR).resolve():
        raise SettingsError(
            f"context 'artifact_dir': {artifact_dir!r} is not the folder the image bakes in: "
            f"{DOCKERFILE} copies {project_root / BAKED_ARTIFACT_DIR} (`make train` writes it)"
        )
    if not (folder / "manifest.json").is_file():
        raise MissingArtifactsError(
            f"no trained model at {folder} (manifest.json missing): run `make train` first - "
            "the image bakes the artifact folder in, so synthesis needs it"
        )
    return folder


class ServiceImage(Construct):
    """The container image asset, with the platform pinned to the chosen architecture."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project_root: Path,
        artifact_dir: str,
        architecture: Architecture,
    ) -> None:
        super().__init__(scope, construct_id)
        self.artifact_folder = require_artifacts(project_root, artifact_dir)
        if not (project_root / DOCKERFILE).is_file():
            raise FileNotFoundError(f"{DOCKERFILE} not found in {project_root}")
        self.architecture = architecture
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=str(project_root),
            file=DOCKERFILE,
            platform=PLATFORM_BY_ARCHITECTURE[architecture],
            exclude=list(NEVER_STAGED),
            ignore_mode=IgnoreMode.DOCKER,
            display_name="loan-default-service",
        )

    @property
    def manifest(self) -> dict[str, Any]:
        """The baked-in model's manifest (model version, expected behaviour for the alarms)."""
        manifest: dict[str, Any] = json.loads(
            (self.artifact_folder / "manifest.json").read_text(encoding="utf-8")
        )
        return manifest

    @property
    def asset_hash(self) -> str:
        """The content hash that tags the image in the bootstrap ECR repository."""
        return self.asset.asset_hash

    def lambda_code(self, handler: str | None = None) -> lambda_.DockerImageCode:
        """The image for a ``DockerImageFunction``: its CMD is ``main.handler``, or ``handler``
        (another entry module of the same image)."""
        return lambda_.DockerImageCode.from_ecr(
            self.asset.repository,
            tag_or_digest=self.asset.image_tag,
            cmd=None if handler is None else [handler],
        )

    def container_image(self) -> ecs.ContainerImage:
        """The image for an ECS container definition (the task overrides the entry point)."""
        return ecs.ContainerImage.from_docker_image_asset(self.asset)

    @property
    def lambda_architecture(self) -> lambda_.Architecture:
        """The Lambda architecture that matches the pinned platform."""
        if self.architecture is Architecture.ARM64:
            return lambda_.Architecture.ARM_64
        return lambda_.Architecture.X86_64

    @property
    def ecs_cpu_architecture(self) -> ecs.CpuArchitecture:
        """The Fargate CPU architecture that matches the pinned platform."""
        if self.architecture is Architecture.ARM64:
            return ecs.CpuArchitecture.ARM64
        return ecs.CpuArchitecture.X86_64
