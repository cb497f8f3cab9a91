"""``loan-default promote [--data CSV]``: the gate between a new model and production.

The registry decides what is deployed: ``champion`` is what ``loan-default fetch`` (and so the
image) builds. Training points ``challenger`` at each new version; this command scores the
challenger and the current champion on the same held-out loans - the test split recorded with
the challenger's training run, or ``--data CSV`` - through the registered models themselves (raw
columns in, as every user calls them), computes ROC AUC, F1 at each model's threshold and the
Brier score once for both, and moves ``champion`` only when the challenger is not worse than the
margins. The first version becomes champion directly. Each decision is written on the versions
(tags and description: who, when, the figures), so the registry is the change log.

Exit codes: 0 promoted; 1 the gate said no (a table of what failed; ``champion`` unchanged);
2 bad input (no challenger, unreachable tracking server, unreadable data) - one line on stderr,
nothing changed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from training.data import DataValidationError, load_loan_book
from training.manifest import utc_now
from training.registry import (
    CATEGORY_TYPE,
    CHALLENGER,
    CHAMPION,
    HELD_OUT_ARTIFACT,
    INTEGER_TYPE,
    ModelReference,
    RegistryError,
    connect,
    find_version,
    one_line,
    signature_types,
    typed_frame,
)
from training.schema import TARGET
from training.tracking import REGISTERED_MODEL_NAME

EXIT_REFUSED: Final = 1
EXIT_BAD_INPUT: Final = 2
DEFAULT_MAX_ROC_AUC_DROP: Final = 0.005
DEFAULT_MAX_F1_DROP: Final = 0.01
DEFAULT_MAX_BRIER_RISE: Final = 0.005


@dataclass(frozen=True)
class Margins:
    """How much worse than the champion a challenger may be and still be promoted."""

    roc_auc_drop: float = DEFAULT_MAX_ROC_AUC_DROP
    f1_drop: float = DEFAULT_MAX_F1_DROP
    brier_rise: float = DEFAULT_MAX_BRIER_RISE


@dataclass(frozen=True)
class Check:
    """One metric of the gate: the challenger against the bound the champion sets."""

    metric: str
    challenger: float
    champion: float
    bound: float
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.challenger >= self.bound
        return self.challenger <= self.bound

    @property
    def rule(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.bound:.4f}"


def gate(challenger: dict[str, float], champion: dict[str, float], margins: Margins) -> list[Check]:
    """The three checks: ROC AUC and F1 may fall, Brier may rise, each by its margin at most."""
    return [
        Check("roc_auc", challenger["roc_auc"], champion["roc_auc"],
              champion["roc_auc"] - margins.roc_auc_drop, True),
        Check("f1", challenger["f1"], champion["f1"], champion["f1"] - margins.f1_drop, True),
        Check("brier", challenger["brier"], champion["brier"],
              champion["brier"] + margins.brier_rise, False),
    ]  # fmt: skip


def table(checks: list[Check], challenger_version: str, champion_version: str) -> str:
    """The gate as a fixed-width table (what failed is marked FAILED)."""
    header = (
        f"{'metric':<8}  {'challenger v' + challenger_version:>15}  "
        f"{'champion v' + champion_version:>13}  {'allowed':>10}  result"
    )
    lines = [header]
    for check in checks:
        lines.append(
            f"{check.metric:<8}  {check.challenger:>15.4f}  {check.champion:>13.4f}  "
            f"{check.rule:>10}  {'ok' if check.passed else 'FAILED'}"
        )
    return "\n".join(lines)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.promote",
        description="Compare the registered challenger with the champion on held-out loans and "
        "move the 'champion' alias only if the challenger is not worse than the margins "
        "(the tracking server is MLFLOW_TRACKING_URI, else the local mlflow.db).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="labelled loan-book CSV to compare on (default: the test split recorded with the "
        "challenger's training run)",
    )
    parser.add_argument("--name", default=REGISTERED_MODEL_NAME, help="registered model name")
    parser.add_argument(
        "--max-roc-auc-drop",
        type=float,
        default=DEFAULT_MAX_ROC_AUC_DROP,
        help=f"ROC AUC may be at most this much below the champion's "
        f"(default {DEFAULT_MAX_ROC_AUC_DROP})",
    )
    parser.add_argument(
        "--max-f1-drop",
        type=float,
        default=DEFAULT_MAX_F1_DROP,
        help=f"F1 at the threshold may be at most this much below (default {DEFAULT_MAX_F1_DROP})",
    )
    parser.add_argument(
        "--max-brier-rise",
        type=float,
        default=DEFAULT_MAX_BRIER_RISE,
        help=f"the Brier score may be at most this much above (default {DEFAULT_MAX_BRIER_RISE})",
    )
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the gate; return the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    margins = Margins(args.max_roc_auc_drop, args.max_f1_drop, args.max_brier_rise)
    if min(margins.roc_auc_drop, margins.f1_drop, margins.brier_rise) < 0:
        print(f"{parser.prog}: margins cannot be negative", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return promote(args.name, args.data, margins)
    except RegistryError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
    except Exception as error:  # MLflow's texts carry the tracking URI: never shown raw
        print(f"{parser.prog}: the registry failed: {one_line(error)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def promote(name: str, data: Path | None, margins: Margins, tracking_uri: str | None = None) -> int:
    """Evaluate and decide; 0 promoted, 1 refused (``RegistryError`` for bad input)."""
    client = connect(tracking_uri)
    challenger = find_version(client, ModelReference(name, alias=CHALLENGER))
    if challenger is None:
        raise RegistryError(
            f"registered model {name!r} has no version with alias {CHALLENGER!r}: "
            "train a model first (loan-default train) - nothing to promote"
        )
    champion = find_version(client, ModelReference(name, alias=CHAMPION))
    challenger_ref = ModelReference(name, version=str(challenger.version))
    if champion is not None and str(champion.version) == str(challenger.version):
        raise RegistryError(f"version {challenger.version} is already the champion")
    frame, target, source = _held_out(challenger, challenger_ref, data)
    challenger_metrics = _evaluate(challenger_ref, frame, target, "challenger")
    record = {
        "by": _who(),
        "at": utc_now().isoformat().replace("+00:00", "Z"),
        "data": source,
        "loans": len(target),
        "challenger": {"version": str(challenger.version), **challenger_metrics},
    }
    if champion is None:
        record["reason"] = "first version: no champion yet"
        _move_champion(client, name, challenger, None, record)
        print(
            f"version {challenger.version} is now {CHAMPION} (there was none): ROC AUC "
            f"{challenger_metrics['roc_auc']:.4f}, F1 {challenger_metrics['f1']:.4f}, Brier "
            f"{challenger_metrics['brier']:.4f} on {len(target):,} loans ({source})"
        )
        return 0
    champion_ref = ModelReference(name, version=str(champion.version))
    champion_metrics = _evaluate(champion_ref, frame, target, "champion")
    checks = gate(challenger_metrics, champion_metrics, margins)
    record["champion"] = {"version": str(champion.version), **champion_metrics}
    record["margins"] = vars(margins)
    print(f"on {len(target):,} held-out loans ({source}):")
    print(table(checks, str(challenger.version), str(champion.version)))
    if all(check.passed for check in checks):
        record["reason"] = "not worse than the champion within the margins"
        _move_champion(client, name, challenger, champion, record)
        print(f"promoted: version {challenger.version} is now {CHAMPION} "
              f"(was version {champion.version})")  # fmt: skip
        return 0
    failed = [check.metric for check in checks if not check.passed]
    record["failed"] = failed
    _record_refusal(client, name, challenger, record)
    print(f"refused: version {challenger.version} is worse than champion version "
          f"{champion.version} on {', '.join(failed)}; {CHAMPION} unchanged")  # fmt: skip
    return EXIT_REFUSED


def _who() -> str:
    for variable in ("MLFLOW_TRACKING_USERNAME", "USER", "LOGNAME"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _held_out(
    challenger: Any, reference: ModelReference, data: Path | None
) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Raw feature columns typed as the challenger's signature, the target, and where from."""
    types = signature_types(reference.version_uri)
    if data is not None:
        try:
            book = load_loan_book(data)
        except DataValidationError as error:
            first = error.issues[0].describe()
            more = f" (and {len(error.issues) - 1} more)" if len(error.issues) > 1 else ""
            raise RegistryError(f"{data}: {first}{more}") from error
        except OSError as error:
            raise RegistryError(f"{data} cannot be read ({error.strerror or error})") from error
        if list(book.schema.feature_names) != list(types):
            raise RegistryError(
                f"{data}: its features {list(book.schema.feature_names)} are not the model's "
                f"{list(types)}"
            )
        frame = typed_frame(book.features, types, book.schema, str(data))
        return frame, book.target, str(data)
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="held-out-") as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=challenger.run_id, artifact_path=HELD_OUT_ARTIFACT, dst_path=folder
            )
        except Exception as error:
            raise RegistryError(
                f"the challenger's run {challenger.run_id} has no {HELD_OUT_ARTIFACT} "
                f"({one_line(error)}): pass --data CSV"
            ) from error
        pandas_types = {INTEGER_TYPE: "int64", CATEGORY_TYPE: "str"}
        dtypes = {col: pandas_types.get(kind, "float64") for col, kind in types.items()}
        held_out = pd.read_csv(local, dtype={**dtypes, TARGET: "int64"})
    target = held_out.pop(TARGET).to_numpy(np.int64)
    return held_out, target, f"test split of run {challenger.run_id}"


