"""``make audit``: known vulnerabilities in the image's pinned, hash-locked requirement sets.

Audited: ``requirements/runtime.txt`` (what the Lambda image and the ECS task install) and
``requirements/runtime-sklearn.txt`` (the image's optional scikit-learn fallback). The gate fails
on any known vulnerability that is not a documented exception below, and on any pinned package
that could not be audited at all, so a silent "nothing found" can never pass for "nothing there".

Where the advisories come from, in order:

1. ``pip-audit --disable-pip --require-hashes`` with its default service, PyPI's JSON API per
   release (``/pypi/<name>/<version>/json``, whose ``vulnerabilities`` are OSV advisories). No pip
   run and no resolution: the files are already fully pinned and hashed.
2. Where that answers nothing for a package, PyPI's project JSON (``/pypi/<name>/json``), whose
   ``vulnerabilities`` field lists the advisories affecting the LATEST release. It applies only
   when the pin IS the latest release, and is used only then. (This build machine reaches PyPI but
   not OSV's API; its PyPI answers project JSON but not the per-release JSON, so for most pins
   this is the path that does the work here.)
3. A pin that neither source can vouch for is a failure, unless it is listed in
   ``UNAUDITABLE_HERE`` with its exact version and the reason, so a version bump forces a fresh
   look.

    .venv/bin/python -m tools.supply_chain_audit
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
AUDITED_SETS: Final = (
    REPO_ROOT / "requirements" / "runtime.txt",
    REPO_ROOT / "requirements" / "runtime-sklearn.txt",
)
PYPI_PROJECT_JSON: Final = "https://pypi.org/pypi/{name}/json"
HTTP_TIMEOUT_SECONDS: Final = 30

# Known vulnerabilities accepted on purpose: advisory id -> why it does not apply or cannot be
# fixed yet. Empty: the last audit found none.
ACCEPTED_VULNERABILITIES: Final[dict[str, str]] = {}

# Pins that no reachable source could audit on the build machine: "name==version" -> why the pin
# is not the latest release (which is what makes source 2 unusable for it).
UNAUDITABLE_HERE: Final[dict[str, str]] = {
    "numpy==2.4.6": (
        "held below 2.5 on purpose: numpy 2.5 needs Python 3.12 and one lock serves 3.11 (.venv) "
        "and 3.12 (the image), see requirements/runtime.in; only per-release advisories can "
        "vouch for 2.4.6"
    ),
}

# The image's interpreter and platforms (Dockerfile.lambda: the AWS Lambda Python 3.12 base, built
# for linux/amd64 or linux/arm64): environment markers are evaluated for these, so a pin that only
# the 3.11 development environment installs (e.g. ``scipy==1.17.1 ; python_full_version < '3.12'``)
# is not audited as part of the image.
IMAGE_ENVIRONMENTS: Final = tuple(
    {
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
    }
    for machine in ("x86_64", "aarch64")
)

_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;]+)"
)


@dataclass(frozen=True)
class Pin:
    """One logical line of a hash-locked requirement file."""

    name: str
    version: str
    hashes: tuple[str, ...]
    source: Path
    marker: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


def canonical_name(name: str) -> str:
    """PEP 503 normalization, as PyPI and pip-audit spell names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(text: str) -> Iterable[str]:
    """Requirement lines with backslash continuations joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            yield pending.strip()
        pending = ""
    if pending.strip():
        yield pending.strip()


def read_pins(path: Path) -> list[Pin]:
    """Every requirement of a compiled, hash-locked file (raises on an unpinned line)."""
    pins = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        if line.startswith("-"):
            continue  # options such as --index-url
        match = _REQUIREMENT.match(line)
        if match is None:
            raise ValueError(f"{path.name}: not an exact '==' pin: {line}")
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        requirement = line.split(" --hash", 1)[0]
        marker = requirement.split(";", 1)[1].strip() if ";" in requirement else ""
        pins.append(Pin(canonical_name(match["name"]), match["version"], hashes, path, marker))
    return pins


def installed_in_image(pin: Pin) -> bool:
    """True when the pin's environment marker holds for the image on either architecture."""
    if not pin.marker:
        return True
    from packaging.markers import Marker

    marker = Marker(pin.marker)
    return any(marker.evaluate(dict(environment)) for environment in IMAGE_ENVIRONMENTS)


