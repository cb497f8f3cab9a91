"""``loan-default fetch MODEL_URI --out DIR``: the artifact folder of a registered version.

What is deployed is built from the registry, not from whatever ``artifacts/`` a laptop holds:
``loan-default fetch models:/loan-default@champion --out artifacts/`` downloads the version's
files (manifest, model.onnx, stats.json, best_model.pkl and every other file the manifest lists),
checks each against the sha256 in the manifest, records in the manifest which registered name,
version and alias it came from, and swaps the folder into place atomically. Nothing is written
unless every check passed.

Exit codes: 0 written; 2 bad input (a malformed URI, an unknown alias or version, an unreachable
tracking server, a file that fails its sha256) - one line on stderr, ``DIR`` untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from training.data import sha256_of_file
from training.export import MANIFEST_FILE, staging_folder, write_json
from training.manifest import utc_now
from training.registry import (
    CHAMPION,
    MODEL_ARTIFACTS_DIR,
    ModelReference,
    RegistryError,
    connect,
    find_version,
    one_line,
    parse_model_uri,
)
from training.tracking import REGISTERED_MODEL_NAME

EXIT_BAD_INPUT = 2
DEFAULT_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION}"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.fetch",
        description="Rebuild the artifact folder of a registered model version, every sha256 "
        "verified (the tracking server is MLFLOW_TRACKING_URI, else the local mlflow.db).",
    )
    parser.add_argument(
        "model_uri",
        nargs="?",
        default=DEFAULT_URI,
        help=f"models:/NAME@ALIAS or models:/NAME/VERSION (default {DEFAULT_URI})",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("artifacts"), help="artifact folder (default artifacts)"
    )
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Fetch; return the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        manifest = fetch(args.model_uri, args.out)
    except RegistryError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # MLflow's texts carry the tracking URI: never shown raw
        print(f"{parser.prog}: the registry failed: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    registered = manifest["mlflow"]["registered_model"]
    print(
        f"wrote {args.out}: {registered['name']} version {registered['version']}"
        f"{' (@' + registered['alias'] + ')' if registered.get('alias') else ''}, "
        f"model_version {manifest['model_version']}, {len(manifest['files'])} files sha256-verified"
    )
    return 0


def fetch(model_uri: str, out: Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """Write the artifact folder of ``model_uri`` to ``out``; return its manifest."""
    reference = parse_model_uri(model_uri)
    client = connect(tracking_uri)
    version = find_version(client, reference)
    if version is None:
        raise RegistryError(_not_found(client, reference))
    resolved = ModelReference(reference.name, version=str(version.version))
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.fetch-", dir=out.parent) as download:
        folder = _download(resolved, Path(download))
        manifest = _verified_manifest(folder, resolved)
        manifest["mlflow"] = {
            **(manifest.get("mlflow") or {}),
            "registered_model": {
                "name": reference.name,
                "version": str(version.version),
                "alias": reference.alias,
                "aliases": sorted(getattr(version, "aliases", None) or []),
                "model_uri": reference.uri,
                "fetched_at": utc_now().isoformat().replace("+00:00", "Z"),
            },
        }
        with staging_folder(out) as staging:
            for name in manifest["files"]:
                shutil.copy2(folder / name, staging / name)
            write_json(staging / MANIFEST_FILE, manifest)
    return manifest


def _not_found(client: Any, reference: ModelReference) -> str:
    """Say what is missing: the registered model, or which aliases/versions it does have."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(reference.name)
    except MlflowException:
        return f"there is no registered model named {reference.name!r}"
    aliases = getattr(model, "aliases", None) or {}
    known = ", ".join(f"@{alias} -> version {number}" for alias, number in sorted(aliases.items()))
    what = f"alias {reference.alias!r}" if reference.alias else f"version {reference.version}"
    return f"registered model {reference.name!r} has no {what} (its aliases: {known or 'none'})"


def _download(reference: ModelReference, into: Path) -> Path:
    """The version's model folder; its pyfunc artifacts are the artifact folder's files."""
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=reference.version_uri, dst_path=str(into)
        )
    except Exception as error:
        raise RegistryError(
            f"could not download {reference.version_uri}: {one_line(error)}"
        ) from error
    folder = Path(local) / MODEL_ARTIFACTS_DIR
    if not (folder / MANIFEST_FILE).is_file():
        raise RegistryError(
            f"{reference.version_uri} carries no {MANIFEST_FILE}: it was not registered by "
            "this project's training"
        )
    return folder


def _verified_manifest(folder: Path, reference: ModelReference) -> dict[str, Any]:
    """The manifest, once every file it lists is present and matches its sha256."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST_FILE).read_text("utf-8"))
        files: dict[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise RegistryError(
            f"{MANIFEST_FILE} of {reference.version_uri} is not a valid manifest ({error})"
        ) from error
    if not files:
        raise RegistryError(f"{MANIFEST_FILE} of {reference.version_uri} lists no files")
    for name, expected in files.items():
        if Path(name).name != name:
            raise RegistryError(
                f"{MANIFEST_FILE} of {reference.version_uri} lists {name!r}, not a plain file name"
            )
        path = folder / name
        if not path.is_file():
            raise RegistryError(
                f"{name} is listed in the manifest of {reference.version_uri} but missing"
            )
        actual = sha256_of_file(path)
        if actual != str(expected).lower():
            raise RegistryError(
                f"{name} of {reference.version_uri} does not match its sha256 in the manifest "
                f"(expected {expected}, found {actual}); nothing was written"
            )
    return manifest


if __name__ == "__main__":
    raise SystemExit(main())