def _evaluate(
    reference: ModelReference, frame: pd.DataFrame, target: np.ndarray, role: str
) -> dict[str, float]:
    """ROC AUC, F1 at the model's own threshold, Brier - the registered model scores raw loans."""
    import mlflow.pyfunc

    from training.evaluate import held_out_metrics

    try:
        model = mlflow.pyfunc.load_model(reference.version_uri)
        answer = model.predict(frame)
    except Exception as error:
        raise RegistryError(
            f"the {role} ({reference.version_uri}) cannot score this data: {one_line(error)}"
        ) from error
    threshold = float(model.unwrap_python_model().threshold)
    probability = answer["probability"].to_numpy(np.float64)
    metrics = held_out_metrics(target, probability, threshold=threshold)
    return {key: float(metrics[key]) for key in ("roc_auc", "f1", "brier")}


def _summary(record: dict[str, Any]) -> str:
    challenger = record["challenger"]
    figures = ", ".join(f"{key} {challenger[key]:.4f}" for key in ("roc_auc", "f1", "brier"))
    return (
        f"{record['at']} by {record['by']}: {figures} on {record['loans']} loans ({record['data']})"
    )


def _append_description(client: Any, name: str, version: Any, line: str) -> None:
    current = client.get_model_version(name, str(version.version)).description or ""
    text = f"{current}\n{line}".strip()
    client.update_model_version(name, str(version.version), description=text)


