"""THE scoring core: a block of loans in, every answer field out, as arrays (no per-row Python).

``LoanScorer.score(raw)`` takes an (n, k) float64 matrix of raw features in the model's feature
order and returns a ``ScoredBlock`` of numpy arrays: probability, decision, risk band,
expected loss and reason codes. The HTTP API (``LoanAssessor``, which words the answers for people)
and the batch scorer (``loan_default/score.py``, locally and on Spark) both call it, so a loan gets
the same answer whichever way it is scored. For the few rows of an API request (``SMALL_BLOCK``),
``LoanScorer.score_columns`` computes the same fields from Python floats around the same model
calls, where numpy's per-call cost would exceed the work.

Cut points (documented in ``docs/`` and in ``GET /model``):

* ``high``   PD >= threshold (0.50 in the manifest), so "high" always coincides with prediction 1;
* ``medium`` 0.20 <= PD < threshold: above the loan book's average default rate (about 18.5 %);
* ``low``    PD < 0.20.

Reasons (``loan_service.reasons``): up to four features that raised a declined applicant's
calibrated log-odds of default the most, against each feature's reference, from one batched model
call; feature indices in the arrays, the book schema's stable codes in files, its adverse-action
wording in the API's answers. Everything that depends on the features - codes, wording, the
exposure of the expected loss - comes from the trained model's schema (``manifest.json``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final, Literal, NamedTuple

import numpy as np
from pydantic_core import to_json

from loan_service.artifacts import FeatureStats
from loan_service.book import BookSchema
from loan_service.predictor import DefaultRiskModel, explain
from loan_service.reasons import (
    MAX_REASONS,
    NO_REASON,
    REASON_MIN_LOG_ODDS,
    ReasonCatalogue,
    row_reasons,
    top_reasons,
)
from loan_service.schemas import PredictionAnswer, ReasonAnswer, RiskBand
from loan_service.stability import MasterScale

__all__ = ["MAX_REASONS", "NO_REASON", "REASON_MIN_LOG_ODDS", "top_reasons"]

MEDIUM_RISK_FROM: Final = 0.20
# ``ScoredBlock.band`` index -> name, ordered by risk: ``band >= 1`` is "medium or worse".
RISK_BANDS: Final[tuple[RiskBand, ...]] = ("low", "medium", "high")
# The original system's ``message``, worded per risk band so it never contradicts ``risk_band``
# (a medium-band applicant is below the threshold, hence approved, but not "low risk").
MESSAGE_BY_BAND: Final[dict[RiskBand, str]] = {
    "high": "High risk of default",
    "medium": "Moderate risk of default",
    "low": "Low risk of default",
}
PredictionItem = PredictionAnswer  # one answer in the PredictionPublic shape


def risk_band(probability: float, threshold: float) -> RiskBand:
    """The band of one PD (``band_indices`` is the same rule over an array)."""
    return RISK_BANDS[int(band_indices(np.asarray([probability]), threshold)[0])]


def band_indices(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Index into ``RISK_BANDS`` of each PD: high from the threshold, else medium from 0.20."""
    return np.where(probability >= threshold, 2, probability >= MEDIUM_RISK_FROM).astype(np.int8)


def loans_to_matrix(loans: Sequence[Any], columns: Sequence[str] | None = None) -> np.ndarray:
    """(n, k) float64 in the model's feature order from validated request models.

    Each model's ``model_input()`` gives its row (categories as value indices); a C-speed loop.
    """
    return np.array([loan.model_input() for loan in loans], dtype=np.float64)


Explain = Literal["all", "declined", "none"]
"""Which rows get reasons: all (one call of every row's counterfactuals); declined only (two
calls: PDs, then the declined rows' counterfactuals - cheapest when most are approved, the API's
and the batch scorer's rule); none."""
API_EXPLAIN: Final[Explain] = "declined"


