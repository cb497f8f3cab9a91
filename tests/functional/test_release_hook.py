"""The pre-traffic hook against the real service: the golden loans training wrote, the Lambda
handler the image runs (in process, behind a fake Lambda client), CodeDeploy through botocore's
Stubber (the real client, its request validated against the service model, no network).
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra_cdk import release_hook
from loan_service.lambda_adapter import LambdaHandler
from tests.support.lambda_context import FakeLambdaContext
from tests.support.serving_fixtures import build_test_handler
from training.golden import GOLDEN_FILE

VERSION_ARN = "arn:aws:lambda:eu-west-1:111122223333:function:loan-default-predict:7"
HOOK_EVENT = {
    "DeploymentId": "d-ABCDEF123",
    "LifecycleEventHookExecutionId": "eyJlbmNyeXB0ZWREYXRhIjoiLi4uIn0=",
}
ENVIRON = {
    release_hook.ENV_TARGET_FUNCTION_ARN: VERSION_ARN,
    release_hook.ENV_P99_BUDGET_MS: "1000",
    release_hook.ENV_ROUNDS: "2",
}


class _Payload:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


class FakeLambdaClient:
    """``lambda.invoke`` answered by an in-process handler (the service's, or a broken one)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
        self.handler = handler
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        event = json.loads(kwargs["Payload"])
        answer = self.handler(event, FakeLambdaContext())
        return {"StatusCode": 200, "Payload": _Payload(json.dumps(answer).encode())}


class FakeClock:
    """Each invoke takes ``step_ms`` (the clock moves on at every read)."""

    def __init__(self, step_ms: float) -> None:
        self.now = 0.0
        self.step = step_ms / 1000.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def service_handler(trained_artifacts: Path) -> LambdaHandler:
    handler, _service = build_test_handler(
        trained_artifacts, on_lambda=True, log_stream=io.StringIO()
    )
    return handler


@pytest.fixture(scope="module")
def golden(trained_artifacts: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((trained_artifacts / GOLDEN_FILE).read_text())
    return data


@pytest.fixture
def codedeploy() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "codedeploy",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_status(stubber: Stubber, status: str) -> None:
    stubber.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": HOOK_EVENT["LifecycleEventHookExecutionId"]},
        {
            "deploymentId": HOOK_EVENT["DeploymentId"],
            "lifecycleEventHookExecutionId": HOOK_EVENT["LifecycleEventHookExecutionId"],
            "status": status,
        },
    )


def write_golden(tmp_path: Path, golden: dict[str, Any]) -> Path:
    path = tmp_path / GOLDEN_FILE
    path.write_text(json.dumps(golden))
    return path


def test_the_service_answers_its_own_golden_loans_and_the_hook_reports_succeeded(
    service_handler: LambdaHandler,
    golden: dict[str, Any],
    trained_artifacts: Path,
    codedeploy: tuple[Any, Stubber],
) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.SUCCEEDED)
    lambda_client = FakeLambdaClient(service_handler)

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=lambda_client,
        codedeploy=client,
        environ=ENVIRON,
        golden_path=trained_artifacts / GOLDEN_FILE,
        clock=FakeClock(5.0),
    )

    assert summary == {
        "status": "Succeeded",
        "loans": len(golden["loans"]),
        "problems": 0,
        "p99_ms": 5.0,
    }
    # one health call, then every loan twice, all to the new version only
    assert len(lambda_client.calls) == 1 + 2 * len(golden["loans"])
    assert {call["FunctionName"] for call in lambda_client.calls} == {VERSION_ARN}


def test_a_probability_off_by_more_than_the_tolerance_fails_the_deployment(
    service_handler: LambdaHandler,
    golden: dict[str, Any],
    tmp_path: Path,
    codedeploy: tuple[Any, Stubber],
) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.FAILED)
    moved = copy.deepcopy(golden)
    moved["loans"][1]["expected"]["probability"] += 2e-6

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=FakeLambdaClient(service_handler),
        codedeploy=client,
        environ=ENVIRON,
        golden_path=write_golden(tmp_path, moved),
        clock=FakeClock(5.0),
    )

    assert summary["status"] == "Failed"
    assert summary["problems"] == 2  # the same loan in both rounds


def test_a_difference_within_the_tolerance_passes(
    service_handler: LambdaHandler,
    golden: dict[str, Any],
    tmp_path: Path,
    codedeploy: tuple[Any, Stubber],
) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.SUCCEEDED)
    nudged = copy.deepcopy(golden)
    nudged["loans"][1]["expected"]["probability"] += 5e-7

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=FakeLambdaClient(service_handler),
        codedeploy=client,
        environ=ENVIRON,
        golden_path=write_golden(tmp_path, nudged),
        clock=FakeClock(5.0),
    )

    assert summary["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("field", "value"),
    [("prediction", 1), ("risk_band", "bogus"), ("reason_codes", ["fico_score"])],
)
def test_any_other_field_that_differs_fails(  # noqa: PLR0917 (fixtures + parameters)
    service_handler: LambdaHandler,
    golden: dict[str, Any],
    tmp_path: Path,
    codedeploy: tuple[Any, Stubber],
    field: str,
    value: Any,
) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.FAILED)
    changed = copy.deepcopy(golden)
    case = next(c for c in changed["loans"] if c["expected"][field] != value)
    case["expected"][field] = value

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=FakeLambdaClient(service_handler),
        codedeploy=client,
        environ={**ENVIRON, release_hook.ENV_ROUNDS: "1"},
        golden_path=write_golden(tmp_path, changed),
        clock=FakeClock(5.0),
    )

    assert summary["status"] == "Failed"
    assert summary["problems"] == 1


