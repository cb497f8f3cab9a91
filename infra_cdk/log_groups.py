"""Log groups with retention: every log group of both stacks is made here, so none lives forever."""

from __future__ import annotations

from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.settings import VALID_RETENTION_DAYS

# CloudWatch's retention periods (days) as the CDK enum members.
_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
if set(_RETENTION_BY_DAYS) != set(VALID_RETENTION_DAYS):  # pragma: no cover - import-time guard
    raise RuntimeError("log_groups and settings disagree on the CloudWatch retention periods")


def retention(days: int) -> logs.RetentionDays:
    """The CDK enum member for ``days`` (one of the periods CloudWatch accepts)."""
    try:
        return _RETENTION_BY_DAYS[days]
    except KeyError:
        raise ValueError(f"CloudWatch Logs has no {days}-day retention period") from None


def log_group(scope: Construct, construct_id: str, *, retention_days: int) -> logs.LogGroup:
    """A log group that expires its events; kept on stack deletion (docs/deployment.md)."""
    return logs.LogGroup(scope, construct_id, retention=retention(retention_days))
