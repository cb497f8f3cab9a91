"""``loan-default serve``: the HTTP server on an artifact folder (``loan_service.http_server``).

The same server the ECS task runs (uvicorn with httptools and uvloop, a one-line refusal and
status 3 for an unusable artifact folder, exit 0 after SIGTERM/SIGINT). ``--artifacts DIR`` sets
``ARTIFACT_DIR`` for it; every other option is the server's own (``--help``).
"""

from __future__ import annotations

import argparse
import os

from loan_service.env_names import ENV_ARTIFACT_DIR


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--artifacts", help=f"the artifact folder (sets ${ENV_ARTIFACT_DIR})")
    known, rest = folder.parse_known_args(argv)
    if known.artifacts is not None:
        os.environ[ENV_ARTIFACT_DIR] = os.path.abspath(known.artifacts)
    from loan_service.http_server import main as serve

    return serve(rest, prog=prog or "loan-default serve")
