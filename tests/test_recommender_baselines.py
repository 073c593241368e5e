"""Baselines: each checked against what it must compute on a tiny log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musicrec.data.logs import ListeningLog
from musicrec.errors import NotFittedError, ParameterError
from musicrec.recommender.baselines import (
    EASEModel,
    ItemKNNModel,
    PopularityModel,
    RandomModel,
    RP3betaModel,
    ease_l2_path,
)
from musicrec.recommender.cf import CFModel


def tiny() -> ListeningLog:
    # users a, b, c; tracks t0..t3 (t3 never played)
    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c"],
                          "track": ["t0", "t1", "t1", "t2", "t1"],
                          "plays": [1, 1, 1, 1, 1]})
    log = ListeningLog.from_frame(frame, weight_col="plays")
    from dataclasses import replace
    return replace(log, tracks=log.tracks.extend(["t3"]))


def test_popularity_counts_listeners() -> None:
    scores = PopularityModel().fit(tiny()).scores(np.array([0]))
    np.testing.assert_array_equal(scores, [[1, 3, 1, 0]])  # t1 has 3 listeners


def test_random_is_seeded_and_independent_of_batching() -> None:
    model = RandomModel(random_state=4).fit(tiny())
    both = model.scores(np.array([0, 1]))
    np.testing.assert_array_equal(both[1], model.scores(np.array([1]))[0])
    again = RandomModel(random_state=4).fit(tiny()).scores(np.array([0, 1]))
    np.testing.assert_array_equal(both, again)
    other = RandomModel(random_state=5).fit(tiny()).scores(np.array([0, 1]))
    assert not np.array_equal(both, other)


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
    got = EASEModel(l2=l2, confidence="none").fit(log).scores(np.arange(3))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ease_l2_path_matches_a_fit_at_each_lambda() -> None:
    """One Gram matrix, several λ: each model is the closed form at its own λ, exactly
    as a separate fit, for a known user and for one listener's plays (the gather path)."""
    log = tiny()
    x = log.to_csr().toarray().astype(np.float64)
    x[x > 0] = 1.0
    path = list(ease_l2_path(log, [0.5, 2.0, 8.0], confidence="none"))
    assert [m.l2 for m in path] == [0.5, 2.0, 8.0]
    for model in path:
        p = np.linalg.inv(x.T @ x + model.l2 * np.eye(4))
        b = np.eye(4) - p / np.diag(p)
        b[3, :] = b[:, 3] = 0.0  # t3 has no plays: it decouples
        np.testing.assert_allclose(model.scores(np.arange(3)), x @ b, atol=1e-5)
        alone = EASEModel(l2=model.l2, confidence="none").fit(log)
        np.testing.assert_allclose(model.b_, alone.b_, atol=1e-6)
        one = model.scores(np.array([1]))  # a single user goes through the gather path
        np.testing.assert_allclose(one, (x @ b)[[1]], atol=1e-5)
        assert model._gram is None  # the Gram matrix is not kept on the models
    with pytest.raises(ParameterError, match="l2s must hold at least one value"):
        next(ease_l2_path(log, []))
    with pytest.raises(ParameterError, match="l2=-1.0 must be a positive number"):
        list(ease_l2_path(log, [1.0, -1.0]))


def test_symmetrise_lower_across_blocks(rng: np.random.Generator) -> None:
    from musicrec.recommender.baselines import _symmetrise_lower

    full = rng.random((7, 7))
    full = full + full.T
    garbage = np.tril(full) + np.triu(rng.random((7, 7)), 1)  # upper triangle is junk
    _symmetrise_lower(garbage, block=3)  # blocks 0-2, 3-5, 6
    np.testing.assert_array_equal(garbage, full)


def test_ease_keeps_the_most_listened_tracks_above_the_item_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    """t1 has 3 listeners, t0 and t2 one each: max_items=2 keeps t1 and t0 (ties by
    index); t2 then scores below everything, and the kept pair is EASE on those two."""
    log = tiny()
    with caplog.at_level("WARNING"):
        model = EASEModel(l2=0.5, confidence="none", max_items=2).fit(log)
    assert "keeps the 2 tracks with the most listeners of 3 played" in caplog.text
    np.testing.assert_array_equal(model.active_, [0, 1])
    x = log.to_csr().toarray().astype(np.float64)[:, :2]
    x[x > 0] = 1.0
    p = np.linalg.inv(x.T @ x + 0.5 * np.eye(2))
    b = np.eye(2) - p / np.diag(p)
    got = model.scores(np.arange(3))
    np.testing.assert_allclose(got[:, :2], x @ b, atol=1e-5)
    assert np.all(got[:, 2] == -np.inf) and np.all(got[:, 3] == 0)


