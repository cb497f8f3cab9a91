"""Batch scoring: a loan book file in, every answer field per loan out (``loan-default score``).

The scoring itself is the service's own core (``loan_service.scoring.LoanScorer``), so a loan gets
the same answer from a file as from the API; the checks on each value come from the model's schema
in its manifest, as the API's request models do (``loan_default.batch.rules``). Engines: ``local``
streams record batches through one process (``loan_default.batch.local``); ``spark`` runs the
same per-batch function in ``mapInArrow`` (``loan_default.batch.spark``), locally or on EMR
Serverless.
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
