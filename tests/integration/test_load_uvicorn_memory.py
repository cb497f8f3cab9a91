"""A bounded load run against the real server: zero errors, and resident memory that stays flat.

The service runs as deployed (uvicorn, httptools + uvloop, 2 workers) on a model trained by
``python -m training``. Eight keep-alive connections send a mix of single predictions, 20-loan
batches and invalid bodies (which must get their 422) for about 20 s. Resident memory (VmRSS summed
over the supervisor, both workers and multiprocessing's resource tracker) is read after a warm-up
and again at the end; it may not grow by 10 % or more in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.support.load_client import KeepAliveLoad, prediction_mix
from tests.support.loans import loan_rows
from tests.support.paths import PROJECT_CSV
from tests.support.servers import Server, resident_bytes, running_service

WARMUP_SECONDS: Final = 4.0
MEASURED_SECONDS: Final = 16.0
MAX_RSS_GROWTH: Final = 0.10

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(trained_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("load") / "uvicorn.log"
    with running_service(trained_artifacts, log, workers=2) as running:
        yield running


def test_twenty_seconds_of_keep_alive_load_answers_every_request_and_memory_stays_flat(
    server: Server,
) -> None:
    # GIVEN two workers serving, warmed up by the same load
    workers = [pid for pid in server.process_tree() if "spawn_main" in _command_line(pid)]
    assert len(workers) == 2, f"expected 2 uvicorn workers, found {workers}"
    load = KeepAliveLoad(server.port, prediction_mix(loan_rows(PROJECT_CSV, 20)), threads=8)
    load.start()
    time.sleep(WARMUP_SECONDS)
    rss_after_warmup = {pid: _rss(pid) for pid in server.process_tree()}
    answered_in_warmup = len(load.snapshot())

    # WHEN the load goes on for the rest of the run
    time.sleep(MEASURED_SECONDS)
    rss_at_end = {pid: _rss(pid) for pid in server.process_tree()}
    outcomes = load.stop()

    # THEN nothing failed, the server kept answering, and resident memory did not grow
    failures = [outcome for outcome in outcomes if not outcome.ok]
    assert failures == [], f"{len(failures)} of {len(outcomes)} failed, e.g. {failures[:3]}"
    measured = len(outcomes) - answered_in_warmup
    assert measured >= 1000, f"only {measured} requests answered in {MEASURED_SECONDS:.0f} s"
    assert {outcome.path for outcome in outcomes} == {"/predict", "/predict/batch"}
    assert set(rss_at_end) == set(rss_after_warmup), "a worker was replaced during the run"
    growth = sum(rss_at_end.values()) / sum(rss_after_warmup.values()) - 1.0
    assert growth < MAX_RSS_GROWTH, (
        f"resident memory grew {growth:.1%} over {measured} requests: "
        f"{rss_after_warmup} -> {rss_at_end} (bytes per pid)"
    )
    assert server.process.poll() is None
    assert "Traceback" not in server.log_text()


def _command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _rss(pid: int) -> int:
    value = resident_bytes(pid)
    assert value > 0, f"process {pid} is gone"
    return value
