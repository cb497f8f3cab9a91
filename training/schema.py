"""The default loan book, read from ``Data/schema.toml``, and the decision threshold.

The book's columns are data, not code: ``Data/schema.toml`` describes the default book and another
book brings its own file (``--schema``). The names below are the default book's, for the
synthetic-data generator, benchmarks and tests; the training run itself follows whatever
:class:`loan_service.book.BookSchema` it is given.
"""

from __future__ import annotations

from typing import Final

from training.book_file import DEFAULT_SCHEMA, load_schema

DEFAULT_BOOK: Final = load_schema(DEFAULT_SCHEMA)

FEATURES: Final[tuple[str, ...]] = DEFAULT_BOOK.feature_names
"""The default book's model input, in the order every artifact expects."""

TARGET: Final = DEFAULT_BOOK.target.column
"""1 = the borrower defaulted, 0 = repaid."""

ID_COLUMN: Final = DEFAULT_BOOK.id.columns[0]
"""An identifier: carried in the CSV, never a model feature."""

DECISION_THRESHOLD: Final = 0.5
"""P(default) at or above this is predicted as a default; model selection compares F1 here."""
