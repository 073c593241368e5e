"""The contract every registered model keeps, as implicit's ``RecommenderBaseTestMixin``:
parametrised over :data:`musicrec.recommender.registry.MODELS`, so a new model is tested
by being registered."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from musicrec.errors import CapabilityError, NotFittedError, ParameterError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.registry import MODELS, create_model

N = 20
#: Hyper-parameters for a 20 x 20 matrix (the defaults suit thousands of tracks).
SMALL: dict[str, dict[str, Any]] = {
    "als": {"factors": 8, "regularization": 0.1, "iterations": 15, "random_state": 0},
    "bpr": {"factors": 8, "iterations": 300, "learning_rate": 0.05, "random_state": 0,
            "confidence": "none"},
    "ease": {"l2": 1.0},
    "itemknn": {"k": 10},
    "rp3beta": {"k": 10},
    "hybrid": {"cf_params": {"factors": 8, "regularization": 0.1, "iterations": 15},
               "random_state": 0},
}
#: Models that rank the same tracks for everyone: the checkerboard test does not apply.
UNPERSONALISED = {"random", "popularity"}


def checkerboard() -> sp.csr_matrix:
    """User u plays every track of u's parity except track u itself (held out)."""
    dense = np.array([[1.0 if (u % 2) == (i % 2) and u != i else 0.0 for i in range(N)]
                      for u in range(N)], dtype=np.float32)
    return sp.csr_matrix(dense)


def parity_content() -> np.ndarray:
    """Content vectors that say each track's parity (and a little about its index)."""
    content = np.zeros((N, 3), dtype=np.float32)
    content[np.arange(N), np.arange(N) % 2] = 1.0
    content[:, 2] = np.linspace(0.0, 0.1, N)
    return content


@functools.cache
def fitted(name: str) -> RecommenderBase:
    model = create_model(name, **SMALL.get(name, {}))
    return model.fit(checkerboard(), content=parity_content() if model.requires_content
                     else None)


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> RecommenderBase:
    return fitted(request.param)


@pytest.mark.parametrize("name", sorted(set(MODELS) - UNPERSONALISED))
def test_the_held_out_track_comes_first(name: str) -> None:
    model = fitted(name)
    for u in range(N):
        ids, scores = model.recommend(u, n=3)
        assert ids[0] == u, f"{model.name}: user {u} got {ids.tolist()} ({scores.tolist()})"
        assert scores[0] >= scores[1]


def test_a_new_listener_is_scored_from_their_plays(model: RecommenderBase) -> None:
    plays = checkerboard()
    if model.name == "random":
        with pytest.raises(CapabilityError, match="cannot score a listener who is not in"):
            model.scores_new(plays[:1])
        return
    new = model.scores_new(plays[[2, 5]])
    assert new.shape == (2, N)
    if model.scores_from_plays:  # item-item models: exactly a known user's scores
        np.testing.assert_allclose(new, model.scores(np.array([2, 5])), rtol=1e-5, atol=1e-6)
    elif model.name not in UNPERSONALISED:  # fold-in: the held-out track still comes first
        for row, u in enumerate((2, 5)):
            ranked = [i for i in np.argsort(-new[row], kind="stable")
                      if i not in set(plays[u].indices)]
            assert ranked[0] == u, f"{model.name}: new listener like {u} got {ranked[:3]}"
    with pytest.raises(ParameterError, match=f"must have {N} columns"):
        model.scores_new(sp.csr_matrix((1, N + 1), dtype=np.float32))


def test_batch_equals_single(model: RecommenderBase) -> None:
    users = np.arange(N)
    ids, scores = model.recommend(users, n=5)
    assert ids.shape == scores.shape == (N, 5)
    for u in users:
        one_ids, one_scores = model.recommend(int(u), n=5)
        np.testing.assert_array_equal(ids[u], one_ids)
        np.testing.assert_array_equal(scores[u], one_scores)
    np.testing.assert_allclose(model.scores(users)[3], model.scores(3)[0], rtol=1e-5,
                               atol=1e-6)


def test_training_tracks_are_filtered(model: RecommenderBase) -> None:
    plays = checkerboard()
    for u in (0, 7):
        liked = set(plays[u].indices.tolist())
        ids, _ = model.recommend(u, n=N)
        got = set(ids[ids >= 0].tolist())
        assert not got & liked
        assert len(got) == N - len(liked)  # everything else is ranked
        unfiltered, _ = model.recommend(u, n=N, filter_already_liked_items=False)
        assert set(unfiltered.tolist()) == set(range(N))
        ids, _ = model.recommend(u, n=N, filter_items=np.array([u, 1]))
        assert u not in ids and 1 not in ids


def test_save_and_load_round_trip(model: RecommenderBase, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.pkl"))
    for loaded in (type(model).load(tmp_path / "m"),
                   RecommenderBase.load(tmp_path / "m", mmap=False)):
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(loaded.scores(np.arange(N)), model.scores(np.arange(N)))
        for u in (0, 5):
            for a, b in zip(loaded.recommend(u, n=4), model.recommend(u, n=4), strict=True):
                np.testing.assert_array_equal(a, b)


def test_get_params_round_trips_into_the_constructor(model: RecommenderBase) -> None:
    params = model.get_params()
    assert set(params) == set(type(model).param_names())
    again = type(model)(**params)
    assert again.get_params() == params
    assert model.clone().get_params() == params
    with pytest.raises(NotFittedError, match=f"model '{model.name}' is not fitted yet"):
        again.recommend(0)


def test_similar_items(model: RecommenderBase) -> None:
    try:
        ids, scores = model.similar_items(4, n=5)
    except CapabilityError as exc:
        assert model.name in UNPERSONALISED, f"{model.name} must find similar tracks ({exc})"
        return
    assert model.name not in UNPERSONALISED
    assert 4 not in ids
    assert ids[0] % 2 == 0, f"{model.name}: the nearest track to 4 is {ids[0]} ({scores})"
    both, _ = model.similar_items(np.array([4, 5]), n=5)
    np.testing.assert_array_equal(both[0], ids)


def test_bad_input_names_the_value(model: RecommenderBase) -> None:
    with pytest.raises(ParameterError, match=r"userids must be indices in 0\.\.19; got 20"):
        model.recommend(20)
    with pytest.raises(ParameterError, match="n=0 must be a positive integer"):
        model.recommend(0, n=0)
    with pytest.raises(ParameterError, match=r"user_items must have shape \(1, 20\)"):
        model.recommend(0, sp.csr_matrix((1, 3)))


def test_user_items_override_the_training_rows() -> None:
    """An item-item model scores whatever plays it is given: a user who played only
    track 2 gets even tracks first."""
    model = fitted("itemknn")
    row = sp.csr_matrix(([1.0], ([0], [2])), shape=(1, N))
    ids, _ = model.recommend(1, row, n=3)  # user 1 is odd, but these plays are even
    assert all(i % 2 == 0 for i in ids) and 2 not in ids


def test_registry_errors() -> None:
    with pytest.raises(ParameterError, match="unknown model 'svd'; available models: "):
        create_model("svd")
    with pytest.raises(ParameterError, match="'factor' is not one of"):
        create_model("als", factor=3)
    with pytest.raises(ParameterError, match="model 'content' needs content vectors"):
        create_model("content").fit(checkerboard())
