"""Dead network peers on loopback, for fault tests that must never send a packet off the machine.

* ``closed_port()``: nothing listens, so a connect is refused at once (RST).
* ``black_hole_port()``: a listener whose accept queue is kept full and never drained. Linux then
  drops every new SYN (``net.ipv4.tcp_abort_on_overflow`` = 0, the default), so a connect hangs
  until the client's own timeout, exactly as it does towards a non-routable address, but the
  packets stay on 127.0.0.1. (Pointing a test at a real non-routable address such as 10.255.255.1
  would send traffic to a private range, which this workplace forbids.)
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Final

PROBE_TIMEOUT_SECONDS: Final = 0.5


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def connect_outcome(port: int, timeout: float = PROBE_TIMEOUT_SECONDS) -> str:
    """'connected', 'refused' or 'timeout': what a client sees when it connects to ``port``."""
    with socket.socket() as client:
        client.settimeout(timeout)
        try:
            client.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        return "connected"


@contextlib.contextmanager
def black_hole_port() -> Iterator[int]:
    """A loopback port where connects time out; proven to behave so before it is handed out."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        # listen(0) leaves room for one pending connection: fill it, and never accept.
        fillers.append(socket.create_connection(("127.0.0.1", port), timeout=2.0))
        outcome = connect_outcome(port)
        if outcome != "timeout":
            raise RuntimeError(f"black hole on port {port} is not dropping SYNs ({outcome})")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
