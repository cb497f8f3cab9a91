"""Credentials are redacted from every URI training prints, logs or writes (manifest, MLflow).

The one implementation is serving's ``loan_service/redaction.py`` (standard library only), so a
password is hidden by the same rules in CloudWatch and in ``manifest.json``. It is imported as
``loan_service.redaction`` where ``lambda/`` is on the path (tests, an installed package), else
loaded from ``lambda/`` beside this package (``python -m training`` in a clone).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_SOURCE = Path(__file__).resolve().parent.parent / "lambda" / "loan_service" / "redaction.py"


def _load() -> ModuleType:
    try:
        import loan_service.redaction as module
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location("loan_service_redaction", _SOURCE)
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


_redaction = _load()
redact = _redaction.redact
install_log_redaction = _redaction.install_log_redaction
REDACTED: str = _redaction.REDACTED

__all__ = ["REDACTED", "install_log_redaction", "redact"]
