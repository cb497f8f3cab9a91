"""The image's requirement sets are exact, hash-locked pins, and the audit reads them correctly.

``pip install --require-hashes`` (Dockerfile.lambda) refuses a requirement without a hash, so a
line that lost its hashes would only fail at image build time; these tests fail first. The audit
helper's parsing is checked here too, offline: ``make audit`` does the network part.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.supply_chain_audit import (
    ACCEPTED_VULNERABILITIES,
    AUDITED_SETS,
    UNAUDITABLE_HERE,
    AuditReport,
    Pin,
    audit,
    installed_in_image,
    logical_lines,
    read_pins,
)

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements"


@pytest.mark.parametrize("requirement_file", AUDITED_SETS, ids=lambda path: path.name)
def test_every_requirement_line_of_the_image_sets_is_an_exact_pin_with_sha256_hashes(
    requirement_file: Path,
) -> None:
    requirement_lines = [
        line for line in logical_lines(requirement_file.read_text()) if not line.startswith("-")
    ]
    assert requirement_lines, f"{requirement_file.name} has no requirements"
    for line in requirement_lines:
        name = line.split("==", 1)[0]
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._\[\]-]*==\S+", line), f"not pinned: {line}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", line), f"{name} carries no --hash"


def test_the_runtime_set_holds_no_training_stack() -> None:
    names = {pin.name for pin in read_pins(REQUIREMENTS / "runtime.txt")}
    assert names.isdisjoint({"scikit-learn", "scipy", "pandas", "mlflow", "skl2onnx"}), names


def test_the_dockerfile_installs_the_runtime_set_with_require_hashes() -> None:
    dockerfile = (REQUIREMENTS.parent / "Dockerfile.lambda").read_text()
    install = dockerfile[dockerfile.index("pip install") :]
    assert "--require-hashes" in install.split("\n\n", 1)[0]


def test_logical_lines_join_continuations_and_drop_comments() -> None:
    text = (
        "# header comment\n"
        "alpha==1.0 \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via beta\n"
        "gamma==2.0 ; python_full_version < '3.12' \\\n"
        "    --hash=sha256:" + "c" * 64 + "\n"
    )
    assert list(logical_lines(text)) == [
        f"alpha==1.0      --hash=sha256:{'a' * 64}      --hash=sha256:{'b' * 64}",
        f"gamma==2.0 ; python_full_version < '3.12'      --hash=sha256:{'c' * 64}",
    ]


def test_read_pins_refuses_a_requirement_that_is_not_an_exact_pin(tmp_path: Path) -> None:
    loose = tmp_path / "loose.txt"
    loose.write_text("fastapi>=0.100 \\\n    --hash=sha256:" + "d" * 64 + "\n")
    with pytest.raises(ValueError, match="not an exact '==' pin"):
        read_pins(loose)


def test_pins_for_the_development_interpreter_only_are_not_audited_as_part_of_the_image() -> None:
    """The image runs Python 3.12; a pin guarded by ``< '3.12'`` is never installed there."""
    for_311 = Pin("scipy", "1.17.1", (), Path("x"), "python_full_version < '3.12'")
    for_312 = Pin("scipy", "1.18.1", (), Path("x"), "python_full_version >= '3.12'")
    not_pypy = Pin("cffi", "2.1.1", (), Path("x"), "platform_python_implementation != 'PyPy'")
    assert not installed_in_image(for_311)
    assert installed_in_image(for_312)
    assert installed_in_image(not_pypy)


def test_a_known_vulnerability_that_is_not_documented_fails_the_audit() -> None:
    report = AuditReport(vulnerabilities={"example==1.0": ["PYSEC-0000-0000"]})
    assert "PYSEC-0000-0000" not in ACCEPTED_VULNERABILITIES
    assert report.problems() == [
        "example==1.0: known vulnerability PYSEC-0000-0000 (not in ACCEPTED_VULNERABILITIES)"
    ]


def test_a_pin_no_source_could_audit_fails_unless_documented_with_its_exact_version() -> None:
    documented = next(iter(UNAUDITABLE_HERE))
    name, version = documented.split("==")
    bumped = f"{name}==0.0.0-bumped"
    report = AuditReport(unaudited=[documented, bumped])
    assert report.problems() == [
        f"{bumped}: no reachable advisory source could audit it (not in UNAUDITABLE_HERE)"
    ]
    assert version != "0.0.0-bumped"


def test_every_documented_unauditable_pin_is_still_pinned_at_that_version() -> None:
    """A stale entry would excuse nothing, and would hide that its reason was never re-read."""
    pinned = {pin.key for path in AUDITED_SETS for pin in read_pins(path)}
    assert set(UNAUDITABLE_HERE) <= pinned, set(UNAUDITABLE_HERE) - pinned


def test_pip_audit_answers_are_used_and_only_for_the_pinned_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pip-audit's answer counts for the exact pin; a skipped package falls back to PyPI's
    project JSON, which counts only when the pin is the latest release."""
    projects = {
        "latest-pin": {"info": {"version": "3.0"}, "vulnerabilities": [{"id": "GHSA-x"}]},
        "old-pin": {"info": {"version": "9.0"}, "vulnerabilities": []},
    }
    monkeypatch.setattr("tools.supply_chain_audit.project_json", projects.__getitem__)
    pins = [
        Pin("audited", "1.0", (), Path("x")),
        Pin("latest-pin", "3.0", (), Path("x")),
        Pin("old-pin", "2.0", (), Path("x")),
    ]
    pip_audit_report = {
        "dependencies": [
            {"name": "Audited", "version": "1.0", "vulns": [{"id": "PYSEC-1"}]},
            {"name": "latest-pin", "skip_reason": "Dependency not found on PyPI"},
            {"name": "old-pin", "skip_reason": "Dependency not found on PyPI"},
        ]
    }
    report = audit(pins, pip_audit_report)
    assert report.vulnerabilities == {"audited==1.0": ["PYSEC-1"], "latest-pin==3.0": ["GHSA-x"]}
    assert report.audited_by["audited==1.0"].startswith("pip-audit")
    assert report.audited_by["latest-pin==3.0"].startswith("PyPI project JSON")
    assert report.unaudited == ["old-pin==2.0"]
