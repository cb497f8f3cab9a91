"""The registered model is MLflow-native and the registry decides what is deployed.

One real ``mlflow server`` for the module. Three trainings on small synthetic books register
versions 1-3 as ``challenger``; ``loan-default promote`` makes version 1 champion directly,
promotes version 2 through the gate and refuses version 3 (trained on scrambled labels);
``loan-default fetch`` rebuilds the artifact folder the service then serves. The registered model
is checked against the service itself on raw loans (the reference book where present), through
``mlflow models serve``, ``mlflow.pyfunc.spark_udf`` in ``local[2]`` and ``mlflow.models.evaluate``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from tests.support.faults_network import black_hole_port
from tests.support.servers import (
    MLFLOW_CLI,
    free_port,
    post_json,
    running_mlflow_server,
    start_server,
)
from tests.support.serving_fixtures import build_test_app
from training.registry import (
    CHALLENGER,
    CHAMPION,
    HELD_OUT_ARTIFACT,
    evaluation_metrics,
)
from training.schema import FEATURES, TARGET
from training.synthesize import generate_loans, write_loans_csv
from training.tracking import REGISTERED_MODEL_NAME

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_CSV = REPO_ROOT.parent / "shared" / "data" / "Loan_Data.csv"
NAME = REGISTERED_MODEL_NAME
GIVE_UP_SECONDS = 10.0
BATCH = 1000
QUIET_CLIENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@dataclass(frozen=True)
class Registry:
    url: str
    home: Path


def command_env(tracking_uri: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {
        **inherited,
        **QUIET_CLIENT,
        "PYTHONPATH": str(REPO_ROOT),
        "MLFLOW_TRACKING_URI": tracking_uri,
    }


def loan_default(tracking_uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``loan-default`` command line, as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "loan_default", *args],
        cwd=REPO_ROOT,
        env=command_env(tracking_uri),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def train(registry: Registry, data: Path, out: Path, seed: int) -> dict[str, Any]:
    result = loan_default(
        registry.url,
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--seed",
        str(seed),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def client_for(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def aliases(url: str) -> dict[str, str]:
    return dict(client_for(url).get_registered_model(NAME).aliases)


def registry_state(url: str) -> list[tuple[str, tuple[str, ...], dict[str, str], str]]:
    """Every version's aliases, tags and description: what "the registry is untouched" compares."""
    client = client_for(url)
    versions = client.search_model_versions(f"name='{NAME}'")
    return sorted(
        (str(v.version), tuple(sorted(v.aliases)), dict(v.tags), v.description or "")
        for v in versions
    )


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def quiet_client() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in QUIET_CLIENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("registry-server")
    with running_mlflow_server(home) as url:
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)
        yield Registry(url=url, home=home)
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A clean book, and one with a third of its labels scrambled (a worse model's data)."""
    folder = tmp_path_factory.mktemp("books")
    clean = generate_loans(2000, 11)
    write_loans_csv(clean, folder / "clean.csv")
    frame = pd.read_csv(folder / "clean.csv")
    rng = np.random.default_rng(5)
    flip = rng.random(len(frame)) < 0.35
    frame.loc[flip, TARGET] = 1 - frame.loc[flip, TARGET]
    frame.to_csv(folder / "scrambled.csv", index=False)
    write_loans_csv(generate_loans(1500, 12), folder / "fresh.csv")
    return {"clean": folder / "clean.csv", "scrambled": folder / "scrambled.csv",
            "fresh": folder / "fresh.csv"}  # fmt: skip


@dataclass(frozen=True)
class Story:
    """The registry's history in this module, step by step."""

    first: dict[str, Any]
    first_out: Path
    promote_first: subprocess.CompletedProcess[str]
    second: dict[str, Any]
    promote_second: subprocess.CompletedProcess[str]
    promote_without_challenger: subprocess.CompletedProcess[str]
    state_before_no_challenger: Any
    state_after_no_challenger: Any
    third: dict[str, Any]
    promote_third: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def story(
    registry: Registry, books: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Story:
    work = tmp_path_factory.mktemp("trainings")
    first = train(registry, books["clean"], work / "one", seed=1)
    promote_first = loan_default(registry.url, "promote")
    second = train(registry, books["clean"], work / "two", seed=2)
    promote_second = loan_default(registry.url, "promote", "--data", str(books["fresh"]))
    before = registry_state(registry.url)
    promote_without_challenger = loan_default(registry.url, "promote")
    after = registry_state(registry.url)
    third = train(registry, books["scrambled"], work / "three", seed=3)
    promote_third = loan_default(registry.url, "promote", "--data", str(books["clean"]))
    return Story(first, work / "one", promote_first, second, promote_second,
                 promote_without_challenger, before, after, third, promote_third)  # fmt: skip


@pytest.fixture(scope="module")
def champion_folder(
    registry: Registry, story: Story, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("fetched") / "artifacts"
    result = loan_default(registry.url, "fetch", f"models:/{NAME}@{CHAMPION}", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def loans(books: dict[str, Path]) -> Path:
    """Raw loans to score: the reference book where present, else the project's small book."""
    return REFERENCE_CSV if REFERENCE_CSV.is_file() else books["clean"]


@pytest.fixture(scope="module")
def api_answers(champion_folder: Path, loans: Path) -> pd.DataFrame:
    """POST /predict/batch of the real app on the fetched champion, for every loan."""
    app, _ = build_test_app(champion_folder)
    frame = pd.read_csv(loans)
    records = frame[list(FEATURES)].to_dict("records")
    answers: list[dict[str, Any]] = []
    with TestClient(app) as client:
        for start in range(0, len(records), BATCH):
            response = client.post("/predict/batch", json={"loans": records[start : start + BATCH]})
            assert response.status_code == 200, response.text
            answers += response.json()["predictions"]
    return pd.DataFrame(
        {"probability": [a["probability"] for a in answers],
         "prediction": [a["prediction"] for a in answers]}
    )  # fmt: skip


# ---- 1. the model users load --------------------------------------------------------------------


def test_training_registers_a_challenger_that_takes_raw_named_typed_columns(
    registry: Registry, story: Story
) -> None:
    from mlflow.models import get_model_info

    registered = story.first["mlflow"]["registered_model"]
    assert registered == {"name": NAME, "version": "1", "alias": CHALLENGER}
    info = get_model_info(f"models:/{NAME}/1")
    assert info.signature is not None
    inputs = {spec.name: spec.type.name for spec in info.signature.inputs.inputs}
    assert list(inputs) == list(FEATURES)
    assert inputs == {
        "credit_lines_outstanding": "long",
        "loan_amt_outstanding": "double",
        "total_debt_outstanding": "double",
        "income": "double",
        "years_employed": "long",
        "fico_score": "long",
    }
    outputs = {spec.name: spec.type.name for spec in info.signature.outputs.inputs}
    assert outputs == {"probability": "double", "prediction": "long"}
    assert info.saved_input_example_info is not None
    client = client_for(registry.url)
    version = client.get_model_version(NAME, "1")
    assert version.run_id == story.first["mlflow_run_id"]
    assert version.tags["model_version"] == story.first["model_version"]
    import mlflow.artifacts

    requirements = mlflow.artifacts.load_text(f"models:/{NAME}/1/requirements.txt")
    names = sorted(line.split("==")[0] for line in requirements.split())
    assert names == ["mlflow", "numpy", "onnxruntime", "pandas"]  # no scikit-learn, no training


def test_the_registered_model_scores_raw_loans_exactly_as_the_api(
    champion_folder: Path, loans: Path, api_answers: pd.DataFrame
) -> None:
    import mlflow.pyfunc

    frame = pd.read_csv(loans)  # raw columns, customer_id and default included (ignored)
    answer = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").predict(frame)

    assert list(answer.columns) == ["probability", "prediction"]
    assert len(answer) == len(frame) == len(api_answers)
    difference = np.abs(answer["probability"].to_numpy() - api_answers["probability"].to_numpy())
    assert difference.max() <= 1e-6
    assert (answer["prediction"].to_numpy() == api_answers["prediction"].to_numpy()).all()
    # a silently wrong model would give one value: these loans span the whole range
    assert answer["probability"].min() < 0.01
    assert answer["probability"].max() > 0.99
    # single /predict is the same path as the batch: spot-check it too
    app, _ = build_test_app(champion_folder)
    with TestClient(app) as client:
        for row in range(0, len(frame), max(1, len(frame) // 50)):
            (loan,) = json.loads(frame.loc[[row], list(FEATURES)].to_json(orient="records"))
            body = client.post("/predict", json=loan).json()
            assert abs(body["probability"] - answer["probability"][row]) <= 1e-6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda f: f.drop(columns=["income"]), "missing inputs", id="missing"),
        pytest.param(
            lambda f: f.rename(columns={"fico_score": "fico"}), "missing inputs", id="misspelled"
        ),
        pytest.param(
            lambda f: f.assign(income=f["income"].astype(str)), "income", id="string-for-number"
        ),
    ],
)
def test_a_wrong_dataframe_is_refused_with_mlflows_schema_error(
    story: Story, books: dict[str, Path], change: Any, message: str
) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    frame = pd.read_csv(books["clean"]).head(20)
    with pytest.raises(MlflowException, match="Failed to enforce schema") as refused:
        model.predict(change(frame))
    assert message in str(refused.value)


# ---- 2. candidates side by side -----------------------------------------------------------------


def test_each_candidate_is_a_nested_run_with_its_params_metrics_and_plots(
    registry: Registry, story: Story
) -> None:
    client = client_for(registry.url)
    parent = client.get_run(story.first["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    by_name = {run.data.tags["candidate"]: run for run in children}
    assert set(by_name) == set(story.first["metrics"])
    chosen = story.first["model"]["name"]
    for name, run in by_name.items():
        expected = story.first["metrics"][name]
        for key in ("f1", "roc_auc", "brier", "precision", "recall", "log_loss"):
            assert run.data.metrics[key] == pytest.approx(expected[key])
        assert run.data.metrics["cv_f1_mean"] == pytest.approx(expected["cv"]["f1_mean"])
        assert run.data.tags["chosen"] == str(name == chosen).lower()
        assert run.data.params["candidate"] == name
        plots = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "plots")}
        assert {"roc.png", "pr.png", "calibration.png", "confusion_matrix.png"} <= plots
    held_out = {item.path for item in client.list_artifacts(parent.info.run_id, "held_out")}
    assert held_out == {HELD_OUT_ARTIFACT}


# ---- 3. aliases and the promotion gate ----------------------------------------------------------


def test_the_first_version_becomes_champion_directly(registry: Registry, story: Story) -> None:
    assert story.promote_first.returncode == 0, story.promote_first.stderr
    assert "version 1 is now champion (there was none)" in story.promote_first.stdout
    version = client_for(registry.url).get_model_version(NAME, "1")
    assert version.tags["replaced_champion"] == "none"
    assert "Promoted to champion" in version.description


def test_a_challenger_not_worse_than_the_champion_is_promoted_and_recorded(
    registry: Registry, story: Story
) -> None:
    result = story.promote_second
    assert result.returncode == 0, result.stderr
    assert "promoted: version 2 is now champion (was version 1)" in result.stdout
    for metric in ("roc_auc", "f1", "brier"):
        assert metric in result.stdout
    client = client_for(registry.url)
    new, old = client.get_model_version(NAME, "2"), client.get_model_version(NAME, "1")
    record = json.loads(new.tags["promotion"])
    assert record["challenger"]["version"] == "2"
    assert record["champion"]["version"] == "1"
    assert set(record["challenger"]) >= {"roc_auc", "f1", "brier"}
    assert record["by"]
    assert record["at"] == new.tags["promoted_at"]
    assert new.tags["replaced_champion"] == "1"
    assert old.tags["replaced_by"] == "2"
    assert "Replaced as champion by version 2" in old.description


def test_promote_without_a_challenger_says_so_and_changes_nothing(story: Story) -> None:
    result = story.promote_without_challenger
    assert result.returncode == 2
    assert "no version with alias 'challenger'" in one_line(result.stderr)
    assert story.state_before_no_challenger == story.state_after_no_challenger


def test_a_worse_challenger_is_refused_with_a_table_of_what_failed(
    registry: Registry, story: Story
) -> None:
    result = story.promote_third
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stdout.splitlines() if line.endswith("FAILED")]
    assert failed, result.stdout
    assert "champion unchanged" in result.stdout
    assert aliases(registry.url) == {CHAMPION: "2", CHALLENGER: "3"}
    refused = client_for(registry.url).get_model_version(NAME, "3")
    assert json.loads(refused.tags["promotion_refused"])["failed"]


# ---- 4. build what you deploy from the registry -------------------------------------------------


def test_fetch_rebuilds_the_champions_artifact_folder_and_the_service_serves_it(
    registry: Registry, story: Story, champion_folder: Path
) -> None:
    from loan_service.artifacts import load_artifacts

    manifest = json.loads((champion_folder / "manifest.json").read_text())
    assert manifest["model_version"] == story.second["model_version"]
    assert manifest["mlflow"]["registered_model"]["name"] == NAME
    assert manifest["mlflow"]["registered_model"]["version"] == "2"
    assert manifest["mlflow"]["registered_model"]["alias"] == CHAMPION
    assert sorted(p.name for p in champion_folder.iterdir()) == sorted(
        [*story.second["files"], "manifest.json"]
    )
    bundle = load_artifacts(champion_folder, FEATURES)  # verifies every sha256 again
    assert bundle.manifest.model_version == story.second["model_version"]


def test_fetch_of_a_missing_alias_names_it_and_leaves_the_folder_alone(
    registry: Registry, story: Story, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    result = loan_default(registry.url, "fetch", f"models:/{NAME}@production", "--out", str(out))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "has no alias 'production'" in line
    assert "@champion -> version 2" in line
    assert folder_state(out) == {"manifest.json": b"{}"}


def test_fetch_of_a_version_whose_file_fails_its_sha256_writes_nothing(
    registry: Registry, story: Story, tmp_path: Path
) -> None:
    client = client_for(registry.url)
    version = client.get_model_version(NAME, "3")
    model_id = version.source.removeprefix("models:/")
    (stored,) = registry.home.glob(f"artifacts/**/{model_id}/artifacts/artifacts/model.onnx")
    stored.write_bytes(stored.read_bytes() + b"\0")
    out = tmp_path / "artifacts"
    before = registry_state(registry.url)

    result = loan_default(registry.url, "fetch", f"models:/{NAME}/3", "--out", str(out))

    assert result.returncode == 2
    assert "model.onnx of models:/loan-default/3 does not match its sha256" in one_line(
        result.stderr
    )
    assert not out.exists()
    assert not list(tmp_path.iterdir())
    assert registry_state(registry.url) == before


# ---- 6. an unreachable tracking server ----------------------------------------------------------


@contextlib.contextmanager
def dead_server(kind: str) -> Iterator[str]:
    """A tracking URI with credentials in it that nobody answers."""
    if kind == "closed-port":
        yield f"http://alice:s3cret@127.0.0.1:{free_port()}"
        return
    with black_hole_port() as port:
        yield f"http://alice:s3cret@127.0.0.1:{port}"


@pytest.mark.parametrize("kind", ["closed-port", "black-hole"])
@pytest.mark.parametrize("command", ["promote", "fetch"])
def test_an_unreachable_server_is_given_up_on_in_one_redacted_line(
    kind: str, command: str, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    args = ["promote"] if command == "promote" else ["fetch", f"models:/{NAME}@{CHAMPION}"]
    with dead_server(kind) as uri:
        began = time.monotonic()
        result = (
            loan_default(uri, *args, "--out", str(out))
            if command == "fetch"
            else (loan_default(uri, *args))
        )
        elapsed = time.monotonic() - began
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "cannot be reached" in line
    assert "s3cret" not in result.stderr + result.stdout
    assert "http://***@127.0.0.1" in line
    assert elapsed < GIVE_UP_SECONDS
    assert not out.exists()


# ---- 5. MLflow's own tools ----------------------------------------------------------------------


@pytest.mark.usefixtures("story")
def test_mlflow_models_serve_answers_raw_dataframe_records_like_the_api(
    registry: Registry, loans: Path, api_answers: pd.DataFrame, tmp_path: Path
) -> None:
    port = free_port()
    # the scoring server execs `uvicorn` by name: this interpreter's scripts come first on PATH
    env = command_env(registry.url)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server = start_server(
        "mlflow models serve",
        [str(MLFLOW_CLI), "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        port=port, cwd=tmp_path, env=env, log_path=tmp_path / "serve.log",
    )  # fmt: skip
    try:
        server.wait_until_get_ok("/ping", timeout=180)
        frame = pd.read_csv(loans).head(BATCH)
        records = json.loads(frame.to_json(orient="records"))
        status, body = post_json(port, "/invocations", {"dataframe_records": records}, timeout=60)
    finally:
        server.stop()
    assert status == 200, body
    served = pd.DataFrame(body["predictions"])
    expected = api_answers.head(BATCH)
    assert (
        np.abs(served["probability"].to_numpy() - expected["probability"].to_numpy()).max() <= 1e-6
    )
    assert (served["prediction"].to_numpy() == expected["prediction"].to_numpy()).all()


def test_spark_udf_scores_a_spark_dataframe_of_raw_columns_like_the_api(
    story: Story,
    champion_folder: Path,
    loans: Path,
    api_answers: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, struct

    # PySpark starts its Python workers with PYSPARK_PYTHON (default: python3, without pandas)
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("loan-default-registry-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        frame = spark.read.csv(str(loans), header=True, inferSchema=True)
        udf = mlflow.pyfunc.spark_udf(spark, f"models:/{NAME}@{CHAMPION}", env_manager="local")
        scored = frame.withColumn("scored", udf(struct(*[col(name) for name in FEATURES])))
        rows = scored.select("scored.probability", "scored.prediction").toPandas()
    finally:
        spark.stop()
    assert len(rows) == len(api_answers)
    assert (
        np.abs(rows["probability"].to_numpy() - api_answers["probability"].to_numpy()).max() <= 1e-6
    )
    assert (rows["prediction"].to_numpy() == api_answers["prediction"].to_numpy()).all()


def test_mlflow_evaluate_on_the_registered_model_gives_the_manifests_held_out_metrics(
    registry: Registry, story: Story, tmp_path: Path
) -> None:
    import mlflow
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(
        run_id=story.first["mlflow_run_id"], artifact_path=HELD_OUT_ARTIFACT, dst_path=str(tmp_path)
    )
    held_out = pd.read_csv(local)
    assert len(held_out) == story.first["data"]["test_rows"]
    mlflow.set_experiment("loan-default-evaluation")
    with mlflow.start_run():
        result = mlflow.models.evaluate(
            f"models:/{NAME}/1",
            data=held_out,
            targets=TARGET,
            predictions="probability",
            extra_metrics=evaluation_metrics(),
        )
    expected = story.first["metrics"][story.first["model"]["name"]]
    assert result.metrics["f1"] == pytest.approx(expected["f1"], abs=1e-9)
    assert result.metrics["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-4)
    assert result.metrics["brier"] == pytest.approx(expected["brier"], abs=1e-6)
