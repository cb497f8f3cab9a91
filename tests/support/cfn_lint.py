"""cfn-lint (AWS's CloudFormation linter) over synthesized templates, one way for every test."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CFN_LINT = Path(sys.prefix) / "bin" / "cfn-lint"
Finding = dict[str, Any]


def lint_errors_and_warnings(templates: Iterable[Path]) -> tuple[list[Finding], list[str]]:
    """The error findings (as cfn-lint reports them) and the distinct warnings, sorted.

    Bit 2 of cfn-lint's exit status means errors (4 and 8: warnings, info), so an error it
    found but could not report as JSON still counts.
    """
    lint = subprocess.run(
        [str(CFN_LINT), "--format", "json", *map(str, templates)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = json.loads(lint.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    if lint.returncode & 2 and not errors:
        errors = [{"Level": "Error", "Message": lint.stderr}]
    warnings = sorted({f"{f['Rule']['Id']}: {f['Message']}" for f in findings if f not in errors})
    return errors, warnings
