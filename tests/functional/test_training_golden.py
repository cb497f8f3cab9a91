"""Training writes the release's reference points: golden loans and the expected behaviour."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from loan_service.artifacts import ArtifactError, load_artifacts
from tests.support.default_book import FEATURES
from tests.support.serving_fixtures import build_test_app
from training.golden import BANDS, GOLDEN_FILE, GOLDEN_TOLERANCE, pick_golden_rows


def test_golden_loans_cover_every_band_and_are_hashed_like_every_file(
    trained_artifacts: Path,
) -> None:
    manifest = json.loads((trained_artifacts / "manifest.json").read_text())
    golden = json.loads((trained_artifacts / GOLDEN_FILE).read_text())
    raw = (trained_artifacts / GOLDEN_FILE).read_bytes()

    assert manifest["files"][GOLDEN_FILE] == hashlib.sha256(raw).hexdigest()
    assert golden["model_version"] == manifest["model_version"]
    assert golden["tolerance"] == GOLDEN_TOLERANCE == 1e-6
    bands = [case["expected"]["risk_band"] for case in golden["loans"]]
    assert set(bands) == set(BANDS)
    assert manifest["golden_loans"] == {
        "file": GOLDEN_FILE,
        "loans": len(bands),
        "bands": list(BANDS),
    }
    for case in golden["loans"]:
        assert list(case["loan"]) == list(FEATURES)
        assert set(case["expected"]) >= {"probability", "prediction", "risk_band", "reason_codes"}
        assert case["expected"]["prediction"] == int(case["expected"]["risk_band"] == "high")


def test_the_service_answers_each_golden_loan_as_recorded(trained_artifacts: Path) -> None:
    from fastapi.testclient import TestClient

    app, _service = build_test_app(trained_artifacts)
    golden = json.loads((trained_artifacts / GOLDEN_FILE).read_text())
    with TestClient(app) as client:
        for case in golden["loans"]:
            answer = client.post("/predict", json=case["loan"]).json()
            expected = case["expected"]
            assert abs(answer["probability"] - expected["probability"]) <= GOLDEN_TOLERANCE
            assert answer["prediction"] == expected["prediction"]
            assert answer["risk_band"] == expected["risk_band"]
            codes = [reason.get("code", reason.get("feature")) for reason in answer["reasons"]]
            assert codes == expected["reason_codes"]


def test_manifest_records_the_held_out_approval_rate_and_mean_pd(trained_artifacts: Path) -> None:
    manifest = json.loads((trained_artifacts / "manifest.json").read_text())
    expected = manifest["expected"]

    assert expected["rows"] == manifest["data"]["test_rows"]
    assert 0.0 < expected["approval_rate"] < 1.0
    assert 0.0 < expected["mean_pd"] < 1.0
    # a calibrated model's mean PD on held-out rows is close to their default rate
    assert abs(expected["mean_pd"] - manifest["data"]["test_default_rate"]) < 0.03
    # and it declines about as many applicants as there are defaulters
    assert abs((1.0 - expected["approval_rate"]) - manifest["data"]["test_default_rate"]) < 0.05


def test_an_edited_golden_file_stops_the_service_like_any_other_file(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "artifacts"
    shutil.copytree(trained_artifacts, copy)
    golden = json.loads((copy / GOLDEN_FILE).read_text())
    golden["loans"][0]["expected"]["probability"] = 0.5
    (copy / GOLDEN_FILE).write_text(json.dumps(golden))

    with pytest.raises(ArtifactError, match=GOLDEN_FILE):
        load_artifacts(copy, FEATURES)


def test_golden_rows_are_spread_over_each_group_pd_range() -> None:
    probability = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.3, 0.4, 0.9])
    groups = np.array(["low"] * 5 + ["medium"] * 2 + ["high"])

    rows = pick_golden_rows(probability, groups, per_group=3)

    assert rows == [0, 2, 4, 5, 6, 7]