@dataclass(frozen=True, slots=True)
class ScoredBlock:
    """Every answer field for n loans, as arrays aligned with the input rows.

    ``reasons[i]`` holds feature indices (into the model's feature order), largest impact first,
    ``NO_REASON`` (-1) in unused slots; ``reason_impact`` the matching log-odds (NaN where unused).
    ``expected_loss`` is None for a book without an exposure feature.
    """

    probability: np.ndarray  # (n,) float64, PD in [0, 1]
    prediction: np.ndarray  # (n,) int8, 1 when probability >= threshold
    band: np.ndarray  # (n,) int8, index into RISK_BANDS
    expected_loss: np.ndarray | None  # (n,) float64, PD x (1 - recovery rate) x exposure
    reasons: np.ndarray  # (n, MAX_REASONS) int16
    reason_impact: np.ndarray  # (n, MAX_REASONS) float64
    grade: np.ndarray | None = None  # (n,) int64 master-scale grade, 1 = lowest risk

    def __len__(self) -> int:
        return int(self.probability.shape[0])

    def slice(self, start: int, end: int) -> ScoredBlock:
        """Rows ``start:end`` (views, no copy): one request's part of a shared model call."""
        return ScoredBlock(
            probability=self.probability[start:end],
            prediction=self.prediction[start:end],
            band=self.band[start:end],
            expected_loss=None if self.expected_loss is None else self.expected_loss[start:end],
            reasons=self.reasons[start:end],
            reason_impact=self.reason_impact[start:end],
            grade=None if self.grade is None else self.grade[start:end],
        )


SMALL_BLOCK: Final = 8
"""Up to this many rows (an API request's loan, or the few single-loan requests one model call
answers together), ``LoanScorer.score_columns`` works on Python floats around the model call:
each numpy call costs a microsecond or two whatever its size, and the array path makes about 25
of them for a block of one loan. The values are the same (the same float64 operations in the same
order, the same model calls), which the scoring-core tests check row by row."""


_CLEAR_OF_HALF: Final = 1e-3
_EXACT_BELOW: Final = 1e12


def rounded(values: np.ndarray, digits: int) -> list[float]:
    """``[round(v, digits) for v in values]`` in a few array operations, the same floats.

    Python's ``round(x, d)`` is the double nearest to x correctly rounded to d decimals (it
    formats x with dtoa and parses it back: ~3,000 instructions a value, a tenth of a 1,000-loan
    answer). Where ``x * 10**d`` is clear of a half (by far more than its own rounding error, so
    ``rint`` picks the integer k that exact decimal rounding picks), ``k / 10**d`` is that same
    nearest double, since the division is correctly rounded too. Values near a half, large
    ones and non-finite ones are left to ``round`` itself."""
    scale = float(10**digits)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, not clear, left to ``round``
        scaled = values * scale
        nearest = np.rint(scaled)
        result: list[float] = (nearest / scale).tolist()
        clear = (np.abs(np.abs(scaled - nearest) - 0.5) > _CLEAR_OF_HALF) & (
            np.abs(scaled) < _EXACT_BELOW
        )
    if not clear.all():
        for row in np.flatnonzero(~clear).tolist():
            result[row] = round(float(values[row]), digits)
    return result


class ScoredColumns(NamedTuple):
    """A ``ScoredBlock`` as the API's answers show it, in Python columns: the probability rounded
    to 6 decimals, the expected loss to 2, impacts to 3. ``reasons`` maps a row with reasons to its
    (feature indices, impacts), largest first; rows without reasons are absent."""

    probability: list[float]
    prediction: list[int]
    band: list[int]
    expected_loss: list[float] | None
    reasons: dict[int, tuple[list[int], list[float]]]
    grade: list[int] | None

    @classmethod
    def of_block(cls, scored: ScoredBlock) -> ScoredColumns:
        """The block's columns: one ``tolist`` each, the reasons of the rows that have any."""
        explained = np.flatnonzero(scored.reasons[:, 0] != NO_REASON)
        reasons: dict[int, tuple[list[int], list[float]]] = {}
        if explained.size:
            slots = scored.reasons.shape[1]
            impacts = rounded(np.nan_to_num(scored.reason_impact[explained]).ravel(), 3)
            for index, (row, columns) in enumerate(
                zip(explained.tolist(), scored.reasons[explained].tolist(), strict=True)
            ):
                used = columns.index(NO_REASON) if NO_REASON in columns else len(columns)
                reasons[row] = (columns[:used], impacts[index * slots : index * slots + used])
        return cls(
            probability=rounded(scored.probability, 6),
            prediction=scored.prediction.tolist(),
            band=scored.band.tolist(),
            expected_loss=None
            if scored.expected_loss is None
            else rounded(scored.expected_loss, 2),
            reasons=reasons,
            grade=None if scored.grade is None else scored.grade.tolist(),
        )


