"""The vectorized scoring core: every answer field for a block, equal to the one-loan rules.

The reference below is the per-applicant rule written out loan by loan (PD from the applicant's
row, impacts from its counterfactuals, reasons sorted largest first with ties in feature order,
cut at 0.1 log-odds, at most ``MAX_REASONS``). The core must reproduce it exactly on every loan of
the reference book and of the project's synthetic book, and the API must answer from the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic_core import to_json

from loan_service.predictor import DefaultRiskModel, explain_block
from loan_service.reasons import (
    MAX_REASONS,
    NO_REASON,
    REASON_MIN_LOG_ODDS,
    top_reasons,
)
from loan_service.scoring import (
    RISK_BANDS,
    SMALL_BLOCK,
    LoanScorer,
    ScoredBlock,
    ScoredColumns,
    band_indices,
    risk_band,
)
from loan_service.service import PredictionService
from tests.support.default_book import FEATURES, REASON_CODES
from tests.support.paths import REPO_ROOT
from tests.support.serving_fixtures import build_test_app


@pytest.fixture(scope="module")
def service(trained_artifacts: Path) -> PredictionService:
    return build_test_app(trained_artifacts)[1]


@pytest.fixture(scope="module")
def scorer(service: PredictionService) -> LoanScorer:
    return service.assessor.scorer


@pytest.fixture(scope="module")
def book() -> np.ndarray:
    """The project's synthetic book (always present) plus edge rows at the API's limits."""
    frame = pd.read_csv(REPO_ROOT / "Data" / "Loan_Data.csv")
    rows = frame[list(FEATURES)].to_numpy(dtype=np.float64)
    edges = np.array([[0, 0, 0, 1, 0, 300], [1000, 1e9, 1e9, 1e9, 100, 850]], dtype=np.float64)
    return np.vstack([rows, edges])


def reference_answer(model: DefaultRiskModel, row: np.ndarray, threshold: float) -> dict[str, Any]:
    """One loan scored on its own, the rules spelled out in plain Python."""
    block = model.blocks(row[None, :])[0].tolist()
    probability, impacts = explain_block(block)
    order = sorted(range(len(impacts)), key=impacts.__getitem__, reverse=True)
    reasons = [c for c in order[:MAX_REASONS] if impacts[c] >= REASON_MIN_LOG_ODDS]
    return {
        "probability": probability,
        "prediction": int(probability >= threshold),
        "band": risk_band(probability, threshold),
        "reasons": reasons,
        "impacts": [impacts[c] for c in reasons],
    }


def assert_block_matches_reference(
    scorer: LoanScorer, raw: np.ndarray, scored: ScoredBlock
) -> None:
    for i, row in enumerate(raw):
        expected = reference_answer(scorer.model, row, scorer.threshold)
        reasons = [c for c in scored.reasons[i].tolist() if c != NO_REASON]
        assert scored.probability[i] == expected["probability"], i
        assert scored.prediction[i] == expected["prediction"], i
        assert RISK_BANDS[scored.band[i]] == expected["band"], i
        assert reasons == expected["reasons"], i
        assert scored.reason_impact[i, : len(reasons)].tolist() == expected["impacts"], i


def test_the_block_equals_each_loan_scored_alone_on_the_synthetic_book(
    scorer: LoanScorer, book: np.ndarray
) -> None:
    sample = book[np.r_[0:1500, -2:0]]
    assert_block_matches_reference(scorer, sample, scorer.score(sample))


def test_the_block_equals_each_loan_scored_alone_on_every_reference_loan(
    scorer: LoanScorer, reference_csv: Path
) -> None:
    raw = pd.read_csv(reference_csv)[list(FEATURES)].to_numpy(dtype=np.float64)
    scored = scorer.score(raw)
    assert_block_matches_reference(scorer, raw, scored)
    assert (scored.reasons[:, 0] != NO_REASON).any()


def test_the_api_answers_every_reference_loan_from_the_core(
    service: PredictionService, reference_csv: Path
) -> None:
    raw = pd.read_csv(reference_csv)[list(FEATURES)].to_numpy(dtype=np.float64)
    answers = service.assessor.assess_matrix(raw, "core")
    scored = service.assessor.scorer.score(raw, "declined")
    codes = np.stack(service.assessor.scorer.reason_code_columns(scored), axis=1)
    assert scored.expected_loss is not None
    for i, answer in enumerate(answers):
        assert answer["probability"] == round(float(scored.probability[i]), 6)
        assert answer["prediction"] == scored.prediction[i]
        assert answer["risk_band"] == RISK_BANDS[scored.band[i]]
        assert answer["expected_loss"] == round(float(scored.expected_loss[i]), 2)
        answer_codes = [reason["code"] for reason in answer["reasons"]]
        assert answer_codes == [REASON_CODES[reason["feature"]] for reason in answer["reasons"]]
        assert answer_codes == [code for code in codes[i] if code is not None]
        if answer["prediction"] == 0:
            assert answer["reasons"] == []


def test_expected_loss_is_pd_times_loss_given_default_times_the_balance(
    scorer: LoanScorer, book: np.ndarray
) -> None:
    scored = scorer.score(book)
    assert scored.expected_loss is not None
    exposure = book[:, FEATURES.index("loan_amt_outstanding")]
    expected = scored.probability * (1.0 - scorer.recovery_rate) * exposure
    assert np.array_equal(scored.expected_loss, expected)
    assert scored.expected_loss.max() > 0


def test_declined_only_explains_the_declined_rows_with_the_same_reasons(
    scorer: LoanScorer, book: np.ndarray
) -> None:
    everything = scorer.score(book, "all")
    declined_only = scorer.score(book, "declined")
    none = scorer.score(book, "none")
    for scored in (declined_only, none):
        assert np.array_equal(scored.probability, everything.probability)
        assert np.array_equal(scored.band, everything.band)
    declined = everything.prediction == 1
    assert 0 < declined.sum() < len(book)
    assert np.array_equal(declined_only.reasons[declined], everything.reasons[declined])
    assert np.array_equal(
        declined_only.reason_impact[declined], everything.reason_impact[declined], equal_nan=True
    )
    assert (declined_only.reasons[~declined] == NO_REASON).all()
    assert np.isnan(declined_only.reason_impact[~declined]).all()
    assert (none.reasons == NO_REASON).all()


def test_declined_only_costs_one_call_for_the_pds_and_one_for_the_declined(
    service: PredictionService, book: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = service.assessor.model
    predictor = model._model
    rows_per_call: list[int] = []

    def counting(method: Any) -> Any:
        def counted(normalized: np.ndarray) -> np.ndarray:
            rows_per_call.append(normalized.shape[0])
            return np.asarray(method(normalized))

        return counted

    for name in ("class_probabilities", "pair_probabilities", "log_odds"):
        monkeypatch.setattr(predictor, name, counting(getattr(predictor, name)))
    scored = service.assessor.scorer.score(book, "declined")
    k = len(FEATURES)
    counterfactuals = k if predictor.log_odds_with_pds else k + 1  # the applicant's row too
    assert rows_per_call == [len(book), int(scored.prediction.sum()) * counterfactuals]
    rows_per_call.clear()
    service.assessor.scorer.score(book, "all")
    assert rows_per_call == [len(book) * (k + 1)]


def test_top_reasons_keep_ties_in_feature_order_cut_at_the_minimum_and_pad() -> None:
    impact = np.array(
        [
            [0.5, 0.5, 2.0, 0.0, 0.5, -1.0],
            [0.05, 0.0, -3.0, 0.0999, 0.0, 0.0],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        ]
    )
    reasons, values = top_reasons(impact)
    assert reasons.tolist() == [[2, 0, 1, 4], [NO_REASON] * 4, [5, 4, 3, 2]]
    assert values[0].tolist() == [2.0, 0.5, 0.5, 0.5]
    assert np.isnan(values[1]).all()
    narrow, _ = top_reasons(impact, max_reasons=3)
    assert narrow[0].tolist() == [2, 0, 1]


def test_band_indices_follow_the_one_loan_rule() -> None:
    probabilities = np.array([0.0, 0.1999, 0.2, 0.4999, 0.5, 1.0, 0.15, 0.05])
    for threshold in (0.5, 0.1, 0.3):
        bands = band_indices(probabilities, threshold)
        assert [RISK_BANDS[b] for b in bands] == [risk_band(p, threshold) for p in probabilities]


def test_reason_codes_are_a_lookup_with_none_for_an_empty_slot(scorer: LoanScorer) -> None:
    reasons = np.array([[5, 0, NO_REASON], [NO_REASON] * 3], dtype=np.int16)
    filler = np.zeros(2)
    scored = ScoredBlock(
        probability=filler,
        prediction=filler.astype(np.int8),
        band=filler.astype(np.int8),
        expected_loss=None,
        reasons=reasons,
        reason_impact=np.zeros((2, 3)),
    )
    columns = scorer.reason_code_columns(scored)
    assert [list(column) for column in columns] == [["FI", None], ["CL", None], [None, None]]
    assert set(REASON_CODES) == set(FEATURES)
    assert len(set(REASON_CODES.values())) == len(FEATURES)


@pytest.mark.parametrize("size", [1, 3, SMALL_BLOCK])
def test_a_small_block_in_python_floats_answers_exactly_like_the_array_path(
    service: PredictionService, book: np.ndarray, size: int
) -> None:
    assessor = service.assessor
    declined = 0
    for start in range(0, 3000, size):
        rows = book[start : start + size]
        small = assessor.scorer.score_columns(rows)
        arrays = ScoredColumns.of_block(assessor.scorer.score(rows, "declined"))
        assert small == arrays, start
        answers = assessor.answer_columns(small, "same", 0, len(rows))
        assert to_json(answers) == to_json(assessor.answer_columns(arrays, "same", 0, len(rows)))
        declined += sum(small.prediction)
    assert declined > 0


@pytest.mark.parametrize("request_id", ["r-1", 'odd %s %% "quoted" \\ é \u2028', ""])
def test_answers_written_from_columns_are_the_answer_dicts_bytes(
    service: PredictionService, book: np.ndarray, request_id: str
) -> None:
    """Every field the API writes, every band, reasons, slices of a shared call, no grade or
    expected loss: ``answers_json`` is pydantic-core's serialization of the answer dicts."""
    assessor = service.assessor
    columns = ScoredColumns.of_block(assessor.scorer.score(book, "declined"))
    assert 0 < sum(columns.prediction) < len(book)
    assert columns.reasons
    assert columns.grade
    bare = columns._replace(grade=None, expected_loss=None)
    for scored in (columns, bare):
        for start, end in [(0, len(book)), (0, 1_000), (17, 1_017), (len(book) - 5, len(book))]:
            written = assessor.answers_json(scored, request_id, start, end)
            assert written == to_json(assessor.answer_columns(scored, request_id, start, end))
    assert assessor.answers_json(columns, request_id, 5, 5) == b"[]"
    answers = assessor.block_answers(book[:1_000], request_id)
    assert len(answers) == 1_000
    assert answers.to_json() == to_json(list(answers))
    assert answers.probabilities == [answer["probability"] for answer in answers]
    assert answers.defaults == sum(answer["prediction"] for answer in answers)


@pytest.mark.parametrize("rows", [0, 1, 64, 65, 255, 256, 257, 1_000, 65_537])
def test_a_blocks_model_input_is_the_normalization_rounded_to_float32(
    scorer: LoanScorer, rows: int
) -> None:
    """Large blocks are normalized many rows at a time: the same values, bit for bit, as
    ``normalize`` rounded to float32, whatever the block's size or memory order."""
    model = scorer.model
    raw = np.random.default_rng(rows).normal(size=(rows, len(FEATURES))) * 5_000.0 + 300.0
    expected = model.normalize(raw).astype(np.float32)
    for block in (raw, np.asfortranarray(raw)):
        normalized = model.normalized(block)
        assert normalized.dtype == np.float32
        assert normalized.flags.c_contiguous or not block.flags.c_contiguous
        assert normalized.tobytes() == expected.tobytes()
