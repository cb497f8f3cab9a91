"""Write the artifact folder all-or-nothing: build beside the target, then rename into place.

Serving verifies the sha256 of every file, so a half-written folder would at best refuse to start
and at worst pair a new model with old statistics. The folder is therefore assembled in a hidden
sibling directory (same filesystem, so ``rename`` is atomic) and swapped in only when complete;
a failure removes the staging folder and leaves any previous artifact folder untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training.data import sha256_of_file

MODEL_FILE = "best_model.pkl"
ONNX_FILE = "model.onnx"
STATS_FILE = "stats.json"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.json"
REPORT_DIR = "report"
HASHED_FILES = (MODEL_FILE, ONNX_FILE, STATS_FILE, REFERENCE_FILE)
"""The files serving loads; each gets a sha256 in manifest["files"]."""


@contextmanager
def staging_folder(destination: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``destination``; on success it replaces ``destination``."""
    destination = destination.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-", dir=destination.parent))
    try:
        yield staging
        _swap_into_place(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, destination: Path) -> None:
    """Rename ``staging`` to ``destination``; an old folder is moved aside first, then deleted."""
    if destination.is_symlink() or destination.is_file():
        raise FileExistsError(f"{destination} exists and is not a folder; refusing to replace it")
    retired: Path | None = None
    if destination.exists():
        retired = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.retired-", dir=destination.parent)
        )
        retired.rmdir()
        os.rename(destination, retired)
    try:
        os.rename(staging, destination)
    except BaseException:
        if retired is not None:
            os.rename(retired, destination)
        raise
    staging_mode = 0o755
    destination.chmod(staging_mode)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of each file serving loads, keyed by file name."""
    return {name: sha256_of_file(folder / name) for name in HASHED_FILES}


def write_json(path: Path, payload: Any) -> None:
    """Pretty, stable JSON with a trailing newline."""
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
