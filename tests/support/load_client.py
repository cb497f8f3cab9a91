"""A small keep-alive HTTP load generator for the load and fault tests (standard library only).

Each thread owns one persistent ``http.client`` connection and sends requests back to back from a
fixed mix, checking every answer: the expected status, and for a 200 a JSON body that the mix's
validator accepts. Every request becomes an ``Outcome`` with its timestamps, so a test can ask what
happened before and after an event such as SIGTERM. The loops are bounded: they stop when told
to, and each request times out.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

REQUEST_TIMEOUT_SECONDS: Final = 15.0
JSON_HEADERS: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the mix and what a correct answer looks like."""

    path: str
    body: bytes
    expected_status: int
    validate: Callable[[Any], bool] = lambda _answer: True


@dataclass(frozen=True)
class Outcome:
    path: str
    started: float
    ended: float
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        return self.ended - self.started


@dataclass
class KeepAliveLoad:
    """``threads`` keep-alive connections to 127.0.0.1:``port`` cycling through ``mix``."""

    port: int
    mix: Sequence[PlannedRequest]
    threads: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> KeepAliveLoad:
        for index in range(self.threads):
            worker = threading.Thread(target=self._loop, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, timeout: float = REQUEST_TIMEOUT_SECONDS + 5) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout)
        assert not any(worker.is_alive() for worker in self._workers), "a load thread hung"
        with self._lock:
            return list(self.outcomes)

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _loop(self, index: int) -> None:
        offset = index % len(self.mix)  # threads start at different points of the mix
        plan = itertools.cycle([*self.mix[offset:], *self.mix[:offset]])
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            request = next(plan)
            if connection is None:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_SECONDS
                )
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                connection.request("POST", request.path, request.body, JSON_HEADERS)
                response = connection.getresponse()
                status = response.status
                raw = response.read()
                if status != request.expected_status:
                    error = f"HTTP {status} (expected {request.expected_status}): {raw[:200]!r}"
                elif not request.validate(json.loads(raw)):
                    error = f"unexpected answer: {raw[:200]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = None
                time.sleep(0.05)  # a refused connection must not turn into a busy loop
            self._record(Outcome(request.path, started, time.monotonic(), status, error))
        if connection is not None:
            connection.close()


def is_prediction(answer: Any) -> bool:
    return isinstance(answer, dict) and 0.0 <= answer.get("probability", -1.0) <= 1.0


def is_batch_of(size: int) -> Callable[[Any], bool]:
    def validate(answer: Any) -> bool:
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        return (
            isinstance(predictions, list)
            and len(predictions) == size
            and all(is_prediction(item) for item in predictions)
        )

    return validate


def is_validation_error(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("error") == "validation_error"


def prediction_mix(loans: Sequence[dict[str, Any]], batch_size: int = 20) -> list[PlannedRequest]:
    """Mostly single predictions, some batches, some invalid bodies (each answered correctly)."""
    singles = [
        PlannedRequest("/predict", json.dumps(loan).encode(), 200, is_prediction) for loan in loans
    ]
    batch = PlannedRequest(
        "/predict/batch",
        json.dumps({"loans": list(loans[:batch_size])}).encode(),
        200,
        is_batch_of(min(batch_size, len(loans))),
    )
    invalid = PlannedRequest(
        "/predict", json.dumps({**loans[0], "fico_score": 1000}).encode(), 422, is_validation_error
    )
    return [*singles[:8], batch, *singles[8:16], invalid]
