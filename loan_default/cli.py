"""``loan-default SUBCOMMAND ...``: a thin dispatcher over the subcommands' own modules.

Each subcommand lives in its own module, which exposes ``main(argv, prog) -> int`` and is imported
only when it runs: ``loan-default score`` never pays for scikit-learn or MLflow, ``train`` never
for pyspark. Adding a subcommand is one line in ``COMMANDS``.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final, NamedTuple, Protocol


class Subcommand(NamedTuple):
    module: str
    summary: str


class _Entry(Protocol):
    def __call__(self, argv: list[str] | None = None, prog: str | None = None) -> int: ...


PROG: Final = "loan-default"
EXIT_USAGE: Final = 2
COMMANDS: Final[dict[str, Subcommand]] = {
    "train": Subcommand("training.cli", "train on a loan book and write the artifact folder"),
    "score": Subcommand("loan_default.batch.cli", "score a loan book file (CSV or Parquet)"),
    "monitor": Subcommand("loan_default.monitoring.cli", "stability and back-testing report"),
    "compare": Subcommand("loan_default.compare", "champion vs challenger: swap sets, PSI"),
    "serve": Subcommand("loan_default.serve", "serve the web page and API on an artifact folder"),
    "promote": Subcommand("training.promote", "move 'champion' to the challenger if not worse"),
    "fetch": Subcommand("training.fetch", "the artifact folder of a registered model version"),
}


@contextmanager
def loading() -> Iterator[None]:
    """Imports and model loads build long-lived objects only (modules, classes, sessions): the
    cyclic collector is paused while they are built, then they are frozen, so no collection walks
    them again (it walked them over and over while they loaded: a tenth of the start-up)."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", f"'{PROG} COMMAND --help' describes each command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the subcommand; return its exit status (2 for an unknown one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_USAGE
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"{PROG}: unknown command '{name}' (one of: {', '.join(COMMANDS)})", file=sys.stderr)
        return EXIT_USAGE
    with loading():
        entry: _Entry = importlib.import_module(command.module).main
    return entry(rest, prog=f"{PROG} {name}")
