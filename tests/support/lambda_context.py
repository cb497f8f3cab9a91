"""A fake of the context object the Lambda Python runtime passes a handler (Powertools reads it).

Standard library only: the cold-start probe imports it beside ``main`` without adding to what it
measures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeLambdaContext:
    """The attributes the Lambda Python runtime's context object has."""

    function_name: str = "loan-default-predict"
    function_version: str = "$LATEST"
    invoked_function_arn: str = (
        "arn:aws:lambda:eu-west-1:123456789012:function:loan-default-predict"
    )
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "6f1c0f7e-2b8e-4e7a-9d55-3f1d2c4b5a69"
    log_group_name: str = "/aws/lambda/loan-default-predict"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
