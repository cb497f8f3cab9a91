"""One verified artifact folder to a ready ``LoanAssessor`` (no web framework imported).

The service builds its champion here, and the shadow challenger's worker process builds the
challenger here too, so both are checked at load exactly alike.
"""

from __future__ import annotations

import math

from loan_service.artifacts import ArtifactBundle
from loan_service.book import BookSchema
from loan_service.predictor import (
    DefaultRiskModel,
    check_model_at_load,
    edge_of_range_rows,
    load_probability_model,
)
from loan_service.scoring import LoanAssessor
from loan_service.settings import ModelRuntime


def field_bounds(book: BookSchema) -> list[tuple[float | None, float | None]]:
    """The lowest and highest model input the book accepts for each feature (None: open). A
    strict bound (``greater_than``) gives the next float inside it: income > 0 accepts 5e-324;
    a category's inputs are its value indices."""
    bounds: list[tuple[float | None, float | None]] = []
    for feature in book.features:
        if feature.is_category:
            bounds.append((0.0, float(max(len(feature.values or ()) - 1, 0))))
            continue
        low = None if feature.min is None else float(feature.min)
        if feature.greater_than is not None:
            low = math.nextafter(float(feature.greater_than), math.inf)
        high = None if feature.max is None else float(feature.max)
        bounds.append((low, high))
    return bounds


def build_assessor(
    bundle: ArtifactBundle, model_runtime: ModelRuntime, recovery_rate: float
) -> LoanAssessor:
    """The scorer and answer builder for one verified artifact folder."""
    model = DefaultRiskModel(load_probability_model(bundle, model_runtime), bundle.stats)
    model_file = bundle.onnx_path.name if model.runtime == "onnx" else bundle.pickle_path.name
    book = bundle.manifest.book
    edges = edge_of_range_rows(bundle.stats, field_bounds(book))
    check_model_at_load(model, edges, book.feature_names, model_file)
    return LoanAssessor(
        model=model,
        stats=bundle.stats,
        threshold=bundle.manifest.threshold,
        recovery_rate=recovery_rate,
        model_version=bundle.manifest.model_version,
        book=bundle.manifest.book,
        master_scale=bundle.master_scale,
    )
