"""A bad artifact folder is refused at start, in a fresh process, with a message naming the file.

Each fault is applied to a copy of a real trained folder: a file corrupted, a file missing, a
manifest edited so it disagrees with the files (a checksum, the feature list, a dropped entry),
a manifest cut short, and a corrupted model whose checksum was "fixed" in the manifest so that only
loading it can tell. Two entry points start the service, as production does:

* ``import main``, which is what the Lambda runtime does for ``main.handler`` at init: it must exit
  non-zero, and the refusal (the last line on stderr, which the Lambda runtime reports as the init
  error) must be one clean sentence: the exception type, then a message that names the offending
  file and carries no traceback fragments;
* the ECS task's entry point and command (``infra_cdk.ecs_entry``, uvicorn's CLI on the factory): it
  must exit with its documented status 3 and print exactly one line, ``refusing to start: `` and
  the same message, with no traceback at all; and ``loan-default serve --workers 2`` (uvicorn's
  supervisor) must stop with status 3 instead of restarting the workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from loan_service.artifacts import sha256_of
from loan_service.http_server import EXIT_NOT_STARTED
from loan_service.http_server import REFUSAL_PREFIX as ECS_REFUSAL_PREFIX
from tests.support.paths import LAMBDA_ROOT, REPO_ROOT
from tests.support.servers import ecs_command, free_port

REFUSAL_PREFIX: Final = "loan_service.artifacts.ArtifactError: "
TRACEBACK_FRAGMENTS: Final = ("Traceback (most recent call last)", 'File "', ", in <module>", "^^^")
START_TIMEOUT_SECONDS: Final = 120

pytestmark = pytest.mark.slow


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(folder: Path, edit: Callable[[dict[str, object]], None]) -> None:
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest, indent=2))


def corrupt_onnx(folder: Path) -> None:
    _flip_a_byte(folder / "model.onnx")


def corrupt_pickle(folder: Path) -> None:
    _flip_a_byte(folder / "best_model.pkl")


def delete_stats(folder: Path) -> None:
    (folder / "stats.json").unlink()


def edit_pickle_checksum(folder: Path) -> None:
    def edit(manifest: dict[str, object]) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        files["best_model.pkl"] = "0" * 64

    _edit_manifest(folder, edit)


def edit_feature_order(folder: Path) -> None:
    def edit(manifest: dict[str, object]) -> None:
        features = manifest["features"]
        assert isinstance(features, list)
        features.reverse()

    _edit_manifest(folder, edit)


def drop_onnx_from_manifest(folder: Path) -> None:
    def edit(manifest: dict[str, object]) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        del files["model.onnx"]

    _edit_manifest(folder, edit)


def truncate_manifest(folder: Path) -> None:
    path = folder / "manifest.json"
    path.write_text(path.read_text()[:200])


def corrupt_onnx_and_reseal(folder: Path) -> None:
    """Garbage where the model was, with a manifest checksum that matches the garbage."""
    (folder / "model.onnx").write_bytes(b"not an onnx model " * 64)
    digest = sha256_of(folder / "model.onnx")

    def edit(manifest: dict[str, object]) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        files["model.onnx"] = digest

    _edit_manifest(folder, edit)


def _reseal(folder: Path, name: str) -> None:
    """Record the file's current sha256 in the manifest, as if training had written it so."""
    digest = sha256_of(folder / name)

    def edit(manifest: dict[str, object]) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        files[name] = digest

    _edit_manifest(folder, edit)


def _reseal_stats(folder: Path, feature: str, key: str, value: float) -> None:
    path = folder / "stats.json"
    stats = json.loads(path.read_text())
    stats[feature][key] = value
    path.write_text(json.dumps(stats))
    _reseal(folder, "stats.json")


def stats_std_tiny_resealed(folder: Path) -> None:
    _reseal_stats(folder, "loan_amt_outstanding", "std", 1e-300)


def stats_mean_huge_resealed(folder: Path) -> None:
    _reseal_stats(folder, "income", "mean", 1e308)


def onnx_external_data_resealed(folder: Path) -> None:
    """The same graph with its initializers moved to model.onnx.data, which no manifest lists."""
    import onnx
    from onnx import external_data_helper, numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    tensors = [
        numpy_helper.from_array(numpy_helper.to_array(t), t.name) for t in model.graph.initializer
    ]
    del model.graph.initializer[:]
    model.graph.initializer.extend(tensors)
    external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0
    )
    onnx.save_model(model, str(folder / "model.onnx"))
    assert (folder / "model.onnx.data").is_file()
    _reseal(folder, "model.onnx")


