"""The batch job's code as one zip: ``loan_default`` and ``loan_service`` for ``--py-files``.

Standard library only, so the CDK app can build it at synth without the scoring stack installed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def build_code_zip(destination: Path, repository: Path = REPOSITORY) -> Path:
    """``loan_default`` and ``loan_service`` (from ``lambda/``) at the zip's root: what each
    Python worker imports (``addPyFile``, ``--py-files``). The CDK stack uploads the same zip, so
    it is byte-for-byte reproducible: sorted entries, fixed timestamps and modes."""
    packages = [repository / "loan_default", repository / "lambda" / "loan_service"]
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in packages:
            for path in sorted(package.rglob("*")):
                if path.suffix not in (".py", ".html") or "__pycache__" in path.parts:
                    continue
                entry = zipfile.ZipInfo(str(path.relative_to(package.parent)), FIXED_TIME)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o644 << 16
                archive.writestr(entry, path.read_bytes())
    return destination
