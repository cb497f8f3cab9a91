"""The ECS server's own limits, without a load balancer in front: each probed by a loopback client
that gives up after a bounded time, against the real entry (the ECS command, infra_cdk.ecs_entry).

Small limits are set through the environment (as an ECS task definition would) so the tests are
quick: a 2 KiB request head, a 1 s request timeout, a 2 s graceful-shutdown timeout.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra_cdk.ecs_entry import GRACEFUL_STOP_STATUSES
from tests.support.loans import TYPICAL_LOAN
from tests.support.paths import LAMBDA_ROOT
from tests.support.servers import Server, ecs_command, free_port, service_env, start_server

CLIENT_TIMEOUT_SECONDS = 10.0
LIMITS = {"SERVER_MAX_HEADER_BYTES": "2048", "SERVER_REQUEST_TIMEOUT": "1"}
GRACEFUL_SHUTDOWN_SECONDS = "2"


def limited_ecs_command(port: int) -> list[str]:
    """The ECS command with a 2 s graceful-shutdown timeout (a uvicorn flag in that command)."""
    command = ecs_command(port)
    command[command.index("--timeout-graceful-shutdown") + 1] = GRACEFUL_SHUTDOWN_SECONDS
    return command


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(trained_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    running = start_server(
        "ecs entry",
        limited_ecs_command(port),
        port=port,
        cwd=LAMBDA_ROOT,
        env=service_env(trained_artifacts, **LIMITS),
        log_path=tmp_path_factory.mktemp("limits") / "server.log",
    )
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def connect(server: Server) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT_SECONDS)
    return client


def read_until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket's timeout)."""
    chunks = []
    while True:
        chunk = client.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_request_head_over_the_limit_gets_431_and_the_connection_closes(server: Server) -> None:
    with connect(server) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4096 + b"\r\n\r\n")
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_head_under_the_limit_is_served(server: Server) -> None:
    with connect(server) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-ok: " + b"a" * 1024 + b"\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_silent_client_is_closed_after_the_request_timeout(server: Server) -> None:
    with connect(server) as client:
        started = time.monotonic()
        answer = read_until_closed(client)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert waited < CLIENT_TIMEOUT_SECONDS


def test_a_slow_client_sending_its_head_byte_by_byte_is_cut_off(server: Server) -> None:
    with connect(server) as client:
        started = time.monotonic()
        request = b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 100
        for byte in request:
            try:
                client.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > 4:
                break
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_half_sent_body_is_answered_408_not_waited_on_forever(server: Server) -> None:
    with connect(server) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 500\r\n\r\n{"income": '
        )
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_an_over_limit_body_is_refused_413_and_not_read(server: Server) -> None:
    with connect(server) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 50000000\r\n\r\n"
        )
        answer = read_until_closed(client)  # closes without waiting for the 50 MB
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()


def test_the_server_still_answers_predictions_after_all_that(server: Server) -> None:
    body = json.dumps(TYPICAL_LOAN).encode()
    with connect(server) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        assert client.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_sigterm_with_a_half_sent_body_drains_within_the_graceful_timeout(
    trained_artifacts: Path, tmp_path: Path
) -> None:
    port = free_port()
    running = start_server(
        "ecs entry",
        limited_ecs_command(port),
        port=port,
        cwd=LAMBDA_ROOT,
        env=service_env(trained_artifacts, **{**LIMITS, "SERVER_REQUEST_TIMEOUT": "60"}),
        log_path=tmp_path / "server.log",
    )
    try:
        running.wait_ready()
        with connect(running) as client:
            client.sendall(
                b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 500\r\n\r\n{"
            )
            time.sleep(0.3)
            started = time.monotonic()
            status = running.stop(timeout=15)
            stopped_after = time.monotonic() - started
    finally:
        running.stop()
    assert status in GRACEFUL_STOP_STATUSES, running.log_text()
    assert stopped_after < 10, running.log_text()