def _replace_onnx(folder: Path, weights: list[list[float]]) -> None:
    """A valid ONNX graph with the right names: probabilities = input @ weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    matrix = numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "weights")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "weights"], ["probabilities"])],
        "tampered",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None)],
        initializer=[matrix],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(folder / "model.onnx"))
    _reseal(folder, "model.onnx")


def onnx_output_out_of_range_resealed(folder: Path) -> None:
    _replace_onnx(folder, [[100.0, -100.0]] * 6)


def onnx_output_wrong_shape_resealed(folder: Path) -> None:
    _replace_onnx(folder, [[0.0, 0.0, 0.0]] * 6)


def stats_unreadable(folder: Path) -> None:
    """A listed file that cannot be read. Root reads any mode, so as root the name points at
    /proc/self/mem, which every process can open and none can read from offset 0 (EIO)."""
    path = folder / "stats.json"
    if os.geteuid() == 0:
        path.unlink()
        path.symlink_to("/proc/self/mem")
    else:
        path.chmod(0)


# (fault, how to apply it, the file the refusal must name, words the refusal must contain)
FAULTS: Final = [
    ("corrupted-onnx", corrupt_onnx, "model.onnx", "does not match its sha256"),
    ("corrupted-pickle", corrupt_pickle, "best_model.pkl", "does not match its sha256"),
    ("missing-stats", delete_stats, "stats.json", "missing"),
    ("manifest-checksum-edited", edit_pickle_checksum, "best_model.pkl", "does not match"),
    ("manifest-features-edited", edit_feature_order, "manifest.json", "do not match its schema"),
    ("manifest-entry-dropped", drop_onnx_from_manifest, "model.onnx", "lists no sha256"),
    ("manifest-truncated", truncate_manifest, "manifest.json", "not readable JSON"),
    ("onnx-corrupted-and-resealed", corrupt_onnx_and_reseal, "model.onnx", "could not be loaded"),
    ("stats-std-1e-300-resealed", stats_std_tiny_resealed, "stats.json", "non-finite"),
    ("stats-mean-1e308-resealed", stats_mean_huge_resealed, "stats.json", "non-finite"),
    ("onnx-external-data-resealed", onnx_external_data_resealed, "model.onnx", "external data"),
    (
        "onnx-out-of-range-resealed",
        onnx_output_out_of_range_resealed,
        "model.onnx",
        "outside [0, 1]",
    ),
    ("onnx-wrong-shape-resealed", onnx_output_wrong_shape_resealed, "model.onnx", "of shape"),
    ("stats-unreadable", stats_unreadable, "stats.json", "cannot be read"),
]
ECS_FAULTS: Final = {
    "corrupted-onnx",
    "missing-stats",
    "onnx-corrupted-and-resealed",
    "stats-std-1e-300-resealed",
    "onnx-external-data-resealed",
    "onnx-out-of-range-resealed",
    "stats-unreadable",
}


def _environment(folder: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    return {**clean, "ARTIFACT_DIR": str(folder), "PYTHONPATH": str(LAMBDA_ROOT)}


def start_like_lambda(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import main"],
        cwd=REPO_ROOT,
        env=_environment(folder),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )


def start_like_ecs(folder: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ecs_command(free_port()),
        cwd=LAMBDA_ROOT,
        env={**_environment(folder), **settings},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )


def start_two_workers(folder: Path) -> subprocess.CompletedProcess[str]:
    """``loan-default serve --workers 2``: the multi-process server (ECS runs one per task)."""
    return subprocess.run(
        [sys.executable, "-m", "loan_default", "serve", "--workers", "2", "--port", "0"],
        cwd=REPO_ROOT,
        env=_environment(folder),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )


def refusal_of(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "the process printed nothing on stderr"
    return lines[-1]


def assert_clean_refusal(
    result: subprocess.CompletedProcess[str], file_name: str, words: str
) -> None:
    assert result.returncode != 0, f"started anyway:\n{result.stdout}\n{result.stderr}"
    refusal = refusal_of(result)
    assert refusal.startswith(REFUSAL_PREFIX), refusal
    message = refusal[len(REFUSAL_PREFIX) :]
    assert file_name in message, message
    assert words in message, message
    assert not any(fragment in message for fragment in TRACEBACK_FRAGMENTS), message


@pytest.fixture
def bad_folder(trained_artifacts: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    shutil.copytree(trained_artifacts, folder)
    return folder


def test_the_untouched_copy_starts(trained_artifacts: Path, tmp_path: Path) -> None:
    """The faults below are the only difference: the same copy, unharmed, imports fine."""
    folder = tmp_path / "artifacts"
    shutil.copytree(trained_artifacts, folder)
    result = start_like_lambda(folder)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("fault", "file_name", "words"),
    [pytest.param(apply, name, words, id=fault) for fault, apply, name, words in FAULTS],
)
def test_lambda_init_refuses_a_bad_artifact_naming_the_file(
    bad_folder: Path, fault: Callable[[Path], None], file_name: str, words: str
) -> None:
    fault(bad_folder)
    assert_clean_refusal(start_like_lambda(bad_folder), file_name, words)


@pytest.mark.parametrize(
    ("fault", "file_name", "words"),
    [
        pytest.param(apply, name, words, id=fault)
        for fault, apply, name, words in FAULTS
        if fault in ECS_FAULTS
    ],
)
def test_the_ecs_entry_refuses_a_bad_artifact_with_one_line_and_status_3(
    bad_folder: Path, fault: Callable[[Path], None], file_name: str, words: str
) -> None:
    # GIVEN a damaged copy of a trained folder
    fault(bad_folder)

    # WHEN the ECS task's command starts on it
    result = start_like_ecs(bad_folder)

    # THEN the documented status, and stderr is the refusal line and nothing else
    assert result.returncode == EXIT_NOT_STARTED == 3, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (refusal,) = result.stderr.splitlines()
    assert refusal.startswith(ECS_REFUSAL_PREFIX), refusal
    message = refusal[len(ECS_REFUSAL_PREFIX) :]
    assert file_name in message, message
    assert words in message, message


def test_two_workers_refuse_once_per_worker_and_stop(
    bad_folder: Path,
) -> None:
    """Each worker imports ``main`` and refuses; uvicorn's supervisor must stop, not restart them
    forever, and the process must end with the same status as a single process."""
    corrupt_onnx(bad_folder)

    result = start_two_workers(bad_folder)

    assert result.returncode == EXIT_NOT_STARTED, result.stderr
    assert "Traceback" not in result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith(ECS_REFUSAL_PREFIX)]
    assert 1 <= len(refusals) <= 2, result.stderr
    assert all("model.onnx" in line and "sha256" in line for line in refusals), refusals
    assert "Application startup complete" not in result.stderr


def test_the_ecs_entry_refuses_an_invalid_setting_with_one_line_naming_the_variable(
    trained_artifacts: Path,
) -> None:
    # GIVEN a good artifact folder but a recovery rate above 100 %
    # WHEN the ECS task's command starts
    result = start_like_ecs(trained_artifacts, RECOVERY_RATE="2")

    # THEN status 3 and one line naming the variable and the reason, no traceback
    assert result.returncode == EXIT_NOT_STARTED, result.stderr
    assert result.stderr.splitlines() == [
        f"{ECS_REFUSAL_PREFIX}invalid setting: RECOVERY_RATE: "
        "Input should be less than or equal to 1"
    ]


@pytest.mark.parametrize(
    "fault", [onnx_output_out_of_range_resealed, stats_std_tiny_resealed], ids=["onnx", "stats"]
)
def test_a_model_that_fails_at_load_stops_two_workers_without_a_restart_loop(
    bad_folder: Path, fault: Callable[[Path], None]
) -> None:
    """It used to pass the checksum, crash warm-up with a traceback (status 1), and uvicorn's
    supervisor restarted the workers forever."""
    fault(bad_folder)

    result = start_two_workers(bad_folder)

    assert result.returncode == EXIT_NOT_STARTED, result.stderr
    assert "Traceback" not in result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith(ECS_REFUSAL_PREFIX)]
    assert 1 <= len(refusals) <= 2, result.stderr
    assert "Application startup complete" not in result.stderr


def test_without_onnxruntime_the_pickle_is_not_a_silent_fallback(trained_artifacts: Path) -> None:
    """``best_model.pkl`` is unpickled only when MODEL_RUNTIME=sklearn asks for it: unpickling
    runs code, so a missing onnxruntime is a refusal, not a quiet switch to the pickle."""
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None  # as if not installed\n"
        "try:\n"
        "    import main\n"
        "finally:\n"
        "    print('joblib' in sys.modules, 'sklearn' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=_environment(trained_artifacts),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode != 0
    assert "False False" in result.stderr  # nothing that unpickles was even imported
    refusal = refusal_of(result)
    assert refusal.startswith(REFUSAL_PREFIX), refusal
    assert "needs onnxruntime" in refusal
    assert "MODEL_RUNTIME=sklearn" in refusal
