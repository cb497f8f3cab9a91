"""Shadow challenger: a second model scores a sample of live requests, never touching an answer.

The image may carry a second artifact folder, ``artifacts/challenger/``, verified like the first
(every sha256 before anything is read). With ``SHADOW_SAMPLE_RATE`` > 0, that share of requests
is handed - after the champion's answers are computed and recorded - to one daemon thread through
a bounded queue (``put_nowait``: a full queue drops and counts, the request never waits). The
thread scores the same raw rows with the challenger and writes ONE JSON log line per request
(logger ``loan_service.shadow``, message ``shadow``) holding both models' decisions under the
request's id: what ``loan-default compare`` reads back as logged pairs.

The answers the client gets are the champion's, built before the hand-off and never mutated by
the thread (it only reads them): with shadowing at 100 % they are byte-identical to shadowing off
(a test compares the bytes).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from loan_service.scoring import LoanAssessor, PredictionItem

CHALLENGER_DIR_NAME: Final = "challenger"
SHADOW_LOGGER: Final = "loan_service.shadow"
SHADOW_EVENT: Final = "shadow"
# The fields of each side that comparisons need (inputs are kept too, for outcomes and audits).
PAIR_FIELDS: Final = ("probability", "prediction", "risk_band", "grade")

_log = logging.getLogger(SHADOW_LOGGER)
_STOP: Final = object()


@dataclass(slots=True)
class ShadowCounters:
    sampled: int = 0
    scored: int = 0
    dropped: int = 0
    failed: int = 0


def challenger_folder(artifact_dir: Path) -> Path:
    return artifact_dir / CHALLENGER_DIR_NAME


def side(items: Sequence[PredictionItem]) -> list[dict[str, Any]]:
    return [{key: item.get(key) for key in PAIR_FIELDS} for item in items]


def pair_record(
    *,
    request_id: str,
    endpoint: str,
    raw: np.ndarray,
    features: Sequence[str],
    champion_version: str,
    champion: Sequence[PredictionItem],
    challenger_version: str,
    challenger: Sequence[PredictionItem],
) -> dict[str, Any]:
    """One logged pair: the request's loans and both models' decisions on each."""
    return {
        "event": SHADOW_EVENT,
        "request_id": request_id,
        "endpoint": endpoint,
        "loans": [dict(zip(features, row, strict=True)) for row in raw.tolist()],
        "champion": {"model_version": champion_version, "answers": side(champion)},
        "challenger": {"model_version": challenger_version, "answers": side(challenger)},
    }


class ShadowScorer:
    """The sampling on the request path and the challenger's thread behind it."""

    def __init__(
        self,
        challenger: LoanAssessor,
        champion_version: str,
        features: Sequence[str],
        sample_rate: float,
        *,
        queue_size: int = 1000,
        seed: int | None = None,
    ) -> None:
        self.challenger = challenger
        self.champion_version = champion_version
        self.features = tuple(features)
        self.sample_rate = sample_rate
        self.counters = ShadowCounters()
        self._random = random.Random(seed).random
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="shadow-challenger", daemon=True)
        self._thread.start()

    def offer(
        self, request_id: str, endpoint: str, raw: np.ndarray, answers: list[PredictionItem]
    ) -> None:
        """Request path: one random draw and, for the sampled share, one ``put_nowait``."""
        if self._random() >= self.sample_rate:
            return
        self.counters.sampled += 1
        try:
            self._queue.put_nowait((request_id, endpoint, raw, answers))
        except queue.Full:
            self.counters.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._score(*item)
            finally:
                self._queue.task_done()

    def _score(
        self, request_id: str, endpoint: str, raw: np.ndarray, answers: list[PredictionItem]
    ) -> None:
        try:
            challenged = self.challenger.assess_matrix(raw, request_id)
            record = pair_record(
                request_id=request_id,
                endpoint=endpoint,
                raw=raw,
                features=self.features,
                champion_version=self.champion_version,
                champion=answers,
                challenger_version=self.challenger.model_version,
                challenger=challenged,
            )
            _log.info(SHADOW_EVENT, extra={"pair": json.loads(json.dumps(record))})
            self.counters.scored += 1
        except Exception as exc:  # the challenger never takes the service down
            self.counters.failed += 1
            _log.warning("shadow scoring failed: %s", type(exc).__name__)

    def flush(self) -> None:
        """Wait until every queued request was scored (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
