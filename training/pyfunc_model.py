"""The registered model as MLflow loads it: raw, named loan columns in, PD and decision out.

Logged as MLflow "models from code": this file is stored with the model and executed when the
model is loaded, so it imports nothing from this repository and its environment is what scoring
needs (numpy, pandas, onnxruntime, MLflow). It scores exactly as the service does: the training
statistics normalize the raw columns, ``(x - mean) * (1 / std)`` in float64, then float32 into the
same ``model.onnx`` graph, read through the same input and output names (a category column enters
as the index of its value in the schema's list, as the model input defines it); P(default) is
the second probability column, capped at 1; the decision is PD >= the manifest's threshold.

The model refuses to load when ``model.onnx`` or ``stats.json`` do not match the sha256 in the
manifest stored beside them, like the service refuses to start.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel, PythonModelContext

MANIFEST_ARTIFACT = "manifest.json"
ONNX_ARTIFACT = "model.onnx"
STATS_ARTIFACT = "stats.json"
ONNX_INPUT = "input"
ONNX_PROBABILITIES = "probabilities"
PROBABILITY_COLUMN = "probability"
PREDICTION_COLUMN = "prediction"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class LoanDefaultModel(PythonModel):
    """P(default) and the decision at the threshold for raw loans, one row each."""

    def load_context(self, context: PythonModelContext) -> None:
        import onnxruntime as ort

        paths = {name: Path(path) for name, path in context.artifacts.items()}
        manifest = json.loads(paths[MANIFEST_ARTIFACT].read_text(encoding="utf-8"))
        for name in (ONNX_ARTIFACT, STATS_ARTIFACT):
            expected = manifest["files"][name]
            if _sha256(paths[name]) != expected:
                raise ValueError(f"{name} does not match its sha256 in {MANIFEST_ARTIFACT}")
        stats = json.loads(paths[STATS_ARTIFACT].read_text(encoding="utf-8"))
        self.features: list[str] = list(manifest["features"])
        self.threshold = float(manifest["threshold"])
        self.model_version = str(manifest["model_version"])
        # A category enters the model as the index of its value (mean 0, std 1: unchanged).
        self.codes: dict[str, dict[str, float]] = {
            name: {str(value): float(i) for i, value in enumerate(stats[name]["values"])}
            for name in self.features
            if stats[name].get("type") == "category"
        }
        self.mean = np.array(
            [0.0 if name in self.codes else stats[name]["mean"] for name in self.features],
            dtype=np.float64,
        )
        self.inverse_std = 1.0 / np.array(
            [1.0 if name in self.codes else stats[name]["std"] for name in self.features],
            dtype=np.float64,
        )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(paths[ONNX_ARTIFACT]), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        raw = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for index, name in enumerate(self.features):
            codes = self.codes.get(name)
            if codes is None:
                raw[:, index] = frame[name].to_numpy(dtype=np.float64)
                continue
            raw[:, index] = [codes.get(str(value), -1.0) for value in frame[name]]
            unknown = np.flatnonzero(raw[:, index] < 0)
            if unknown.size:
                raise ValueError(
                    f"{name}: {frame[name].iloc[unknown[0]]!r} is not one of {sorted(codes)} "
                    f"(row {unknown[0] + 1} of {len(frame)})"
                )
        finite = np.isfinite(raw)
        if not finite.all():
            row, column = np.argwhere(~finite)[0]
            raise ValueError(
                f"{self.features[column]} is missing or not a finite number "
                f"(row {row + 1} of {raw.shape[0]})"
            )
        normalized = ((raw - self.mean) * self.inverse_std).astype(np.float32)
        (probabilities,) = self.session.run([ONNX_PROBABILITIES], {ONNX_INPUT: normalized})
        probability = np.minimum(np.asarray(probabilities, dtype=np.float64)[:, 1], 1.0)
        return pd.DataFrame(
            {
                PROBABILITY_COLUMN: probability,
                PREDICTION_COLUMN: (probability >= self.threshold).astype(np.int64),
            },
            index=frame.index,
        )


set_model(LoanDefaultModel())
