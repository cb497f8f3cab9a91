"""The MLflow Model Registry side of the model: what is registered, under which alias, and how.

* The registered model ``loan-default`` holds one version per tracked training run. A version is an
  MLflow pyfunc (``training/pyfunc_model.py``) that takes the raw, named feature columns and
  carries the whole artifact folder (manifest, model.onnx, stats.json, best_model.pkl and any
  other file the manifest lists) as its artifacts, so a version alone rebuilds the folder.
* Aliases: training points ``challenger`` at its new version; ``loan-default promote`` moves
  ``champion``; ``loan-default fetch models:/loan-default@champion`` builds what is deployed.
* Every command here talks to the registry through :func:`connect`: MLflow's HTTP client would
  otherwise retry a dead server for minutes, and its error texts carry the tracking URI
  (credentials included), so they are shown only through :func:`redact`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.redaction import redact
from training.tracking import (
    MLFLOW_CLIENT_DEFAULTS,
    REGISTERED_MODEL_NAME,
    probe_tracking_server,
    resolve_tracking_uri,
)

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
PYFUNC_MODEL_FILE: Final = Path(__file__).with_name("pyfunc_model.py")
MODEL_ARTIFACTS_DIR: Final = "artifacts"
"""Where MLflow stores a pyfunc's artifacts inside the logged model."""
HELD_OUT_ARTIFACT: Final = "held_out/test.csv"
"""The run's test split (raw features + target): promote's default comparison data."""
INTEGER_TYPE: Final = "long"
NUMBER_TYPE: Final = "double"
CATEGORY_TYPE: Final = "string"
SCORING_LIBRARIES: Final = ("numpy", "pandas", "onnxruntime")
"""What the pyfunc imports besides MLflow itself: its whole environment."""

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class RegistryError(RuntimeError):
    """A registry command cannot go on; the message is one line naming the problem."""


def one_line(error: BaseException) -> str:
    """The first line of an exception's text, redacted (never the raw MLflow message)."""
    text = str(error).strip()
    first = text.splitlines()[0][:300] if text else type(error).__name__
    return redact(first)


@dataclass(frozen=True)
class ModelReference:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""

    name: str
    alias: str | None = None
    version: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else self.version_uri

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> ModelReference:
    """Read a registry URI; anything else is a :class:`RegistryError`."""
    match = _MODEL_URI.match(uri.strip())
    if match is None:
        raise RegistryError(
            f"{uri!r} is not a registered model URI "
            f"(expected models:/NAME@ALIAS or models:/NAME/VERSION, e.g. "
            f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION})"
        )
    return ModelReference(match["name"], match["alias"], match["version"])


