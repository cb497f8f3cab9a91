"""Pure ASGI middleware (no ``BaseHTTPMiddleware``: it costs a task and a stream per request).

Outermost first: request id, timing and security headers, the external path prefix (API Gateway
stage, custom-domain base path), then HEAD as GET, the body-size cap and the JSON content-type
check in one layer. Each is a few attribute lookups per request; the checks that can refuse a
request answer without reading more.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loan_service.errors import (
    INTERNAL_ERROR_MESSAGE,
    JSON_CONTENT_TYPE,
    NOT_JSON_MESSAGE,
    REQUEST_ID_HEADER,
    TOO_LARGE_MESSAGE,
    error_body,
)

MAX_BODY_BYTES: Final = 1024 * 1024
_REQUEST_ID_BYTES: Final = REQUEST_ID_HEADER.encode()
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._~:@/+=-]{1,128}$")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_JSON_TYPE: Final = (b"content-type", JSON_CONTENT_TYPE.encode())
_CONNECTION_CLOSE: Final = (b"connection", b"close")

_log = logging.getLogger(__name__)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def valid_request_id(offered: bytes) -> bool:
    """1 to 128 characters of ``A-Z a-z 0-9 . _ ~ : @ / + = -``: safe to echo and to log."""
    return _VALID_REQUEST_ID.match(offered) is not None


def mint_request_id() -> str:
    return os.urandom(16).hex()  # 128 random bits, like uuid4, at a third of the cost


def _gateway_request_id(scope: Scope) -> str | None:
    """On Lambda: API Gateway's ``requestContext.requestId``, so gateway and service logs join."""
    event = scope.get("aws.event")
    if not isinstance(event, dict):
        return None
    context = event.get("requestContext")
    offered = context.get("requestId") if isinstance(context, dict) else None
    if isinstance(offered, str) and valid_request_id(offered.encode()):
        return offered
    return None


def request_state(scope: Scope) -> dict[str, Any]:
    """``request.state`` is backed by ``scope["state"]``; Mangum does not create it."""
    state: dict[str, Any] | None = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    return state


async def send_json(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    """A JSON answer in its two messages; ``close`` asks the HTTP server to close the connection
    after it (so the rest of an over-limit body is never read)."""
    headers = [(b"content-length", str(len(body)).encode()), _JSON_TYPE]
    if close:
        headers.append(_CONNECTION_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, status: int, message: str, request_id: str, *, close: bool = False
) -> None:
    """The JSON error (``error_body``)."""
    await send_json(send, status, error_body(status, message, request_id), close=close)


# The web page is all inline (no CDN: the function may have no internet route); its <meta> policy
# cannot forbid framing, so the header carries the same policy plus frame-ancestors.
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# Swagger UI (/docs) at the exact version pinned in ``application.SWAGGER_UI_VERSION``.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src https://cdn.jsdelivr.net; img-src data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
DOCS_PATHS: Final = frozenset({"/docs", "/docs/oauth2-redirect"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``path`` without the ``root_path`` prefix, as Starlette
    routes (``/prod/predict`` under ``/prod`` is ``/predict``)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) :][:1] in ("", "/"):
        return path[len(root_path) :] or "/"
    return path


def _headers_with(policy: str) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        # Answers carry applicant data (and errors about it): no shared or browser cache keeps
        # them. The page sets its own ``no-cache``.
        (b"cache-control", b"no-store"),
    )


_PAGE_HEADERS: Final = _headers_with(PAGE_CSP)
_DOCS_HEADERS: Final = _headers_with(DOCS_CSP)
_API_HEADERS: Final = _headers_with(API_CSP)


def security_headers(route_path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every answer carries (unless the app set its own of the same name)."""
    if route_path == "/":
        return _PAGE_HEADERS
    if route_path in DOCS_PATHS:
        return _DOCS_HEADERS
    return _API_HEADERS


def _relative_location(location: bytes) -> bytes:
    """``http://evil.example/predict/`` -> ``/predict/``: a redirect never names a host the
    client sent (Starlette builds slash redirects from the Host header)."""
    parts = urlsplit(location.decode("latin-1"))
    if not parts.scheme and not parts.netloc:
        return location
    relative = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
    if relative.startswith("//"):  # would read as a host again
        relative = "/" + relative.lstrip("/")
    return relative.encode("latin-1")


class RequestContextMiddleware:
    """Outermost: take the request id, echo it, stamp the start time, and add the security
    headers (one pass over the answer's headers for both).

    The id is, in this order: API Gateway's ``requestContext.requestId`` on Lambda; the client's
    ``X-Request-ID`` if it passes ``valid_request_id`` (anything else - too long, spaces, quotes,
    control characters - is never echoed nor logged); else a fresh random one.

    Every answer carries CSP (``frame-ancestors 'none'``), ``nosniff``, ``Referrer-Policy`` and
    ``Cache-Control: no-store`` (unless the app set its own of the same name), and a redirect
    never reflects ``Host``.

    Also the last line of defence: an exception escaping the app is logged ONCE, with the request
    id, and answered with the 500 JSON; it is not raised on to the server, which would log the
    same traceback a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _gateway_request_id(scope) if "aws.event" in scope else None
        if request_id is None:
            offered = _header(scope, _REQUEST_ID_BYTES)
            if offered is not None and valid_request_id(offered):
                request_id = offered.decode()
            else:
                request_id = mint_request_id()
        state = request_state(scope)
        state["request_id"] = request_id
        state["started_ns"] = time.perf_counter_ns()
        state["started_wall_ns"] = time.time_ns()
        added = ((_REQUEST_ID_BYTES, request_id.encode()), *security_headers(route_path(scope)))
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers = list(message.get("headers", ()))
                present = {key.lower() for key, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                if message["status"] in _REDIRECTS:
                    headers = [
                        (key, _relative_location(value) if key.lower() == b"location" else value)
                        for key, value in headers
                    ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not state.get("error_logged"):  # FastAPI's handler logged its own (api/errors.py)
                _log.exception(
                    "unhandled error answering %s %s",
                    scope.get("method"),
                    scope.get("path"),
                    extra={"request_id": request_id},
                )
            if not response_started:
                await send_error(send_with_headers, 500, INTERNAL_ERROR_MESSAGE, request_id)


def _strip_prefix(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or starts with ``prefix/`` (whole segments only)."""
    return path == prefix or path.startswith(prefix + "/")


class ExternalPathMiddleware:
    """Route what the client actually requested, and tell FastAPI the prefix via ``root_path``.

    * API Gateway HTTP API (payload 2.0) on a named stage: ``rawPath`` is ``/prod/predict``.
    * REST API (payload 1.0) on its execute-api domain: ``path`` is ``/predict`` but the client
      asked for ``requestContext.path`` = ``/prod/predict``.
    * A custom domain with a base path mapping (``API_BASE_PATH``, e.g. ``/v1``): the path starts
      with it and the stage is not in the URL.
    * ALB and function URLs: the path is the client's path; nothing to strip.

    Per the ASGI spec, ``path`` keeps the full client path and ``root_path`` holds the prefix, so
    routing sees ``/predict`` and ``/docs`` links its schema at ``/prod/openapi.json``.
    """

    def __init__(self, app: ASGIApp, base_path: str = "") -> None:
        self.app = app
        self.base_path = base_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("aws.event" in scope or self.base_path):
            scope = self.rewrite(scope)
        await self.app(scope, receive, send)

    def _prefix_of(self, path: str, stage_prefix: str) -> str:
        prefix = ""
        if self.base_path and _strip_prefix(path, self.base_path):
            prefix = self.base_path
        if stage_prefix and _strip_prefix(path[len(prefix) :], stage_prefix):
            prefix += stage_prefix
        return prefix

    def rewrite(self, scope: Scope) -> Scope:
        path: str = scope["path"]
        candidates = [path]
        stage_prefix = ""
        event = scope.get("aws.event")
        if isinstance(event, dict):
            context = event.get("requestContext")
            if isinstance(context, dict):
                stage = context.get("stage")
                if isinstance(stage, str) and stage and stage != "$default":
                    stage_prefix = "/" + stage
                client_path = context.get("path")
                if "httpMethod" in event and isinstance(client_path, str) and client_path:
                    candidates.insert(0, unquote(client_path))
        for candidate in candidates:
            prefix = self._prefix_of(candidate, stage_prefix)
            if prefix:
                return {
                    **scope,
                    "path": candidate,
                    "raw_path": candidate.encode(),
                    "root_path": scope.get("root_path", "") + prefix,
                }
        return scope


def _headers_only(send: Send) -> Send:
    """The answer's status and headers, no body (``HEAD``)."""

    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return headers_only


class RequestBodyMiddleware:
    """What the request line and headers decide before any route runs, in one layer: ``HEAD``
    as ``GET``, the body-size cap, the JSON content type. (Three layers cost a Lambda invocation
    ~9k instructions each for a coroutine that only passes the request on: callgrind.)

    * ``HEAD`` is answered wherever ``GET`` is: the GET answer's status and headers, no body.
      FastAPI routes declared with ``@router.get`` answer HEAD with 405 (Starlette's own routes
      add HEAD, FastAPI's do not); monitors and link checkers send HEAD to ``/``, ``/health``,
      ``/model``.
    * 413 for bodies over ``max_bytes``: at once from Content-Length, else while streaming.
    * 415 for a POST/PUT/PATCH whose body is declared as something other than JSON.
      ``application/json`` and ``application/*+json`` pass, and so does a body with NO
      Content-Type header: it is parsed as JSON (FastAPI's convention,
      ``strict_content_type=False`` in ``create_app``), because the POST events AWS's own tooling
      writes (Lambda console test templates, ``sam local generate-event``, ALB samples) carry
      none. That choice is safe here: the API keeps no ambient credential (no cookie, no
      session) for a cross-site form to ride on, and without CORS headers a foreign page cannot
      read an answer. An empty body (Content-Length: 0) passes too, to get its 422.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
            send = _headers_only(send)
        on_server = "aws.event" not in scope  # Lambda has no connection to close
        max_bytes = self.max_bytes
        declared = _header(scope, b"content-length")
        counted = True
        if declared is not None:
            try:
                declared_bytes = int(declared)
            except ValueError:
                declared_bytes = max_bytes + 1  # unreadable: count the body as it comes
            if declared_bytes > max_bytes and declared.isdigit():
                await send_error(send, 413, TOO_LARGE_MESSAGE, _request_id(scope), close=on_server)
                return
            # An HTTP server delivers exactly Content-Length bytes: nothing left to count.
            counted = declared_bytes > max_bytes or not on_server
        if counted:
            receive, send = _limited(receive, send, max_bytes, _request_id(scope), on_server)
        if scope["method"] in _BODY_METHODS:
            content_type = _header(scope, b"content-type")
            if (
                content_type is not None
                and content_type.strip() != b""
                and not _is_json(content_type)
                and declared != b"0"
            ):
                await send_error(send, 415, NOT_JSON_MESSAGE, _request_id(scope))
                return
        await self.app(scope, receive, send)


def _request_id(scope: Scope) -> str:
    return str(request_state(scope).get("request_id", ""))


def _limited(
    receive: Receive, send: Send, max_bytes: int, request_id: str, on_server: bool
) -> tuple[Receive, Send]:
    """``receive`` counting the body: past ``max_bytes`` it answers 413 and tells the app the
    client is gone; whatever the app sends after that is swallowed (FastAPI turns body-read
    errors into a 400 of its own)."""
    received = 0
    answered = False

    async def limited_receive() -> Message:
        nonlocal received, answered
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes and not answered:
                answered = True
                await send_error(send, 413, TOO_LARGE_MESSAGE, request_id, close=on_server)
                return {"type": "http.disconnect"}
        return message

    async def guarded_send(message: Message) -> None:
        if not answered:
            await send(message)

    return limited_receive, guarded_send


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )
