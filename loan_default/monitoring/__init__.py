"""Watching a model in use (``loan-default monitor``): population and characteristic stability
against the training reference, grade shares, and back-testing once outcomes are known.

The bins, the master scale and PSI are the service's own (``loan_service.stability``), so the
command, the service's per-prediction bin records and the scheduled AWS job agree by construction.
"""

from __future__ import annotations

import sys
from pathlib import Path

# ``lambda/`` is a source root, never a package (``lambda`` is a keyword): put it on the path
# when this runs from a checkout and ``loan_service`` is not importable already.
_SOURCE_ROOT = Path(__file__).resolve().parents[2] / "lambda"
if (_SOURCE_ROOT / "loan_service").is_dir() and str(_SOURCE_ROOT) not in sys.path:
    try:
        import loan_service  # noqa: F401
    except ModuleNotFoundError:
        sys.path.insert(0, str(_SOURCE_ROOT))
