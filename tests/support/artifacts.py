"""Artifact folders made from a trained one, for tests and benchmarks that need a second model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path


def copy_as_challenger(source: Path, destination: Path, model_version: str) -> Path:
    """The champion's files as a challenger of another version: every file that names its model
    is restamped and re-hashed in the manifest, so the copy verifies like a real second model."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("report", "challenger"))
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest["model_version"] = model_version
    for name in manifest["files"]:
        path = destination / name
        if path.suffix != ".json":
            continue
        content = json.loads(path.read_text())
        if isinstance(content, dict) and "model_version" in content:
            content["model_version"] = model_version
            path.write_text(json.dumps(content))
            manifest["files"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination
