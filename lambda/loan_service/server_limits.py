"""Limits the ECS server holds by itself, without the load balancer in front of it.

uvicorn's httptools protocol has no limit on the size of a request head and no timeout for a
client that connects and sends nothing, or sends its request a byte at a time (its keep-alive
timeout only runs between requests). ``BoundedHttpToolsProtocol`` adds both:

* a request head (request line + headers) over ``SERVER_MAX_HEADER_BYTES`` (default 16 KiB) is
  answered ``431`` and the connection closed, without reading further;
* a request that is not completely received ``SERVER_REQUEST_TIMEOUT`` seconds (default 15) after
  its first byte - or after the connection opened, for a silent client - is answered ``408``
  (when no answer has started) and the connection closed.

The limits are read from the environment when this module is imported, so that ``--workers N``
worker processes (spawned, with the parent's environment) hold the same ones; ``loan-default serve``
writes its resolved options there before it starts them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ENV_MAX_HEADER_BYTES: Final = "SERVER_MAX_HEADER_BYTES"
ENV_REQUEST_TIMEOUT: Final = "SERVER_REQUEST_TIMEOUT"
DEFAULT_MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_REQUEST_TIMEOUT_SECONDS: Final = 15.0


def _plain_response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


HEADERS_TOO_LARGE: Final = _plain_response(
    431, "Request Header Fields Too Large", "Request headers too large."
)
REQUEST_TIMEOUT: Final = _plain_response(408, "Request Timeout", "Request not received in time.")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head size limit and a request timeout."""

    max_header_bytes: int = int(os.environ.get(ENV_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_BYTES))
    request_timeout: float = float(
        os.environ.get(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_SECONDS)
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_too_large = False
        self._request_timer: asyncio.TimerHandle | None = None

    # --- request timeout ---------------------------------------------------------------------
    def _start_request_timer(self) -> None:
        self._cancel_request_timer()
        self._request_timer = self.loop.call_later(self.request_timeout, self._request_timed_out)

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_request_timer()  # a silent client is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_timer()
        super().connection_lost(exc)

    # --- request head size --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._start_request_timer()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._head_too_large = True
            raise ValueError("request head too large")  # aborts the parser's feed

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        self._cancel_request_timer()
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._head_too_large:
            return  # answered and closing: nothing more is read
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._head_too_large:
                self.transport.write(HEADERS_TOO_LARGE)
                self.transport.close()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # the server loads no WebSocket support
