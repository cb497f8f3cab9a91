"""Real-browser harness for the web page: the real app, a stage-prefix proxy, headless Chromium.

Nothing here fakes the API. The app runs as a separate uvicorn process on a real trained artifact
folder, exactly as ``make serve`` runs it; the browser is Debian's ``chromium`` driven by Playwright
(the test tool's own browser download does not work on this network). ``StagePrefixProxy`` plays
API Gateway's part for the ``/prod`` stage: it strips the stage from the path before the app sees
it, answers 403 outside the stage and 502 when the integration behind it is down, as API Gateway
does.

The pytest fixtures built on these live in ``browser_fixtures.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from playwright.sync_api import FilePayload, Page, Response, ViewportSize, expect

from tests.support.paths import LAMBDA_ROOT, REPO_ROOT
from tests.support.servers import free_port
from training.schema import DEFAULT_BOOK

CHROMIUM_PATH = Path("/usr/bin/chromium")
# Flags for a sandbox-less container with no GPU and no route to Google's update/sync services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 60.0
DESKTOP_VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
PHONE_VIEWPORT: ViewportSize = {"width": 375, "height": 812}
FEATURES = DEFAULT_BOOK.feature_names
# The values the page prefills (the schema file's examples, which GET /model publishes); tests post
# the same loan straight to the API to compare answers.
PAGE_EXAMPLE_LOAN: dict[str, Any] = {f.name: f.example for f in DEFAULT_BOOK.features}
# Headers that belong to one hop of a connection, never forwarded by a proxy (RFC 9110 §7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def percent(probability: float) -> str:
    """How the page writes a probability: one decimal; never 0.0% or 100.0% unless it is exact."""
    if 0 < probability < 0.0005:
        return "<0.1%"
    if 0.9995 <= probability < 1:
        return ">99.9%"
    return f"{probability * 100:.1f}%"


def http_json(
    url: str, payload: object | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, Any]]:
    """GET (or POST JSON when ``payload`` is given); return status and decoded body, errors too."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@contextlib.contextmanager
