"""The benchmark's HTTP path end to end, briefly: both servers as bench.run starts them, under wrk.

Two seconds of the benchmark's own load (the Lua body rotation, 8 keep-alive connections) against
the service and against the original design: every request answered 2xx, figures read back.
No figure is asserted beyond sanity: timing belongs to ``make bench`` on a quiet machine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.reference_model import train_reference_model
from bench.wrk import LoadResult, run_wrk, write_lua_script
from tests.support.loans import loan_rows
from tests.support.paths import PROJECT_CSV
from tests.support.servers import running_reference, running_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predict_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: `make bench-deps` installs it (make test runs it first)")
    bodies = [json.dumps(loan) for loan in loan_rows(PROJECT_CSV, 16)]
    return write_lua_script(tmp_path_factory.mktemp("wrk") / "predict.lua", "/predict", bodies)


def assert_clean_run(result: LoadResult) -> None:
    assert result.errors == 0, result.text
    assert result.requests > 0
    assert 0 < result.p50_us <= result.p99_us <= result.max_us


def test_the_service_under_uvicorn_answers_every_wrk_request(
    trained_artifacts: Path, predict_script: Path, tmp_path: Path
) -> None:
    with running_service(trained_artifacts, tmp_path / "uvicorn.log", workers=2) as server:
        assert_clean_run(run_wrk(server.port, predict_script, duration_s=2))


def test_the_original_design_under_gunicorn_answers_every_wrk_request(
    predict_script: Path, tmp_path: Path
) -> None:
    reference = train_reference_model(PROJECT_CSV, tmp_path / "reference")
    with running_reference(reference.directory, tmp_path / "gunicorn.log") as server:
        assert_clean_run(run_wrk(server.port, predict_script, duration_s=2))
