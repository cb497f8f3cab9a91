"""Read a loan book's schema file (TOML) into the shared :class:`loan_service.book.BookSchema`.

A malformed file is refused with ONE line naming the file, the line and the key, e.g.
``schema.toml:31: features.income.type: Input should be 'integer', 'number' or 'category'`` -
the user opens the file at that line and fixes it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loan_service.book import BookSchema, SchemaKeyError
from training import SOURCE_ROOT_ON_PATH  # noqa: F401  (serving's source root holds the model)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = REPO_ROOT / "Data" / "schema.toml"

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


_UNION_TAGS = frozenset({"int", "float", "str"})


class SchemaFileError(ValueError):
    """The schema file cannot be used; the message is one line naming the key and the line."""

    def __init__(self, path: Path, line: int | None, key: str | None, problem: str) -> None:
        self.path, self.line, self.key = path, line, key
        where = f"{path}:{line}" if line else str(path)
        what = f"{key}: " if key else ""
        super().__init__(f"schema file {where}: {what}{problem}")


def load_schema(path: Path = DEFAULT_SCHEMA) -> BookSchema:
    """Parse and validate ``path``; raise :class:`SchemaFileError` naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaFileError(path, None, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SchemaFileError(path, None, None, f"not readable ({error})") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line = int(position.group(1)) if position else None
        problem = _TOML_POSITION.sub("", message).strip() or "not valid TOML"
        raise SchemaFileError(path, line, None, f"not valid TOML: {problem}") from None
    try:
        return BookSchema.from_table(table)
    except ValidationError as error:
        first = error.errors()[0]
        loc = list(first["loc"])
        if loc and loc[-1] in _UNION_TAGS:  # "int | float" fields: pydantic names the member
            loc = loc[:-1]
            first = {**first, "msg": "must be a number"}
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, SchemaKeyError):
            loc += cause.key.split(".")
        key = _toml_key(table, loc)
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "required key is missing"
        elif first["type"] == "extra_forbidden":
            message = "unknown key"
        raise SchemaFileError(path, line_of(text, key), key or None, message) from None


def _toml_key(table: dict[str, Any], loc: Sequence[int | str]) -> str:
    """Pydantic's location -> the TOML key (``features`` is a table keyed by name in TOML)."""
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] == "features" and isinstance(loc[1], int):
        names = list(table.get("features", {}))
        if loc[1] < len(names):
            parts[1] = names[loc[1]]
    if "values" in parts:  # a value inside a list: the list's key is what the user edits
        parts = parts[: parts.index("values") + 1]
    return ".".join(parts)


def line_of(text: str, key: str) -> int | None:
    """The 1-based line that defines dotted ``key`` (or its table's header), else None."""
    if not key:
        return None
    parts = key.split(".")
    table: list[str] = []
    best: int | None = None
    best_depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = [part.strip().strip("\"'") for part in header.group(1).split(".")]
            if table == parts[: len(table)] and len(table) > best_depth:
                best, best_depth = number, len(table)
            continue
        assignment = _KEY.match(line)
        if assignment and [*table, assignment.group(1).strip("\"'")] == parts:
            return number
    return best
