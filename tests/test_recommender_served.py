"""The served model: the choice among candidates, made on a validation split of the
plays it is fitted on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from musicrec.errors import ModelSkipped, ParameterError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.served import ServedModel, _blend


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
    model = ServedModel(grids=grids, blend_weights=[0.5], random_state=0).fit(two_groups())
    report = model.report
    trials = report["trials"]
    assert [(t["model"], t["params"]) for t in trials[:3]] == [
        ("popularity", {}), ("itemknn", {"k": 5}), ("itemknn", {"k": 20})]
    assert trials[3]["model"] == "blend" and trials[3]["params"]["weight"] == 0.5
    knn = max(t["ndcg"] for t in trials[1:3])
    # the taste groups are what item-kNN sees and popularity does not
    assert knn > trials[0]["ndcg"]
    choice = report["choice"]
    assert max(t["ndcg"] for t in trials) == choice["ndcg"]
    if choice["model"] == "itemknn":
        assert model.second_ is None
        np.testing.assert_array_equal(model.scores(np.arange(5)),
                                      model.first_.scores(np.arange(5)))
    # the validation cut 20 % of the plays of every user (10 plays each: 2 held out)
    assert report["validation"]["users"] == 120
    loaded = RecommenderBase.load(model.save(tmp_path / "served"))
    assert isinstance(loaded, ServedModel) and loaded.report == report
    np.testing.assert_array_equal(loaded.scores(np.arange(120)), model.scores(np.arange(120)))


def test_blend_of_normalised_scores() -> None:
    a = np.array([[0.0, 2.0, 4.0]], dtype=np.float32)      # -> 0, 0.5, 1
    b = np.array([[10.0, 30.0, -np.inf]], dtype=np.float32)  # -> 0, 1, -inf
    np.testing.assert_allclose(_blend(a, b, 0.25), [[0.0, 0.125 + 0.75, -np.inf]])


def test_errors() -> None:
    with pytest.raises(ParameterError, match="must name candidates"):
        ServedModel(grids={"als": []}).fit(two_groups())
    with pytest.raises(ModelSkipped, match="served: no listener has 50 plays"):
        ServedModel(min_history=50).fit(two_groups())
    with pytest.raises(ParameterError, match="unknown model 'svd'"):
        ServedModel(grids={"svd": [{}]}).fit(two_groups())
