"""The ``loan-default`` dispatcher: every listed subcommand resolves, unknown ones are refused."""

from __future__ import annotations

import importlib

import pytest

from loan_default import cli


def test_every_listed_command_has_an_entry_point() -> None:
    for command in cli.COMMANDS.values():
        assert callable(importlib.import_module(command.module).main)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name}" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_USAGE
    assert "usage: loan-default" in capsys.readouterr().err


def test_unknown_command_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trian"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown command 'trian'" in err


def test_subcommand_help_names_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--help"])
    assert exited.value.code == 0
    assert "usage: loan-default train" in capsys.readouterr().out
