"""``loan-default compare`` on the real service's shadow log with outcomes, into a real MLflow.

The service runs as a process (uvicorn, ``SHADOW_SAMPLE_RATE=1``) with a challenger that declines
from a lower threshold; a lender's system sends its own loan id as ``X-Request-ID`` and later
reports outcomes by that id. The process's own output (uvicorn's lines and the service's, one JSON
line per shadowed request) is the compare input, as exported from CloudWatch Logs.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loan_default.cli import main as cli
from loan_service.shadow import CHALLENGER_DIR_NAME
from tests.support.artifacts import copy_as_challenger
from tests.support.servers import free_port, running_mlflow_server
from tests.support.serving_fixtures import start_uvicorn, stop_process, wait_for_http

CHALLENGER_THRESHOLD = 0.3
BATCH_ID = "batch-0001"


def loans(count: int) -> list[dict[str, float | int]]:
    """A spread from safe to risky applicants (the default book's features)."""
    return [
        {
            "credit_lines_outstanding": step % 6,
            "loan_amt_outstanding": round(1500 + 650.25 * step, 2),
            "total_debt_outstanding": round(2000 + 3900.5 * (step % 7), 2),
            "income": round(95000 - 5800 * (step % 11), 2),
            "years_employed": 10 - step % 9,
            "fico_score": 780 - 9 * step,
        }
        for step in range(count)
    ]


def post(url: str, body: Any, request_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-request-id": request_id},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


@pytest.fixture(scope="module")
def shadow_log(
    trained_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    """(the service's log with its shadow lines, each request id's champion answers)."""
    folder = tmp_path_factory.mktemp("compare-shadow") / "artifacts"
    shutil.copytree(trained_artifacts, folder, ignore=shutil.ignore_patterns("challenger"))
    challenger = copy_as_challenger(
        trained_artifacts, folder / CHALLENGER_DIR_NAME, "20991231.000000-challenger"
    )
    manifest = json.loads((challenger / "manifest.json").read_text())
    manifest["threshold"] = CHALLENGER_THRESHOLD
    (challenger / "manifest.json").write_text(json.dumps(manifest))

    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    process = start_uvicorn(folder, port, env={"SHADOW_SAMPLE_RATE": "1", "LOG_LEVEL": "INFO"})
    answered: dict[str, list[dict[str, Any]]] = {}
    try:
        wait_for_http(base + "health", process)
        applicants = loans(40)
        for index, loan in enumerate(applicants[:36]):
            request_id = f"loan-{index:04d}"
            answered[request_id] = [post(base + "predict", loan, request_id)]
        batch = post(base + "predict/batch", {"loans": applicants[36:]}, BATCH_ID)
        answered[BATCH_ID] = batch["predictions"]
    finally:
        _, output = stop_process(process)  # a graceful stop drains the challenger's queue
    log = folder.parent / "service.log"
    log.write_text(output)
    return log, answered


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-compare")) as url:
        yield url


def write_outcomes(path: Path, answered: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Outcomes by request id and position: every third loan still open (no outcome yet), and
    two loans that were never scored by this service."""
    rows = []
    for number, (request_id, answers) in enumerate(answered.items()):
        for position, _ in enumerate(answers, start=1):
            if number % 3 == 2:
                continue
            rows.append({"request_id": request_id, "loan": position, "default": number % 2})
    rows += [
        {"request_id": "elsewhere-1", "loan": 1, "default": 1},
        {"request_id": "elsewhere-2", "loan": 1, "default": 0},
    ]
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def logged_pairs(log: Path) -> list[dict[str, Any]]:
    """The ``pair`` of every JSON log line whose message is ``shadow``."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [record["pair"] for record in records if record.get("message") == "shadow"]


def test_logged_pairs_with_outcomes_give_each_swap_sets_default_rate_in_one_mlflow_run(
    shadow_log: tuple[Path, dict[str, list[dict[str, Any]]]],
    mlflow_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the service's own log: one pair per request, under the id the client sent, holding
    # the answers the client got
    log, answered = shadow_log
    pairs = logged_pairs(log)
    assert sorted(pair["request_id"] for pair in pairs) == sorted(answered)
    for pair in pairs:
        got = [
            {key: answer[key] for key in ("probability", "prediction", "grade")}
            for answer in answered[pair["request_id"]]
        ]
        logged = [
            {key: item[key] for key in ("probability", "prediction", "grade")}
            for item in pair["champion"]["answers"]
        ]
        assert logged == got
    outcomes = write_outcomes(tmp_path / "outcomes.csv", answered)

    # WHEN compared with the outcomes, logging to a real tracking server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    out = tmp_path / "report"
    status = cli(
        ["compare", str(log), "--outcomes", str(tmp_path / "outcomes.csv"), "--out", str(out)]
    )

    # THEN each swap set's observed default rate is that of its loans' joined outcomes
    assert status == 0
    report = json.loads((out / "compare.json").read_text())
    loans_frame = pd.DataFrame(
        [
            {
                "request_id": pair["request_id"],
                "loan": position,
                "a": champion["prediction"],
                "b": challenger["prediction"],
            }
            for pair in pairs
            for position, (champion, challenger) in enumerate(
                zip(pair["champion"]["answers"], pair["challenger"]["answers"], strict=True),
                start=1,
            )
        ]
    )
    joined = loans_frame.merge(outcomes, on=["request_id", "loan"], how="left")
    swap_out = joined[(joined["a"] == 0) & (joined["b"] == 1)]
    assert len(swap_out) > 0, "the lower threshold must decline some loans the champion approves"
    assert report["swap_out"] == len(swap_out)
    assert report["swap_in"] == 0  # same model, lower threshold: it never approves more
    expected = swap_out["default"].dropna()
    assert report["outcomes"]["swap_out"] == {
        "loans": len(swap_out),
        "with_outcome": len(expected),
        "defaults": int(expected.sum()),
        "observed_default_rate": float(expected.mean()) if len(expected) else None,
    }
    assert report["outcomes"]["swap_in"]["observed_default_rate"] is None
    matched = int(joined["default"].notna().sum())
    assert report["outcomes_join"] == {
        "on": "request_id, loan",
        "outcomes": len(outcomes),
        "matched": matched,
        "loans_without_outcome": len(joined) - matched,
        "outcomes_without_pair": 2,
    }

    # AND the run on the server holds the rates and both files
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.metrics["swap_out.with_outcome"] == len(expected)
    if len(expected):
        assert run.data.metrics["swap_out.observed_default_rate"] == pytest.approx(expected.mean())
    assert "swap_in.observed_default_rate" not in run.data.metrics
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"compare.json", "compare.html"}


def test_outcomes_that_match_no_logged_pair_are_refused_and_nothing_is_logged(
    shadow_log: tuple[Path, dict[str, list[dict[str, Any]]]],
    mlflow_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN outcomes keyed by customer numbers the service never saw as request ids
    log, _ = shadow_log
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"request_id": ["C1001", "C1002"], "default": [0, 1]}).to_csv(
        outcomes, index=False
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)

    def runs() -> int:
        experiment = client.get_experiment_by_name("loan-default-compare")
        return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))

    before = runs()

    # WHEN compared
    status = cli(["compare", str(log), "--outcomes", str(outcomes), "--out", str(tmp_path / "o")])

    # THEN one line names the problem, exit 2, no report and no run
    assert status == 2
    error = capsys.readouterr().err
    assert "none of its 2 outcomes matches a logged pair" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "o").exists()
    assert runs() == before