@dataclass
class AuditReport:
    """Per pin: which source audited it and what it found."""

    audited_by: dict[str, str] = field(default_factory=dict)
    vulnerabilities: dict[str, list[str]] = field(default_factory=dict)
    unaudited: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = [
            f"{key}: known vulnerability {advisory} (not in ACCEPTED_VULNERABILITIES)"
            for key, advisories in self.vulnerabilities.items()
            for advisory in advisories
            if advisory not in ACCEPTED_VULNERABILITIES
        ]
        found += [
            f"{key}: no reachable advisory source could audit it (not in UNAUDITABLE_HERE)"
            for key in self.unaudited
            if key not in UNAUDITABLE_HERE
        ]
        return found


def run_pip_audit(requirement_files: Sequence[Path]) -> dict[str, Any]:
    """pip-audit's JSON report (per-release PyPI advisories), without running pip."""
    command = [sys.executable, "-m", "pip_audit", "--disable-pip", "--require-hashes"]
    command += ["--format", "json", "--progress-spinner", "off"]
    for path in requirement_files:
        command += ["--requirement", str(path)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    # Exit 1 means "vulnerabilities found", which the JSON carries; anything else is a failure.
    if completed.returncode not in (0, 1) or not completed.stdout.strip():
        raise RuntimeError(f"pip-audit failed ({completed.returncode}):\n{completed.stderr}")
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def project_json(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(
        PYPI_PROJECT_JSON.format(name=name), timeout=HTTP_TIMEOUT_SECONDS
    ) as response:
        document: dict[str, Any] = json.load(response)
        return document


def advisory_ids(vulnerabilities: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({str(v.get("id")) for v in vulnerabilities if v.get("id")})


def audit(pins: Sequence[Pin], pip_audit_report: dict[str, Any]) -> AuditReport:
    """Combine pip-audit's answers with the project-JSON fallback (see the module docstring)."""
    report = AuditReport()
    answered = {
        canonical_name(dependency["name"]): dependency
        for dependency in pip_audit_report.get("dependencies", [])
        if "skip_reason" not in dependency and "version" in dependency
    }
    for pin in pins:
        dependency = answered.get(pin.name)
        if dependency is not None and dependency["version"] == pin.version:
            report.audited_by[pin.key] = "pip-audit (PyPI per-release advisories)"
            report.vulnerabilities[pin.key] = advisory_ids(dependency.get("vulns", []))
            continue
        try:
            project = project_json(pin.name)
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            raise RuntimeError(f"PyPI project JSON for {pin.name} unreachable: {exc}") from exc
        if project.get("info", {}).get("version") == pin.version:
            report.audited_by[pin.key] = "PyPI project JSON (the pin is the latest release)"
            report.vulnerabilities[pin.key] = advisory_ids(project.get("vulnerabilities", []))
        else:
            report.unaudited.append(pin.key)
    return report


def main() -> int:
    pins = [pin for path in AUDITED_SETS for pin in read_pins(path)]
    unique = list({pin.key: pin for pin in pins if installed_in_image(pin)}.values())
    report = audit(unique, run_pip_audit(AUDITED_SETS))
    by_source: dict[str, int] = {}
    for source in report.audited_by.values():
        by_source[source] = by_source.get(source, 0) + 1
    files = ", ".join(path.name for path in AUDITED_SETS)
    print(f"supply chain: {len(unique)} pinned packages the image installs ({files})")
    for source, count in sorted(by_source.items()):
        print(f"  {count:3d} audited by {source}")
    for key, advisories in sorted(report.vulnerabilities.items()):
        for advisory in advisories:
            verdict = ACCEPTED_VULNERABILITIES.get(advisory, "NOT ACCEPTED")
            print(f"  {key}: {advisory} - {verdict}")
    for key in report.unaudited:
        reason = UNAUDITABLE_HERE.get(key)
        print(f"  {key}: not auditable here" + (f" (documented: {reason})" if reason else ""))
    problems = report.problems()
    if problems:
        print("supply chain audit FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    known = sum(len(advisories) for advisories in report.vulnerabilities.values())
    print(f"supply chain audit passed: {known} known vulnerabilities, all documented")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
