"""BatchScorer: one predict per batch, poison rows isolated, non-finite scores failed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scoring.model.bundle import ModelBundle, Task
from scoring.model.scorer import BatchScorer
from scoring.offline.synthetic import agrawal_frame

SENTINEL = -999.0


class PoisonBundle(ModelBundle):
    """The real model, except that it raises on any batch holding a row whose first column is -999."""

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        if (matrix[:, 0] == SENTINEL).any():
            raise ValueError("poison row")
        return super().predict(matrix, num_threads)


class EchoBundle(ModelBundle):
    """A stand-in model whose score is the row's first column, to put exact scores on the scorer."""

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        return matrix[:, 0].copy()


def _as(cls: type[ModelBundle], bundle: ModelBundle, **changes) -> ModelBundle:
    fields = {f.name: getattr(bundle, f.name) for f in dataclasses.fields(ModelBundle)}
    return cls(**{**fields, **changes})


@pytest.fixture(scope="module")
def rows(agrawal_bundle: ModelBundle) -> np.ndarray:
    frame = agrawal_frame(200, seed=5, classification_function=2).drop(columns=["approved"])
    return agrawal_bundle.spec.encode_frame(frame)


def _echo_rows(first_column: list[float], width: int) -> np.ndarray:
    matrix = np.zeros((len(first_column), width))
    matrix[:, 0] = first_column
    return matrix


def test_scores_equal_booster_predict(agrawal_bundle: ModelBundle, rows: np.ndarray) -> None:
    result = BatchScorer(agrawal_bundle).score(rows)

    np.testing.assert_array_equal(result.scores, agrawal_bundle.booster.predict(rows))
    assert result.failed == {}
    assert result.scored.all()
    assert result.labels is not None
    np.testing.assert_array_equal(result.labels, result.scores >= agrawal_bundle.metadata.threshold)


def test_a_list_of_rows_scores_like_the_matrix(agrawal_bundle: ModelBundle, rows: np.ndarray) -> None:
    scorer = BatchScorer(agrawal_bundle)
    np.testing.assert_array_equal(scorer.score(rows.tolist()).scores, scorer.score(rows).scores)


def test_a_score_at_the_threshold_is_labelled_positive(agrawal_bundle: ModelBundle) -> None:
    echo = _as(EchoBundle, agrawal_bundle)
    width = len(agrawal_bundle.spec.features)

    result = BatchScorer(echo).score(_echo_rows([0.5, 0.4999999, 0.5000001, 0.0, 1.0], width))

    assert result.labels.tolist() == [True, False, True, False, True]


def test_labels_follow_the_bundle_threshold(agrawal_bundle: ModelBundle) -> None:
    echo = _as(
        EchoBundle, agrawal_bundle, metadata=agrawal_bundle.metadata.model_copy(update={"threshold": 0.8})
    )
    width = len(agrawal_bundle.spec.features)

    result = BatchScorer(echo).score(_echo_rows([0.5, 0.79, 0.8, 0.95], width))

    assert result.labels.tolist() == [False, False, True, True]


def test_regression_models_have_no_labels(agrawal_bundle: ModelBundle) -> None:
    echo = _as(
        EchoBundle,
        agrawal_bundle,
        metadata=agrawal_bundle.metadata.model_copy(update={"task": Task.regression}),
    )
    width = len(agrawal_bundle.spec.features)

    result = BatchScorer(echo).score(_echo_rows([12.5, -3.0], width))

    assert result.labels is None
    assert result.scores.tolist() == [12.5, -3.0]


def test_rows_the_model_raises_on_fail_alone_and_the_rest_are_scored(
    agrawal_bundle: ModelBundle, rows: np.ndarray
) -> None:
    poisoned = rows[:10].copy()
    poisoned[[2, 7], 0] = SENTINEL

    result = BatchScorer(_as(PoisonBundle, agrawal_bundle)).score(poisoned)

    assert set(result.failed) == {2, 7}
    assert all(reason == "model raised ValueError: poison row" for reason in result.failed.values())
    assert result.scored.tolist() == [i not in (2, 7) for i in range(10)]
    healthy = np.delete(poisoned, [2, 7], axis=0)
    np.testing.assert_allclose(result.scores, agrawal_bundle.booster.predict(healthy), rtol=0, atol=1e-15)
    assert len(result.labels) == 8


def test_a_non_finite_score_is_a_failure(agrawal_bundle: ModelBundle) -> None:
    echo = _as(EchoBundle, agrawal_bundle)
    width = len(agrawal_bundle.spec.features)

    result = BatchScorer(echo).score(_echo_rows([0.2, np.nan, np.inf, 0.9, -np.inf], width))

    assert set(result.failed) == {1, 2, 4}
    assert all("non-finite score" in reason for reason in result.failed.values())
    assert result.scores.tolist() == [0.2, 0.9]
    assert result.labels.tolist() == [False, True]
    assert result.scored.tolist() == [True, False, False, True, False]


@pytest.mark.parametrize("as_list", [True, False])
def test_scoring_does_not_mutate_its_input_rows(
    agrawal_bundle: ModelBundle, rows: np.ndarray, as_list: bool
) -> None:
    batch = rows[:6].copy()
    batch[1, 0] = SENTINEL  # take the row-by-row retry path too
    batch[3, 1] = np.nan
    original = batch.copy()
    given = batch.tolist() if as_list else batch

    BatchScorer(_as(PoisonBundle, agrawal_bundle)).score(given)

    np.testing.assert_array_equal(np.asarray(given), original)
