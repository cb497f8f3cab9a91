"""A tracking URI with a password and a token never shows them: not in a log line, not on stderr,
not in the artifact folder training writes (the image bakes it in), not in an answer.

Each test sets a URI with secrets, exercises the path that used to print it, then greps EVERY
output it can reach for the secret strings.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from loan_service.redaction import redact
from tests.support.faults_network import closed_port
from tests.support.loans import TYPICAL_LOAN
from tests.support.paths import PROJECT_CSV, REPO_ROOT
from tests.support.serving_fixtures import build_test_app

PASSWORD = "S3cretPassw0rd"
TOKEN = "t0kenValue42"
SECRETS = (PASSWORD, TOKEN)


def secret_uri(port: int) -> str:
    return f"http://alice:{PASSWORD}@127.0.0.1:{port}/mlflow?run=1&token={TOKEN}"


def assert_no_secret(where: str, text: str | bytes) -> None:
    content = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for secret in SECRETS:
        assert secret not in content, f"{secret!r} leaked into {where}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://u:p@h:5000/x", "http://***@h:5000/x"),
        ("https://token@h/", "https://***@h/"),
        ("error at http://a:b@h/api?x=1&token=abc#f", "error at http://***@h/api?x=1&token=***#f"),
        (
            "s3://b/k?X-Amz-Signature=ff&X-Amz-Credential=A/b",
            "s3://b/k?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("http://h:5000/?api_key=k&keep=1", "http://h:5000/?api_key=***&keep=1"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("plain text, a=b", "plain text, a=b"),
    ],
)
def test_redact_hides_userinfo_and_token_parameters_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_training_against_an_unreachable_server_leaks_the_secret_nowhere(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "PYTHONPATH": str(REPO_ROOT),
        "MLFLOW_TRACKING_URI": secret_uri(closed_port()),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--data",
            str(PROJECT_CSV),
            "--out",
            str(out),
            "--seed",
            "7",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1" in result.stderr  # the warning still says where it tried
    assert_no_secret("training's stdout", result.stdout)
    assert_no_secret("training's stderr", result.stderr)
    files = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "manifest.json" for path in files)
    for path in files:
        assert_no_secret(str(path.relative_to(out)), path.read_bytes())
    assert "http://***@127.0.0.1" in (out / "manifest.json").read_text()


def test_serving_with_an_unreachable_server_leaks_the_secret_nowhere(
    trained_artifacts: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    # Powertools keeps one handler per service name: a name of its own gets this stream.
    app, service = build_test_app(
        trained_artifacts,
        log_stream=stream,
        mlflow_tracking_uri=secret_uri(closed_port()),
        service_name="loan-default-redaction",
    )
    answers = []
    with TestClient(app) as client:
        answers.append(client.post("/predict", json=TYPICAL_LOAN).text)
        deadline = time.monotonic() + 60
        while "cannot connect" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.1)
        for path in ("/health", "/model", "/openapi.json", "/docs", "/"):
            answers.append(client.get(path).text)
    service.prediction_log.close(1.0)
    logged = stream.getvalue()
    assert "cannot connect" in logged, logged  # the warning that used to carry the URI
    captured = capfd.readouterr()
    assert_no_secret("the service log", logged)
    assert_no_secret("stdout", captured.out)
    assert_no_secret("stderr", captured.err)
    for answer in answers:
        assert_no_secret("an HTTP answer", answer)
