"""The CF model contract, shared by ALS and BPR, plus fold-in and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.data.logs import ListeningLog
from musicrec.errors import (
    ModelFormatError,
    NotFittedError,
    ParameterError,
    UnknownTrackError,
)
from musicrec.recommender.cf import CFModel


def checkerboard(n_users: int = 40, n_items: int = 20) -> tuple[ListeningLog, dict[str, str]]:
    """Two taste groups: even users play even items, odd users odd items.

    One in-group item is held out per user; it is the only unplayed in-group item, so it
    must come out first.
    """
    rows, held_out = [], {}
    for u in range(n_users):
        group = [i for i in range(n_items) if i % 2 == u % 2]
        hidden = group[u % len(group)]
        held_out[f"u{u}"] = f"i{hidden}"
        rows += [(f"u{u}", f"i{i}", 1 + (u + i) % 3) for i in group if i != hidden]
    frame = pd.DataFrame(rows, columns=["user", "track", "plays"])
    return ListeningLog.from_frame(frame, weight_col="plays"), held_out


CONFIGS = {
    "als": dict(algorithm="als", factors=4, iterations=30, regularization=1.0, alpha=10.0),
    "bpr": dict(algorithm="bpr", factors=8, iterations=200, learning_rate=0.05,
                regularization=0.001),
}


@pytest.fixture(params=sorted(CONFIGS), scope="module")
def fitted(request: pytest.FixtureRequest) -> tuple[CFModel, dict[str, str], ListeningLog]:
    log, held_out = checkerboard()
    model = CFModel(random_state=7, **CONFIGS[request.param]).fit(log)  # type: ignore[arg-type]
    return model, held_out, log


def test_held_out_item_comes_first(fitted: tuple[CFModel, dict[str, str], ListeningLog]) -> None:
    """The contract suite checks this on a tiny board; here with play counts and BPR's
    own defaults for the bias column, on raw ids."""
    model, held_out, log = fitted
    ids, _ = model.recommend(log.users.to_idx_many(sorted(held_out)), n=1)
    top1 = dict(zip(sorted(held_out), log.tracks.to_ids(ids[:, 0]), strict=True))
    recovered = np.mean([top1[u] == held_out[u] for u in held_out])
    assert recovered >= 0.9, recovered


def test_save_load_round_trip(
    fitted: tuple[CFModel, dict[str, str], ListeningLog], tmp_path: Path
) -> None:
    model, _, _ = fitted
    model.save(tmp_path / "cf")
    loaded = CFModel.load(tmp_path / "cf")
    assert loaded.get_params() == model.get_params() and loaded.seed_ == 7
    assert loaded.users_ == model.users_ and loaded.tracks_ == model.tracks_
    assert isinstance(loaded.item_factors_, np.memmap)  # mmap'd, as the server loads it
    np.testing.assert_array_equal(loaded.similar_items(3, n=4)[0],
                                  model.similar_items(3, n=4)[0])
    assert loaded.recommend_for_tracks(["i1", "i3"], n=3) == \
        model.recommend_for_tracks(["i1", "i3"], n=3)


def test_similar_tracks_stay_in_their_group(
    fitted: tuple[CFModel, dict[str, str], ListeningLog],
) -> None:
    model, _, log = fitted
    ids, scores = model.similar_items(log.tracks.to_idx("i4"), n=5)
    names = log.tracks.to_ids(ids)
    assert "i4" not in names
    assert all(int(t[1:]) % 2 == 0 for t in names)
    assert np.all(scores <= 1.0 + 1e-6)  # cosines


def test_similar_scores_are_cosines_of_the_factors(
    fitted: tuple[CFModel, dict[str, str], ListeningLog],
) -> None:
    """The kept unit vectors give the cosine computed by hand, and a track whose factors
    are all zero keeps a zero row (no division by zero, no NaN)."""
    model, _, _ = fitted
    f = np.asarray(model.item_factors_, dtype=np.float64)
    by_hand = f[[2, 5]] @ f.T / np.outer(np.linalg.norm(f[[2, 5]], axis=1),
                                         np.linalg.norm(f, axis=1))
    np.testing.assert_allclose(model._similar_scores(np.array([2, 5])), by_hand, atol=1e-5)
    assert model.unit_vectors() is model.unit_vectors()  # made once
    blank = CFModel.__new__(CFModel)
    blank.item_factors_ = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(blank.unit_vectors(), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


def test_new_listener_without_retraining(
    fitted: tuple[CFModel, dict[str, str], ListeningLog],
) -> None:
    model, _, _ = fitted
    recs = model.recommend_for_tracks(["i1", "i3", "i5", "i7"], n=5)
    assert {r.track_id for r in recs}.isdisjoint({"i1", "i3", "i5", "i7"})
    assert all(int(r.track_id[1:]) % 2 == 1 for r in recs)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert all(r.because in {"i1", "i3", "i5", "i7"} for r in recs)
    assert recs[0].reason == f"listeners of {recs[0].because} also played this"


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_fold_in_kept_parts_follow_a_refit(algorithm: str) -> None:
    """Fold-in keeps YᵀY (ALS) and the users' median norm (BPR) between listeners; a
    second fit of the same object must not fold in against the first fit's."""
    log, _ = checkerboard()
    other, _ = checkerboard(n_users=30, n_items=24)
    params = dict(CONFIGS[algorithm], random_state=3)
    model = CFModel(**params).fit(log)  # type: ignore[arg-type]
    first = model.fold_in(np.array([1, 3, 5]), np.array([2.0, 1.0, 4.0]))
    np.testing.assert_array_equal(model.fold_in(np.array([1, 3, 5]), np.array([2, 1, 4])),
                                  first)  # kept parts, same answer
    model.fit(other)
    fresh = CFModel(**params).fit(other)  # type: ignore[arg-type]
    np.testing.assert_array_equal(model.fold_in(np.array([1, 3, 5]), np.array([2, 1, 4])),
                                  fresh.fold_in(np.array([1, 3, 5]), np.array([2, 1, 4])))


