"""Credentials never leave the process: redact them from every URI that is printed, logged, stored.

A tracking URI may carry a password (``http://user:secret@host:5000``) or a token in its query
(``?token=...``, a presigned URL's ``X-Amz-Signature``); MLflow's own exception messages embed the
URI they failed on. ``redact`` replaces the userinfo with ``***`` and the value of every
token-like query parameter with ``***``, anywhere inside a longer text (an exception message, a
log line), and leaves everything else as it was, so the host and path still say where it went.

``install_log_redaction`` makes every log record of the process go through ``redact`` (message,
arguments and exception text) whatever logger or handler it takes: MLflow, urllib3 and the
service's own. Standard library only: training imports this module too (``training.redaction``).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import Any, Final

REDACTED: Final = "***"
# Query parameter names whose values are secrets (case-insensitive, whole name).
SECRET_PARAMETERS: Final = (
    "access_token",
    "api_key",
    "apikey",
    "auth",
    "authorization",
    "client_secret",
    "code",
    "credential",
    "key",
    "pass",
    "passwd",
    "password",
    "pwd",
    "secret",
    "session_token",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
)
# scheme://userinfo@ : the userinfo is everything up to the last @ before the host's end.
_USERINFO: Final = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s@'\"]+)@"
)
_SECRET_QUERY: Final = re.compile(
    r"(?P<name>[?&;](?:" + "|".join(re.escape(name) for name in SECRET_PARAMETERS) + r")=)"
    r"(?P<value>[^&#\s'\"]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URI's userinfo and secret query values replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda match: f"{match['scheme']}{REDACTED}@", text)
    return _SECRET_QUERY.sub(lambda match: f"{match['name']}{REDACTED}", text)


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


def _redact_argument(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(str(value))
    return value


class _RedactingRecordFactory:
    """Wraps the process's log record factory: each record is redacted once, as it is made."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif isinstance(record.msg, BaseException):
            record.msg = redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_argument(value) for value in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_argument(value) for key, value in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            # logging.Formatter uses exc_text when it is set: the traceback, once, redacted.
            # (Powertools formats exc_info itself; its serializer redacts the whole line.)
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
        return record


def redacting_serializer(serialize: Callable[[Any], str]) -> Callable[[Any], str]:
    """A Powertools ``json_serializer`` whose every output line is redacted."""

    def serialize_redacted(log: Any) -> str:
        return redact(serialize(log))

    return serialize_redacted


def install_log_redaction() -> None:
    """Idempotent: every later log record of the process is redacted."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(current))
