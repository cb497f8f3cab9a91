"""Dockerfile.lambda built by emulation where it must fail, and its context as CDK stages it.

The successful build and what it serves live in test_image_task_root.py and
test_image_runtime_interface_client.py; this file covers the failure messages, the context that
reaches cdk.out, and the other architecture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.image_emulation import (
    REPO_ROOT,
    EmulationError,
    build_context,
    build_image,
    resolve_wheels,
)


def test_build_without_an_artifact_folder_stops_and_says_to_run_make_train(tmp_path: Path) -> None:
    # GIVEN a build context with no artifacts/ folder (a fresh clone before training)
    # WHEN the Dockerfile's stages run
    with pytest.raises(EmulationError) as failure:
        build_image(tmp_path / "build", artifacts=None)

    # THEN the artifact check stage fails first, naming the file and the fix
    message = str(failure.value)
    assert "artifacts/manifest.json is missing from the build context" in message
    assert "Run 'make train'" in message
    assert not (tmp_path / "build" / "stage-1-final").exists(), "the image stage never started"


def test_build_with_an_incomplete_artifact_folder_names_the_missing_file(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "manifest.json").write_text('{"schema_version": 1}', encoding="utf-8")
    (artifacts / "stats.json").write_text("{}", encoding="utf-8")

    with pytest.raises(EmulationError) as failure:
        build_image(tmp_path / "build", artifacts=artifacts)

    assert "artifacts/model.onnx is missing" in str(failure.value)
    assert "make train" in str(failure.value)


@pytest.mark.slow
def test_cdk_asset_staging_copies_exactly_the_docker_build_context(tmp_path: Path) -> None:
    """CDK stages the context into cdk.out with its own .dockerignore reader: both must agree."""
    cdk = pytest.importorskip("aws_cdk")
    ecr_assets = pytest.importorskip("aws_cdk.aws_ecr_assets")

    # GIVEN a CDK app with one image asset built from Dockerfile.lambda at the repository root
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "ContextProbe")
    ecr_assets.DockerImageAsset(
        stack,
        "Image",
        directory=str(REPO_ROOT),
        file="Dockerfile.lambda",
        platform=ecr_assets.Platform.LINUX_AMD64,
    )

    # WHEN it synthesizes
    app.synth()

    # THEN the staged folder holds what docker build would send, plus the always-sent .dockerignore
    (staged_root,) = (tmp_path / "cdk.out").glob("asset.*")
    staged = {p.relative_to(staged_root).as_posix() for p in staged_root.rglob("*") if p.is_file()}
    assert staged == {*build_context(REPO_ROOT), ".dockerignore"}


@pytest.mark.slow
def test_every_pinned_requirement_has_a_python_312_wheel_for_arm64_graviton() -> None:
    # The emulation runs x86_64 only; an arm64 image (--platform linux/arm64) must still resolve
    # every hash pin to a binary wheel, or its docker build would fail on AWS's side.
    requirements = REPO_ROOT / "requirements"
    wheels = resolve_wheels(
        "aarch64", [requirements / "runtime.txt", requirements / "runtime-sklearn.txt"]
    )

    names = {wheel.split("-")[0].lower().replace("_", "-") for wheel in wheels}
    assert {"onnxruntime", "numpy", "fastapi", "mangum", "scikit-learn"} <= names
    not_arm = [w for w in wheels if not (w.endswith("-any.whl") or "aarch64" in w)]
    assert not_arm == []
    assert all("cp312" in w or "abi3" in w or "py3" in w for w in wheels)
