"""cdk-nag wiring: the AwsSolutions pack on the app, and acknowledgements that must carry a reason.

cdk-nag 3.x runs as a CDK policy-validation plugin and reads acknowledgements recorded with
``Validations.of(construct).acknowledge(...)`` (the 2.x ``NagSuppressions`` API is gone). Any
finding that is not acknowledged - error or warning - fails ``cdk synth``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# Acknowledged ids are stored namespaced ("Annotation::AwsSolutions-S1"); rule ids themselves may
# contain "::" inside brackets ("AwsSolutions-IAM5[Resource::*]"), so strip only a leading word.
_NAMESPACE_PREFIX = re.compile(r"^[A-Za-z-]+::")

# A reason has to explain the decision to a reviewer, not just restate the rule.
MIN_REASON_LENGTH = 40


@dataclass(frozen=True)
class Acknowledgement:
    """One accepted finding: the rule id (``AwsSolutions-IAM5[Resource::*]``) and why it is fine."""

    rule_id: str
    reason: str

    def __post_init__(self) -> None:
        if not self.rule_id.startswith("AwsSolutions-"):
            raise ValueError(f"not an AwsSolutions rule id: {self.rule_id!r}")
        if len(self.reason.strip()) < MIN_REASON_LENGTH:
            raise ValueError(
                f"{self.rule_id}: the reason must explain the decision "
                f"(>= {MIN_REASON_LENGTH} characters), got {self.reason!r}"
            )


@dataclass(frozen=True)
class RecordedAcknowledgement:
    """An acknowledgement as found on the construct tree (for reports and tests)."""

    construct_path: str
    rule_id: str
    reason: str


def enable_aws_solutions_checks(app: App) -> None:
    """Run the AwsSolutions pack on every stack of ``app`` during synthesis.

    The acknowledged rules are also written into each resource's CloudFormation ``Metadata``
    (``cdk_nag.rules_to_suppress``), so the deployed template carries its own audit trail.
    """
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )


def acknowledge(scope: IConstruct, *acknowledgements: Acknowledgement) -> None:
    """Accept findings on ``scope`` and everything below it, each with its written reason."""
    for item in acknowledgements:
        _record(scope, item)


def _record(scope: IConstruct, item: Acknowledgement) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=item.rule_id, reason=item.reason))


def recorded_acknowledgements(root: IConstruct) -> list[RecordedAcknowledgement]:
    """Every acknowledgement under ``root``, in construct-tree order."""
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found: list[RecordedAcknowledgement] = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != key or not isinstance(entry.data, dict):
                continue
            for qualified_id, reason in entry.data.items():
                rule_id = _NAMESPACE_PREFIX.sub("", qualified_id)
                found.append(RecordedAcknowledgement(construct.node.path, rule_id, str(reason)))
    return found
