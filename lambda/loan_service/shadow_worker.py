"""The shadow challenger's worker process: frames in on stdin, one pair line each to stdout.

Started by ``loan_service.shadow.ShadowScorer`` as ``python -m loan_service.shadow_worker SPEC
CHAMPION_VERSION ACK_FD``. It loads the challenger (hashes verified again: it reads the files
itself), then reads the frames that arrive within ``GATHER_SECONDS`` of the first, scores all of
their rows in ONE model call (PDs only: a pair needs decisions, not reasons), and writes the
pairs' lines in one write. A flush frame is answered on
``ACK_FD`` with the counts once everything before it is written; a stop frame, or the end of
stdin (the service has gone), ends it. Ctrl-C is the service's to handle: ignored here.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic_core import from_json, to_json

from loan_service.artifacts import load_artifacts
from loan_service.loading import build_assessor
from loan_service.scoring import LoanScorer
from loan_service.shadow import (
    FLUSH,
    FRAME_HEADER,
    PAIR,
    SHADOW_EVENT,
    SHADOW_LOGGER,
    STOP,
    ChallengerSpec,
    champion_side,
    pair_record,
    scored_side,
)

READ_BYTES = 1 << 20
GATHER_SECONDS = 0.02
_log = logging.getLogger(SHADOW_LOGGER)

Pending = tuple[str, str, np.ndarray, list[list[Any]]]


class Worker:
    def __init__(self, spec: ChallengerSpec, scorer: LoanScorer, champion_version: str) -> None:
        self.spec = spec
        self.scorer = scorer
        self.champion_version = champion_version
        self.scored = 0
        self.failed = 0
        self.lines = 0

    def write_pairs(self, pending: list[Pending]) -> None:
        if not pending:
            return
        try:
            scored = self.scorer.score(np.concatenate([raw for _, _, raw, _ in pending]), "none")
        except Exception as exc:  # a challenger that fails is counted, never fatal
            self.failed += len(pending)
            _log.warning("shadow scoring failed: %s", type(exc).__name__)
            return
        sides = scored_side(scored)
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = []
        start = 0
        for request_id, endpoint, raw, champion in pending:
            end = start + raw.shape[0]
            record = pair_record(
                request_id=request_id,
                endpoint=endpoint,
                raw=raw,
                features=self.spec.features,
                champion_version=self.champion_version,
                champion=champion_side(champion),
                challenger_version=self.spec.model_version,
                challenger=sides[start:end],
            )
            lines.append(
                to_json(
                    {
                        "level": "INFO",
                        "message": SHADOW_EVENT,
                        "timestamp": timestamp,
                        "service": self.spec.service_name,
                        "pair": record,
                    }
                )
            )
            start = end
        write_all(1, b"\n".join(lines) + b"\n")
        self.scored += len(pending)
        self.lines += len(pending)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_gathered(window: float) -> bytes:
    """What has arrived, once something has: after the first bytes, ``window`` seconds more of
    requests are let in, so a busy service's pairs are scored many to a call (one model call
    costs about the same for 1 row as for 100) and the worker takes little CPU from it."""
    first = os.read(0, READ_BYTES)
    if not first or len(first) == READ_BYTES or window <= 0:
        return first
    time.sleep(window)
    os.set_blocking(0, False)
    try:
        return first + os.read(0, READ_BYTES)
    except BlockingIOError:
        return first
    finally:
        os.set_blocking(0, True)


def run(worker: Worker, ack_fd: int, window: float = GATHER_SECONDS) -> None:
    """Frames until a stop frame or the end of stdin; every batch that arrived in one read is
    scored together."""
    buffer = bytearray()
    while True:
        chunk = read_gathered(window)
        if not chunk:
            return
        buffer += chunk
        pending: list[Pending] = []
        offset = 0
        while len(buffer) - offset >= FRAME_HEADER.size:
            kind, meta_length, rows, columns = FRAME_HEADER.unpack_from(buffer, offset)
            end = offset + FRAME_HEADER.size + meta_length + rows * columns * 8
            if len(buffer) < end:
                break
            meta_start = offset + FRAME_HEADER.size
            meta = bytes(buffer[meta_start : meta_start + meta_length])
            if kind == PAIR:
                request_id, endpoint, champion = from_json(meta)
                raw = np.frombuffer(
                    bytes(buffer[meta_start + meta_length : end]), dtype=np.float64
                ).reshape(rows, columns)
                pending.append((request_id, endpoint, raw, champion))
            else:
                worker.write_pairs(pending)
                pending = []
                if kind == STOP:
                    return
                if kind == FLUSH:
                    answer = {"token": int(meta), "scored": worker.scored, "failed": worker.failed}
                    write_all(ack_fd, to_json({**answer, "lines": worker.lines}) + b"\n")
            offset = end
        worker.write_pairs(pending)
        del buffer[:offset]


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    spec = ChallengerSpec.from_argument(argv[0])
    champion_version = argv[1]
    ack_fd = int(argv[2])
    bundle = load_artifacts(spec.folder, spec.features)
    assessor = build_assessor(bundle, spec.model_runtime, spec.recovery_rate)
    run(Worker(spec, assessor.scorer, champion_version), ack_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
