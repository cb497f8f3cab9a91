"""Turn raw feature rows into probabilities of default, with counterfactuals for the reasons.

Serving runs on ONE onnxruntime session created at import with one intra-op and one inter-op
thread: a request is a handful of rows, so threads would only add hand-off latency, and each
uvicorn worker (or Lambda sandbox) already owns a core. Normalization is numpy arithmetic with the
training statistics. scikit-learn serves ``best_model.pkl`` only when ``MODEL_RUNTIME=sklearn``
asks for it (never as a silent fallback: unpickling runs code) and is imported only by
``SklearnPredictor``, never on the ONNX path. Both models are loaded from the bytes read here (an
ONNX graph that points at external data files is refused), then checked on edge-of-range loans
before the service starts (``check_model_at_load``).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np

from loan_service.artifacts import STATS_FILE, ArtifactBundle, ArtifactError, FeatureStats
from loan_service.onnx_graph import MalformedModel, external_data_tensors
from loan_service.settings import ModelRuntime

ONNX_INPUT_NAME: Final = "input"
ONNX_PROBABILITIES_OUTPUT: Final = "probabilities"
ONNX_LOG_ODDS_OUTPUT: Final = "log_odds"

_log = logging.getLogger(__name__)


class ProbabilityModel(Protocol):
    """A fitted model that takes NORMALIZED rows and returns P(default) per row."""

    runtime: ModelRuntime
    log_odds_with_pds: bool
    """Whether a block's PD call should fetch the log-odds too: true where a row's cost is in the
    part both outputs share (a tree ensemble), so the declined rows' counterfactual call can leave
    out the applicants' own rows; false where the log-odds cost a call a third more (a linear
    model), so the PD call fetches the probabilities only."""

    def class_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        """(n, 3) float64: P(no default), P(default), and the model's own float64 log-odds of
        default (computed before the sigmoid, so finite where both probabilities saturate)."""
        ...

    def log_odds(self, normalized: np.ndarray) -> np.ndarray:
        """(n,) float64: the log-odds of ``class_probabilities`` alone (counterfactuals need no
        probabilities)."""
        ...

    def pair_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        """(n, 2) float64: P(no default), P(default) only (the cheaper call, no log-odds)."""
        ...


class OnnxPredictor:
    """``model.onnx`` on onnxruntime; outputs are looked up by name, not position."""

    runtime: ModelRuntime = "onnx"

    def __init__(self, onnx_path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        model = read_artifact(onnx_path)
        try:
            external = external_data_tensors(model)
        except MalformedModel as exc:
            raise ArtifactError(f"{onnx_path.name} could not be loaded by onnxruntime") from exc
        if external:
            raise ArtifactError(
                f"{onnx_path.name} keeps tensors in external data files ({', '.join(external[:3])}"
                f"{', ...' if len(external) > 3 else ''}), which the manifest does not hash: "
                "export the model self-contained"
            )
        try:
            # From the bytes just read (and checked above), not from the path: onnxruntime opens
            # nothing else, and the file cannot change between the check and the load.
            self._session = ort.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise ArtifactError(f"{onnx_path.name} could not be loaded by onnxruntime") from exc
        inputs = {node.name for node in self._session.get_inputs()}
        outputs = {node.name for node in self._session.get_outputs()}
        if ONNX_INPUT_NAME not in inputs or ONNX_PROBABILITIES_OUTPUT not in outputs:
            raise ArtifactError(
                f"{onnx_path.name} must take '{ONNX_INPUT_NAME}' and give "
                f"'{ONNX_PROBABILITIES_OUTPUT}' (has inputs {sorted(inputs)}, "
                f"outputs {sorted(outputs)})"
            )
        # A graph without 'log_odds' (trained before it existed) still serves: its log-odds
        # come from both probability columns, which saturate only for the clearest cases.
        self._has_log_odds = ONNX_LOG_ODDS_OUTPUT in outputs
        self._output_names = [ONNX_PROBABILITIES_OUTPUT]
        self._probabilities_only = [ONNX_PROBABILITIES_OUTPUT]
        self._log_odds_only = [ONNX_LOG_ODDS_OUTPUT]
        if self._has_log_odds:
            self._output_names.append(ONNX_LOG_ODDS_OUTPUT)
        # The op type is plain text in the graph's bytes; a wrong guess costs time, never answers.
        self.log_odds_with_pds = self._has_log_odds and _TREE_ENSEMBLE in model

    def class_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(normalized, dtype=np.float32)
        outputs = self._session.run(self._output_names, {ONNX_INPUT_NAME: rows})
        probabilities = np.asarray(outputs[0], dtype=np.float64)
        if self._has_log_odds:
            log_odds = np.asarray(outputs[1], dtype=np.float64).reshape(-1, 1)
        else:
            log_odds = pair_log_odds(probabilities).reshape(-1, 1)
        return np.concatenate((probabilities, log_odds), axis=1)

    def pair_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(normalized, dtype=np.float32)
        (probabilities,) = self._session.run(self._probabilities_only, {ONNX_INPUT_NAME: rows})
        return np.asarray(probabilities, dtype=np.float64)

    def log_odds(self, normalized: np.ndarray) -> np.ndarray:
        if not self._has_log_odds:
            return pair_log_odds(self.pair_probabilities(normalized))
        rows = np.ascontiguousarray(normalized, dtype=np.float32)
        (odds,) = self._session.run(self._log_odds_only, {ONNX_INPUT_NAME: rows})
        return np.asarray(odds, dtype=np.float64).reshape(-1)


class SklearnPredictor:
    """``best_model.pkl`` through scikit-learn: the fallback, slower to import and to call."""

    runtime: ModelRuntime = "sklearn"
    log_odds_with_pds = False  # scikit-learn computes the log-odds in a pass of their own

    def __init__(self, pickle_path: Path) -> None:
        try:
            import joblib
        except ModuleNotFoundError as exc:
            raise ArtifactError(
                "MODEL_RUNTIME=sklearn needs scikit-learn and joblib "
                "(requirements/runtime-sklearn.txt)"
            ) from exc
        try:
            self._model = joblib.load(io.BytesIO(read_artifact(pickle_path)))
        except ModuleNotFoundError as exc:
            raise ArtifactError(
                f"{pickle_path.name} needs {exc.name}, which is not installed"
            ) from exc
        except Exception as exc:  # unpickling can raise almost anything on a bad file
            raise ArtifactError(f"{pickle_path.name} could not be unpickled") from exc

    def class_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        from loan_service.sklearn_model import calibrated_log_odds

        rows = np.asarray(normalized, dtype=np.float64)
        probabilities = np.asarray(self._model.predict_proba(rows), dtype=np.float64)
        return np.column_stack((probabilities, calibrated_log_odds(self._model, rows)))

    def pair_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        rows = np.asarray(normalized, dtype=np.float64)
        return np.asarray(self._model.predict_proba(rows), dtype=np.float64)

    def log_odds(self, normalized: np.ndarray) -> np.ndarray:
        from loan_service.sklearn_model import calibrated_log_odds

        return np.asarray(
            calibrated_log_odds(self._model, np.asarray(normalized, dtype=np.float64)),
            dtype=np.float64,
        )


def load_probability_model(bundle: ArtifactBundle, runtime: ModelRuntime) -> ProbabilityModel:
    """The requested runtime, and only that one.

    ``best_model.pkl`` is unpickled only when ``MODEL_RUNTIME=sklearn`` asks for it: unpickling
    runs whatever code the file names, so it is never a silent fallback for a missing
    onnxruntime. (The manifest's sha256 catches a corrupted file, not an attacker who can
    rewrite the folder and its manifest: the trust boundary is the image digest.)
    """
    if runtime == "onnx":
        try:
            import onnxruntime  # noqa: F401  (presence check; the session is built below)
        except ModuleNotFoundError as exc:
            raise ArtifactError(
                f"{bundle.onnx_path.name} needs onnxruntime, which is not installed "
                f"(MODEL_RUNTIME=sklearn serves {bundle.pickle_path.name} instead)"
            ) from exc
        return OnnxPredictor(bundle.onnx_path)
    return SklearnPredictor(bundle.pickle_path)


def read_artifact(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path.name} cannot be read ({exc.strerror or exc})") from exc


# Log-odds are taken from BOTH probability columns: the model computes each with full relative
# precision in its own tail (P(default) = 2e-30 for a safe applicant, P(no default) = 9e-12 for a
# risky one), whereas 1 - p would round them to 0. Clipping at float32's smallest normal number only
# matters beyond about +-87 log-odds.
_SMALLEST: Final = float(np.finfo(np.float32).tiny)
_PROBABILITY_SLACK: Final = 1e-6  # float32 sums may land a hair above 1
_SMALL_OUTPUT: Final = 64
_WIDE_ROWS: Final = 256
_TREE_ENSEMBLE: Final = b"TreeEnsemble"  # ai.onnx.ml TreeEnsembleClassifier / Regressor


def check_probabilities(outputs: np.ndarray) -> None:
    """Raise ``FloatingPointError`` unless every probability is in [0, 1] (float32 slack) and
    every log-odds is finite (NaN fails both)."""
    pairs = outputs[..., :2]
    if pairs.size <= _SMALL_OUTPUT:  # an API request's few rows: Python's min/max cost less
        values = pairs.ravel().tolist()
        lowest, highest = (min(values), max(values)) if values else (0.0, 0.0)
        if sum(values) != sum(values):  # a NaN anywhere (min and max may step over it)
            lowest = math.nan
    else:
        lowest, highest = pairs.min(), pairs.max()
    if not (lowest >= 0.0 and highest <= 1.0 + _PROBABILITY_SLACK):  # NaN fails both
        raise FloatingPointError("the model returned a probability outside [0, 1]")
    if outputs.shape[-1] > 2 and not np.isfinite(outputs[..., 2]).all():
        raise FloatingPointError("the model returned a log-odds that is not finite")


def pair_log_odds(pairs: np.ndarray) -> np.ndarray:
    """float64 log-odds of default from (..., 2) pairs (P(no default), P(default)); both tails."""
    return np.log(np.maximum(pairs[..., 1], _SMALLEST)) - np.log(
        np.maximum(pairs[..., 0], _SMALLEST)
    )


def log_odds(outputs: np.ndarray) -> np.ndarray:
    """The model's own log-odds (column 2) where it gives them, else from the probabilities."""
    return outputs[..., 2] if outputs.shape[-1] > 2 else pair_log_odds(outputs)


