"""The scheduled stability check's Lambda entry: ``monitor_handler.handler`` (same image as the
service, its own function; ``loan_service.stability_monitor`` does the work).

boto3 comes with the Lambda Python base image, so the runtime requirements do not carry it. The
reference is read and verified on the first invocation, not at import: a bad artifact folder is one
failed run with one line, not an import crash loop.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from loan_service.redaction import install_log_redaction
from loan_service.settings import Settings
from loan_service.stability import Reference
from loan_service.stability_monitor import (
    MonitoringError,
    MonitorSettings,
    load_reference_of,
    run_check,
)

install_log_redaction()
logger = Logger(service="loan-default-stability")
# The check's own lines (loan_service.stability_monitor) go out as the same JSON.
copy_config_to_registered_loggers(source_logger=logger, include={"loan_service"})


@cache
def baked_reference() -> Reference:
    artifacts = Settings().resolve_artifact_dir(Path(__file__).resolve().parent)
    return load_reference_of(artifacts)


@logger.inject_lambda_context
def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    import boto3

    try:
        settings = MonitorSettings.from_environ()
        return run_check(
            boto3.client("logs"),
            boto3.client("cloudwatch"),
            baked_reference(),
            settings,
            event=event,
        )
    except MonitoringError as exc:
        logger.error(f"stability check failed: {exc}")
        raise
