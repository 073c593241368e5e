"""Baselines: each checked against what it must compute on a tiny log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musicrec.data.logs import ListeningLog
from musicrec.errors import NotFittedError, ParameterError
from musicrec.recommender.baselines import (
    ALSScorer,
    EASEScorer,
    ItemKNNScorer,
    PopularityScorer,
    RandomScorer,
)
from musicrec.recommender.evaluation.registry import ModelSkipped, Scorer


def tiny() -> ListeningLog:
    # users a, b, c; tracks t0..t3 (t3 never played)
    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c"],
                          "track": ["t0", "t1", "t1", "t2", "t1"],
                          "plays": [1, 1, 1, 1, 1]})
    log = ListeningLog.from_frame(frame, weight_col="plays")
    from dataclasses import replace
    return replace(log, tracks=log.tracks.extend(["t3"]))


def test_every_baseline_is_a_scorer() -> None:
    for cls in (RandomScorer, PopularityScorer, ALSScorer, ItemKNNScorer, EASEScorer):
        model = cls().fit(tiny())
        assert isinstance(model, Scorer)
        scores = model.score(np.array([0, 2]))
        assert scores.shape == (2, 4)


def test_popularity_counts_listeners() -> None:
    scores = PopularityScorer().fit(tiny()).score(np.array([0]))
    np.testing.assert_array_equal(scores, [[1, 3, 1, 0]])  # t1 has 3 listeners


def test_random_is_seeded_and_independent_of_batching() -> None:
    model = RandomScorer(seed=4).fit(tiny())
    both = model.score(np.array([0, 1]))
    np.testing.assert_array_equal(both[1], model.score(np.array([1]))[0])
    np.testing.assert_array_equal(both, RandomScorer(seed=4).fit(tiny()).score(np.array([0, 1])))
    assert not np.array_equal(both, RandomScorer(seed=5).fit(tiny()).score(np.array([0, 1])))


def test_ease_matches_the_closed_form() -> None:
    log = tiny()
    l2 = 0.5
    x = log.to_csr().toarray().astype(np.float64)
    x[x > 0] = 1.0
    # Steck (2019): P = (X^T X + l2 I)^-1, B = I - P / diag(P)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(4))
    b = np.eye(4) - p / np.diag(p)
    expected = x @ b
    expected[:, 3] = 0.0  # t3 has no plays: its column of B is zero (it decouples)
    got = EASEScorer(l2=l2, confidence="none").fit(log).score(np.arange(3))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_symmetrise_lower_across_blocks(rng: np.random.Generator) -> None:
    from musicrec.recommender.baselines import _symmetrise_lower

    full = rng.random((7, 7))
    full = full + full.T
    garbage = np.tril(full) + np.triu(rng.random((7, 7)), 1)  # upper triangle is junk
    _symmetrise_lower(garbage, block=3)  # blocks 0-2, 3-5, 6
    np.testing.assert_array_equal(garbage, full)


def test_ease_is_skipped_above_the_item_limit() -> None:
    with pytest.raises(ModelSkipped, match="EASE skipped: 3 played tracks exceed max_items=2"):
        EASEScorer(max_items=2).fit(tiny())


def test_itemknn_scores_by_cosine_neighbours() -> None:
    log = tiny()
    # binary columns: t0 = (1,0,0), t1 = (1,1,1), t2 = (0,1,0)
    # cos(t0, t1) = 1/sqrt(3), cos(t1, t2) = 1/sqrt(3), cos(t0, t2) = 0
    model = ItemKNNScorer(k=10, confidence="none").fit(log)
    sim = model.similarity_.toarray()
    assert sim[0, 1] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert sim[0, 2] == pytest.approx(0.0)
    # user c played t1 only: score(t0) = score(t2) = 1/sqrt(3)
    scores = model.score(np.array([2]))[0]
    assert scores[0] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert scores[2] == pytest.approx(1 / np.sqrt(3), abs=1e-6)


def test_als_wraps_cfmodel() -> None:
    model = ALSScorer(factors=4, iterations=3).fit(tiny())
    np.testing.assert_allclose(
        model.score(np.array([1])),
        model.model_.user_factors_[[1]] @ model.model_.item_factors_.T)


def test_errors() -> None:
    with pytest.raises(NotFittedError, match="'popularity' is not fitted"):
        PopularityScorer().score(np.array([0]))
    with pytest.raises(ParameterError, match=r"user_idx must be a 1-d array of indices in 0..2"):
        PopularityScorer().fit(tiny()).score(np.array([5]))
    with pytest.raises(ParameterError, match="l2=-1.0 must be a positive number"):
        EASEScorer(l2=-1.0).fit(tiny())
    with pytest.raises(ParameterError, match="k=0 must be a positive integer"):
        ItemKNNScorer(k=0).fit(tiny())
