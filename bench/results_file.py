"""``bench/results.md``: the one file every measured figure lives in.

``bench/run.py`` writes the file; each other benchmark that ``make bench`` runs after it keeps its
own marked block in it, replaced on every run, so a figure is never restated anywhere else.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tests.support.paths import REPO_ROOT

RESULTS_FILE: Final = REPO_ROOT / "bench" / "results.md"


def markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- {name} benchmark: written by python -m bench.{name} -->",
        f"<!-- end of {name} benchmark -->",
    )


def write_block(name: str, lines: Sequence[str], path: Path = RESULTS_FILE) -> None:
    """Put ``lines`` between ``name``'s markers, replacing what an earlier run wrote there."""
    begin, end = markers(name)
    block = "\n".join([begin, *lines, end])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def run_facts(load_before: float, load_after: float, command: str) -> str:
    """One line: when, on what, how busy the machine was, and the command."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count() or 1
    busy = max(load_before, load_after) >= 0.5 * cores
    return (
        f"- Date: {stamp}; {cores} cores; load average {load_before:.2f} before, "
        f"{load_after:.2f} after{' (measured under contention)' if busy else ''}; "
        f"command: `{command}`"
    )
