"""The ORIGINAL serving design, kept only as the benchmark's yardstick: Flask + scikit-learn.

Every request parses JSON with Flask, scales the row with the pickled ``StandardScaler`` and calls
``predict_proba`` on the pickled ``RandomForestClassifier``; the answer carries the original
system's four fields. It runs the way the original did, under gunicorn with 2 workers x 2 threads::

    REFERENCE_MODEL_DIR=/tmp/reference .venv/bin/gunicorn --workers 2 --threads 2 \
        --bind 127.0.0.1:8001 'bench.reference_app:create_app()'

Not part of the service and never deployed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Final

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from bench.reference_model import MODEL_FILE, SCALER_FILE
from training.schema import DECISION_THRESHOLD, FEATURES

REFERENCE_MODEL_DIR_ENV: Final = "REFERENCE_MODEL_DIR"


def _unpickle(path: Path) -> Any:
    with path.open("rb") as handle:
        # The benchmark's own pickles, written moments earlier by bench.reference_model.
        return pickle.load(handle)


def create_app(model_dir: Path | None = None) -> Flask:
    """The Flask app; the model folder comes from ``REFERENCE_MODEL_DIR`` when not given."""
    directory = model_dir or Path(os.environ[REFERENCE_MODEL_DIR_ENV])
    scaler = _unpickle(directory / SCALER_FILE)
    model = _unpickle(directory / MODEL_FILE)
    app = Flask(__name__)

    @app.post("/predict")
    def predict() -> ResponseReturnValue:
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            return jsonify(error="the body must be a JSON object"), 400
        try:
            row = [[float(payload[name]) for name in FEATURES]]
        except (KeyError, TypeError, ValueError) as exc:
            return jsonify(error=f"invalid or missing feature: {exc}"), 400
        probability = float(model.predict_proba(scaler.transform(row))[0, 1])
        prediction = int(probability >= DECISION_THRESHOLD)
        return jsonify(
            probability=probability,
            prediction=prediction,
            threshold=DECISION_THRESHOLD,
            message="High risk of default" if prediction else "Low risk of default",
        )

    return app
