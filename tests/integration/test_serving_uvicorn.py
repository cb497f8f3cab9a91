"""The service under a real uvicorn (httptools + uvloop, as ``make serve`` runs it)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.loans import TYPICAL_LOAN
from tests.support.servers import free_port
from tests.support.serving_fixtures import (
    start_uvicorn,
    stop_process,
    stopped_gracefully,
    wait_for_http,
)


@pytest.fixture(scope="module")
def server_port(trained_artifacts: Path) -> Iterator[int]:
    port = free_port()
    process = start_uvicorn(trained_artifacts, port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process)
        yield port
    finally:
        status, output = stop_process(process)
        assert stopped_gracefully(status, output), output


def raw_exchange(port: int, request: bytes, read_timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_predictions_over_one_keep_alive_connection(server_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server_port, timeout=10)
    body = json.dumps(TYPICAL_LOAN)
    ids = set()
    for i in range(200):
        connection.request(
            "POST",
            "/predict",
            body=body,
            headers={"content-type": "application/json", "x-request-id": f"keepalive-{i}"},
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200
        assert response.getheader("x-request-id") == f"keepalive-{i}"
        ids.add(answer["request_id"])
    connection.close()
    assert len(ids) == 200


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server_port: int) -> None:
    """Only the headers go out; the 413 comes back without the server waiting for the body."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000000\r\n\r\n"
    )
    answer = raw_exchange(server_port, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"x-request-id:" in answer.lower()


def test_a_chunked_body_growing_past_the_limit_is_refused(server_port: int) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer = raw_exchange(server_port, head + body)
    assert answer.startswith(b"HTTP/1.1 413")


def test_the_page_health_and_docs_are_served(server_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server_port, timeout=10)
    for path, kind in (("/", "text/html"), ("/health", "application/json"), ("/docs", "text/html")):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, path
        assert response.getheader("content-type", "").startswith(kind)
    connection.close()
