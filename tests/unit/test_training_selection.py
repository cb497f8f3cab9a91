"""The selection rule: higher held-out F1 wins; a tie goes to the simpler model, with a reason."""

from __future__ import annotations

import pytest

from training.candidates import CANDIDATES, LOGISTIC_REGRESSION, RANDOM_FOREST
from training.evaluate import Contender, select_model


def test_the_candidate_with_the_higher_f1_wins_even_when_it_is_the_more_complex_one() -> None:
    selection = select_model(
        [Contender(LOGISTIC_REGRESSION, 1, 0.951), Contender(RANDOM_FOREST, 2, 0.962)]
    )

    assert selection.name == RANDOM_FOREST
    assert "highest held-out F1" in selection.reason
    assert "random_forest 0.9620 vs logistic_regression 0.9510" in selection.reason


@pytest.mark.parametrize("forest_first", [True, False])
def test_an_exact_f1_tie_goes_to_the_simpler_model_whatever_the_order(forest_first: bool) -> None:
    contenders = [Contender(LOGISTIC_REGRESSION, 1, 0.97), Contender(RANDOM_FOREST, 2, 0.97)]
    if forest_first:
        contenders.reverse()

    selection = select_model(contenders)

    assert selection.name == LOGISTIC_REGRESSION
    assert selection.reason.startswith("tie on held-out F1")
    assert "simpler model, logistic_regression" in selection.reason


def test_a_tiny_but_real_f1_difference_is_not_a_tie() -> None:
    selection = select_model(
        [Contender(LOGISTIC_REGRESSION, 1, 0.9700), Contender(RANDOM_FOREST, 2, 0.9701)]
    )
    assert selection.name == RANDOM_FOREST


def test_logistic_regression_is_declared_simpler_than_the_forest() -> None:
    complexity = {candidate.name: candidate.complexity for candidate in CANDIDATES}
    assert complexity[LOGISTIC_REGRESSION] < complexity[RANDOM_FOREST]


def test_selection_needs_at_least_one_candidate() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        select_model([])
