"""Shadow challenger: a second model scores a sample of live requests, never touching an answer.

The image may carry a second artifact folder, ``artifacts/challenger/``, verified like the first
(every sha256 before anything is read). With ``SHADOW_SAMPLE_RATE`` > 0, that share of requests
is handed - after the champion's answers are computed and recorded - to one daemon thread through
a bounded queue (``put_nowait``: a full queue drops and counts, the request never waits). The
thread scores the same raw rows with the challenger and writes ONE JSON log line per request
(message ``shadow``, the pair under ``pair``) to the service's log stream, holding both models'
decisions under the request's id: what ``loan-default compare`` reads back as logged pairs.

The thread shares the interpreter (and its lock) with the request path, so it is built to stay
out of its way: it collects what queued in ``BATCH_WINDOW_SECONDS`` (at most ``MAX_BATCH``
requests) and scores it in ONE challenger call (a model call costs about the same for 1 row as
for 64), then writes the lines at the pace requests come: one line per sampled request (each
``offer`` grants a turn), and freely once no request came for ``IDLE_SECONDS``. So its work is
spread over the requests in slices of one line (~25 us) instead of bursts of a whole batch,
which a back-to-back request would otherwise wait behind. The line is one
``to_json``, not a ``logging`` record: through the Powertools
formatter and the credential redaction a pair cost four times its share of the challenger's
model call, and a pair holds nothing to redact (validated loans, model versions, a request id
that passed ``valid_request_id``). Scored one request at a time through ``logging``, the
challenger doubled a back-to-back request's p99.

The answers the client gets are the champion's, built before the hand-off and never mutated by
the thread (it only reads them): with shadowing at 100 % they are byte-identical to shadowing off
(a test compares the bytes).
"""

from __future__ import annotations

import logging
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydantic_core import to_json

from loan_service.scoring import RISK_BANDS, LoanAssessor, PredictionItem, ScoredBlock

CHALLENGER_DIR_NAME: Final = "challenger"
SHADOW_LOGGER: Final = "loan_service.shadow"
SHADOW_EVENT: Final = "shadow"
# The fields of each side that comparisons need (inputs are kept too, for outcomes and audits).
PAIR_FIELDS: Final = ("probability", "prediction", "risk_band", "grade")

_log = logging.getLogger(SHADOW_LOGGER)
_STOP: Final = object()
BATCH_WINDOW_SECONDS: Final = 0.05
MAX_BATCH: Final = 256
MAX_CREDITS: Final = 2  # turns a burst of requests may bank for the thread
IDLE_SECONDS: Final = 0.05


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


def scored_side(scored: ScoredBlock) -> list[dict[str, Any]]:
    """``side`` straight from the core's arrays (the API's rounding, no answer dicts built)."""
    grades = [None] * len(scored) if scored.grade is None else scored.grade.tolist()
    return [
        {"probability": round(p, 6), "prediction": d, "risk_band": RISK_BANDS[b], "grade": g}
        for p, d, b, g in zip(
            scored.probability.tolist(),
            scored.prediction.tolist(),
            scored.band.tolist(),
            grades,
            strict=True,
        )
    ]


def pair_record(
    *,
    request_id: str,
    endpoint: str,
    raw: np.ndarray,
    features: Sequence[str],
    champion_version: str,
    champion: Sequence[PredictionItem],
    challenger_version: str,
    challenger: list[dict[str, Any]],
) -> dict[str, Any]:
    """One logged pair: the request's loans and both models' decisions on each."""
    return {
        "event": SHADOW_EVENT,
        "request_id": request_id,
        "endpoint": endpoint,
        "loans": [dict(zip(features, row, strict=True)) for row in raw.tolist()],
        "champion": {"model_version": champion_version, "answers": side(champion)},
        "challenger": {"model_version": challenger_version, "answers": challenger},
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
        batch_window: float = BATCH_WINDOW_SECONDS,
        service_name: str = "loan-default",
        write: Callable[[str], object] | None = None,
    ) -> None:
        self.challenger = challenger
        self.champion_version = champion_version
        self.features = tuple(features)
        self.sample_rate = sample_rate
        self.counters = ShadowCounters()
        self._batch_window = batch_window
        self._turns = threading.Condition()
        self._credits = 0
        self._service_name = service_name
        self._write = write  # None: sys.stdout at the time of writing (Lambda's log stream)
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
        with self._turns:  # this request's turn: the thread may write one more line
            if self._credits < MAX_CREDITS:
                self._credits += 1
                self._turns.notify()

    def _wait_turn(self) -> bool:
        """A request's turn to write one line; False when none came for ``IDLE_SECONDS`` (the
        service is idle: the rest of the batch is written at once, never waiting for traffic)."""
        with self._turns:
            if not self._credits:
                self._turns.wait(IDLE_SECONDS)
            if not self._credits:
                return False
            self._credits -= 1
            return True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            time.sleep(self._batch_window)  # let the next requests queue up behind this one
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            try:
                self._score(batch)
            finally:
                for _ in range(len(batch) + stop):
                    self._queue.task_done()
            if stop:
                return

    def _score(self, batch: list[tuple[str, str, np.ndarray, list[PredictionItem]]]) -> None:
        try:
            # The pairs need decisions, not reasons: one call of the PDs for the whole batch.
            scored = self.challenger.scorer.score(
                np.concatenate([raw for _, _, raw, _ in batch]), "none"
            )
        except Exception as exc:  # the challenger never takes the service down
            self.counters.failed += len(batch)
            _log.warning("shadow scoring failed: %s", type(exc).__name__)
            return
        sides = scored_side(scored)
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        start = 0
        busy = True
        for request_id, endpoint, raw, answers in batch:
            end = start + raw.shape[0]
            busy = busy and self._wait_turn()
            try:
                record = pair_record(
                    request_id=request_id,
                    endpoint=endpoint,
                    raw=raw,
                    features=self.features,
                    champion_version=self.champion_version,
                    champion=answers,
                    challenger_version=self.challenger.model_version,
                    challenger=sides[start:end],
                )
                self._write_line(record, timestamp)
                self.counters.scored += 1
            except Exception as exc:
                self.counters.failed += 1
                _log.warning("shadow logging failed: %s", type(exc).__name__)
            start = end

    def _write_line(self, pair: dict[str, Any], timestamp: str) -> None:
        line = to_json(
            {
                "level": "INFO",
                "message": SHADOW_EVENT,
                "timestamp": timestamp,
                "service": self._service_name,
                "pair": pair,
            }
        )
        (self._write or sys.stdout.write)(line.decode() + "\n")

    def flush(self) -> None:
        """Wait until every queued request was scored (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
