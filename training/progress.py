"""Stage-by-stage progress with timings, so a slow stage is visible; ``--quiet`` silences it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Prints ``[  1.2s] stage name (0.4s)`` lines and remembers each stage's duration."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stdout
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block and report it when it ends."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - began
        self.say(f"{name} ({self.timings[name]:.1f}s)")

    def say(self, message: str) -> None:
        """One line, prefixed with the time elapsed since training started."""
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{elapsed:6.1f}s] {message}", file=self.stream, flush=True)

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started
