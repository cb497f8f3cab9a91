"""Shadow challenger: a second verified artifact folder scores a sample of requests off the
request path; the answers stay the champion's, byte for byte, and each pair is logged once."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loan_service.artifacts import ArtifactError
from loan_service.service import PredictionService
from loan_service.shadow import CHALLENGER_DIR_NAME, SHADOW_EVENT, SHADOW_LOGGER
from tests.support.artifacts import copy_as_challenger
from tests.support.loans import MIDDLING_LOAN, RISKY_LOAN, SAFE_LOAN
from tests.support.serving_fixtures import build_test_app

CHALLENGER_VERSION = "20991231.000000-challenger"
LOANS = (SAFE_LOAN, MIDDLING_LOAN, RISKY_LOAN)


@pytest.fixture(scope="module")
def with_challenger(trained_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained folder with a challenger inside (same model files, its own version)."""
    folder = tmp_path_factory.mktemp("shadow") / "artifacts"
    shutil.copytree(trained_artifacts, folder)
    copy_as_challenger(trained_artifacts, folder / CHALLENGER_DIR_NAME, CHALLENGER_VERSION)
    return folder


def logged_pairs(stream: io.StringIO) -> list[dict[str, Any]]:
    """The pairs in the service's log stream, read the way ``loan-default compare`` reads a log."""
    pairs = []
    for line in stream.getvalue().splitlines():
        record = json.loads(line[line.index("{") :]) if "{" in line else {}
        if record.get("message") == SHADOW_EVENT:
            assert record["pair"]["event"] == SHADOW_EVENT
            pairs.append(record["pair"])
    return pairs


def exchange(client: TestClient, loans: tuple[dict[str, Any], ...]) -> list[bytes]:
    bodies = []
    for index, loan in enumerate(loans):
        response = client.post("/predict", json=loan, headers={"x-request-id": f"req-{index}"})
        assert response.status_code == 200
        bodies.append(response.content)
    batch = client.post(
        "/predict/batch", json={"loans": list(loans)}, headers={"x-request-id": "req-batch"}
    )
    bodies.append(batch.content)
    return bodies


def shadow_of(service: PredictionService) -> Any:
    assert service.shadow is not None
    return service.shadow


def test_every_request_shadowed_gets_the_same_bytes_and_one_logged_pair_each(
    with_challenger: Path,
) -> None:
    plain_app, _plain = build_test_app(with_challenger, log_stream=io.StringIO())
    stream = io.StringIO()
    shadow_app, service = build_test_app(with_challenger, log_stream=stream, shadow_sample_rate=1.0)
    with TestClient(plain_app) as plain, TestClient(shadow_app) as shadowed:
        expected = exchange(plain, LOANS)
        answered = exchange(shadowed, LOANS)
        shadow_of(service).flush()

    assert answered == expected
    logged = logged_pairs(stream)
    assert sorted(pair["request_id"] for pair in logged) == ["req-0", "req-1", "req-2", "req-batch"]
    by_id = {pair["request_id"]: pair for pair in logged}
    batch = by_id["req-batch"]
    champion_answers = json.loads(expected[-1])["predictions"]
    assert batch["champion"]["model_version"] == champion_answers[0]["model_version"]
    assert batch["challenger"]["model_version"] == CHALLENGER_VERSION
    assert [a["probability"] for a in batch["champion"]["answers"]] == [
        a["probability"] for a in champion_answers
    ]
    # same model files: the challenger agrees on every loan
    assert batch["challenger"]["answers"] == batch["champion"]["answers"]
    assert [loan["fico_score"] for loan in batch["loans"]] == [loan["fico_score"] for loan in LOANS]
    assert shadow_of(service).counters.scored == 4


def test_a_sampled_share_is_shadowed(with_challenger: Path) -> None:
    stream = io.StringIO()
    app, service = build_test_app(with_challenger, log_stream=stream, shadow_sample_rate=0.3)
    with TestClient(app) as client:
        for index in range(200):
            client.post("/predict", json=SAFE_LOAN, headers={"x-request-id": f"r{index}"})
        shadow_of(service).flush()

    counters = shadow_of(service).counters
    assert 30 <= counters.sampled <= 90
    assert counters.scored == counters.sampled == len(logged_pairs(stream))


def test_shadowing_off_scores_nothing_but_the_challenger_is_still_verified(
    with_challenger: Path, tmp_path: Path
) -> None:
    _app, service = build_test_app(with_challenger)
    assert service.shadow is None

    broken = tmp_path / "artifacts"
    shutil.copytree(with_challenger, broken)
    (broken / CHALLENGER_DIR_NAME / "stats.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"challenger: stats\.json does not match"):
        build_test_app(broken)


def test_a_sample_rate_without_a_challenger_is_refused(trained_artifacts: Path) -> None:
    refusal = r"SHADOW_SAMPLE_RATE is 0\.5 but there is no challenger"
    with pytest.raises(ArtifactError, match=refusal):
        build_test_app(trained_artifacts, shadow_sample_rate=0.5)


def test_a_stalled_worker_makes_requests_drop_pairs_never_wait(with_challenger: Path) -> None:
    """The worker stopped (SIGSTOP) while requests keep coming: once the pipe is full each
    sampled request is dropped and counted, none blocks; resumed, it writes all it was given."""
    stream = io.StringIO()
    app, service = build_test_app(with_challenger, log_stream=stream, shadow_sample_rate=1.0)
    shadow = shadow_of(service)
    loans = [SAFE_LOAN] * 1000
    with TestClient(app) as client:
        shadow.flush()  # the worker has loaded the challenger
        os.kill(shadow._process.pid, signal.SIGSTOP)
        try:
            for index in range(40):  # ~50 KB per batch frame: well past a 1 MiB pipe
                response = client.post(
                    "/predict/batch", json={"loans": loans}, headers={"x-request-id": f"b{index}"}
                )
                assert response.status_code == 200
        finally:
            os.kill(shadow._process.pid, signal.SIGCONT)
        shadow.flush()

    counters = shadow.counters
    assert counters.sampled == 40
    assert 0 < counters.dropped < 40
    assert counters.scored == counters.sampled - counters.dropped == len(logged_pairs(stream))


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_dead_worker_costs_the_pairs_not_the_service(with_challenger: Path) -> None:
    """Killed, the worker takes no request with it: each sampled request is dropped and
    counted, and the loss is said once."""
    app, service = build_test_app(with_challenger, log_stream=io.StringIO(), shadow_sample_rate=1.0)
    shadow = shadow_of(service)
    collected = _Collected()
    logger = logging.getLogger(SHADOW_LOGGER)
    logger.addHandler(collected)
    try:
        with TestClient(app) as client:
            shadow.flush()
            shadow._process.kill()
            shadow._process.wait()
            for index in range(3):
                response = client.post(
                    "/predict", json=RISKY_LOAN, headers={"x-request-id": f"d{index}"}
                )
                assert response.status_code == 200
            shadow.flush()
    finally:
        logger.removeHandler(collected)

    assert (shadow.counters.sampled, shadow.counters.dropped) == (3, 3)
    assert collected.messages == [
        "shadow scoring stopped: the challenger's worker process is gone (exit status -9)"
    ]