class LoanScorer:
    """The vectorized core: raw feature rows -> ``ScoredBlock``. One per model, thread-compatible.

    ``explain`` chooses which rows get reasons: ``"all"`` (one model call of n*(k+1) rows, the
    API's rule today), ``"declined"`` (one call for the PDs, one for the declined rows'
    counterfactuals) or ``"none"``.
    """

    def __init__(
        self,
        model: DefaultRiskModel,
        threshold: float,
        recovery_rate: float,
        *,
        book: BookSchema,
        master_scale: MasterScale | None = None,
    ) -> None:
        self.model = model
        self.book = book
        self.master_scale = master_scale
        self.threshold = threshold
        self.recovery_rate = recovery_rate
        self.loss_given_default = 1.0 - recovery_rate
        self.features = book.feature_names
        self.catalogue = ReasonCatalogue.of(book)
        self.reason_codes = self.catalogue.codes
        exposure = book.loss.exposure
        self._exposure_column = self.features.index(exposure) if exposure else None
        # ``MasterScale.grade`` (searchsorted, side right) for one PD at a time.
        self._grade_bounds: tuple[float, ...] = (
            () if master_scale is None else tuple(master_scale.upper_bounds.tolist())
        )

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def score(self, raw: np.ndarray, explain_rows: Explain = "all") -> ScoredBlock:
        """Every answer field for ``raw`` (n, k) float64, validated rows in feature order.

        Reasons are ranked only for the rows that get them (``top_reasons`` is most of the array
        work for a request of a few loans, and most applicants are approved)."""
        n_rows = raw.shape[0]
        threshold = self.threshold
        if explain_rows == "all":
            probability, _, impact = explain(self.model.blocks(raw))
            prediction = (probability >= threshold).astype(np.int8)
            reasons, reason_impact = top_reasons(impact)
        else:
            # Normalized once for both calls; the counterfactuals' call fetches log-odds only.
            normalized = self.model.normalized(raw)
            pairs, log_odds = self.model.block_scores(normalized)
            probability = np.minimum(pairs[:, 1], 1.0)
            prediction = (probability >= threshold).astype(np.int8)
            declined = np.flatnonzero(prediction) if explain_rows == "declined" else prediction[:0]
            reasons, reason_impact = self._reasons_of(
                declined,
                n_rows,
                lambda rows: self.model.impacts(
                    normalized[rows], None if log_odds is None else log_odds[rows]
                ),
            )
        expected_loss = None
        if self._exposure_column is not None:
            expected_loss = probability * self.loss_given_default * raw[:, self._exposure_column]
        return ScoredBlock(
            probability=probability,
            prediction=prediction,
            band=band_indices(probability, threshold),
            expected_loss=expected_loss,
            reasons=reasons,
            reason_impact=reason_impact,
            grade=None if self.master_scale is None else self.master_scale.grade(probability),
        )

    def score_columns(self, raw: np.ndarray) -> ScoredColumns:
        """``score(raw, "declined")`` as Python columns, for at most ``SMALL_BLOCK`` rows: the same
        model calls as the block path (the PDs, then the declined rows' counterfactuals, log-odds
        only), the rest in floats."""
        threshold = self.threshold
        normalized = self.model.normalized(raw)
        pairs, log_odds = self.model.block_scores(normalized)
        exposure, loss_given_default = self._exposure_column, self.loss_given_default
        bounds = self._grade_bounds
        shown: list[float] = []
        prediction: list[int] = []
        band: list[int] = []
        expected_loss: list[float] | None = None if exposure is None else []
        grade: list[int] | None = None if self.master_scale is None else []
        declined: list[int] = []
        # One loop over the few rows (a comprehension per column cost a frame each).
        for index, ((_, pd), row) in enumerate(zip(pairs.tolist(), raw.tolist(), strict=True)):
            probability = min(pd, 1.0)
            shown.append(round(probability, 6))
            if probability >= threshold:
                prediction.append(1)
                band.append(2)
                declined.append(index)
            else:
                prediction.append(0)
                band.append(int(probability >= MEDIUM_RISK_FROM))
            if expected_loss is not None:
                expected_loss.append(round(probability * loss_given_default * row[exposure], 2))
            if grade is not None:
                grade.append(bisect_right(bounds, probability) + 1)
        reasons: dict[int, tuple[list[int], list[float]]] = {}
        if declined:
            impact = self.model.row_impacts(normalized, declined, log_odds)
            for row_index, row_impact in zip(declined, impact, strict=True):
                columns, values = row_reasons(row_impact)
                if columns:
                    reasons[row_index] = (columns, [round(v, 3) for v in values])
        return ScoredColumns(shown, prediction, band, expected_loss, reasons, grade)

    @staticmethod
    def _reasons_of(
        rows: np.ndarray, n_rows: int, impact_of: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reasons for ``rows`` (their impacts from ``impact_of(rows)``), none for the others."""
        if rows.size == n_rows:
            return top_reasons(impact_of(rows) if n_rows else np.empty((0, 0)))
        reasons = np.full((n_rows, MAX_REASONS), NO_REASON, dtype=np.int16)
        reason_impact = np.full((n_rows, MAX_REASONS), np.nan, dtype=np.float64)
        if rows.size:
            reasons[rows], reason_impact[rows] = top_reasons(impact_of(rows))
        return reasons, reason_impact

    def reason_code_columns(self, scored: ScoredBlock) -> list[np.ndarray]:
        """One object array of codes per reason slot (None where unused): a lookup, no loop."""
        return self.catalogue.code_columns(scored.reasons)


class LoanAssessor:
    """The API's answers: the core's arrays, worded for people (message, reason wording)."""

    def __init__(
        self,
        model: DefaultRiskModel,
        stats: FeatureStats,
        threshold: float,
        recovery_rate: float,
        model_version: str,
        *,
        book: BookSchema,
        master_scale: MasterScale | None = None,
    ) -> None:
        self.scorer = LoanScorer(
            model, threshold, recovery_rate, book=book, master_scale=master_scale
        )
        self.model = model
        self.book = book
        self.threshold = threshold
        self.recovery_rate = recovery_rate
        self.model_version = model_version
        self._typical = [float(v) for v in stats.mean]
        catalogue = self.scorer.catalogue
        # The reason objects are the same for every answer that cites a feature: built once.
        self._reason_parts = [
            (catalogue.codes[index], name, catalogue.texts[index])
            for index, name in enumerate(catalogue.features)
        ]
        self._band_words: tuple[tuple[RiskBand, str], ...] = tuple(
            (name, MESSAGE_BY_BAND[name]) for name in RISK_BANDS
        )
        # A reason's JSON around its impact, as pydantic-core writes the ``ReasonAnswer`` dict.
        self._reason_json_parts = [
            (
                to_json({"code": code, "feature": name})[:-1] + b',"impact":',
                b',"text":' + to_json(text) + b"}",
            )
            for code, name, text in self._reason_parts
        ]

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def assess_matrix(self, raw: np.ndarray, request_id: str) -> list[PredictionItem]:
        """One request's rows: one model call for the PDs, one for the declined rows'
        counterfactuals when there are any (most applicants are approved)."""
        return self.answer_columns(self._columns(raw), request_id, 0, raw.shape[0])

    def assess_together(
        self, raws: Sequence[np.ndarray], request_ids: Sequence[str]
    ) -> list[list[PredictionItem]]:
        """Several requests' rows in ONE model call, each request answered as if it came alone.

        The model scores every row on its own, so sharing a call changes no answer (the property
        tests require a batch to equal the same loans sent one by one, exactly).
        """
        if len(raws) == 1:
            return [self.assess_matrix(raws[0], request_ids[0])]
        columns = self._columns(np.concatenate(raws))
        answers = []
        start = 0
        for raw, request_id in zip(raws, request_ids, strict=True):
            end = start + raw.shape[0]
            answers.append(self.answer_columns(columns, request_id, start, end))
            start = end
        return answers

    def _columns(self, raw: np.ndarray) -> ScoredColumns:
        if raw.shape[0] <= SMALL_BLOCK:
            return self.scorer.score_columns(raw)
        return ScoredColumns.of_block(self.scorer.score(raw, API_EXPLAIN))

    def answers(
        self, raw: np.ndarray, scored: ScoredBlock, request_id: str
    ) -> list[PredictionItem]:
        """The public answers for ``raw`` from its ``ScoredBlock``."""
        return self.answer_columns(ScoredColumns.of_block(scored), request_id, 0, len(scored))

    def answer_columns(
        self, scored: ScoredColumns, request_id: str, start: int, end: int
    ) -> list[PredictionItem]:
        """The public answers of rows ``start:end``.

        Answers are ``PredictionAnswer`` dicts (the ``PredictionPublic`` shape), serialized by the
        routes in pydantic-core, once. Building model instances here would cost more than the
        model call. The per-row work left is what JSON needs anyway: one dict per answer from
        the columns (already rounded as shown), and reasons only for the rows that have them.
        """
        threshold = self.threshold
        model_version = self.model_version
        parts = self._reason_parts
        words = self._band_words
        n_rows = end - start
        losses: list[float | None] = [None] * n_rows
        if scored.expected_loss is not None:
            losses = list(scored.expected_loss[start:end])
        grades: list[int | None] = [None] * n_rows
        if scored.grade is not None:
            grades = list(scored.grade[start:end])
        reasons_of = scored.reasons
        reasons: list[list[ReasonAnswer]] = [[] for _ in range(n_rows)]
        for row, (columns, impacts) in reasons_of.items():
            if start <= row < end:
                reasons[row - start] = [
                    {
                        "code": parts[column][0],
                        "feature": parts[column][1],
                        "impact": impact,
                        "text": parts[column][2],
                    }
                    for column, impact in zip(columns, impacts, strict=True)
                ]
        return [
            {
                "probability": probability,
                "prediction": prediction,
                "threshold": threshold,
                "message": words[band][1],
                "risk_band": words[band][0],
                "grade": grade,
                "reasons": cited,
                "expected_loss": loss,
                "model_version": model_version,
                "request_id": request_id,
            }
            for probability, prediction, band, grade, cited, loss in zip(
                scored.probability[start:end],
                scored.prediction[start:end],
                scored.band[start:end],
                grades,
                reasons,
                losses,
                strict=True,
            )
        ]

    def block_answers(self, raw: np.ndarray, request_id: str) -> BlockAnswers:
        """``assess_matrix``'s answers kept as columns (a batch request's): serialized straight
        from them, built as dicts only for whoever reads them (``BlockAnswers``)."""
        return BlockAnswers(self, self._columns(raw), request_id, 0, raw.shape[0])

    def answers_json(self, scored: ScoredColumns, request_id: str, start: int, end: int) -> bytes:
        """``to_json(answer_columns(...))``, the same bytes, without the dicts: pydantic-core
        writes each column's values in one call (so every number is its own spelling of it), and
        the answers are the fixed text and those values interleaved by list-slice assignment, then
        joined once. Building 1,000 dicts and serializing them cost more than the model calls of
        a 1,000-loan request."""
        if end <= start:
            return b"[]"
        n_rows = end - start
        # A row: {"probability":P <middle of its prediction and band> G ,"reasons": R
        # ,"expected_loss": L ,"model_version":..,"request_id":..}, the next row's text after a ","
        tail = (
            b',"model_version":'
            + to_json(self.model_version)
            + b',"request_id":'
            + to_json(request_id)
            + b"}"
        )
        threshold = to_json(self.threshold)
        middles = [
            b',"prediction":%d,"threshold":%b,"message":%b,"risk_band":%b,"grade":'
            % (prediction, threshold, to_json(message), to_json(name))
            for prediction in (0, 1)
            for name, message in self._band_words
        ]
        bands = len(self._band_words)
        nulls = [b"null"] * n_rows
        losses = nulls if scored.expected_loss is None else _items(scored.expected_loss[start:end])
        grades = nulls if scored.grade is None else _items(scored.grade[start:end])
        reasons = [b"[]"] * n_rows
        cited = [(row, columns, impacts) for row, (columns, impacts) in scored.reasons.items()]
        if start or end < len(scored.probability):
            cited = [entry for entry in cited if start <= entry[0] < end]
        if cited:  # every impact of the request in one call, each reason from its feature's parts
            parts = self._reason_json_parts
            impacts = iter(_items(list(chain.from_iterable(entry[2] for entry in cited))))
            for row, columns, _ in cited:
                reasons[row - start] = b"[%b]" % b",".join(
                    [parts[column][0] + next(impacts) + parts[column][1] for column in columns]
                )
        fields = 9
        pieces: list[bytes] = [b',{"probability":'] * (n_rows * fields)
        pieces[0] = b'[{"probability":'
        pieces[1::fields] = _items(scored.probability[start:end])
        pieces[2::fields] = [
            middles[prediction * bands + band]
            for prediction, band in zip(
                scored.prediction[start:end], scored.band[start:end], strict=True
            )
        ]
        pieces[3::fields] = grades
        pieces[4::fields] = [b',"reasons":'] * n_rows
        pieces[5::fields] = reasons
        pieces[6::fields] = [b',"expected_loss":'] * n_rows
        pieces[7::fields] = losses
        pieces[8::fields] = [tail] * n_rows
        pieces.append(b"]")
        return b"".join(pieces)

    def assess(self, loans: Sequence[Any], request_id: str) -> list[PredictionItem]:
        return self.assess_matrix(loans_to_matrix(loans), request_id)


def _items(values: Sequence[float] | Sequence[int]) -> list[bytes]:
    """Each value as pydantic-core writes it in JSON (one call for the column; numbers hold no
    comma)."""
    return to_json(values)[1:-1].split(b",")


class BlockAnswers(Sequence[PredictionItem]):
    """One request's answers as the scorer's columns (``LoanAssessor.block_answers``).

    The route serializes them from the columns (``to_json``); the counters and reference bins read
    the columns; the answer dicts are built once, on first use, only for a reader that wants them
    (the prediction log's thread, the shadow challenger)."""

    __slots__ = ("_answers", "_assessor", "columns", "end", "request_id", "start")

    def __init__(
        self,
        assessor: LoanAssessor,
        columns: ScoredColumns,
        request_id: str,
        start: int,
        end: int,
    ) -> None:
        self._assessor = assessor
        self.columns = columns
        self.request_id = request_id
        self.start = start
        self.end = end
        self._answers: list[PredictionItem] | None = None

    def answers(self) -> list[PredictionItem]:
        """The answer dicts (``LoanAssessor.answer_columns``), built on the first call."""
        if self._answers is None:
            self._answers = self._assessor.answer_columns(
                self.columns, self.request_id, self.start, self.end
            )
        return self._answers

    @property
    def probabilities(self) -> list[float]:
        """The PDs as answered (rounded as shown)."""
        return self.columns.probability[self.start : self.end]

    @property
    def defaults(self) -> int:
        """How many answers predict a default."""
        return sum(self.columns.prediction[self.start : self.end])

    def to_json(self) -> bytes:
        """``to_json(self.answers())``, without building the dicts."""
        return self._assessor.answers_json(self.columns, self.request_id, self.start, self.end)

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, index: Any) -> Any:
        return self.answers()[index]

    def __iter__(self) -> Iterator[PredictionItem]:
        return iter(self.answers())