def serve_app(artifact_dir: Path) -> Iterator[str]:
    """Run ``main:app`` under uvicorn in its own process; yield its base URL once /health is 200.

    MLflow logging stays off (MLFLOW_TRACKING_URI removed) so the page tests never wait on a
    tracking server; the MLflow path has its own integration tests.
    """
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env.update({"ARTIFACT_DIR": str(artifact_dir), "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(LAMBDA_ROOT)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    base_url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_healthy(process, base_url, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log: IO[str]) -> None:
    """Poll GET /health; fail with the server's own output if it dies or never becomes ready."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log.read()[-4000:]}")
        try:
            status, _ = http_json(base_url + "health", timeout=2.0)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    log.seek(0)
    raise RuntimeError(
        f"uvicorn not healthy after {SERVER_START_TIMEOUT_S} s:\n{log.read()[-4000:]}"
    )


class StagePrefixProxy:
    """API Gateway's REST stage in miniature: ``/prod/...`` reaches the app as ``/...``.

    Outside the stage it answers 403 ``{"message": "Forbidden"}``; when the app behind it cannot be
    reached it answers 502 ``{"message": "Internal server error"}``. Both are API Gateway's own
    answers, so the page's error handling meets the shapes it will meet in AWS.
    """

    def __init__(self, upstream_base_url: str, stage: str = "/prod") -> None:
        self.stage = stage.rstrip("/")
        self.upstream = upstream_base_url
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>`` without a path."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StagePrefixProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening: later requests fail at the network level, like an unreachable host."""
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != proxy.stage and not parts.path.startswith(proxy.stage + "/"):
                    self._answer(403, {"message": "Forbidden"})
                    return
                app_path = parts.path[len(proxy.stage) :] or "/"
                if parts.query:
                    app_path += "?" + parts.query
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in HOP_BY_HOP
                }
                upstream = urlsplit(proxy.upstream)
                connection = http.client.HTTPConnection(
                    upstream.hostname or "127.0.0.1", upstream.port, timeout=30
                )
                try:
                    connection.request(self.command, app_path, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                except OSError:
                    self._answer(502, {"message": "Internal server error"})
                    return
                finally:
                    connection.close()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _answer(self, status: int, body: dict[str, str]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _forward

        return Handler


# ---- Page helpers shared by the browser tests ------------------------------------------------


def open_page(tab: Page, url: str) -> None:
    """Load the page and wait until its GET /model call has settled (success or failure)."""
    tab.goto(url)
    # Locator expectations, not wait_for_function: the page's CSP forbids eval, which that uses.
    expect(tab.locator("#model-summary")).not_to_have_text("Model details are loading.")


def fill_loan(tab: Page, values: Mapping[str, object]) -> None:
    """Type each value into the field of the same name, as a user would."""
    for name, value in values.items():
        tab.fill(f"#{name}", str(value))


def submit_single_loan(tab: Page) -> Response:
    """Press "Estimate risk" and return the real /predict response once the page has rendered it."""
    with tab.expect_response(
        lambda response: response.url.endswith("/predict") and response.request.method == "POST"
    ) as answer:
        tab.get_by_role("button", name="Estimate risk").click()
    expect(tab.locator("#predict-button")).not_to_have_attribute("aria-disabled", "true")
    return answer.value


def csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A CSV file body with CRLF line ends, as spreadsheet apps write it."""
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    return "\r\n".join(lines) + "\r\n"


def choose_csv(tab: Page, text: str, name: str = "loans.csv") -> None:
    """Put an in-memory CSV file into the page's file input."""
    payload: FilePayload = {"name": name, "mimeType": "text/csv", "buffer": text.encode()}
    tab.set_input_files("#batch-file", files=[payload])


def sample_loans(count: int) -> list[dict[str, float | int]]:
    """Deterministic, valid, varied loans: a spread from safe to risky applicants."""
    loans: list[dict[str, float | int]] = []
    for index in range(count):
        step = index % 11
        loans.append(
            {
                "credit_lines_outstanding": step % 6,
                "loan_amt_outstanding": round(1500 + 650.25 * step, 2),
                "total_debt_outstanding": round(2000 + 3900.5 * (step % 7), 2),
                "income": round(95000 - 5800 * step, 2),
                "years_employed": 10 - step % 9,
                "fico_score": 780 - 21 * step,
            }
        )
    return loans


# Every element with its own visible text: its colour against the first opaque background behind
# it, as WCAG 2.x computes contrast (4.5:1 for text, 3:1 for large text: 24 px, or 18.66 px bold).
CONTRAST_FAILURES_JS = """
() => {
  const parse = (value) => {
    const match = /rgba?\\(([^)]+)\\)/.exec(value);
    if (!match) return null;
    const parts = match[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const blend = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1,
  });
  const channel = (value) => {
    const v = value / 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const backgroundOf = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour && colour.a > 0) { layers.push(colour); if (colour.a >= 1) break; }
    }
    let result = { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) result = blend(layer, result);
    return result;
  };
  const failures = [];
  let checked = 0;
  for (const element of document.querySelectorAll('body *')) {
    const ownText = element.tagName === 'INPUT'
      ? element.value
      : [...element.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join('');
    if (!ownText.trim()) continue;
    const style = getComputedStyle(element);
    if (style.visibility === 'hidden' || element.getClientRects().length === 0) continue;
    if (element.closest('[hidden], details:not([open]) > :not(summary)')) continue;
    const background = backgroundOf(element);
    const foreground = blend(parse(style.color), background);
    const [light, dark] = [luminance(foreground), luminance(background)].sort((a, b) => b - a);
    const ratio = (light + 0.05) / (dark + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    checked += 1;
    if (ratio < (large ? 3 : 4.5)) {
      failures.push(`${element.tagName}.${element.className} "${ownText.trim().slice(0, 40)}" `
        + `${ratio.toFixed(2)}:1 (${style.color} on `
        + `rgb(${background.r}, ${background.g}, ${background.b}))`);
    }
  }
  return { checked, failures };
}
"""
