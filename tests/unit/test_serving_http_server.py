"""`loan-default serve` options (loan_service/http_server.py): command line, environment, defaults.

The signal and refusal behaviour needs real processes; it is tested in
tests/integration/test_faults_sigterm.py and tests/integration/test_faults_artifacts.py.
"""

from __future__ import annotations

import gc

import pytest
from pydantic import ValidationError

from loan_service import long_lived_startup
from loan_service.env_names import (
    ENV_SERVER_HOST,
    ENV_SERVER_LOG_LEVEL,
    ENV_SERVER_PORT,
    ENV_SERVER_WORKERS,
)
from loan_service.http_server import (
    APP_FACTORY,
    load_app,
    parse_options,
    server_config,
    settings_problems,
)
from loan_service.server_limits import BoundedHttpToolsProtocol
from loan_service.settings import Settings


def test_without_options_or_environment_it_serves_like_uvicorn_on_one_process() -> None:
    options = parse_options([], environ={})
    assert (options.host, options.port, options.workers, options.log_level) == (
        "127.0.0.1",
        8000,
        1,
        "info",
    )
    assert options.access_log is True


def test_the_environment_names_are_the_ones_uvicorns_own_cli_reads() -> None:
    assert (ENV_SERVER_HOST, ENV_SERVER_PORT, ENV_SERVER_WORKERS, ENV_SERVER_LOG_LEVEL) == (
        "UVICORN_HOST",
        "UVICORN_PORT",
        "WEB_CONCURRENCY",
        "UVICORN_LOG_LEVEL",
    )


def test_environment_values_are_used_and_command_line_options_win_over_them() -> None:
    environ = {
        ENV_SERVER_HOST: "0.0.0.0",
        ENV_SERVER_PORT: "9001",
        ENV_SERVER_WORKERS: "3",
        ENV_SERVER_LOG_LEVEL: "WARNING",
    }
    from_environment = parse_options([], environ=environ)
    assert (from_environment.host, from_environment.port) == ("0.0.0.0", 9001)
    assert (from_environment.workers, from_environment.log_level) == (3, "warning")

    overridden = parse_options(
        ["--port", "8080", "--workers", "1", "--log-level", "error", "--no-access-log"],
        environ=environ,
    )
    assert (overridden.host, overridden.port, overridden.workers) == ("0.0.0.0", 8080, 1)
    assert (overridden.log_level, overridden.access_log) == ("error", False)


@pytest.mark.parametrize(
    ("environ", "argv", "named"),
    [
        ({ENV_SERVER_PORT: "http"}, [], ENV_SERVER_PORT),
        ({ENV_SERVER_PORT: "70000"}, [], ENV_SERVER_PORT),
        ({ENV_SERVER_WORKERS: "0"}, [], ENV_SERVER_WORKERS),
        ({ENV_SERVER_LOG_LEVEL: "loud"}, [], ENV_SERVER_LOG_LEVEL),
        ({}, ["--workers", "two"], ENV_SERVER_WORKERS),
    ],
)
def test_a_bad_value_stops_with_usage_status_2_naming_option_and_variable(
    environ: dict[str, str],
    argv: list[str],
    named: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_options(argv, environ=environ)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"${named}" in error, error


def test_uvicorn_loads_the_app_through_the_refusing_factory_and_no_websocket_stack() -> None:
    config = server_config(parse_options(["--workers", "2"], environ={}))
    assert (config.app, config.factory, config.workers) == (APP_FACTORY, True, 2)
    module, _, attribute = APP_FACTORY.partition(":")
    assert (module, attribute) == (load_app.__module__, load_app.__name__)
    assert config.ws == "none"
    # httptools (in every set that serves) behind the bounded protocol; uvicorn's "auto" loop
    # picks uvloop where it is installed (the image has it).
    assert (config.http, config.loop) == (BoundedHttpToolsProtocol, "auto")


def test_each_invalid_setting_is_named_by_its_environment_variable_with_the_reason() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(RECOVERY_RATE="2", MODEL_RUNTIME="tf")

    problems = settings_problems(raised.value)

    assert problems == (
        "MODEL_RUNTIME: Input should be 'onnx' or 'sklearn'; "
        "RECOVERY_RATE: Input should be less than or equal to 1"
    )


def test_start_up_runs_without_the_collector_and_leaves_what_it_built_frozen() -> None:
    frozen_before = gc.get_freeze_count()
    try:
        with long_lived_startup():
            assert not gc.isenabled()
            built = [[index] for index in range(1000)]  # what a start-up keeps for the process
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + len(built)
    finally:
        gc.unfreeze()


def test_a_failed_start_up_turns_the_collector_back_on_and_freezes_nothing() -> None:
    frozen_before = gc.get_freeze_count()
    with pytest.raises(SystemExit), long_lived_startup():
        raise SystemExit(3)
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen_before
