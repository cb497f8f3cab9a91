"""Dockerfile.lambda, .dockerignore and lambda/events/ read as files: the image's promises on paper.

What the build does when run is proven in tests/integration/test_image_*.py; these tests pin the
promises the issue makes about the file itself (one dated base tag, hash-checked runtime set only,
scikit-learn behind a build arg, the task root layout, a small allow-list context).
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pytest

from tools.image_emulation import (
    DOCKERIGNORE,
    EVENTS_DIR,
    REPO_ROOT,
    DockerIgnore,
    EmulatedBuild,
    EmulationError,
    ImagePython,
    build_context,
    context_bytes,
    parse_dockerfile,
)

FEATURES = {
    "credit_lines_outstanding",
    "loan_amt_outstanding",
    "total_debt_outstanding",
    "income",
    "years_employed",
    "fico_score",
}


def _pip_install_step() -> str:
    dockerfile = parse_dockerfile()
    steps = [
        i.arguments for i in dockerfile.final_stage.instructions if "pip install" in i.arguments
    ]
    assert len(steps) == 1, "exactly one pip install step is expected in the final stage"
    return steps[0]


def test_base_image_is_one_dated_tag_of_the_aws_lambda_python_312_image() -> None:
    dockerfile = parse_dockerfile()
    bases = {stage.base for stage in dockerfile.stages}
    assert bases == {"${BASE_IMAGE}"}, "every stage starts from the same pinned base"
    assert re.fullmatch(
        r"public\.ecr\.aws/lambda/python:3\.12\.\d{4}\.\d{2}\.\d{2}\.\d{2}(@sha256:[0-9a-f]{64})?",
        dockerfile.base_image(),
    ), f"not a dated 3.12 tag: {dockerfile.base_image()}"


def test_lambda_handler_is_main_handler_and_the_image_runs_as_a_numeric_non_root_user() -> None:
    final = parse_dockerfile().final_stage.instructions
    cmd = [i for i in final if i.keyword == "CMD"]
    user = [i for i in final if i.keyword == "USER"]
    assert [json.loads(i.arguments) for i in cmd] == [["main.handler"]]
    assert [i.arguments for i in user] == ["1000:1000"]


def test_runtime_set_is_installed_hash_checked_binary_only_uncached_into_the_task_root() -> None:
    step = _pip_install_step()
    for flag in ("--require-hashes", "--no-cache-dir", "--only-binary=:all:", "--no-compile"):
        assert flag in step
    assert '--target "${LAMBDA_TASK_ROOT}"' in step
    assert "-r /tmp/requirements/runtime.txt" in step
    mounts = [
        i.flag_values("mount")
        for i in parse_dockerfile().final_stage.instructions
        if "pip install" in i.arguments
    ]
    assert mounts == [["type=bind,source=requirements,target=/tmp/requirements"]]


def test_scikit_learn_enters_the_image_only_through_the_install_sklearn_build_arg() -> None:
    step = _pip_install_step()
    branch = re.search(r'if \[ "\$\{INSTALL_SKLEARN\}" = "1" \]; then (.*?) fi;', step)
    assert branch is not None, "the sklearn requirement set must sit behind INSTALL_SKLEARN=1"
    assert "runtime-sklearn.txt" in branch.group(1)
    assert step.count("runtime-sklearn.txt") == 1
    args = [i.arguments for i in parse_dockerfile().final_stage.instructions if i.keyword == "ARG"]
    assert "INSTALL_SKLEARN=0" in args
    runtime_pins = (REPO_ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8")
    for heavy in ("scikit-learn", "scipy", "pandas"):
        assert not re.search(rf"^{heavy}==", runtime_pins, flags=re.MULTILINE), heavy


def test_image_never_writes_bytecode_at_run_time_and_compiles_it_at_build_time() -> None:
    final = parse_dockerfile().final_stage.instructions
    env = " ".join(i.arguments for i in final if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    compile_steps = [i.arguments for i in final if "compileall" in i.arguments]
    assert len(compile_steps) == 2
    assert all("--invalidation-mode unchecked-hash" in step for step in compile_steps)


def test_copy_lines_lay_out_the_contract_task_root() -> None:
    dockerfile = parse_dockerfile()
    copies = [
        (i.flag("from"), i.arguments)
        for i in dockerfile.final_stage.instructions
        if i.keyword == "COPY"
    ]
    assert copies == [
        (None, "lambda/ ${LAMBDA_TASK_ROOT}/"),
        ("artifacts", "/staging/artifacts/ ${LAMBDA_TASK_ROOT}/artifacts/"),
    ]
    check_stage = dockerfile.stage_named("artifacts")
    check = [i.arguments for i in check_stage.instructions if i.keyword == "RUN"]
    assert len(check) == 1
    assert "make train" in check[0]
    for required in ("manifest.json", "model.onnx", "stats.json", "best_model.pkl"):
        assert required in check[0]


def test_parser_joins_continuations_drops_comments_and_keeps_repeated_flags(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG BASE=img:1\n"
        "FROM ${BASE} AS first\n"
        "# a comment\n"
        "RUN --mount=type=bind,source=a,target=/a --mount=type=bind,source=b,target=/b \\\n"
        "    echo one; \\\n"
        "    # a comment inside the continuation\n"
        "    echo two\n"
        "FROM first\n",
        encoding="utf-8",
    )
    parsed = parse_dockerfile(dockerfile)
    assert parsed.global_args == {"BASE": "img:1"}
    assert [(s.base, s.name) for s in parsed.stages] == [("${BASE}", "first"), ("first", None)]
    (run,) = parsed.stages[0].instructions
    assert run.arguments == "echo one; echo two"
    assert run.flag_values("mount") == [
        "type=bind,source=a,target=/a",
        "type=bind,source=b,target=/b",
    ]
    assert run.line == 4


@pytest.mark.parametrize(
    ("dockerfile_text", "refusal"),
    [
        ("FROM scratch\nADD https://example.com/x /x\n", "does not know ADD"),
        ("FROM scratch\nCOPY --chown=1000 a /a\n", "COPY --chown is not emulated"),
        ("FROM scratch\nRUN --network=none true\n", "RUN --network is not emulated"),
        ("FROM scratch AS one\nFROM one\n", "building on an earlier stage is not emulated"),
    ],
)
def test_emulator_refuses_what_it_cannot_reproduce_instead_of_drifting(
    tmp_path: Path, dockerfile_text: str, refusal: str
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(dockerfile_text, encoding="utf-8")
    this_python = ImagePython(Path(sys.executable), sys.version_info[:2], "test interpreter")
    build = EmulatedBuild(
        tmp_path / "work", {}, dockerfile=dockerfile, python=this_python, cache_dir=None
    )
    with pytest.raises(EmulationError, match=refusal):
        build.run()


# --- .dockerignore ---


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*"], "lambda/main.py", True),
        (["*", "!lambda/"], "lambda/main.py", False),
        (["*", "!lambda/", "lambda/events/"], "lambda/events/v1.json", True),
        (["*", "!requirements/runtime.txt"], "requirements/runtime.txt", False),
        (["*", "!requirements/runtime.txt"], "requirements/dev.txt", True),
        (["**/__pycache__/"], "lambda/loan_service/__pycache__/x.cpython-312.pyc", True),
        (["**/*.py[cod]"], "lambda/main.pyc", True),
        (["**/*.py[cod]"], "lambda/main.py", False),
        (["*.md"], "docs/guide.md", False),  # one * never crosses a folder
        (["/artifacts/report"], "artifacts/report/index.html", True),
        (["artifacts"], "artifacts.tmp-1/manifest.json", False),
    ],
)
def test_dockerignore_rules_follow_dockers_matching(
    patterns: list[str], path: str, excluded: bool
) -> None:
    assert DockerIgnore(patterns).excludes(path) is excluded


def test_dockerignore_keeps_only_what_the_dockerfile_reads(tmp_path: Path) -> None:
    # GIVEN a repository tree with everything a working copy accumulates
    everything = [
        ".git/HEAD",
        ".venv/lib/python3.11/site-packages/numpy/__init__.py",
        ".build/image/layers/x/var/task/numpy/__init__.py",
        "Data/Loan_Data.csv",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "cdk.out/LoanDefaultLambda.template.json",
        "node_modules/aws-cdk/package.json",
        "tests/unit/test_x.py",
        "training/__init__.py",
        "infra_cdk/app.py",
        "tools/image_emulation.py",
        "README.md",
        "Makefile",
        "requirements/dev.txt",
        "requirements/training.txt",
        "requirements/runtime.txt",
        "requirements/runtime-sklearn.txt",
        "lambda/main.py",
        "lambda/__pycache__/main.cpython-311.pyc",
        "lambda/loan_service/__init__.py",
        "lambda/loan_service/web/index.html",
        "lambda/events/bad-request.json",
        "artifacts/manifest.json",
        "artifacts/model.onnx",
        "artifacts/report/index.html",
        "artifacts.tmp-1a2b/manifest.json",
        "Dockerfile.lambda",
    ]
    for relative in everything:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x", encoding="utf-8")
    (tmp_path / ".dockerignore").write_text(DOCKERIGNORE.read_text(encoding="utf-8"))

    # WHEN Docker's rules pick the build context
    context = build_context(tmp_path)

    # THEN only the Dockerfile's inputs remain
    assert set(context) == {
        "Dockerfile.lambda",
        "requirements/runtime.txt",
        "requirements/runtime-sklearn.txt",
        "lambda/main.py",
        "lambda/loan_service/__init__.py",
        "lambda/loan_service/web/index.html",
        "artifacts/manifest.json",
        "artifacts/model.onnx",
    }


def test_the_real_repository_context_is_small_and_free_of_tests_and_tooling() -> None:
    context = build_context(REPO_ROOT, replace={"artifacts": None})
    assert context, "the context cannot be empty"
    top_level = {key.split("/")[0] for key in context}
    assert top_level <= {"Dockerfile.lambda", "requirements", "lambda"}
    assert not any(key.startswith("lambda/events/") or "__pycache__" in key for key in context)
    assert context_bytes(context) < 2 * 1000**2


# --- lambda/events ---

EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))


def _body(event: dict[str, object]) -> bytes:
    body = str(event.get("body") or "")
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def test_every_front_door_has_a_ready_event_file() -> None:
    names = {path.name for path in EVENT_FILES}
    assert {
        "apigw-rest-v1-predict.json",
        "apigw-rest-v1-health.json",
        "apigw-http-v2-predict.json",
        "apigw-http-v2-health.json",
        "alb-predict.json",
        "function-url-predict.json",
        "bad-request.json",
    } <= names


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_event_file_has_the_real_shape_of_its_front_door(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    context = event["requestContext"]
    if path.name.startswith("apigw-rest-v1"):
        assert event["version"] == "1.0"
        assert {"httpMethod", "path", "resource", "multiValueHeaders"} <= set(event)
        assert context["stage"] == "prod"
        assert context["path"] == f"/prod{event['path']}"
    elif path.name.startswith("alb"):
        assert context["elb"]["targetGroupArn"].startswith("arn:aws:elasticloadbalancing:")
        assert "version" not in event
    else:
        assert event["version"] == "2.0"
        assert event["rawPath"] == context["http"]["path"]
        if path.name.startswith("function-url"):
            assert context["domainName"].endswith(".on.aws")
            assert event["routeKey"] == "$default"
    body = _body(event)
    if body:
        assert event["headers"]["content-length"] == str(len(body))


@pytest.mark.parametrize(
    "path", [p for p in EVENT_FILES if "predict" in p.name], ids=lambda p: p.name
)
def test_predict_event_bodies_carry_exactly_the_six_features_with_valid_values(path: Path) -> None:
    payload = json.loads(_body(json.loads(path.read_text(encoding="utf-8"))))
    assert set(payload) == FEATURES
    assert 300 <= payload["fico_score"] <= 850
    assert payload["income"] > 0


def test_bad_request_event_breaks_two_rules_the_api_must_name() -> None:
    event = json.loads((EVENTS_DIR / "bad-request.json").read_text(encoding="utf-8"))
    payload = json.loads(_body(event))
    assert isinstance(payload["income"], str), "a string is not a number (strict types)"
    assert payload["fico_score"] > 850, "FICO is 300..850"