def explain_block(block: list[list[float]]) -> tuple[float, list[float]]:
    """One applicant's block of model outputs -> (PD, impact of each feature).

    ``block[0]`` is the applicant's (P(no default), P(default)[, log-odds]); ``block[j + 1]``
    the same with feature j at its reference (a number's training mean, a category's commonest
    value). The impact of feature j is how much the log-odds fall when it moves there (> 0: it
    raised the risk). The one-applicant view of ``explain``.
    """
    pairs = np.asarray(block, dtype=np.float64)[None, :, :]
    probability, _, impact = explain(pairs)
    return float(probability[0]), impact[0].tolist()


def explain(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, k+1, 2 or 3) blocks -> PD (n,), log-odds (n,) and impacts (n, k), float64, no loop.

    Impacts are differences of the model's float64 log-odds (taken before the sigmoid): where
    the probability of a clear decline is exactly 1.0, its counterfactuals still differ."""
    check_probabilities(blocks)
    odds = log_odds(blocks)
    applicant = odds[:, 0]
    return np.minimum(blocks[:, 0, 1], 1.0), applicant, applicant[:, None] - odds[:, 1:]


@dataclass(frozen=True, slots=True)
class ScoredRows:
    """PD of each applicant and each feature's impact on its log-odds (see ``explain_block``)."""

    probability: np.ndarray  # (n,)
    impact: np.ndarray  # (n, n_features)


