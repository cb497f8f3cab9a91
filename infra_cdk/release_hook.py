"""CodeDeploy's pre-traffic hook: the new Lambda version must answer the golden loans exactly.

Deployed as its own small function (``release_hook.handler``; the Python runtime's boto3 only, no
project code), with ``golden_loans.json`` of the model being released bundled beside it. Before
any traffic moves, CodeDeploy invokes it with the deployment id; it sends every golden loan to the
NEW version (``TARGET_FUNCTION_ARN``, a qualified version ARN) as an API Gateway request and
reports ``Failed`` - which stops the deployment and keeps the alias where it was - on:

* any answer that is not HTTP 200 (or a function error),
* a probability more than the file's tolerance (1e-6) away, or any other field that differs:
  decision, risk band, grade, reason codes,
* a p99 round-trip latency over ``P99_BUDGET_MS`` (one warm-up call first, so a cold start does
  not count; each loan is sent ``ROUNDS`` times).

Whatever happens - even a crash in here - it reports a status, since a hook that never answers
leaves the deployment waiting for an hour.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

ENV_TARGET_FUNCTION_ARN: Final = "TARGET_FUNCTION_ARN"
ENV_P99_BUDGET_MS: Final = "P99_BUDGET_MS"
ENV_ROUNDS: Final = "ROUNDS"
ENV_GOLDEN_FILE: Final = "GOLDEN_FILE"
GOLDEN_FILE_NAME: Final = "golden_loans.json"
DEFAULT_ROUNDS: Final = 3
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
MAX_REPORTED_PROBLEMS: Final = 10

_log = logging.getLogger("release_hook")
_log.setLevel(logging.INFO)


class LambdaClient(Protocol):
    def invoke(self, **kwargs: Any) -> dict[str, Any]: ...


class CodeDeployClient(Protocol):
    def put_lifecycle_event_hook_execution_status(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass
class Verdict:
    """What the check found: problems (empty means pass) and the latency figures."""

    problems: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    loans: int = 0

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 0.99)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the p99 of 36 calls is the largest one); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def api_event(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, the shape the function receives in production."""
    text = None if body is None else json.dumps(body, separators=(",", ":"))
    headers = {"content-type": "application/json", "accept": "application/json"}
    return {
        "version": "1.0",
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": path,
            "stage": "pre-traffic",
            "requestId": "pre-traffic-hook",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "release-hook"},
        },
        "body": text,
        "isBase64Encoded": False,
    }


def _invoke(
    client: LambdaClient, function_arn: str, event: dict[str, Any], clock: Callable[[], float]
) -> tuple[int, Any, float, str | None]:
    """(status, parsed body, round trip ms, function error) for one API request."""
    started = clock()
    response = client.invoke(
        FunctionName=function_arn,
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    payload = response["Payload"].read()
    elapsed_ms = (clock() - started) * 1000.0
    if response.get("FunctionError"):
        return 0, None, elapsed_ms, f"function error {response['FunctionError']}"
    answer = json.loads(payload)
    status = int(answer.get("statusCode", 0))
    try:
        body = json.loads(answer.get("body") or "null")
    except json.JSONDecodeError:
        body = None
    return status, body, elapsed_ms, None


def compare(expected: dict[str, Any], answer: dict[str, Any], tolerance: float) -> list[str]:
    """Every way ``answer`` differs from ``expected`` (probability within ``tolerance``)."""
    problems = []
    for key, want in expected.items():
        if key == "reason_codes":
            got: Any = [
                str(reason.get("code", reason.get("feature")))
                for reason in answer.get("reasons", [])
            ]
        else:
            got = answer.get(key)
        if key == "probability":
            if not isinstance(got, int | float) or abs(float(got) - float(want)) > tolerance:
                problems.append(f"probability {got} != {want} (tolerance {tolerance:g})")
        elif got != want:
            problems.append(f"{key} {got!r} != {want!r}")
    return problems


def check_version(
    client: LambdaClient,
    function_arn: str,
    golden: dict[str, Any],
    *,
    p99_budget_ms: float,
    rounds: int = DEFAULT_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> Verdict:
    """Send the golden loans to ``function_arn`` and collect every difference."""
    verdict = Verdict(loans=len(golden["loans"]))
    tolerance = float(golden.get("tolerance", 1e-6))
    if not golden["loans"]:
        verdict.problems.append("the golden file holds no loans")
        return verdict
    status, _body, _ms, error = _invoke(
        client, function_arn, api_event("GET", "/health", None), clock
    )
    if error or status != 200:
        verdict.problems.append(f"GET /health: {error or f'HTTP {status}'}")
        return verdict
    for _round in range(rounds):
        for index, case in enumerate(golden["loans"]):
            event = api_event("POST", "/predict", case["loan"])
            status, body, elapsed_ms, error = _invoke(client, function_arn, event, clock)
            verdict.latencies_ms.append(elapsed_ms)
            where = f"golden loan {index + 1}"
            if error or status != 200:
                verdict.problems.append(f"{where}: {error or f'HTTP {status}'}")
                continue
            answer = body if isinstance(body, dict) else {}
            differences = compare(case["expected"], answer, tolerance)
            verdict.problems.extend(f"{where}: {difference}" for difference in differences)
    if verdict.p99_ms > p99_budget_ms:
        verdict.problems.append(
            f"p99 round trip {verdict.p99_ms:.1f} ms over the budget of {p99_budget_ms:g} ms"
        )
    return verdict


def report(codedeploy: CodeDeployClient, event: dict[str, Any], verdict: Verdict | None) -> str:
    status = SUCCEEDED if verdict is not None and verdict.passed else FAILED
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return status


def run(
    event: dict[str, Any],
    *,
    lambda_client: LambdaClient,
    codedeploy: CodeDeployClient,
    environ: dict[str, str] | os._Environ[str] = os.environ,
    golden_path: Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """The hook's work with its clients injected (the handler passes boto3's)."""
    verdict: Verdict | None = None
    try:
        path = golden_path or Path(
            environ.get(ENV_GOLDEN_FILE) or Path(__file__).with_name(GOLDEN_FILE_NAME)
        )
        golden = json.loads(path.read_text(encoding="utf-8"))
        verdict = check_version(
            lambda_client,
            environ[ENV_TARGET_FUNCTION_ARN],
            golden,
            p99_budget_ms=float(environ[ENV_P99_BUDGET_MS]),
            rounds=int(environ.get(ENV_ROUNDS) or DEFAULT_ROUNDS),
            clock=clock,
        )
        for problem in verdict.problems[:MAX_REPORTED_PROBLEMS]:
            _log.error("pre-traffic check: %s", problem)
    except Exception as exc:  # report Failed whatever went wrong, then let the log show it
        _log.exception("pre-traffic check could not run: %s", type(exc).__name__)
        verdict = None
    status = report(codedeploy, event, verdict)
    summary = {
        "status": status,
        "loans": verdict.loans if verdict else 0,
        "problems": len(verdict.problems) if verdict else None,
        "p99_ms": round(verdict.p99_ms, 3) if verdict else None,
    }
    _log.info("pre-traffic check %s", json.dumps(summary))
    return summary


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """Lambda entry point (``release_hook.handler``)."""
    import boto3

    return run(event, lambda_client=boto3.client("lambda"), codedeploy=boto3.client("codedeploy"))
