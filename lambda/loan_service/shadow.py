"""Shadow challenger: a second model scores a sample of live requests, never touching an answer.

The image may carry a second artifact folder, ``artifacts/challenger/``, verified like the first
(every sha256 before anything is read). With ``SHADOW_SAMPLE_RATE`` > 0, that share of requests
is handed - after the champion's answers are computed and recorded - to a worker PROCESS
(``loan_service.shadow_worker``) that loads the challenger itself, scores the same raw rows and
writes ONE JSON log line per request (message ``shadow``, the pair under ``pair``) to the
service's log stream, holding both models' decisions under the request's id: what
``loan-default compare`` reads back as logged pairs.

Why a process: a thread shares the interpreter's lock with the request path. Built as one
(batched model calls, lines written one per request), it still doubled a back-to-back request's
p99 - every slice of its work is a slice a request waits behind. The worker has its own
interpreter (another core where there is one; on a single vCPU the kernel's scheduler shares it
instead of the interpreter lock). What the request path does for a sampled request is one random
draw, one small frame (the answers' four pair fields as JSON, the raw rows as bytes) and one
non-blocking ``os.write`` to a pipe; when the pipe has no room for the frame (the worker is
behind, or gone), the frame is dropped and counted, and the request never waits.

The answers the client gets are the champion's, built before the hand-off and never touched here
(only read): with shadowing at 100 % they are byte-identical to shadowing off (a test compares
the bytes). ``flush`` (tests, benchmarks, shutdown) waits until the worker has written every
line sent before it, and brings back its counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import random
import select
import struct
import subprocess
import sys
import termios
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from pydantic_core import to_json

from loan_service.scoring import RISK_BANDS, PredictionItem, ScoredBlock
from loan_service.settings import ModelRuntime

CHALLENGER_DIR_NAME: Final = "challenger"
SHADOW_LOGGER: Final = "loan_service.shadow"
SHADOW_EVENT: Final = "shadow"
# The fields of each side that comparisons need (inputs are kept too, for outcomes and audits).
PAIR_FIELDS: Final = ("probability", "prediction", "risk_band", "grade")
WORKER_MODULE: Final = "loan_service.shadow_worker"
PIPE_BYTES: Final = 1 << 20  # asked of the kernel (Linux lets any user have 1 MiB pipes)
PIPE_HEADROOM: Final = 2 * 4096  # a write may take a page more than its own bytes
FLUSH_TIMEOUT_SECONDS: Final = 60.0
STOP_TIMEOUT_SECONDS: Final = 5.0

# A frame: kind, length of the JSON part, rows, columns; then the JSON, then rows x columns
# float64 (the request's raw model input, in the champion's feature order).
FRAME_HEADER: Final = struct.Struct("<cIII")
PAIR: Final = b"P"
FLUSH: Final = b"F"
STOP: Final = b"S"

_log = logging.getLogger(SHADOW_LOGGER)
_SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class ShadowCounters:
    sampled: int = 0  # drawn for shadowing
    dropped: int = 0  # not handed over: the pipe had no room, or the worker is gone
    scored: int = 0  # pairs the worker wrote (as of the last ``flush``)
    failed: int = 0  # pairs the worker could not score or write (as of the last ``flush``)


@dataclass(frozen=True, slots=True)
class ChallengerSpec:
    """What the worker needs to load the (already verified) challenger and word its lines."""

    folder: Path
    features: tuple[str, ...]
    model_version: str
    model_runtime: ModelRuntime
    recovery_rate: float
    service_name: str

    def to_argument(self) -> str:
        return json.dumps({**asdict(self), "folder": str(self.folder)})

    @classmethod
    def from_argument(cls, text: str) -> ChallengerSpec:
        fields = json.loads(text)
        return cls(
            **{**fields, "folder": Path(fields["folder"]), "features": tuple(fields["features"])}
        )


def challenger_folder(artifact_dir: Path) -> Path:
    return artifact_dir / CHALLENGER_DIR_NAME


def pair_frame(
    request_id: str, endpoint: str, raw: np.ndarray, answers: Sequence[PredictionItem]
) -> bytes:
    """The request path's whole share of the work: the champion's pair fields and the raw rows."""
    meta = to_json(
        (
            request_id,
            endpoint,
            [[a["probability"], a["prediction"], a["risk_band"], a.get("grade")] for a in answers],
        )
    )
    rows, columns = raw.shape
    body = np.ascontiguousarray(raw, dtype=np.float64).tobytes()
    return FRAME_HEADER.pack(PAIR, len(meta), rows, columns) + meta + body


def control_frame(kind: bytes, meta: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(kind, len(meta), 0, 0) + meta


def champion_side(fields: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(PAIR_FIELDS, values, strict=True)) for values in fields]


def scored_side(scored: ScoredBlock) -> list[dict[str, Any]]:
    """The challenger's side straight from the core's arrays (the API's rounding)."""
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
    champion: list[dict[str, Any]],
    challenger_version: str,
    challenger: list[dict[str, Any]],
) -> dict[str, Any]:
    """One logged pair: the request's loans and both models' decisions on each."""
    return {
        "event": SHADOW_EVENT,
        "request_id": request_id,
        "endpoint": endpoint,
        "loans": [dict(zip(features, row, strict=True)) for row in raw.tolist()],
        "champion": {"model_version": champion_version, "answers": champion},
        "challenger": {"model_version": challenger_version, "answers": challenger},
    }


def _interpreter_flags() -> list[str]:
    """The service's own isolation flags (the image runs ``python -S -s -P``): the worker
    imports exactly what the service imports, from the same places."""
    flags = sys.flags
    wanted = (flags.no_site, "-S"), (flags.no_user_site, "-s"), (flags.safe_path, "-P")
    return [flag for on, flag in wanted if on]