def _move_champion(
    client: Any, name: str, challenger: Any, champion: Any | None, record: dict[str, Any]
) -> None:
    """Point ``champion`` at the challenger, drop ``challenger``, write it on both versions."""
    number = str(challenger.version)
    client.set_registered_model_alias(name, CHAMPION, number)
    client.delete_registered_model_alias(name, CHALLENGER)
    previous = "none" if champion is None else str(champion.version)
    tags = {
        "promoted_at": record["at"],
        "promoted_by": record["by"],
        "promotion": json.dumps(record, sort_keys=True),
        "replaced_champion": previous,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, number, key, value)
    _append_description(
        client, name, challenger,
        f"Promoted to {CHAMPION} {_summary(record)}; previous champion: {previous}.",
    )  # fmt: skip
    if champion is not None:
        client.set_model_version_tag(name, str(champion.version), "retired_at", record["at"])
        client.set_model_version_tag(name, str(champion.version), "replaced_by", number)
        _append_description(
            client, name, champion,
            f"Replaced as {CHAMPION} by version {number} at {record['at']} ({record['by']}).",
        )  # fmt: skip


def _record_refusal(client: Any, name: str, challenger: Any, record: dict[str, Any]) -> None:
    number = str(challenger.version)
    client.set_model_version_tag(name, number, "promotion_refused_at", record["at"])
    client.set_model_version_tag(
        name, number, "promotion_refused", json.dumps(record, sort_keys=True)
    )
    _append_description(
        client, name, challenger,
        f"Not promoted {_summary(record)}: worse than version {record['champion']['version']} "
        f"on {', '.join(record['failed'])}.",
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
