"""CPU seconds of a process and all its descendants, read from ``/proc``.

A Spark ``local`` job spends its CPU in three kinds of process: the driver's Python, the JVM it
launched and the Python workers the JVM forks. Their summed CPU time over a timed section is the
work the job did, which stays meaningful on a shared machine where wall time includes waiting.
"""

from __future__ import annotations

import os
from pathlib import Path


def tree_cpu_seconds(root: int | None = None) -> float:
    """User + system CPU seconds so far of ``root`` (default: this process) and every descendant,
    the reaped ones included (they are counted in their parent's children times)."""
    root = os.getpid() if root is None else root
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = sum(int(value) for value in fields[11:15])  # utime..cstime
    tree, grew = {root}, True
    while grew:
        added = {pid for pid, parent in parents.items() if parent in tree and pid not in tree}
        tree |= added
        grew = bool(added)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")
