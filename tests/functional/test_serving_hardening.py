"""Hostile and unusual requests through the in-process app: each answer is right, small and quick.

Regression tests for what a red-team pass found: POSTs without Content-Type (AWS's own sample
events), unbounded 422s, integers over Python's 4300-digit limit, texts showing ``inf``, HEAD.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from loan_service.api.app import SWAGGER_UI_CDN, SWAGGER_UI_INTEGRITY, SWAGGER_UI_VERSION
from loan_service.application import ServiceApp
from loan_service.errors import MAX_ECHOED_CHARS, MAX_ERROR_DETAILS
from loan_service.service import PredictionService
from tests.support.loans import RISKY_LOAN, TYPICAL_LOAN
from tests.support.serving_fixtures import build_test_app

ERROR_ANSWER_MAX_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def app_and_service(trained_artifacts: Path) -> tuple[ServiceApp, PredictionService]:
    return build_test_app(trained_artifacts)


@pytest.fixture(scope="module")
def client(app_and_service: tuple[ServiceApp, PredictionService]) -> Iterator[TestClient]:
    with TestClient(app_and_service[0], raise_server_exceptions=False) as test_client:
        yield test_client


def raw_post(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST exactly ``headers`` (the test client adds no Content-Type to raw ``content``)."""
    return client.post(path, content=body, headers=headers)


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_json_body_without_content_type_is_parsed_as_json(client: TestClient, path: str) -> None:
    body = TYPICAL_LOAN if path == "/predict" else {"loans": [TYPICAL_LOAN, RISKY_LOAN]}
    response = raw_post(client, path, json.dumps(body).encode(), {})
    assert "content-type" not in response.request.headers
    assert response.status_code == 200, response.text


