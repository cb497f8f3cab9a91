"""Golden loans and the behaviour a release is checked against, written into the artifact folder.

* ``golden_loans.json``: a few held-out loans from every risk band (and every grade, where the
  answers carry one) with the answer the SERVING code gives on this very artifact folder:
  probability, decision, band, grade, reason codes. The pre-traffic hook of a deployment sends
  them to the new Lambda version and stops the release on any difference (see
  ``infra_cdk/release_hook.py``). The file is hashed in the manifest like every other file.
* ``manifest["expected"]``: approval rate and mean PD on the held-out rows. The canary's
  model-behaviour alarms compare the new version's live figures with these.

The expected answers come from ``loan_service`` (the ``lambda/`` source root) rather than from a
second implementation here: a golden loan states what the image must answer, so it is computed
by the code the image runs, on the artifact folder the image bakes in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from training.data import sha256_of_file
from training.export import write_json

GOLDEN_FILE: Final = "golden_loans.json"
GOLDEN_TOLERANCE: Final = 1e-6
GOLDEN_PER_GROUP: Final = 4
BANDS: Final = ("low", "medium", "high")
_SERVING_SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent / "lambda"


def expected_behaviour(
    test_probability: npt.NDArray[np.float64], threshold: float
) -> dict[str, Any]:
    """What the chosen model does on the held-out rows: the canary's reference figures."""
    probability = np.asarray(test_probability, dtype=np.float64)
    return {
        "approval_rate": float(np.mean(probability < threshold)),
        "mean_pd": float(np.mean(probability)),
        "rows": int(probability.size),
        "source": "held-out test rows, chosen model, decision at the threshold",
    }


def _serving() -> Any:
    """``loan_service`` from the serving source root (a folder, never a package named lambda)."""
    if str(_SERVING_SOURCE_ROOT) not in sys.path:
        sys.path.append(str(_SERVING_SOURCE_ROOT))
    from loan_service import artifacts, predictor, scoring

    return artifacts, predictor, scoring


def served_answers(folder: Path, raw: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    """The serving code's answers (ONNX runtime, default settings) for ``raw`` rows."""
    artifacts, predictor, scoring = _serving()
    bundle = artifacts.load_artifacts(folder)
    model = predictor.DefaultRiskModel(
        predictor.load_probability_model(bundle, "onnx"), bundle.stats
    )
    assessor = scoring.LoanAssessor(
        model=model,
        stats=bundle.stats,
        threshold=bundle.manifest.threshold,
        recovery_rate=0.10,  # the service's default; expected loss is not compared
        model_version=bundle.manifest.model_version,
        book=bundle.manifest.book,
        master_scale=bundle.master_scale,
    )
    answers: list[dict[str, Any]] = assessor.assess_matrix(np.asarray(raw, np.float64), "golden")
    return answers


def reason_codes(answer: dict[str, Any]) -> list[str]:
    """The stable identifiers of an answer's reasons (``code`` where reasons carry one)."""
    return [str(reason.get("code", reason.get("feature"))) for reason in answer["reasons"]]


def expected_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The parts of an answer a release must reproduce exactly (probability within tolerance)."""
    expected: dict[str, Any] = {
        "probability": answer["probability"],
        "prediction": answer["prediction"],
        "risk_band": answer["risk_band"],
        "reason_codes": reason_codes(answer),
    }
    if answer.get("grade") is not None:
        expected["grade"] = answer["grade"]
    return expected


def pick_golden_rows(
    probability: npt.NDArray[np.float64], groups: npt.NDArray[Any], per_group: int
) -> list[int]:
    """Up to ``per_group`` row indices per group, spread over the group's PD range (quantiles)."""
    picked: list[int] = []
    for group in dict.fromkeys(groups.tolist()):
        members = np.flatnonzero(groups == group)
        ordered = members[np.argsort(probability[members], kind="stable")]
        spots = np.linspace(0, ordered.size - 1, num=min(per_group, ordered.size))
        picked.extend(int(ordered[round(spot)]) for spot in spots)
    return list(dict.fromkeys(picked))


def write_golden_loans(
    folder: Path, schema: Any, test_raw: npt.NDArray[np.float64], model_version: str
) -> dict[str, Any]:
    """Score the held-out rows with the serving code, keep a few per band and grade, write them.

    ``folder`` must already hold a manifest whose hashes match (the serving loader checks them).
    Returns the file's summary for the manifest.
    """
    answers = served_answers(folder, test_raw)
    probability = np.array([answer["probability"] for answer in answers], dtype=np.float64)
    bands = np.array([answer["risk_band"] for answer in answers])
    rows = pick_golden_rows(probability, bands, GOLDEN_PER_GROUP)
    if answers and answers[0].get("grade") is not None:
        grades = np.array([str(answer["grade"]) for answer in answers])
        rows = list(dict.fromkeys(rows + pick_golden_rows(probability, grades, 1)))
    loans = [
        {"loan": _loan(schema, test_raw[row]), "expected": expected_of(answers[row])}
        for row in rows
    ]
    write_json(
        folder / GOLDEN_FILE,
        {
            "model_version": model_version,
            "tolerance": GOLDEN_TOLERANCE,
            "source": "held-out test rows, answered by the serving code on this artifact folder",
            "loans": loans,
        },
    )
    return {
        "file": GOLDEN_FILE,
        "loans": len(loans),
        "bands": sorted({loan["expected"]["risk_band"] for loan in loans}, key=BANDS.index),
        "sha256": sha256_of_file(folder / GOLDEN_FILE),
    }


def _loan(schema: Any, values: npt.NDArray[np.float64]) -> dict[str, Any]:
    """The request body a client sends: whole numbers as integers (the API's integer fields),
    a category as its value (the book's rows hold its index)."""
    loan: dict[str, Any] = {}
    for feature, value in zip(schema.features, values.tolist(), strict=True):
        if feature.is_category:
            loan[feature.name] = feature.values[int(value)]
        else:
            loan[feature.name] = int(value) if float(value).is_integer() else float(value)
    return loan
