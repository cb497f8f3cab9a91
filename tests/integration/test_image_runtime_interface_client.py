"""The container's bootstrap path: ``python -m awslambdaric main.handler`` against a Runtime API.

In the image, /lambda-entrypoint.sh starts the Runtime Interface Client on the CMD (main.handler),
and the client long-polls the Lambda Runtime API for events. Here the client runs on the emulated
task root (tools/image_emulation.py) against a small Runtime API emulation over real HTTP: the
next-invocation long poll, the response and error endpoints, and the init error endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from loan_service.shadow import CHALLENGER_DIR_NAME
from tests.support.artifacts import copy_as_challenger
from tools.image_emulation import (
    EmulatedImage,
    RuntimeApiEmulator,
    build_image,
    decode_body,
    load_event,
    runtime_interface_client,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, trained_artifacts: Path) -> EmulatedImage:
    return build_image(tmp_path_factory.mktemp("ric-image") / "build", trained_artifacts)


def test_bootstrap_answers_every_front_door_with_200_cold_then_warm(image: EmulatedImage) -> None:
    events = [
        "apigw-http-v2-predict.json",  # the cold start: import, model load, first answer
        "apigw-rest-v1-predict.json",  # then warm invocations on the same process
        "apigw-rest-v1-health.json",
        "alb-predict.json",
        "function-url-predict.json",
    ]
    with RuntimeApiEmulator() as api, runtime_interface_client(image, api) as client:
        outcomes = [api.invoke(load_event(name)) for name in events]
        output = client.output()
        assert client.process.poll() is None, "the client keeps polling for the next event"

    assert [o.kind for o in outcomes] == ["response"] * len(events), output
    assert [o.body["statusCode"] for o in outcomes] == [200] * len(events), output
    first = decode_body(outcomes[0].body)
    assert 0.0 <= first["probability"] <= 1.0
    assert decode_body(outcomes[2].body)["status"] == "ok"
    assert api.init_errors == []
    assert api.unexpected_requests == []


def test_bad_request_comes_back_as_a_422_response_not_as_a_runtime_error(
    image: EmulatedImage,
) -> None:
    with RuntimeApiEmulator() as api, runtime_interface_client(image, api) as client:
        outcome = api.invoke(load_event("bad-request.json"))
        output = client.output()

    assert outcome.kind == "response", f"expected /response, got /{outcome.kind}:\n{output}"
    assert outcome.body["statusCode"] == 422
    assert decode_body(outcome.body)["error"] == "validation_error"


def test_a_handler_that_does_not_exist_is_reported_as_an_init_error(image: EmulatedImage) -> None:
    misconfigured = dataclasses.replace(image, cmd=["main.no_such_handler"])
    with RuntimeApiEmulator() as api, runtime_interface_client(misconfigured, api) as client:
        outcome = api.invoke(load_event("apigw-http-v2-health.json"), timeout=60)
        exit_code = client.process.wait(timeout=30)

    assert outcome.kind == "init_error"
    assert outcome.error_type == "Runtime.HandlerNotFound"
    assert exit_code != 0


def test_an_exception_in_the_function_is_reported_on_the_error_endpoint(
    image: EmulatedImage, tmp_path: Path
) -> None:
    # GIVEN a function module that raises (beside the task root, so the image stays untouched)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "raising_function.py").write_text(
        "def handler(event, context):\n    raise ValueError('broken on purpose')\n",
        encoding="utf-8",
    )
    raising = dataclasses.replace(image, cmd=["raising_function.handler"])
    pythonpath = f"{image.task_root}:{image.runtime_dir}:{extra}"

    with (
        RuntimeApiEmulator() as api,
        runtime_interface_client(raising, api, {"PYTHONPATH": pythonpath}) as client,
    ):
        outcome = api.invoke(load_event("apigw-http-v2-health.json"))
        alive = client.process.poll() is None

    assert outcome.kind == "error"
    assert outcome.body["errorType"] == "ValueError"
    assert outcome.body["errorMessage"] == "broken on purpose"
    assert alive, "a function error does not end the runtime process"


def test_sigterm_at_reclaim_drains_the_prediction_log_and_exits_0(image: EmulatedImage) -> None:
    """The service registers an internal extension at init, so Lambda sends the runtime SIGTERM
    before it reclaims the sandbox; the handler drains the prediction log and exits 0."""
    with RuntimeApiEmulator() as api, runtime_interface_client(image, api) as client:
        outcome = api.invoke(load_event("apigw-http-v2-predict.json"))
        assert outcome.kind == "response", client.output()
        assert api.extensions == ["loan-default-prediction-log"]
        client.process.send_signal(signal.SIGTERM)
        status = client.process.wait(timeout=10)
        output = client.output()

    assert status == 0, output
    assert "prediction log drained" in output, output
    assert api.unexpected_requests == []


def test_shadowing_in_the_image_logs_a_pair_from_the_worker_process(
    image: EmulatedImage, tmp_path: Path
) -> None:
    """The challenger's worker is started by the runtime's own interpreter (same isolation
    flags, the task root's packages) and writes its pair to the function's log stream."""
    folder = tmp_path / "artifacts"
    shutil.copytree(image.task_root / "artifacts", folder)
    copy_as_challenger(folder, folder / CHALLENGER_DIR_NAME, "20991231.000000-challenger")
    settings = {"ARTIFACT_DIR": str(folder), "SHADOW_SAMPLE_RATE": "1"}
    with RuntimeApiEmulator() as api, runtime_interface_client(image, api, settings) as client:
        outcome = api.invoke(load_event("apigw-http-v2-predict.json"))
        assert outcome.kind == "response", client.output()
        deadline = time.monotonic() + 60
        while '"message":"shadow"' not in client.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        output = client.output()

    assert outcome.body["statusCode"] == 200
    pairs = [
        json.loads(line)["pair"] for line in output.splitlines() if '"message":"shadow"' in line
    ]
    assert len(pairs) == 1, output
    champion, challenger = pairs[0]["champion"], pairs[0]["challenger"]
    assert challenger["model_version"] == "20991231.000000-challenger"
    assert challenger["answers"] == champion["answers"]
    assert champion["answers"][0]["probability"] == decode_body(outcome.body)["probability"]
