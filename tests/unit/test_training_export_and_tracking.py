"""All-or-nothing artifact folders, progress output, and tracking decisions that need no server."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from training.export import file_hashes, staging_folder
from training.manifest import missing_keys, new_model_version, utc_now
from training.progress import Progress
from training.tracking import (
    DEFAULT_TRACKING_URI,
    REPO_ROOT,
    TrainingTracker,
    local_artifact_root,
    probe_tracking_server,
    resolve_tracking_uri,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(
        path.name
        for path in folder.iterdir()
        if ".staging-" in path.name or ".retired-" in path.name
    )


def test_staging_folder_appears_under_the_destination_name_only_when_complete(
    tmp_path: Path,
) -> None:
    destination = tmp_path / "artifacts"
    with staging_folder(destination) as staging:
        (staging / "stats.json").write_text("{}")
        assert not destination.exists()
        assert staging.parent == tmp_path
    assert (destination / "stats.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_staging_folder_replaces_an_existing_folder_completely(tmp_path: Path) -> None:
    destination = tmp_path / "artifacts"
    destination.mkdir()
    (destination / "old-model.pkl").write_text("old")
    with staging_folder(destination) as staging:
        (staging / "best_model.pkl").write_text("new")
    assert sorted(path.name for path in destination.iterdir()) == ["best_model.pkl"]
    assert leftovers(tmp_path) == []


def export_that_breaks_halfway(destination: Path) -> None:
    with staging_folder(destination) as staging:
        (staging / "best_model.pkl").write_text("half written")
        raise RuntimeError("export broke")


def test_a_failure_while_staging_leaves_the_previous_folder_untouched(tmp_path: Path) -> None:
    destination = tmp_path / "artifacts"
    destination.mkdir()
    (destination / "best_model.pkl").write_text("previous")

    with pytest.raises(RuntimeError, match="export broke"):
        export_that_breaks_halfway(destination)

    assert (destination / "best_model.pkl").read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_a_failure_with_no_previous_folder_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="export broke"):
        export_that_breaks_halfway(tmp_path / "artifacts")
    assert list(tmp_path.iterdir()) == []


def test_file_hashes_are_the_sha256_of_the_four_served_files(tmp_path: Path) -> None:
    served = {"best_model.pkl", "model.onnx", "stats.json", "reference.json"}
    for name in served:
        (tmp_path / name).write_bytes(b"abc")
    hashes = file_hashes(tmp_path)
    assert set(hashes) == served
    assert (
        hashes["stats.json"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_model_versions_sort_by_time_and_never_repeat() -> None:
    now = utc_now()
    versions = {new_model_version(now) for _ in range(50)}
    assert len(versions) == 50
    assert all(version.startswith(now.strftime("%Y%m%d.%H%M%S-")) for version in versions)


def test_missing_keys_names_what_a_manifest_lacks() -> None:
    assert "files" in missing_keys({"schema_version": 1})


def test_progress_prints_stages_with_timings_and_quiet_prints_nothing() -> None:
    loud, silent = io.StringIO(), io.StringIO()
    for progress in (Progress(stream=loud), Progress(quiet=True, stream=silent)):
        with progress.stage("fit things"):
            pass
        progress.say("done")
        assert "fit things" in progress.timings
    assert "fit things (0.0s)" in loud.getvalue()
    assert loud.getvalue().count("\n") == 2
    assert silent.getvalue() == ""


def test_default_tracking_uri_is_an_absolute_sqlite_path_at_the_repository_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI == f"sqlite:///{REPO_ROOT}/mlflow.db"
    assert DEFAULT_TRACKING_URI.startswith("sqlite:////")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "  ")
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI


def test_a_configured_tracking_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert resolve_tracking_uri() == "http://mlflow.internal:5000"


def test_local_stores_need_no_probe_and_keep_artifacts_beside_the_database(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    assert probe_tracking_server(uri) is None
    assert probe_tracking_server("file:///tmp/mlruns") is None
    assert local_artifact_root(uri) == (tmp_path / "store" / "mlruns").as_uri()
    assert (tmp_path / "store").is_dir()
    assert local_artifact_root("http://mlflow.internal:5000") is None


def test_a_disabled_tracker_never_imports_mlflow_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "mlflow", raising=False)
    with TrainingTracker(enabled=False) as tracker:
        pass
    assert "mlflow" not in sys.modules
    assert tracker.run_id is None
    assert tracker.summary() == {
        "status": "disabled",
        "tracking_uri": None,
        "detail": "tracking disabled with --no-mlflow",
        "registered_model": None,
    }