def test_a_non_200_answer_fails(
    service_handler: LambdaHandler,
    trained_artifacts: Path,
    codedeploy: tuple[Any, Stubber],
) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.FAILED)

    def rejects_predictions(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["httpMethod"] == "POST":
            return {"statusCode": 503, "body": '{"error": "unavailable"}'}
        return service_handler(event, context)

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=FakeLambdaClient(rejects_predictions),
        codedeploy=client,
        environ=ENVIRON,
        golden_path=trained_artifacts / GOLDEN_FILE,
        clock=FakeClock(5.0),
    )

    assert summary["status"] == "Failed"
    assert summary["problems"] == 2 * summary["loans"]


def test_a_function_error_fails(trained_artifacts: Path, codedeploy: tuple[Any, Stubber]) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.FAILED)

    class Crashing(FakeLambdaClient):
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            payload = b'{"errorMessage": "boom", "errorType": "RuntimeError"}'
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _Payload(payload)}

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=Crashing(lambda e, c: {}),
        codedeploy=client,
        environ=ENVIRON,
        golden_path=trained_artifacts / GOLDEN_FILE,
    )

    assert summary["status"] == "Failed"


def test_a_p99_over_the_budget_fails_even_with_right_answers(
    service_handler: LambdaHandler, trained_artifacts: Path, codedeploy: tuple[Any, Stubber]
) -> None:
    client, stubber = codedeploy
    expect_status(stubber, release_hook.FAILED)

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=FakeLambdaClient(service_handler),
        codedeploy=client,
        environ={**ENVIRON, release_hook.ENV_P99_BUDGET_MS: "40"},
        golden_path=trained_artifacts / GOLDEN_FILE,
        clock=FakeClock(50.0),
    )

    assert summary == {"status": "Failed", "loans": summary["loans"], "problems": 1, "p99_ms": 50.0}


def test_a_missing_golden_file_still_reports_failed(
    tmp_path: Path, codedeploy: tuple[Any, Stubber]
) -> None:
    """A hook that never answers would leave the deployment waiting for an hour."""
    client, stubber = codedeploy
    expect_status(stubber, release_hook.FAILED)

    summary = release_hook.run(
        HOOK_EVENT,
        lambda_client=FakeLambdaClient(lambda e, c: {}),
        codedeploy=client,
        environ=ENVIRON,
        golden_path=tmp_path / "absent.json",
    )

    assert summary["status"] == "Failed"


def test_percentile_is_nearest_rank() -> None:
    assert release_hook.percentile([], 0.99) == 0.0
    assert release_hook.percentile([float(v) for v in range(1, 101)], 0.99) == 99.0
    assert release_hook.percentile([1.0, 2.0, 3.0], 0.99) == 3.0


def test_the_service_publishes_what_the_canary_alarms_read(
    service_handler: LambdaHandler,
    golden: dict[str, Any],
    trained_artifacts: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The behaviour alarms (infra_cdk/release.py) read these metric names and dimensions."""
    from infra_cdk import release

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    manifest = json.loads((trained_artifacts / "manifest.json").read_text())
    event = release_hook.api_event(
        "POST", "/predict/batch", {"loans": [c["loan"] for c in golden["loans"]]}
    )
    capsys.readouterr()
    answer = service_handler(event, FakeLambdaContext())
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]

    predictions = json.loads(answer["body"])["predictions"]
    (document,) = [d for d in documents if release.PROBABILITY_SUM_METRIC in d]
    per_model = document["_aws"]["CloudWatchMetrics"][-1]
    assert per_model["Namespace"] == "LoanDefault"
    assert per_model["Dimensions"] == [["service", release.MODEL_VERSION_DIMENSION]]
    assert {m["Name"] for m in per_model["Metrics"]} == {
        release.PREDICTIONS_METRIC,
        release.DEFAULTS_METRIC,
        release.PROBABILITY_SUM_METRIC,
    }
    assert document[release.MODEL_VERSION_DIMENSION] == manifest["model_version"]
    assert document[release.PREDICTIONS_METRIC] == [float(len(predictions))]
    assert document[release.DEFAULTS_METRIC] == [float(sum(p["prediction"] for p in predictions))]
    assert document[release.PROBABILITY_SUM_METRIC][0] == pytest.approx(
        sum(p["probability"] for p in predictions)
    )
