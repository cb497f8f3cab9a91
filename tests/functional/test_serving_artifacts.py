"""Integrity: every sha256 in the manifest is checked before anything is loaded, and a bad
artifact folder is refused with a message that names the file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from loan_service.application import build_service
from loan_service.artifacts import ArtifactError, load_artifacts
from tests.support.default_book import FEATURES
from tests.support.paths import LAMBDA_ROOT
from tests.support.serving_fixtures import make_settings


@pytest.fixture
def artifacts(trained_artifacts: Path, tmp_path: Path) -> Path:
    """A private copy of the trained folder that a test may damage."""
    copy = tmp_path / "artifacts"
    shutil.copytree(trained_artifacts, copy)
    return copy


def edit_manifest(folder: Path, **changes: Any) -> None:
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(changes)
    manifest_path.write_text(json.dumps(manifest))


def reseal(folder: Path, name: str) -> None:
    """Record the file's current sha256, as if training had written it that way."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_trained_folder_verifies_and_loads(trained_artifacts: Path) -> None:
    bundle = load_artifacts(trained_artifacts, FEATURES)
    assert bundle.manifest.features == list(FEATURES)
    assert bundle.stats.mean.shape == (6,)
    assert (bundle.stats.std > 0).all()


@pytest.mark.parametrize("name", ["model.onnx", "stats.json", "best_model.pkl"])
def test_a_single_flipped_byte_in_any_listed_file_is_refused_naming_it(
    artifacts: Path, name: str
) -> None:
    """GIVEN one changed byte WHEN the service starts THEN it refuses and names the file, even
    for best_model.pkl, which the ONNX runtime would never open."""
    target = artifacts / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"^{name} does not match its sha256"):
        build_service(make_settings(artifacts), LAMBDA_ROOT)


@pytest.mark.parametrize("name", ["model.onnx", "stats.json", "best_model.pkl"])
def test_a_missing_listed_file_is_refused_naming_it(artifacts: Path, name: str) -> None:
    (artifacts / name).unlink()
    with pytest.raises(ArtifactError, match=rf"^{name} is listed in manifest.json but missing"):
        load_artifacts(artifacts, FEATURES)


def test_a_manifest_without_a_checksum_for_a_required_file_is_refused(artifacts: Path) -> None:
    manifest = json.loads((artifacts / "manifest.json").read_text())
    del manifest["files"]["stats.json"]
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"lists no sha256 for stats\.json"):
        load_artifacts(artifacts, FEATURES)


def test_manifest_features_must_equal_its_schema(artifacts: Path) -> None:
    edit_manifest(artifacts, features=[*FEATURES[::-1]])
    with pytest.raises(ArtifactError, match="do not match its schema"):
        load_artifacts(artifacts, FEATURES)


def test_a_manifest_without_a_schema_is_refused(artifacts: Path) -> None:
    manifest = json.loads((artifacts / "manifest.json").read_text())
    del manifest["schema"]
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="schema"):
        load_artifacts(artifacts)


def test_an_unknown_schema_version_is_refused(artifacts: Path) -> None:
    edit_manifest(artifacts, schema_version=2)
    with pytest.raises(ArtifactError, match="schema_version 2"):
        load_artifacts(artifacts, FEATURES)


def test_a_manifest_file_name_with_a_path_is_refused(artifacts: Path) -> None:
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["files"]["../outside.json"] = "0" * 64
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not a plain file name"):
        load_artifacts(artifacts, FEATURES)


def test_a_missing_folder_or_manifest_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist: train first"):
        load_artifacts(tmp_path / "nowhere", FEATURES)
    with pytest.raises(ArtifactError, match=r"manifest\.json is missing"):
        load_artifacts(tmp_path, FEATURES)


def test_a_manifest_that_is_not_json_is_refused(artifacts: Path) -> None:
    (artifacts / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json is not readable JSON"):
        load_artifacts(artifacts, FEATURES)


def test_a_resealed_stats_file_with_zero_std_is_refused(artifacts: Path) -> None:
    stats = json.loads((artifacts / "stats.json").read_text())
    stats["income"]["std"] = 0.0
    (artifacts / "stats.json").write_text(json.dumps(stats))
    reseal(artifacts, "stats.json")
    with pytest.raises(ArtifactError, match=r"stats.json: income.std must be > 0"):
        load_artifacts(artifacts, FEATURES)


def test_a_resealed_onnx_file_that_is_not_a_model_is_refused(artifacts: Path) -> None:
    (artifacts / "model.onnx").write_bytes(b"not an onnx graph")
    reseal(artifacts, "model.onnx")
    with pytest.raises(ArtifactError, match=r"model\.onnx could not be loaded by onnxruntime"):
        build_service(make_settings(artifacts), LAMBDA_ROOT)
