"""What a fitted candidate leaves behind: the models, its held-out predictions and metrics.

Shared by the pipeline (which produces it), the report and MLflow logging (which present it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.candidates import Candidate, feature_weights
from training.evaluate import Metrics


@dataclass(frozen=True)
class CandidateResult:
    """A candidate after cross-fitting, calibration and evaluation on the test rows."""

    candidate: Candidate
    calibrated_model: Any
    base_model: Any
    test_probability: npt.NDArray[np.float64]
    test_probability_uncalibrated: npt.NDArray[np.float64]
    metrics: Metrics
    fit_seconds: float
    """Time in the candidate's fits (fold models and final model), summed over threads."""

    @property
    def name(self) -> str:
        """The candidate's manifest name."""
        return self.candidate.name

    @property
    def weights(self) -> npt.NDArray[np.float64]:
        """Coefficients or importances of the base model, one per feature."""
        return feature_weights(self.base_model)

    @property
    def weight_kind(self) -> str:
        """How to read :attr:`weights`."""
        if hasattr(self.base_model, "coef_"):
            return "coefficient (log-odds per standard deviation)"
        return "impurity importance"
