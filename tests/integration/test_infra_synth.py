"""``make synth`` on a fresh clone, with the pinned CDK CLI, then cfn-lint on what it wrote.

The clone shares this checkout's ``.venv`` (a symlink; make is told not to reinstall it) but
nothing else: no node_modules, no artifacts/, no cdk.out. So the run installs the CLI with
``npm ci``, trains the model because artifacts/ is missing, and synthesizes both stacks - the
path a new user takes, offline with respect to AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cfn_lint import lint_errors_and_warnings

REPO_ROOT = Path(__file__).resolve().parents[2]
STACKS = ("LoanDefaultServerless", "LoanDefaultFargate", "LoanDefaultBatch")
VENV_STAMP = ".venv/.installed"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class FreshSynth:
    clone: Path
    result: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def _clean_environment() -> dict[str, str]:
    """No AWS account, region or credentials from the caller: synthesis must not need them."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) and key != "MAKEFLAGS"
    }


@pytest.fixture(scope="module")
def fresh_synth(tmp_path_factory: pytest.TempPathFactory) -> FreshSynth:
    if shutil.which("git") is None or shutil.which("npm") is None:
        pytest.skip("git and npm are needed to clone the repository and install the CDK CLI")
    clone = tmp_path_factory.mktemp("fresh") / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(Path(sys.prefix))
    started = time.perf_counter()
    result = subprocess.run(
        ["make", "-o", VENV_STAMP, "synth"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=900,
        env=_clean_environment(),
        check=False,
    )
    return FreshSynth(clone, result, time.perf_counter() - started)


def test_make_synth_on_a_fresh_clone_trains_then_writes_both_templates(
    fresh_synth: FreshSynth,
) -> None:
    assert fresh_synth.result.returncode == 0, fresh_synth.output[-5000:]
    assert (fresh_synth.clone / "node_modules" / ".bin" / "cdk").exists()
    assert (fresh_synth.clone / "artifacts" / "manifest.json").is_file()
    for stack in STACKS:
        template = json.loads(
            (fresh_synth.clone / "cdk.out" / f"{stack}.template.json").read_text()
        )
        assert template["Resources"], stack
    print(f"\nfresh clone `make synth` (npm ci + train + synth): {fresh_synth.seconds:.1f} s")


def test_cfn_lint_reports_zero_errors_on_both_synthesized_templates(
    fresh_synth: FreshSynth,
) -> None:
    assert fresh_synth.result.returncode == 0, fresh_synth.output[-5000:]
    templates = [fresh_synth.clone / "cdk.out" / f"{stack}.template.json" for stack in STACKS]
    errors, warnings = lint_errors_and_warnings(templates)

    assert errors == [], json.dumps(errors, indent=1)
    print(f"\ncfn-lint: 0 errors, {len(warnings)} warnings", *warnings, sep="\n  ")


def test_installed_cdk_cli_is_the_version_pinned_in_package_json(fresh_synth: FreshSynth) -> None:
    pinned = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    locked = json.loads((REPO_ROOT / "package-lock.json").read_text())["packages"][
        "node_modules/aws-cdk"
    ]["version"]
    installed = json.loads(
        (fresh_synth.clone / "node_modules" / "aws-cdk" / "package.json").read_text()
    )["version"]

    assert pinned == locked == installed
    assert pinned[0].isdigit(), "an exact version, not a range"


def test_cdk_synth_without_a_trained_model_stops_and_says_to_run_make_train(
    fresh_synth: FreshSynth,
) -> None:
    """GIVEN the fresh clone with its artifact folder moved away WHEN the CLI synthesizes
    THEN it fails and its message names the fix."""
    artifacts = fresh_synth.clone / "artifacts"
    parked = fresh_synth.clone / "artifacts.parked"
    artifacts.rename(parked)
    try:
        result = subprocess.run(
            [str(fresh_synth.clone / "node_modules" / ".bin" / "cdk"), "synth", "--quiet"],
            cwd=fresh_synth.clone,
            capture_output=True,
            text=True,
            timeout=300,
            env={**_clean_environment(), "CDK_DISABLE_CLI_TELEMETRY": "true"},
            check=False,
        )
    finally:
        parked.rename(artifacts)

    assert result.returncode != 0
    assert "run `make train` first" in result.stdout + result.stderr