COMMAND_LINE_DEFAULTS: Final = {
    **MLFLOW_CLIENT_DEFAULTS,
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
"""No retries for minutes, no telemetry, no progress bars on stderr (unless the user set them)."""


def connect(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` on a server that answered, or a :class:`RegistryError` within ~10 s."""
    for name, value in COMMAND_LINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = tracking_uri or resolve_tracking_uri()
    problem = probe_tracking_server(uri)
    if problem is not None:
        raise RegistryError(
            f"the MLflow tracking server at {redact(uri)} cannot be reached: {redact(problem)}"
        )
    import mlflow
    from mlflow.tracking import MlflowClient

    for logger in ("mlflow", "alembic"):  # the commands say what happened in their own words
        logging.getLogger(logger).setLevel(logging.ERROR)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def is_missing(error: BaseException) -> bool:
    """True for MLflow's "does not exist" answers (a missing model, version or alias)."""
    code = getattr(error, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(error).lower()


def find_version(client: Any, reference: ModelReference) -> Any | None:
    """The version an alias or number points at; None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        if reference.alias is not None:
            return client.get_model_version_by_alias(reference.name, reference.alias)
        return client.get_model_version(reference.name, reference.version)
    except MlflowException as error:
        if is_missing(error):
            return None
        raise RegistryError(
            f"the registry could not look up {reference.uri}: {one_line(error)}"
        ) from error


def column_types(book: Any) -> dict[str, str]:
    """MLflow column type per feature of the book's schema, in the model's feature order:
    ``long`` for an integer, ``double`` for a number, ``string`` for a category - what pandas
    reads from the book's CSV, so a DataFrame read from it passes MLflow's schema check (which
    refuses int64 for a double column and float64 for a long one)."""
    kinds = {"integer": INTEGER_TYPE, "number": NUMBER_TYPE, "category": CATEGORY_TYPE}
    return {feature.name: kinds[feature.type] for feature in book.features}


def typed_frame(
    values: npt.NDArray[np.float64],
    types: dict[str, str],
    book: Any = None,
    where: str = "the data",
) -> pd.DataFrame:
    """Model-input-order rows (categories as value indices) as the raw DataFrame the registered
    model's signature takes: whole numbers as int64, amounts as float64, categories as text."""
    categories = {} if book is None else {f.name: f.values or () for f in book.categories}
    columns: dict[str, Any] = {}
    for j, (name, kind) in enumerate(types.items()):
        column = values[:, j]
        if kind == CATEGORY_TYPE:
            labels = np.asarray(categories[name], dtype=object)
            columns[name] = labels[column.astype(np.int64)]
        elif kind == INTEGER_TYPE:
            whole = column == np.round(column)
            if not bool(whole.all()):
                row = int(np.argmin(whole)) + 1
                raise RegistryError(
                    f"{where}: {name} must be a whole number for this model "
                    f"(data row {row} is {column[row - 1]!r})"
                )
            columns[name] = column.astype(np.int64)
        else:
            columns[name] = column.astype(np.float64)
    return pd.DataFrame(columns)


def model_signature(types: dict[str, str]) -> Any:
    """Named, typed input columns; named output columns ``probability`` and ``prediction``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(kind, name) for name, kind in types.items()]),
        outputs=Schema([ColSpec("double", "probability"), ColSpec("long", "prediction")]),
    )


def signature_types(model_uri: str) -> dict[str, str]:
    """The input column types a registered (or logged) model declares, in its column order."""
    from mlflow.models import get_model_info

    signature = get_model_info(model_uri).signature
    if signature is None:
        raise RegistryError(f"{model_uri} has no signature: it was not logged by this training")
    return {spec.name: spec.type.name for spec in signature.inputs.inputs}


def scoring_requirements(versions: dict[str, Any]) -> list[str]:
    """The pyfunc's pip requirements: MLflow (added by MLflow itself) plus what it imports."""
    from importlib import metadata

    pinned = []
    for name in SCORING_LIBRARIES:
        version = versions.get(name)
        if not version:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        pinned.append(f"{name}=={version}")
    return pinned


def model_artifacts(folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Every file of the artifact folder the manifest lists, plus the manifest itself."""
    names = [*manifest["files"], "manifest.json"]
    return {name: str(folder / name) for name in names}


def evaluation_metrics() -> list[Any]:
    """ROC AUC, F1 at the threshold and Brier for ``mlflow.models.evaluate``, as the manifest
    reports them, for the registered model (two output columns, so no built-in classifier
    metrics): evaluate with ``predictions="probability"``; F1 reads the model's own
    ``prediction`` column. MLflow first tries each metric on a single row, where none of these
    is defined: they answer nothing there."""
    from mlflow.metrics import MetricValue
    from mlflow.models import make_metric
    from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score

    def defined(targets: pd.Series, *columns: pd.Series) -> bool:
        return targets.nunique() == 2 and all(len(column) == len(targets) for column in columns)

    def roc_auc(predictions: pd.Series, targets: pd.Series) -> MetricValue | None:
        if not defined(targets, predictions):
            return None
        return MetricValue(
            aggregate_results={"roc_auc": float(roc_auc_score(targets, predictions))}
        )

    def brier(predictions: pd.Series, targets: pd.Series) -> MetricValue | None:
        if not defined(targets, predictions):
            return None
        score = float(brier_score_loss(targets, predictions))
        return MetricValue(aggregate_results={"brier": score})

    def f1(predictions: pd.Series, targets: pd.Series, prediction: pd.Series) -> MetricValue | None:
        if not defined(targets, prediction):
            return None
        return MetricValue(aggregate_results={"f1": float(f1_score(targets, prediction))})

    return [
        make_metric(eval_fn=roc_auc, greater_is_better=True, name="roc_auc"),
        make_metric(eval_fn=f1, greater_is_better=True, name="f1"),
        make_metric(eval_fn=brier, greater_is_better=False, name="brier"),
    ]