def test_als_fold_in_matches_implicit_recalculate_user() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    log, _ = checkerboard()
    model = CFModel(factors=8, iterations=10, alpha=3.0, regularization=0.1,
                    confidence="log1p", random_state=1).fit(log)
    ref = AlternatingLeastSquares(factors=8, regularization=0.1, alpha=3.0, random_state=1)
    ref.user_factors = model.user_factors_.copy()
    ref.item_factors = model.item_factors_.copy()
    from musicrec.recommender.cf import confidence_weights

    row = log.users.to_idx("u5")
    weights = confidence_weights(model.user_items_[row], "log1p")
    expected = ref.recalculate_user(0, weights)
    got = model.fold_in(model.user_items_[row].indices, model.user_items_[row].data)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4)
    # A listener re-entering their own history gets back (almost) their trained vector.
    np.testing.assert_allclose(got, model.user_factors_[row], rtol=0.05, atol=0.05)


def test_errors() -> None:
    log, _ = checkerboard(8, 6)
    model = CFModel(factors=4, iterations=2, random_state=0)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.recommend(0)
    model.fit(log)
    with pytest.raises(UnknownTrackError, match="unknown track 'nope'"):
        model.recommend_for_tracks(["i1", "nope"])
    with pytest.raises(ParameterError, match="n=0 must be a positive integer"):
        model.recommend_for_tracks(["i1"], n=0)
    # fitted on a bare matrix, tracks are named by their indices
    bare = CFModel(factors=4, iterations=2, random_state=0).fit(log.to_csr())
    recs = bare.recommend_for_tracks(["1", "3"], n=2)
    assert len(recs) == 2 and {r.because for r in recs} <= {"1", "3"}
    assert all(r.track_id.isdigit() and r.track_id not in ("1", "3") for r in recs)
    with pytest.raises(ParameterError, match="tracks must name at least one track"):
        model.recommend_for_tracks([])
    for bad, message in [({"algorithm": "svd"}, "algorithm='svd' must be one of"),
                         ({"factors": 0}, "factors=0 must be a positive integer"),
                         ({"confidence": "sqrt"}, "confidence='sqrt' must be one of"),
                         ({"alpha": -1.0}, "alpha=-1.0 must be a finite number >= 0")]:
        with pytest.raises(ParameterError, match=message):
            CFModel(**bad).fit(log)  # type: ignore[arg-type]


def test_load_refuses_other_versions_and_files(tmp_path: Path) -> None:
    log, _ = checkerboard(8, 6)
    model = CFModel(factors=4, iterations=2, random_state=0).fit(log)
    model.save(tmp_path / "cf")
    meta = json.loads((tmp_path / "cf" / "model.json").read_text())
    (tmp_path / "cf" / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelFormatError, match="model format version 99 is not supported"):
        CFModel.load(tmp_path / "cf")
    (tmp_path / "cf" / "model.json").write_text(json.dumps({**meta, "model": "ease"}))
    with pytest.raises(ModelFormatError, match="holds model 'ease', not a CFModel"):
        CFModel.load(tmp_path / "cf")
    (tmp_path / "cf" / "model.json").write_text(json.dumps(meta))
    (tmp_path / "cf" / "item_factors.npy").write_text("junk")
    with pytest.raises(ModelFormatError, match="incomplete or corrupt saved model"):
        CFModel.load(tmp_path / "cf")
    with pytest.raises(ModelFormatError, match="not a saved musicrec model"):
        CFModel.load(tmp_path / "missing")


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_same_seed_same_model(algorithm: str) -> None:
    """BPR too: implicit's multi-threaded BPR races on shared vectors (Hogwild), so it
    trains on one thread."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"t{t}") for u in range(3000) for t in rng.choice(300, 30, replace=False)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track"]))
    a = CFModel(algorithm=algorithm, factors=4, iterations=20, random_state=5).fit(log)
    b = CFModel(algorithm=algorithm, factors=4, iterations=20, random_state=5).fit(log)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