class DefaultRiskModel:
    """Normalizes raw rows and scores each applicant together with its counterfactuals."""

    def __init__(self, model: ProbabilityModel, stats: FeatureStats) -> None:
        self._model = model
        self._mean = stats.mean
        self._inverse_std = 1.0 / stats.std
        # The statistics repeated for _WIDE_ROWS rows: a large block is normalized as rows of
        # _WIDE_ROWS * k values, where numpy's loop over rows of k values cost 3x the arithmetic.
        self._wide_mean = np.tile(self._mean, _WIDE_ROWS)
        self._wide_inverse_std = np.tile(self._inverse_std, _WIDE_ROWS)
        self.n_features = int(stats.mean.shape[0])
        # A feature at its training mean normalizes to exactly 0, so the counterfactual block is
        # the applicant's normalized row times this mask: row 0 all ones (the applicant), row j+1
        # zero in column j (feature j at its mean). One broadcast multiply builds n*(k+1) rows.
        mask = np.ones((self.n_features + 1, self.n_features), dtype=np.float32)
        mask[np.arange(self.n_features) + 1, np.arange(self.n_features)] = 0.0
        self._counterfactual_mask = mask
        # A category's reference is its commonest value's index, not 0: added after the mask.
        fill = np.zeros_like(mask)
        fill[np.arange(self.n_features) + 1, np.arange(self.n_features)] = stats.reference
        self._counterfactual_fill = fill if fill.any() else None

    @property
    def runtime(self) -> ModelRuntime:
        return self._model.runtime

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self._mean) * self._inverse_std

    def class_probabilities(self, normalized: np.ndarray) -> np.ndarray:
        """The underlying model's raw output for normalized rows (load-time checks)."""
        return self._model.class_probabilities(normalized)

    def pairs(self, raw: np.ndarray) -> np.ndarray:
        """ONE model call without counterfactuals: (n, 2) (P(no default), P(default)), checked.

        Without the log-odds output: that costs the small calls (an API request's PDs) a
        third more, and only reasons need it (``blocks``)."""
        probabilities = self._model.pair_probabilities(self.normalize(raw).astype(np.float32))
        check_probabilities(probabilities)
        return probabilities

    def normalized(self, raw: np.ndarray) -> np.ndarray:
        """The float32 model input of ``raw``: ``normalize(raw).astype(float32)``, the same values
        with one temporary fewer (a block's PD and counterfactual calls share it)."""
        n_rows = raw.shape[0]
        if n_rows <= _SMALL_OUTPUT or not raw.flags.c_contiguous:
            shifted = raw - self._mean
            shifted *= self._inverse_std
            return shifted.astype(np.float32)
        # The same operations on the same values, _WIDE_ROWS rows at a time (rest as above).
        whole = n_rows - n_rows % _WIDE_ROWS
        normalized = np.empty(raw.shape, dtype=np.float32)
        wide = raw[:whole].reshape(-1, self._wide_mean.shape[0]) - self._wide_mean
        wide *= self._wide_inverse_std
        normalized[:whole] = wide.reshape(whole, raw.shape[1])
        if whole < n_rows:
            rest = raw[whole:] - self._mean
            rest *= self._inverse_std
            normalized[whole:] = rest
        return normalized

    def block_scores(self, normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """ONE model call for a block's PDs: (n, 2) pairs, checked, and the applicants' log-odds
        where the model gives them at no extra cost (``log_odds_with_pds``), else None."""
        if self._model.log_odds_with_pds:
            outputs = self._model.class_probabilities(normalized)
            check_probabilities(outputs)
            return outputs[:, :2], outputs[:, 2]
        pairs = self._model.pair_probabilities(normalized)
        check_probabilities(pairs)
        return pairs, None

    def impacts(
        self, normalized: np.ndarray, applicant_log_odds: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, k) impacts of normalized rows (``explain``'s third output) from ONE model call of
        log-odds only: each feature at its reference, plus the applicant's own row unless its
        log-odds are given (the same float32 row gives the same log-odds in any call)."""
        n_rows, n_features = normalized.shape
        first = 0 if applicant_log_odds is None else 1
        mask = self._counterfactual_mask[first:]
        fill = None if self._counterfactual_fill is None else self._counterfactual_fill[first:]
        if n_rows <= _SMALL_OUTPUT:
            block = normalized[:, None, :] * mask
            if fill is not None:
                block += fill
            flat = block.reshape(-1, n_features)
        else:
            # The same products, each row repeated then multiplied by the flattened mask in place:
            # rows of k(k+1) values instead of numpy's loop over blocks of k (3x faster).
            flat = np.repeat(normalized, mask.shape[0], axis=0)
            wide = flat.reshape(n_rows, -1)
            wide *= mask.reshape(-1)
            if fill is not None:
                wide += fill.reshape(-1)
        odds = self._model.log_odds(flat).reshape(n_rows, -1)
        if not np.isfinite(odds).all():
            raise FloatingPointError("the model returned a log-odds that is not finite")
        if applicant_log_odds is None:
            return odds[:, 0][:, None] - odds[:, 1:]
        return applicant_log_odds[:, None] - odds

    def row_impacts(
        self,
        normalized: np.ndarray,
        rows: Sequence[int],
        applicant_log_odds: np.ndarray | None = None,
    ) -> list[list[float]]:
        """``impacts(normalized[rows], ...)`` as Python lists, for the few rows of an API request:
        the same model call on the same float32 block, the finiteness check and the float64
        subtraction in Python floats (numpy's per-call cost was a third of the work besides the
        model call for one declined applicant)."""
        n_features = normalized.shape[1]
        first = 0 if applicant_log_odds is None else 1
        block = normalized[rows][:, None, :] * self._counterfactual_mask[first:]
        if self._counterfactual_fill is not None:
            block += self._counterfactual_fill[first:]
        odds: list[float] = self._model.log_odds(block.reshape(-1, n_features)).tolist()
        if not all(map(math.isfinite, odds)):
            raise FloatingPointError("the model returned a log-odds that is not finite")
        width = n_features + 1 - first
        applicants = None if applicant_log_odds is None else applicant_log_odds[rows].tolist()
        impacts = []
        for index in range(len(rows)):
            counterfactuals = odds[index * width : (index + 1) * width]
            if applicants is None:
                applicant, counterfactuals = counterfactuals[0], counterfactuals[1:]
            else:
                applicant = applicants[index]
            impacts.append([applicant - value for value in counterfactuals])
        return impacts

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """PD only (no counterfactuals), vectorized: one model call for all rows."""
        return np.asarray(np.minimum(self.pairs(raw)[:, 1], 1.0))

    def blocks(self, raw: np.ndarray) -> np.ndarray:
        """ONE model call for ``raw`` (n, k) and its counterfactuals: (n, k+1, 2) float64 of
        (P(no default), P(default)); row 0 of each block is the applicant itself."""
        n_rows, n_features = raw.shape
        normalized = self.normalize(raw).astype(np.float32)
        block = normalized[:, None, :] * self._counterfactual_mask
        if self._counterfactual_fill is not None:
            block += self._counterfactual_fill
        flat = self._model.class_probabilities(block.reshape(-1, n_features))
        return flat.reshape(n_rows, n_features + 1, flat.shape[1])

    def score(self, raw: np.ndarray) -> ScoredRows:
        """PD and per-feature impacts as arrays (analysis and tests)."""
        probability, _, impact = explain(self.blocks(raw))
        return ScoredRows(probability=probability, impact=impact)


Bounds = Sequence[tuple[float | None, float | None]]


def edge_of_range_rows(stats: FeatureStats, bounds: Bounds) -> np.ndarray:
    """Loans at the edges of what serving accepts: every feature at its lowest, at its highest,
    and each one alone at either end with the others at their training mean. A bound the API
    leaves open falls back to the training split's min or max."""
    low = np.array(
        [stats.minimum[j] if lo is None else lo for j, (lo, _) in enumerate(bounds)], np.float64
    )
    high = np.array(
        [stats.maximum[j] if hi is None else hi for j, (_, hi) in enumerate(bounds)], np.float64
    )
    rows = [stats.mean.copy(), low, high]
    for column in range(len(bounds)):
        for edge in (low, high):
            row = stats.mean.copy()
            row[column] = edge[column]
            rows.append(row)
    return np.array(rows, dtype=np.float64)


def check_model_at_load(
    model: DefaultRiskModel, rows: np.ndarray, features: Sequence[str], model_file: str
) -> None:
    """Refuse (``ArtifactError`` naming the file) statistics or a model that would fail on valid
    loans: a ``stats.json`` whose mean/std overflow float32 at the edges (a re-sealed std of
    1e-300, a mean of 1e308), a model whose output has the wrong shape or leaves [0, 1]."""
    with np.errstate(all="ignore"):
        normalized = model.normalize(rows).astype(np.float32)
    bad = np.argwhere(~np.isfinite(normalized))
    if bad.size:
        feature = features[int(bad[0][1])]
        raise ArtifactError(
            f"{STATS_FILE}: the mean and std of {feature} normalize a valid loan to a "
            "non-finite value"
        )
    try:
        with np.errstate(all="ignore"):
            output = np.asarray(model.class_probabilities(normalized), dtype=np.float64)
    except Exception as exc:
        raise ArtifactError(
            f"{model_file} fails on edge-of-range loans ({type(exc).__name__})"
        ) from exc
    expected = (rows.shape[0], 3)  # P(no default), P(default), log-odds (``class_probabilities``)
    if output.shape != expected:
        raise ArtifactError(
            f"{model_file} gives probabilities of shape {(*output.shape[:1], output.shape[1] - 1)}"
            f" for {rows.shape[0]} loans; ({rows.shape[0]}, 2) expected"
            if output.ndim == 2
            else f"{model_file} gives probabilities of shape {output.shape}; (n, 2) expected"
        )
    probabilities = output[:, :2]
    if not (
        np.isfinite(probabilities).all()
        and probabilities.min() >= 0.0
        and probabilities.max() <= 1.0 + _PROBABILITY_SLACK
        and not np.isnan(output[:, 2]).any()
    ):
        raise ArtifactError(
            f"{model_file} gives probabilities outside [0, 1] on edge-of-range loans"
        )
