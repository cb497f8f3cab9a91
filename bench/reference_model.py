"""The ORIGINAL system's model, rebuilt for comparison: a StandardScaler and a random forest.

The service replaced this design; the benchmark keeps it alive so every headline figure is a ratio
measured against it in the same run, on the same machine. The choices are the original system's:
scikit-learn defaults (100 unpruned trees), a scaler fitted on an 80 % stratified split, both
objects written with plain ``pickle``, and no calibration, ONNX or manifest.

    .venv/bin/python -m bench.reference_model --data Data/Loan_Data.csv --out /tmp/reference
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from training.schema import FEATURES, TARGET

SCALER_FILE: Final = "scaler.pkl"
MODEL_FILE: Final = "model.pkl"
REFERENCE_SEED: Final = 42
REFERENCE_TEST_FRACTION: Final = 0.2


@dataclass(frozen=True)
class ReferenceModel:
    """Where the two pickles went, and the held-out accuracy that shows the model is real."""

    directory: Path
    held_out_accuracy: float

    @property
    def scaler_path(self) -> Path:
        return self.directory / SCALER_FILE

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE


def train_reference_model(data: Path, out: Path, seed: int = REFERENCE_SEED) -> ReferenceModel:
    """Fit scaler + forest on the training split of ``data``; pickle both into ``out``."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_csv(data)
    features = frame[list(FEATURES)].to_numpy(dtype=np.float64)
    target = frame[TARGET].to_numpy(dtype=np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        features,
        target,
        test_size=REFERENCE_TEST_FRACTION,
        random_state=seed,
        stratify=target,
    )
    scaler = StandardScaler().fit(train_x)
    model = RandomForestClassifier(random_state=seed).fit(scaler.transform(train_x), train_y)
    accuracy = float(model.score(scaler.transform(test_x), test_y))
    out.mkdir(parents=True, exist_ok=True)
    _pickle(scaler, out / SCALER_FILE)
    _pickle(model, out / MODEL_FILE)
    return ReferenceModel(directory=out, held_out_accuracy=accuracy)


def _pickle(obj: Any, path: Path) -> None:
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path("Data/Loan_Data.csv"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    reference = train_reference_model(args.data, args.out)
    print(f"wrote {reference.directory} (held-out accuracy {reference.held_out_accuracy:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
