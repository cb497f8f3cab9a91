"""The service's own environment variable names and server defaults, for the CDK app.

They are defined once, in ``lambda/loan_service/env_names.py`` (standard library only). The CDK
app has neither ``lambda/`` on its path nor the service's dependencies, so it loads that one file
by path instead of spelling the names again.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Final

NAMES_FILE: Final = (
    Path(__file__).resolve().parent.parent / "lambda" / "loan_service" / "env_names.py"
)


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("loan_service_env_names", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the service's environment names from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


env = _load(NAMES_FILE)