def test_itemknn_scores_by_cosine_neighbours() -> None:
    log = tiny()
    # binary columns: t0 = (1,0,0), t1 = (1,1,1), t2 = (0,1,0)
    # cos(t0, t1) = 1/sqrt(3), cos(t1, t2) = 1/sqrt(3), cos(t0, t2) = 0
    model = ItemKNNModel(k=10, confidence="none").fit(log)
    sim = model.similarity_.toarray()
    assert sim[0, 1] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert sim[0, 2] == pytest.approx(0.0)
    # user c played t1 only: score(t0) = score(t2) = 1/sqrt(3)
    scores = model.scores(np.array([2]))[0]
    assert scores[0] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert scores[2] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    # a track is never its own neighbour: user c's own t1 scores nothing from itself
    assert np.all(np.diag(sim) == 0) and scores[1] == pytest.approx(0.0)
    # shrinkage: 1 / (|t0| |t1| + 2) = 1 / (sqrt(3) + 2)
    shrunk = ItemKNNModel(k=10, shrink=2.0, confidence="none").fit(log).similarity_.toarray()
    assert shrunk[0, 1] == pytest.approx(1 / (np.sqrt(3) + 2), abs=1e-6)
    # k=1 keeps each track's single best neighbour: t1's ties t0 and t2 keep one
    assert ItemKNNModel(k=1, confidence="none").fit(log).similarity_.getnnz(axis=1).max() == 1


def test_rp3beta_by_hand() -> None:
    """Binary plays a:{t0,t1}, b:{t1,t2}, c:{t1}. P_ui rows: a (1/2, 1/2, 0), b (0, 1/2,
    1/2), c (0, 1, 0); P_iu rows: t0 (1, 0, 0), t1 (1/3, 1/3, 1/3), t2 (0, 1, 0).
    W = P_iu P_ui, column j divided by popularity_j ** beta (popularity 1, 3, 1)."""
    log = tiny()
    w = RP3betaModel(k=10, beta=0.5).fit(log).similarity_.toarray()
    # t0 -> t1: 1 * 1/2 / sqrt(3); t1 -> t0: 1/3 * 1/2 / 1; t1 -> t2: 1/3 * 1/2
    assert w[0, 1] == pytest.approx(0.5 / np.sqrt(3), abs=1e-6)
    assert w[1, 0] == pytest.approx(1 / 6, abs=1e-6)
    assert w[1, 2] == pytest.approx(1 / 6, abs=1e-6)
    assert w[0, 2] == 0 and np.all(np.diag(w) == 0)
    # alpha squares each transition probability: t0 -> t1 = 1 * 1/4 / sqrt(3)
    w2 = RP3betaModel(k=10, alpha=2.0, beta=0.5).fit(log).similarity_.toarray()
    assert w2[0, 1] == pytest.approx(0.25 / np.sqrt(3), abs=1e-6)
    # user a (t0, t1): score(t2) = w[0, 2] + w[1, 2] = 1/6
    assert RP3betaModel(k=10).fit(log).scores(np.array([0]))[0, 2] == pytest.approx(1 / 6)
    with pytest.raises(ParameterError, match="beta=-1 must be a number >= 0"):
        RP3betaModel(beta=-1).fit(log)


def test_als_scores_are_the_factor_product() -> None:
    model = CFModel(factors=4, iterations=3, random_state=0).fit(tiny())
    np.testing.assert_allclose(
        model.scores(np.array([1])), model.user_factors_[[1]] @ model.item_factors_.T,
        rtol=1e-6)


def test_errors() -> None:
    with pytest.raises(NotFittedError, match="'popularity' is not fitted"):
        PopularityModel().scores(np.array([0]))
    with pytest.raises(ParameterError, match=r"userids must be indices in 0..2; got 5..5"):
        PopularityModel().fit(tiny()).scores(np.array([5]))
    with pytest.raises(ParameterError, match="l2=-1.0 must be a positive number"):
        EASEModel(l2=-1.0).fit(tiny())
    with pytest.raises(ParameterError, match="k=0 must be a positive integer"):
        ItemKNNModel(k=0).fit(tiny())
