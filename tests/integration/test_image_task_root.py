"""The image's task root, built by emulating Dockerfile.lambda, answers events in a bare Python.

The build runs the Dockerfile's own instructions (tools/image_emulation.py): the runtime set
installed for CPython 3.12 / manylinux x86_64 with --require-hashes, then the COPY lines as
written. The handler
is imported by an interpreter that sees only the task root (``-S -s -P``, ``PYTHONPATH`` = task
root), so a runtime dependency missing from requirements/runtime.txt fails here, not on AWS.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.image import TASK_ROOT_BUDGET_BYTES
from infra_cdk.ecs_entry import COMMAND, ENTRY_POINT, GRACEFUL_STOP_STATUSES
from tools.image_emulation import (
    EmulatedImage,
    EmulationError,
    build_image,
    decode_body,
    file_snapshot,
    invoke_handler_in_fresh_process,
    isolated_python,
    lambda_environment,
    link_tree,
    load_event,
    tree_bytes,
)

pytestmark = pytest.mark.slow

HEAVY_LIBRARIES = ("sklearn", "scipy", "pandas", "mlflow")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, trained_artifacts: Path) -> EmulatedImage:
    """The default image (ONNX runtime only) with a freshly trained artifact folder."""
    return build_image(tmp_path_factory.mktemp("image") / "build", trained_artifacts)


def test_task_root_has_the_contract_layout_and_nothing_the_image_does_not_need(
    image: EmulatedImage,
) -> None:
    task_root = image.task_root
    assert (task_root / "main.py").is_file()
    assert (task_root / "loan_service" / "__init__.py").is_file()
    for name in ("manifest.json", "model.onnx", "stats.json", "best_model.pkl"):
        assert (task_root / "artifacts" / name).is_file(), name
    assert not (task_root / "artifacts" / "report").exists(), "the training report stays out"
    assert not (task_root / "events").exists(), "lambda/events/ stays out"
    assert not (task_root / "sklearn").exists(), "scikit-learn only with INSTALL_SKLEARN=1"
    assert not (task_root / "scipy").exists()
    assert not (task_root / "pandas").exists()
    assert not (task_root / "awslambdaric").exists(), "the base image ships it in /var/runtime"
    assert (image.runtime_dir / "awslambdaric").is_dir()
    assert image.cmd == ["main.handler"]
    assert image.env["ARTIFACT_DIR"] == str(task_root / "artifacts")


def _readable_by_others(path: Path) -> bool:
    """r for files, r+x for folders, in the "other" permission bits."""
    needed = 0o005 if path.is_dir() else 0o004
    return path.stat().st_mode & needed == needed


def test_every_file_is_readable_by_the_non_root_user_lambda_and_ecs_run_as(
    image: EmulatedImage,
) -> None:
    # Lambda runs the function as its own non-root user, ECS as uid 1000: root-only files would fail
    # the import on AWS although every test run as root here passes.
    paths = [p for p in image.task_root.rglob("*") if not p.is_symlink()]
    assert [str(p) for p in paths if not _readable_by_others(p)] == []


def test_code_and_dependencies_are_byte_compiled_for_python_312(image: EmulatedImage) -> None:
    if image.python.version != (3, 12):
        pytest.skip(image.python.note)
    assert list((image.task_root / "__pycache__").glob("main.cpython-312.pyc"))
    assert list((image.task_root / "fastapi" / "__pycache__").glob("*.cpython-312.pyc"))


def test_handler_answers_rest_and_http_api_events_with_200_in_an_interpreter_that_sees_only_the_task_root(  # noqa: E501
    image: EmulatedImage,
) -> None:
    # GIVEN API Gateway REST (payload 1.0) and HTTP API (payload 2.0) events, predict and health
    names = [
        "apigw-rest-v1-predict.json",
        "apigw-rest-v1-health.json",
        "apigw-http-v2-predict.json",
        "apigw-http-v2-health.json",
    ]

    # WHEN a fresh, isolated interpreter imports main.handler and answers them
    run = invoke_handler_in_fresh_process(image, [load_event(n) for n in names])

    # THEN every answer is a 200 with the contract's body
    assert [r["statusCode"] for r in run.responses] == [200, 200, 200, 200], run.output
    rest_predict, rest_health, http_predict, http_health = (decode_body(r) for r in run.responses)
    for prediction in (rest_predict, http_predict):
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["prediction"] in (0, 1)
        assert prediction["risk_band"] in ("low", "medium", "high")
        assert prediction["model_version"]
    assert rest_health["status"] == http_health["status"] == "ok"
    # AND nothing was imported from outside the task root, the runtime dir or the standard library
    assert run.foreign_modules == []
    assert run.sys_path[:2] == [str(image.task_root), str(image.runtime_dir)]
    assert not any(entry.endswith("-packages") for entry in run.sys_path)
    # AND the ONNX path loaded none of the heavy libraries
    loaded_heavy = {m.split(".")[0] for m in run.modules} & set(HEAVY_LIBRARIES)
    assert loaded_heavy == set()


def test_handler_answers_alb_and_function_url_events_including_a_base64_body(
    image: EmulatedImage,
) -> None:
    run = invoke_handler_in_fresh_process(
        image, [load_event("alb-predict.json"), load_event("function-url-predict.json")]
    )
    assert [r["statusCode"] for r in run.responses] == [200, 200], run.output
    assert all("probability" in decode_body(r) for r in run.responses)


def test_bad_request_event_gets_a_422_naming_each_field_without_internals(
    image: EmulatedImage,
) -> None:
    (response,) = invoke_handler_in_fresh_process(image, [load_event("bad-request.json")]).responses
    assert response["statusCode"] == 422
    body = decode_body(response)
    assert body["error"] == "validation_error"
    assert {item["field"] for item in body["detail"]} == {"income", "fico_score"}
    text = json.dumps(body)
    assert "Traceback" not in text
    assert str(image.task_root) not in text


def test_the_stability_check_entry_loads_the_baked_reference_from_the_task_root_alone(
    image: EmulatedImage,
) -> None:
    """``monitor_handler.handler`` (the scheduled function's CMD) imports with the runtime set
    only - boto3 is the Lambda runtime's, imported when it runs - and verifies the baked folder."""
    probe = (
        "import monitor_handler; r = monitor_handler.baked_reference(); "
        "print(r.model_version, r.score.bins, ','.join(r.features))"
    )
    run = subprocess.run(
        [*isolated_python(image), "-c", probe],
        env=lambda_environment(image),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads((image.task_root / "artifacts" / "manifest.json").read_text())
    version, bins, features = run.stdout.split()
    assert version == manifest["model_version"]
    assert int(bins) >= 2
    assert features.split(",") == manifest["features"]


def test_serving_writes_nothing_into_the_read_only_task_root(image: EmulatedImage) -> None:
    # /var/task is read-only on Lambda: a write there would crash the function on AWS only.
    before = file_snapshot(image.task_root)
    invoke_handler_in_fresh_process(
        image, [load_event("apigw-http-v2-predict.json"), load_event("apigw-rest-v1-health.json")]
    )
    assert file_snapshot(image.task_root) == before


def test_a_runtime_dependency_missing_from_the_image_fails_the_proof(
    image: EmulatedImage, tmp_path: Path
) -> None:
    # GIVEN the same image without one package of the runtime set (a dependency nobody declared)
    broken_root = tmp_path / "rootfs"
    link_tree(image.rootfs, broken_root)
    shutil.rmtree(broken_root / "var" / "task" / "mangum")
    broken = dataclasses.replace(
        image,
        rootfs=broken_root,
        env={**image.env, "ARTIFACT_DIR": str(broken_root / "var" / "task" / "artifacts")},
    )

    # WHEN the handler is imported THEN the proof fails on the missing module (no .venv fallback)
    with pytest.raises(EmulationError, match="No module named 'mangum'"):
        invoke_handler_in_fresh_process(broken, [load_event("apigw-http-v2-health.json")])


def test_task_root_fits_its_size_budget(image: EmulatedImage) -> None:
    size = tree_bytes(image.task_root)
    assert size <= TASK_ROOT_BUDGET_BYTES, f"task root is {size / 1e6:.1f} MB"


# --- The same image on ECS Fargate: uvicorn's CLI on the app factory, port 8080 ---


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class EcsTask:
    base_url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def ecs_server(image: EmulatedImage) -> Iterator[EcsTask]:
    """The server started as the ECS task definition starts it: in the task root, no PYTHONPATH."""
    port = _free_port()
    command = list(COMMAND)
    command[command.index("--port") + 1] = str(port)
    command[command.index("0.0.0.0")] = "127.0.0.1"
    assert ENTRY_POINT[:2] == ["python3", "-m"]
    # No -P here: `python3 -m` puts the working directory (/var/task) first on sys.path, as on ECS.
    argv = [str(image.python.executable), "-S", "-s", "-m", ENTRY_POINT[2], *command]
    env = {k: v for k, v in lambda_environment(image).items() if not k.startswith("AWS_LAMBDA")}
    env.pop("PYTHONPATH")
    process = subprocess.Popen(
        argv, cwd=image.task_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"the ECS entry exited {process.returncode}:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield EcsTask(base_url, process)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)


def _http(method: str, url: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_the_same_image_serves_http_on_ecs_and_drains_on_sigterm(ecs_server: EcsTask) -> None:
    status, health = _http("GET", f"{ecs_server.base_url}/health")
    assert (status, health["status"]) == (200, "ok")

    applicant = json.loads(load_event("apigw-http-v2-predict.json")["body"])
    status, prediction = _http("POST", f"{ecs_server.base_url}/predict", applicant)
    assert status == 200
    assert 0.0 <= prediction["probability"] <= 1.0

    # ECS stops a task with SIGTERM: uvicorn drains, then re-raises it (143 unless PID 1).
    ecs_server.process.terminate()
    status = ecs_server.process.wait(timeout=30)
    output = ecs_server.process.stdout.read().decode() if ecs_server.process.stdout else ""
    assert status in GRACEFUL_STOP_STATUSES, output
    assert "Application shutdown complete." in output, output


# --- The fallback image: --build-arg INSTALL_SKLEARN=1, MODEL_RUNTIME=sklearn ---


@pytest.fixture(scope="module")
def sklearn_image(
    tmp_path_factory: pytest.TempPathFactory, trained_artifacts: Path
) -> EmulatedImage:
    return build_image(
        tmp_path_factory.mktemp("sklearn-image") / "build",
        trained_artifacts,
        build_args={"INSTALL_SKLEARN": "1"},
    )


def test_fallback_image_serves_best_model_pkl_with_the_same_answers_as_onnx(
    image: EmulatedImage, sklearn_image: EmulatedImage
) -> None:
    assert (sklearn_image.task_root / "sklearn").is_dir()
    events = [load_event("apigw-http-v2-predict.json"), load_event("function-url-predict.json")]

    onnx = invoke_handler_in_fresh_process(image, events)
    fallback = invoke_handler_in_fresh_process(
        sklearn_image, events, extra_env={"MODEL_RUNTIME": "sklearn"}
    )

    assert [r["statusCode"] for r in fallback.responses] == [200, 200], fallback.output
    assert "sklearn" in {m.split(".")[0] for m in fallback.modules}
    assert fallback.foreign_modules == []
    for onnx_response, sklearn_response in zip(onnx.responses, fallback.responses, strict=True):
        expected = decode_body(onnx_response)["probability"]
        assert decode_body(sklearn_response)["probability"] == pytest.approx(expected, abs=1e-4)
