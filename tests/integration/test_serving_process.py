"""Fresh processes: what importing ``main`` loads, and how a bad artifact stops it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import LAMBDA_ROOT, PROJECT_EVENTS_DIR, REPO_ROOT

HEAVY_MODULES = ("sklearn", "scipy", "pandas", "mlflow")

SERVE_ONE_PREDICTION = f"""
import json, sys
import main
from tests.support.events import load_project_event, response_json
from tests.support.lambda_context import FakeLambdaContext
response = main.handler(load_project_event("apigw-http-v2-prod-stage.json"), FakeLambdaContext())
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY_MODULES!r}))
print(json.dumps({{"status": response["statusCode"], "answer": response_json(response),
                  "runtime": main.service.assessor.runtime, "heavy": loaded}}))
"""


def run_python(code: str, artifact_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "AWS_")) and not key.endswith("_NUM_THREADS")
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={
            **clean,
            "PYTHONPATH": os.pathsep.join([str(LAMBDA_ROOT), str(REPO_ROOT)]),
            "ARTIFACT_DIR": str(artifact_dir),
            "POWERTOOLS_METRICS_DISABLED": "true",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_json_line(stdout: str) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return parsed


def test_serving_on_onnx_loads_no_sklearn_scipy_pandas_or_mlflow(trained_artifacts: Path) -> None:
    """GIVEN a fresh interpreter WHEN it imports main and serves one prediction through the
    Lambda handler on the ONNX path THEN none of the heavy libraries was ever imported."""
    assert PROJECT_EVENTS_DIR.is_dir()
    result = run_python(SERVE_ONE_PREDICTION, trained_artifacts)
    assert result.returncode == 0, result.stderr
    report = last_json_line(result.stdout)
    assert report["status"] == 200
    assert report["runtime"] == "onnx"
    assert report["heavy"] == []


FIRST_PREDICTION_THEN_THE_REST = """
import importlib.metadata, json, sys
searched = []
entry_points = importlib.metadata.entry_points
def spy(**selection):
    searched.append(selection.get("group"))
    return entry_points(**selection)
importlib.metadata.entry_points = spy  # before pydantic imports it
import main
from tests.support.events import load_project_event, response_json, shape_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.loans import TYPICAL_LOAN
event = load_project_event("apigw-http-v2-prod-stage.json")
prediction = main.handler(shape_event(event, "POST", "/prod/predict", body=TYPICAL_LOAN),
                          FakeLambdaContext())
fastapi_after_prediction = "fastapi" in sys.modules
searched_for_plugins = "pydantic" in searched
health = main.handler(shape_event(event, "GET", "/prod/health"), FakeLambdaContext())
print(json.dumps({"prediction": prediction["statusCode"], "health": health["statusCode"],
                  "status": response_json(health)["status"],
                  "fastapi_after_prediction": fastapi_after_prediction,
                  "searched_for_pydantic_plugins": searched_for_plugins,
                  "fastapi_after_health": "fastapi" in sys.modules}))
"""


def test_a_lambda_functions_first_prediction_never_imports_fastapi(trained_artifacts: Path) -> None:
    """GIVEN a fresh interpreter (a Lambda cold start) WHEN it imports main and answers a
    ``POST /predict`` THEN FastAPI, the largest import of all, was never loaded, nor were the
    installed distributions searched for pydantic plugins; the first request for another path
    loads FastAPI and is answered as always."""
    result = run_python(FIRST_PREDICTION_THEN_THE_REST, trained_artifacts)
    assert result.returncode == 0, result.stderr
    assert last_json_line(result.stdout) == {
        "prediction": 200,
        "health": 200,
        "status": "ok",
        "fastapi_after_prediction": False,
        "searched_for_pydantic_plugins": False,
        "fastapi_after_health": True,
    }


THREADS_AFTER_IMPORT = """
import json, threading
import main
status = open("/proc/self/status").read()
print(json.dumps({"threads": int(status.split("Threads:")[1].split()[0]),
                  "python_threads": threading.active_count()}))
"""


def test_importing_main_starts_no_blas_thread_pool(trained_artifacts: Path) -> None:
    """GIVEN a fresh interpreter with no BLAS setting WHEN it imports main (MLflow off) THEN the
    process runs no thread beyond the main one and ONNX Runtime's: numpy's OpenBLAS would
    otherwise start one per core, which cost ~60 ms of cold start here."""
    result = run_python(THREADS_AFTER_IMPORT, trained_artifacts)
    assert result.returncode == 0, result.stderr
    report = last_json_line(result.stdout)
    assert report["python_threads"] == 1
    assert report["threads"] <= 2, report


def test_the_sklearn_fallback_really_uses_sklearn(trained_artifacts: Path) -> None:
    """The same probe can see heavy modules: the hygiene test above is not vacuous."""
    result = run_python(SERVE_ONE_PREDICTION, trained_artifacts, MODEL_RUNTIME="sklearn")
    assert result.returncode == 0, result.stderr
    report = last_json_line(result.stdout)
    assert report["runtime"] == "sklearn"
    assert "sklearn" in report["heavy"]  # type: ignore[operator]


def test_a_tampered_artifact_stops_main_from_importing_and_names_the_file(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(trained_artifacts, folder)
    with (folder / "stats.json").open("a") as handle:
        handle.write(" ")
    result = run_python("import main", folder)
    assert result.returncode != 0
    assert "ArtifactError: stats.json does not match its sha256 in manifest.json" in result.stderr


def test_a_missing_artifact_folder_stops_main_with_a_hint(tmp_path: Path) -> None:
    result = run_python("import main", tmp_path / "never-trained")
    assert result.returncode != 0
    assert "train first (`make train`) or set ARTIFACT_DIR" in result.stderr
