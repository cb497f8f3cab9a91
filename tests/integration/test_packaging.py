"""``pip install .``: one wheel with the four packages, the web page, one console script, and
per-deployable extras read from requirements/*.in; the installed ``loan-default serve`` serves.

The wheel is built the way ``pip install .`` builds it (isolated build, setuptools from PyPI) and
installed without dependencies into a folder of its own, so the test proves the installed layout
(not the checkout) imports, dispatches and serves, with the shared venv's libraries.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port, service_env, start_server

pytestmark = pytest.mark.slow

EXTRAS = {
    "serve": ["runtime.in"],
    "train": ["training.in"],
    "infra": ["infra.in"],
    "dev": ["training.in", "runtime.in", "infra.in", "tools.in"],
}


def requirement_lines(names: list[str]) -> list[str]:
    lines = []
    for name in names:
        for text in (REPO_ROOT / "requirements" / name).read_text().splitlines():
            line = text.split("#", 1)[0].split(";", 1)[0].strip()  # markers aside
            if line and not line.startswith("-"):
                lines.append(str(Requirement(line)))
    return lines


# What the wheel is built from; copied, because a setuptools build writes build/ and *.egg-info
# into its source folder.
SOURCES = ("pyproject.toml", "README.md", "requirements", "training", "loan_default", "infra_cdk")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.txt")
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=ignore)
        else:
            shutil.copy2(origin, source / name)
    shutil.copytree(
        REPO_ROOT / "lambda" / "loan_service", source / "lambda" / "loan_service", ignore=ignore
    )
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", out],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def installed_env(site: Path, **extra: str) -> dict[str, str]:
    """Only the installed folder on the path: not the checkout, not lambda/."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(site), **extra}


def test_the_wheel_holds_the_packages_the_page_and_one_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [name for name in names if name.endswith("entry_points.txt")]
        scripts = archive.read(entry_points).decode()
        (metadata_name,) = [name for name in names if name.endswith("METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith("-info")}
    assert tops == {"training", "loan_default", "infra_cdk", "loan_service"}
    sources = [REPO_ROOT / name for name in ("training", "loan_default", "infra_cdk")]
    packages = [
        init.relative_to(root.parent).as_posix()
        for root in [*sources, REPO_ROOT / "lambda" / "loan_service"]
        for init in root.rglob("__init__.py")
    ]
    assert sorted(set(packages) - set(names)) == []  # no package left out of pyproject.toml
    assert "loan_service/web/index.html" in names
    assert "main.py" not in names  # the Lambda entry module stays in the task root only
    assert scripts.split() == ["[console_scripts]", "loan-default", "=", "loan_default.cli:main"]
    assert set(metadata.get_all("Provides-Extra") or []) == set(EXTRAS)
    requires = metadata.get_all("Requires-Dist") or []
    for extra, files in EXTRAS.items():
        declared = sorted(
            str(Requirement(item.split(";", 1)[0]))
            for item in requires
            if item.endswith(f'extra == "{extra}"')
        )
        assert declared == sorted(requirement_lines(files)), extra


def test_the_installed_command_lists_its_subcommands(installed: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "loan_default", "--help"],
        cwd=installed.parent,
        env=installed_env(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert {"train", "score", "serve"} <= set(answer.stdout.split())


def test_installed_serve_refuses_a_missing_artifact_folder_in_one_line(
    installed: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nothing-here"
    answer = subprocess.run(
        [sys.executable, "-m", "loan_default", "serve", "--artifacts", str(missing)],
        cwd=tmp_path,
        env=installed_env(installed),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 3
    assert answer.stderr.strip().splitlines() == [
        f"refusing to start: artifact folder {missing} does not exist: train first "
        "(`make train`) or set ARTIFACT_DIR"
    ]


def test_installed_serve_answers_predictions(
    installed: Path, trained_artifacts: Path, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "loan_default", "serve", "--port", str(port)]
    server = start_server(
        "loan-default serve",
        [*command, "--artifacts", str(trained_artifacts)],
        port=port,
        cwd=tmp_path,
        env={**service_env(tmp_path / "not-this-one"), "PYTHONPATH": str(installed)},
        log_path=tmp_path / "serve.log",
    )
    try:
        server.wait_ready()
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]
