"""The default loan book as tests use it: names and request models, from ``Data/schema.toml``.

Serving builds these from a trained model's manifest; tests of the default book build the same
models from the schema file, once, here (never a hand-written copy of the six features).
"""

from __future__ import annotations

from typing import Final

from loan_service.schemas import build_request_models
from tests.support.loans import TYPICAL_LOAN
from training.schema import DEFAULT_BOOK

FEATURES: Final[tuple[str, ...]] = DEFAULT_BOOK.feature_names


REQUEST_MODELS: Final = build_request_models(DEFAULT_BOOK, TYPICAL_LOAN)
LoanApplication: Final = REQUEST_MODELS.application
LoanBatch: Final = REQUEST_MODELS.batch
REASON_CODES: Final[dict[str, str]] = {f.name: f.reason_code for f in DEFAULT_BOOK.features}

_BOOK = DEFAULT_BOOK.feature
MAX_AMOUNT: Final = _BOOK("loan_amt_outstanding").max
MAX_CREDIT_LINES: Final = _BOOK("credit_lines_outstanding").max
MAX_YEARS_EMPLOYED: Final = _BOOK("years_employed").max
FICO_MIN: Final = _BOOK("fico_score").min
FICO_MAX: Final = _BOOK("fico_score").max
