"""The served model: the choice among candidates, made on a validation split of the
plays it is fitted on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from musicrec.errors import ModelSkipped, ParameterError
from musicrec.recommender._rank import top_n, top_n_rows
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.served import (
    ServedModel,
    _forward_selection,
    _Validation,
    minmax_rows,
    zscore_rows,
)


def two_groups(seed: int = 0) -> sp.csr_matrix:
    """Users 0-59 play 10 of tracks 0-29, users 60-119 10 of tracks 30-59."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(120):
        group = np.arange(30) if u < 60 else np.arange(30, 60)
        for t in rng.choice(group, size=10, replace=False):
            rows.append(u)
            cols.append(t)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(120, 60))


def test_the_choice_and_its_report(tmp_path: Path) -> None:
    grids = {"popularity": [{}], "itemknn": [{"k": 5}, {"k": 20}]}
    model = ServedModel(grids=grids, blend_weights=[0.5], normalisations=["minmax"],
                        random_state=0).fit(two_groups())
    report = model.report
    trials = report["trials"]
    assert [(t["model"], t["params"]) for t in trials[:3]] == [
        ("popularity", {}), ("itemknn", {"k": 5}), ("itemknn", {"k": 20})]
    blends = trials[3:]
    assert blends and all(t["model"] == "blend" for t in blends)
    assert blends[0]["params"] == {"normalisation": "minmax",
                                   "members": {"itemknn": 0.5, "popularity": 0.5}}
    knn = max(t["ndcg"] for t in trials[1:3])
    # the taste groups are what item-kNN sees and popularity does not
    assert knn > trials[0]["ndcg"]
    choice = report["choice"]
    # greedy steps only ever keep an improvement: the choice is the best trial
    assert max(t["ndcg"] for t in trials) == choice["ndcg"]
    if choice["model"] == "itemknn":
        assert model.second_ is None and model.parts() == [(model.first_, 1.0)]
        np.testing.assert_array_equal(model.scores(np.arange(5)),
                                      model.first_.scores(np.arange(5)))
    # the validation cut 20 % of the plays of every user (10 plays each: 2 held out)
    assert report["validation"]["users"] == 120
    loaded = RecommenderBase.load(model.save(tmp_path / "served"))
    assert isinstance(loaded, ServedModel) and loaded.report == report
    np.testing.assert_array_equal(loaded.scores(np.arange(120)), model.scores(np.arange(120)))


def validation_of_two_users() -> _Validation:
    """Two users, three tracks, nothing played; user 0 held out track 0, user 1 track 1;
    NDCG@1 is 1 for a hit at the top, else 0."""
    return _Validation(sp.csr_matrix((2, 3), dtype=np.float32), np.array([0, 1]),
                       [np.array([0]), np.array([1])], k=1)


