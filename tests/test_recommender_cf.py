"""The CF model contract, shared by ALS and BPR, plus fold-in and persistence."""

from __future__ import annotations

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
    UnknownUserError,
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
    model, held_out, _ = fitted
    top1 = {user: model.recommend(user, n=1)[0].track_id for user in held_out}
    recovered = np.mean([top1[u] == held_out[u] for u in held_out])
    assert recovered >= 0.9, recovered


def test_played_tracks_are_excluded(fitted: tuple[CFModel, dict[str, str], ListeningLog]) -> None:
    model, _, log = fitted
    played = set(model.tracks_.to_ids(model.played("u0")))
    recs = model.recommend("u0", n=20)
    assert played and not played & {r.track_id for r in recs}
    assert len(recs) == log.n_tracks - len(played)
    with_played = model.recommend("u0", n=20, exclude_played=False)
    assert len(with_played) == 20
    excluded = model.recommend("u0", n=5, exclude=["i2", "i4"])
    assert not {"i2", "i4"} & {r.track_id for r in excluded}


def test_batch_equals_single(fitted: tuple[CFModel, dict[str, str], ListeningLog]) -> None:
    model, held_out, _ = fitted
    users = sorted(held_out)[:12]
    batch = model.recommend_batch(users, n=5)
    for user, recs in zip(users, batch, strict=True):
        assert recs == model.recommend(user, n=5)


def test_scores_are_sorted_and_reasons_name_a_played_track(
    fitted: tuple[CFModel, dict[str, str], ListeningLog],
) -> None:
    model, _, _ = fitted
    recs = model.recommend("u3", n=5)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    played = set(model.tracks_.to_ids(model.played("u3")))
    assert all(r.because in played for r in recs)
    assert recs[0].reason == f"listeners of {recs[0].because} also played this"


def test_save_load_round_trip(
    fitted: tuple[CFModel, dict[str, str], ListeningLog], tmp_path: Path
) -> None:
    model, held_out, _ = fitted
    model.save(tmp_path / "cf.npz")
    loaded = CFModel.load(tmp_path / "cf.npz")
    assert loaded.get_params() == model.get_params()
    assert loaded.users_ == model.users_ and loaded.tracks_ == model.tracks_
    for user in sorted(held_out)[:8]:
        assert loaded.recommend(user, n=5) == model.recommend(user, n=5)
    assert loaded.similar("i3", n=4) == model.similar("i3", n=4)


def test_similar_tracks_stay_in_their_group(
    fitted: tuple[CFModel, dict[str, str], ListeningLog],
) -> None:
    model, _, _ = fitted
    recs = model.similar("i4", n=5)
    assert "i4" not in {r.track_id for r in recs}
    assert all(int(r.track_id[1:]) % 2 == 0 for r in recs)


def test_new_listener_without_retraining(
    fitted: tuple[CFModel, dict[str, str], ListeningLog],
) -> None:
    model, _, _ = fitted
    recs = model.recommend_for_tracks(["i1", "i3", "i5", "i7"], n=5)
    assert {r.track_id for r in recs}.isdisjoint({"i1", "i3", "i5", "i7"})
    assert all(int(r.track_id[1:]) % 2 == 1 for r in recs)


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
        model.recommend("u0")
    model.fit(log)
    with pytest.raises(UnknownUserError, match="unknown user 'ghost'"):
        model.recommend("ghost")
    with pytest.raises(UnknownTrackError, match="unknown track 'nope'"):
        model.similar("nope")
    with pytest.raises(UnknownTrackError):
        model.recommend_for_tracks(["i1", "nope"])
    with pytest.raises(ParameterError, match="n=0 must be a positive integer"):
        model.recommend("u0", n=0)
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
    model.save(tmp_path / "cf.npz")
    arrays = dict(np.load(tmp_path / "cf.npz"))
    arrays["format_version"] = np.array(99)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ModelFormatError, match="format version 99 is not supported"):
        CFModel.load(tmp_path / "future.npz")
    (tmp_path / "junk.npz").write_text("not a model")
    with pytest.raises(ModelFormatError, match="not a musicrec CF model"):
        CFModel.load(tmp_path / "junk.npz")
    with pytest.raises(ModelFormatError, match="model file not found"):
        CFModel.load(tmp_path / "missing.npz")


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