def _queued_bytes(fd: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


class _LineForwarder:
    """Tests and benchmarks that give a text stream: the worker's lines, copied into it."""

    def __init__(self, source: IO[bytes], write: Callable[[str], object]) -> None:
        self.lines = 0
        self._changed = threading.Condition()
        self._source = source
        self._write = write
        self._thread = threading.Thread(target=self._run, name="shadow-lines", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._source:
            self._write(line.decode())
            with self._changed:
                self.lines += 1
                self._changed.notify_all()

    def wait_for(self, lines: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.lines >= lines, timeout)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _stop_worker(fd: int, process: subprocess.Popen[bytes]) -> None:
    """Finalizer: closing the pipe is the worker's signal to finish and exit."""
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_SECONDS)
        return
    process.kill()


class ShadowScorer:
    """The sampling on the request path and the challenger's worker process behind it."""

    def __init__(
        self,
        challenger: ChallengerSpec,
        champion_version: str,
        sample_rate: float,
        *,
        seed: int | None = None,
        write: Callable[[str], object] | None = None,
    ) -> None:
        self.challenger = challenger
        self.champion_version = champion_version
        self.sample_rate = sample_rate
        self.counters = ShadowCounters()
        self._random = random.Random(seed).random
        self._tokens = itertools.count(1)
        self._broken = False
        read_end, self._fd = os.pipe()
        with contextlib.suppress(OSError):  # a smaller pipe only drops sooner
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._room = fcntl.fcntl(self._fd, fcntl.F_GETPIPE_SZ) - PIPE_HEADROOM
        ack_read, ack_write = os.pipe()
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(_SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, *_interpreter_flags(), "-m", WORKER_MODULE]
        command += [challenger.to_argument(), champion_version, str(ack_write)]
        self._process = subprocess.Popen(
            command,
            stdin=read_end,
            stdout=None if write is None else subprocess.PIPE,  # None: the log stream itself
            pass_fds=(ack_write,),
            env=environment,
        )
        os.close(read_end)
        os.close(ack_write)
        os.set_blocking(self._fd, False)
        self._acks = ack_read
        self._ack_buffer = b""
        self._lines = None
        if write is not None:
            assert self._process.stdout is not None
            self._lines = _LineForwarder(self._process.stdout, write)
        self._finalizer = weakref.finalize(self, _stop_worker, self._fd, self._process)

    def offer(
        self, request_id: str, endpoint: str, raw: np.ndarray, answers: list[PredictionItem]
    ) -> None:
        """Request path: one random draw and, for the sampled share, one non-blocking write."""
        if self._random() >= self.sample_rate:
            return
        self.counters.sampled += 1
        if not self._send(pair_frame(request_id, endpoint, raw, answers)):
            self.counters.dropped += 1

    def _send(self, frame: bytes) -> bool:
        """Hand a whole frame over, or nothing. Up to ``PIPE_BUF`` bytes the kernel writes a
        frame whole or not at all; for a larger one (a batch request) the pipe's free room is
        checked first, so the write never stops halfway (half a frame would corrupt the stream)."""
        if self._broken:
            return False
        try:
            if len(frame) > select.PIPE_BUF and _queued_bytes(self._fd) + len(frame) > self._room:
                return False
            written = os.write(self._fd, frame)
        except BlockingIOError:
            return False
        except OSError:
            self._lost("the challenger's worker process is gone")
            return False
        if written < len(frame) and not self._write_all(frame[written:], 1.0):
            self._lost("the challenger's worker stopped reading mid-frame")
        return True

    def _write_all(self, data: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._fd], [], remaining)[1]:
                return False
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                continue
            except OSError:
                return False
        return True

    def _lost(self, why: str) -> None:
        if not self._broken:
            self._broken = True
            status = self._process.poll()
            _log.warning("shadow scoring stopped: %s (exit status %s)", why, status)
            if status is None:
                self._process.kill()

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait until the worker has written every pair sent before this call; take its counts."""
        if self._broken:
            return
        token = next(self._tokens)
        if not self._write_all(control_frame(FLUSH, str(token).encode()), timeout):
            self._lost("the challenger's worker did not take a flush")
            return
        deadline = time.monotonic() + timeout
        while (ack := self._read_ack(deadline)) is not None and ack["token"] != token:
            pass  # an answer to an earlier flush that had given up waiting
        if ack is None:
            self._lost("the challenger's worker did not answer a flush")
            return
        self.counters.scored, self.counters.failed = ack["scored"], ack["failed"]
        if self._lines is not None:
            self._lines.wait_for(ack["lines"], max(deadline - time.monotonic(), 0.0))

    def _read_ack(self, deadline: float) -> dict[str, int] | None:
        """The worker's next answer line (token and counts), or None by the deadline."""
        while b"\n" not in self._ack_buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._acks], [], [], remaining)[0]:
                return None
            chunk = os.read(self._acks, 4096)
            if not chunk:
                return None
            self._ack_buffer += chunk
        line, self._ack_buffer = self._ack_buffer.split(b"\n", 1)
        answer: dict[str, int] = json.loads(line)
        return answer

    def close(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Write what is queued, then stop the worker (long-lived servers' shutdown)."""
        self.flush(timeout)
        if not self._broken:
            self._write_all(control_frame(STOP), timeout)
        self._finalizer()
        if self._lines is not None:
            self._lines.join(timeout)
        if self._acks >= 0:
            os.close(self._acks)
            self._acks = -1