#: Normalised scores of three candidates for the two users above. A ranks user 0 right
#: (0.5), B user 1 (0.5), C nobody but user 0 by its tie rule (0.5). Half A, half B:
#: user 0 (0.9, 0, 0.85) -> track 0, user 1 (0, 0.9, 0.5) -> track 1: NDCG 1.0. Half A,
#: half C: user 0 (0.5, 0, 0.35) -> 0, user 1 (0, 0.4, 0.5) -> 2: 0.5, no gain.
ABC = {"a": np.array([[1.0, 0.0, 0.7], [0.0, 0.8, 1.0]], dtype=np.float32),
       "b": np.array([[0.8, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=np.float32),
       "c": np.zeros((2, 3), dtype=np.float32)}


def test_forward_selection_adds_a_member_only_when_validation_improves() -> None:
    validation = validation_of_two_users()
    singles = {name: validation.per_user(s.copy()) for name, s in ABC.items()}
    assert {n: v.tolist() for n, v in singles.items()} == {
        "a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 0.0]}

    def select(**options: Any) -> tuple[tuple[float, dict[str, float]], list[Any]]:
        trials: list[dict[str, Any]] = []
        settings = {"weights": [0.5], "max_members": 3, "max_steps": 3, "min_gain": 0.0,
                    "min_z": 0.0, **options}
        members, per_user = _forward_selection(dict(ABC), singles, validation,
                                               trials=trials, normalisation="minmax",
                                               **settings)
        return ((float(per_user.mean()), members),
                [(t["params"]["members"], t["ndcg"], t["z"]) for t in trials])

    found, trials = select()
    assert found == (1.0, {"a": 0.5, "b": 0.5})  # C never joins
    # step 1 from A (first of the tied best): + B gains (0, +1) per user: mean 0.5, its
    # standard error 0.5 (sd 0.707 over 2 users), z = 1; + C changes nothing. Step 2: A, B,
    # C again (C's zeros halve the others without reordering them), none beats 1.0
    assert trials == [
        ({"a": 0.5, "b": 0.5}, 1.0, 1.0), ({"a": 0.5, "c": 0.5}, 0.5, 0.0),
        ({"a": 0.75, "b": 0.25}, 1.0, 0.0), ({"a": 0.25, "b": 0.75}, 0.5, -1.0),
        ({"a": 0.25, "b": 0.25, "c": 0.5}, 1.0, 0.0)]
    # a gain of 0.5 is not more than min_gain=0.5, nor is z = 1 more than min_z=1
    assert select(min_gain=0.5)[0] == (0.5, {"a": 1.0})
    assert select(min_z=1.0)[0] == (0.5, {"a": 1.0})
    assert select(min_z=0.99)[0] == (1.0, {"a": 0.5, "b": 0.5})
    # one member at most: nothing to try
    assert select(max_members=1) == ((0.5, {"a": 1.0}), [])


def test_normalisations_by_hand() -> None:
    a = np.array([[0.0, 2.0, 4.0, -np.inf], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(minmax_rows(a), [[0.0, 0.5, 1.0, -np.inf], [0, 0, 0, 0]])
    # mean 2, population std sqrt(8/3) over the finite entries; a constant row -> 0
    z = 2 / np.sqrt(8 / 3)
    np.testing.assert_allclose(zscore_rows(a), [[-z, 0.0, z, -np.inf], [0, 0, 0, 0]],
                               rtol=1e-6)
    finite = a[1:] + np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)  # the fast path
    np.testing.assert_allclose(minmax_rows(finite), [[0, 1 / 3, 2 / 3, 1]], rtol=1e-6)
    np.testing.assert_allclose(zscore_rows(finite), [(np.arange(4) - 1.5) / np.sqrt(1.25)],
                               rtol=1e-6)


def test_an_ensemble_serves_its_weighted_normalised_scores(tmp_path: Path) -> None:
    """On these plays EASE and a small ALS complement each other: half of each, z-scored,
    beats either alone on validation. The served scores are that weighted sum, for known
    and new listeners (ALS folds the new ones in), and survive save/load."""
    grids = {"itemknn": [{"k": 5}], "ease": [{"l2": 10.0}],
             "als": [{"factors": 4, "iterations": 5}]}
    plays = two_groups(1)
    model = ServedModel(grids=grids, blend_weights=[0.5], normalisations=["zscore"],
                        random_state=1).fit(plays)
    choice = model.report["choice"]
    assert choice["model"] == "blend" and choice["normalisation"] == "zscore"
    assert [(m["model"], m["weight"]) for m in choice["members"]] == [("ease", 0.5),
                                                                      ("als", 0.5)]
    singles = [t["ndcg"] for t in model.report["trials"] if t["model"] != "blend"]
    assert choice["ndcg"] > max(singles)
    parts = model.parts()
    assert [(m.name, w) for m, w in parts] == [("ease", 0.5), ("als", 0.5)]
    users = np.arange(10)
    np.testing.assert_allclose(model.scores(users),
                               sum(w * zscore_rows(m.scores(users)) for m, w in parts),
                               rtol=1e-5, atol=1e-5)
    new = plays[[3, 70]]
    np.testing.assert_allclose(model.scores_new(new),
                               sum(w * zscore_rows(m.scores_new(new)) for m, w in parts),
                               rtol=1e-5, atol=1e-5)
    loaded = RecommenderBase.load(model.save(tmp_path / "served"))
    np.testing.assert_array_equal(loaded.scores(np.arange(120)), model.scores(np.arange(120)))


def test_eases_lambda_grid_chooses_the_best_point() -> None:
    grids = {"ease": [{"l2": 1.0}, {"l2": 30.0}, {"l2": 3000.0}]}
    model = ServedModel(grids=grids, random_state=0).fit(two_groups())
    trials = model.report["trials"]
    assert [t["params"] for t in trials] == grids["ease"]  # one candidate: no blends
    best = max(trials, key=lambda t: t["ndcg"])
    assert model.report["choice"] == {"model": "ease", "params": best["params"],
                                      "ndcg": best["ndcg"]}
    assert model.first_.get_params()["l2"] == best["params"]["l2"]


def test_a_model_saved_before_ensembles_loads(tmp_path: Path) -> None:
    model = ServedModel(grids={"itemknn": [{"k": 20}]}, random_state=0).fit(two_groups())
    folder = model.save(tmp_path / "old")
    meta = json.loads((folder / "model.json").read_text())
    for key in ("weights_", "normalisation_", "third_"):
        del meta["state"][key]
    meta["state"]["weight_"] = {"value": 1.0}
    (folder / "model.json").write_text(json.dumps(meta))
    old = RecommenderBase.load(folder)
    assert isinstance(old, ServedModel) and old.parts() == [(old.first_, 1.0)]
    np.testing.assert_array_equal(old.scores(np.arange(120)), model.scores(np.arange(120)))


def test_errors() -> None:
    with pytest.raises(ParameterError, match="must name candidates"):
        ServedModel(grids={"als": []}).fit(two_groups())
    with pytest.raises(ModelSkipped, match="served: no listener has 50 plays"):
        ServedModel(min_history=50).fit(two_groups())
    with pytest.raises(ParameterError, match="unknown model 'svd'"):
        ServedModel(grids={"svd": [{}]}).fit(two_groups())
    with pytest.raises(ParameterError, match=r"blend_weights=\[1.0\] must each be in"):
        ServedModel(blend_weights=[1.0]).fit(two_groups())
    with pytest.raises(ParameterError, match=r"normalisations=\['rank'\] must name some"):
        ServedModel(normalisations=["rank"]).fit(two_groups())
    with pytest.raises(ParameterError, match="max_members=4 must be 1, 2 or 3"):
        ServedModel(max_members=4).fit(two_groups())
    with pytest.raises(ParameterError, match="min_z=-1.0 at least 0"):
        ServedModel(min_z=-1.0).fit(two_groups())


def test_top_n_rows_is_top_n_on_every_row(rng: np.random.Generator) -> None:
    """The vectorised row-wise selection the validation ranks with keeps top_n's choice
    and order on every row: many tied scores, -inf and NaN, excluded tracks, n larger
    than the row."""
    for _ in range(200):
        n_rows, width = int(rng.integers(1, 6)), int(rng.integers(1, 25))
        scores = rng.integers(0, 4, (n_rows, width)).astype(np.float32)
        scores[rng.random((n_rows, width)) < 0.1] = -np.inf
        scores[rng.random((n_rows, width)) < 0.05] = np.nan
        exclude = sp.csr_matrix(rng.random((n_rows, width)) < 0.2)
        n = int(rng.integers(1, 30))
        got = top_n_rows(scores, n, exclude)
        for r in range(n_rows):
            expected = top_n(scores[r], n, exclude.indices[exclude.indptr[r]:
                                                          exclude.indptr[r + 1]])
            assert got[r, : len(expected)].tolist() == expected.tolist()
            assert (got[r, len(expected):] == -1).all()
    # by hand: ties go to the lower index, the excluded track 1 never appears
    np.testing.assert_array_equal(
        top_n_rows(np.array([[1.0, 3.0, 2.0, 2.0]]), 3, sp.csr_matrix([[0, 1, 0, 0]])),
        [[2, 3, 0]])