def test_an_invalid_body_without_content_type_gets_its_422(client: TestClient) -> None:
    response = raw_post(client, "/predict", json.dumps({"income": True}).encode(), {})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_an_explicit_non_json_content_type_stays_415(client: TestClient, content_type: str) -> None:
    response = raw_post(
        client, "/predict", json.dumps(TYPICAL_LOAN).encode(), {"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_eighty_thousand_unknown_keys_get_a_small_422_with_the_total(client: TestClient) -> None:
    body = dict(TYPICAL_LOAN)
    body.update({f"{index:05x}": 0 for index in range(80_000)})
    encoded = json.dumps(body, separators=(",", ":")).encode()
    assert len(encoded) < 1024 * 1024  # under the body cap: it is validated, not refused
    response = raw_post(client, "/predict", encoded, {"content-type": "application/json"})
    assert response.status_code == 422
    assert len(response.content) < ERROR_ANSWER_MAX_BYTES
    answer = response.json()
    assert len(answer["detail"]) == MAX_ERROR_DETAILS
    assert answer["detail_total"] == 80_000
    assert "79,980 more errors" in answer["message"]


def test_long_unknown_names_are_clipped_in_every_echo(client: TestClient) -> None:
    long_name = "k" * 100_000
    body = {**TYPICAL_LOAN, long_name: 1}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert len(response.content) < ERROR_ANSWER_MAX_BYTES
    (detail,) = response.json()["detail"]
    assert all(len(str(part)) <= MAX_ECHOED_CHARS for part in detail["loc"])
    assert detail["loc"][-1].endswith("...")


def test_a_batch_of_invalid_loans_is_capped_too(client: TestClient) -> None:
    loans = [{**TYPICAL_LOAN, "fico_score": 10, "income": -1} for _ in range(1000)]
    response = client.post("/predict/batch", json={"loans": loans})
    assert response.status_code == 422
    assert len(response.content) < ERROR_ANSWER_MAX_BYTES
    assert response.json()["detail_total"] == 2000


@pytest.mark.parametrize("field", ["fico_score", "income"])
def test_an_integer_longer_than_4300_digits_is_a_422(client: TestClient, field: str) -> None:
    text = json.dumps(TYPICAL_LOAN).replace(
        f'"{field}": {json.dumps(TYPICAL_LOAN[field])}', f'"{field}": {"9" * 5000}'
    )
    assert "9" * 5000 in text
    response = raw_post(client, "/predict", text.encode(), {"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert len(response.content) < ERROR_ANSWER_MAX_BYTES


def test_invalid_utf8_stays_415(client: TestClient) -> None:
    response = raw_post(
        client, "/predict", b'{"income": "\xff"}', {"content-type": "application/json"}
    )
    assert response.status_code == 415


def test_a_tiny_income_never_shows_inf_or_nan(client: TestClient) -> None:
    loan = {**RISKY_LOAN, "income": 1e-320}
    response = client.post("/predict", json=loan)
    assert response.status_code == 200, response.text
    text = response.text.lower()
    assert "inf" not in text.replace("information", "")
    assert "nan" not in text
    assert response.json()["reasons"], "a decline this risky still names its reasons"


@pytest.mark.parametrize("path", ["/", "/health", "/model", "/openapi.json", "/docs"])
def test_head_works_wherever_get_does(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == 200
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["x-request-id"]


def test_head_on_a_post_only_route_is_405_not_a_body(client: TestClient) -> None:
    response = client.head("/predict")
    assert response.status_code == 405
    assert response.content == b""


@pytest.mark.parametrize(
    "offered",
    ["a" * 129, "two words", "<script>", "id\u00e9", 'quote"d', "semi;colon", ""],
)
def test_an_unsafe_client_request_id_is_replaced_by_a_minted_one(
    client: TestClient, offered: str
) -> None:
    response = client.post(
        "/predict", json=TYPICAL_LOAN, headers={"x-request-id": offered.encode()}
    )
    assert response.status_code == 200
    minted = response.headers["x-request-id"]
    assert minted != offered
    assert len(minted) == 32
    assert int(minted, 16) >= 0
    assert response.json()["request_id"] == minted


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/health"), ("GET", "/model"), ("GET", "/docs"), ("POST", "/predict")],
)
def test_every_answer_forbids_framing_sniffing_referrers_and_caching_of_applicant_data(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json=TYPICAL_LOAN if method == "POST" else None)
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    expected_cache = "no-cache" if path == "/" else "no-store"
    assert response.headers["cache-control"] == expected_cache


@pytest.mark.parametrize("body", [TYPICAL_LOAN, {"income": True}, {"loans": []}])
def test_prediction_answers_and_their_errors_are_never_stored(
    client: TestClient, body: dict[str, Any]
) -> None:
    path = "/predict/batch" if "loans" in body else "/predict"
    response = client.post(path, json=body)
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_docs_load_swagger_ui_at_one_exact_version(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "swagger-ui-dist@5/" not in page
    assert "swagger-ui-dist@5.17.14/swagger-ui-bundle.js" in page
    assert "/openapi.json" in page


def test_docs_assets_carry_subresource_integrity(client: TestClient) -> None:
    page = client.get("/docs").text
    for name, digest in SWAGGER_UI_INTEGRITY.items():
        attribute = "src" if name.endswith(".js") else "href"
        assert (
            f'{attribute}="{SWAGGER_UI_CDN}/{name}" integrity="{digest}" crossorigin="anonymous"'
        ) in page


SWAGGER_UI_PACKAGE = Path(__file__).resolve().parents[2] / "node_modules" / "swagger-ui-dist"


@pytest.mark.skipif(
    not SWAGGER_UI_PACKAGE.is_dir(), reason="node_modules/swagger-ui-dist missing: run npm ci"
)
def test_the_integrity_hashes_are_those_of_the_pinned_package() -> None:
    package = json.loads((SWAGGER_UI_PACKAGE / "package.json").read_text())
    assert package["version"] == SWAGGER_UI_VERSION
    for name, digest in SWAGGER_UI_INTEGRITY.items():
        sha384 = hashlib.sha384((SWAGGER_UI_PACKAGE / name).read_bytes()).digest()
        assert digest == "sha384-" + base64.b64encode(sha384).decode()


def test_a_slash_redirect_never_reflects_the_host_header(client: TestClient) -> None:
    response = client.get("/health/", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == "/health"
    assert "evil.example" not in response.text
