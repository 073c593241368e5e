"""Similar tracks and the radio from the model chosen on validation
(``recommender/similarity.py``): at α=0 similar tracks follow the chosen item-kNN's
neighbour lists, scaled so the best scores 1; α blends them with content cosines; cold
tracks still come through content; a blend weighs its members' scaled rows; the radio uses
the same similarity; models without a chosen model (or ``similarity="factors"``) answer
with the factor cosine as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import ListeningLog
from musicrec.errors import ParameterError
from musicrec.recommender.baselines import EASEModel, ItemKNNModel
from musicrec.recommender.cf import CFModel
from musicrec.recommender.facade import Recommender
from musicrec.recommender.pipeline import add_tracks, build_model_dir
from musicrec.recommender.served import ServedModel
from musicrec.recommender.similarity import ChosenSimilarity

N_TRACKS, N_ARTISTS = 120, 12
IDS = [f"t{t:03d}" for t in range(N_TRACKS)]


def _world() -> tuple[ListeningLog, TrackCatalog, np.ndarray]:
    """Four clusters of 30 tracks in content and in listening; 12 artists."""
    rng = np.random.default_rng(0)
    cluster = np.arange(N_TRACKS) // 30
    centres = rng.standard_normal((4, 16))
    content = (centres[cluster] + 0.3 * rng.standard_normal((N_TRACKS, 16))).astype(np.float32)
    rows = [(f"u{u}", IDS[t], 1 + int(rng.integers(3))) for u in range(300)
            for t in rng.choice(np.flatnonzero(cluster == u % 4), 8, replace=False)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    catalog = TrackCatalog(pd.DataFrame({
        "track_id": IDS + ["cold"], "title": [f"Song {t}" for t in range(N_TRACKS + 1)],
        "artist": [f"Artist {t % N_ARTISTS}" for t in range(N_TRACKS + 1)]}))
    return log, catalog, content


@pytest.fixture(scope="module")
def world() -> tuple[ListeningLog, TrackCatalog, np.ndarray]:
    return _world()


@pytest.fixture(scope="module")
def knn_dir(world, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A model whose chosen model is item-kNN (K=20), with one track nobody played
    ("cold", whose audio is t000's)."""
    log, catalog, content = world
    served = ServedModel(grids={"itemknn": [{"k": 20}]}, blend_weights=[], random_state=0)
    return build_model_dir(tmp_path_factory.mktemp("sim") / "m", log=log, catalog=catalog,
                           content_ids=[*IDS, "cold"], content=np.vstack([content, content[:1]]),
                           cf_model=CFModel(factors=8, iterations=8, random_state=0),
                           served=served, n_trees=3)


@pytest.fixture(scope="module")
def rec(knn_dir: Path) -> Recommender:
    return Recommender(knn_dir)


def test_alpha_0_is_the_chosen_item_knn_scaled_to_its_best(rec: Recommender) -> None:
    assert rec.manifest["served"]["choice"]["model"] == "itemknn"
    knn = rec.served.first_  # type: ignore[union-attr]
    for seed in ("t000", "t031", "t077"):
        i = rec.tracks.to_idx(seed)
        expected, raw = knn.similar_items(i, n=10)
        got = rec.similar(seed, n=10, alpha=0.0)
        assert [r.track_id for r in got] == rec.tracks.to_ids(expected)
        np.testing.assert_allclose([r.score for r in got], raw / raw[0], rtol=1e-6)
        assert got[0].score == pytest.approx(1.0)
        assert {(r.kind, r.because) for r in got} == {("cf", seed)}
    # the factor cosine, as a model without a chosen one answers, ranks differently here
    factors = Recommender(rec.model_dir, similarity="factors")
    assert factors.chosen_similarity is None
    assert [r.track_id for r in factors.similar("t000", n=10, alpha=0.0)] != \
        [r.track_id for r in rec.similar("t000", n=10, alpha=0.0)]


def test_through_the_indexes_the_neighbour_list_supplies_the_candidates(
        rec: Recommender) -> None:
    indexed = Recommender(rec.model_dir, exact_below=50)  # 121 tracks: ANN candidates
    knn = rec.served.first_  # type: ignore[union-attr]
    for seed in ("t002", "t064"):
        expected, _ = knn.similar_items(rec.tracks.to_idx(seed), n=10)
        # no vector index is asked at alpha=0: the chosen model's row is the candidates
        assert [r.track_id for r in indexed.similar(seed, n=10, alpha=0.0)] == \
            rec.tracks.to_ids(expected)
        # at alpha=0.5: the content index's candidates and the neighbours, re-scored
        assert [(r.track_id, r.score) for r in indexed.similar(seed, n=10, alpha=0.5)] == \
            [(r.track_id, r.score) for r in rec.similar(seed, n=10, alpha=0.5)]


def test_alpha_blends_content_with_the_scaled_neighbour_list(rec: Recommender) -> None:
    seed = rec.tracks.to_idx("t005")
    s = rec.served.first_.similarity_  # type: ignore[union-attr]
    lo, hi = s.indptr[seed], s.indptr[seed + 1]
    knn = dict(zip(s.indices[lo:hi].tolist(), (s.data[lo:hi] / s.data[lo:hi].max()).tolist(),
                   strict=True))
    content = np.asarray(rec.content, dtype=np.float64)
    for r in rec.similar("t005", n=15, alpha=0.3):
        j = rec.tracks.to_idx(r.track_id)
        expected = 0.3 * float(content[j] @ content[seed]) + 0.7 * knn.get(j, 0.0)
        assert r.score == pytest.approx(expected, abs=1e-5)
    # every candidate was scored: nothing scores above the tenth result is left out
    everything = rec.exact_similar("t005", n=15, alpha=0.3)
    assert everything == [r.track_id for r in rec.similar("t005", n=15, alpha=0.3)]


def test_a_cold_track_comes_through_content(rec: Recommender) -> None:
    cold = rec.tracks.to_idx("cold")
    assert rec.evidence[cold] == 0 and cold >= rec.served.n_items_  # type: ignore[union-attr]
    # its audio is t000's: cosine 1, no CF part, so α · 1 exactly
    got = {r.track_id: r.score for r in rec.similar("t000", n=10, alpha=0.9)}
    assert got["cold"] == pytest.approx(0.9, abs=1e-6)
    assert "cold" not in {r.track_id for r in rec.similar("t000", n=30, alpha=0.0)}
    # a cold seed has no neighbour list: its CF part is the factor cosine, as before
    factors = Recommender(rec.model_dir, similarity="factors")
    for alpha in (0.0, 0.5):
        assert [(r.track_id, r.score) for r in rec.similar("cold", n=10, alpha=alpha)] == \
            [(r.track_id, r.score) for r in factors.similar("cold", n=10, alpha=alpha)]


def test_tracks_added_later_reach_similar_tracks_through_content(
        knn_dir: Path, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    out = tmp_path / "m"
    shutil.copytree(knn_dir, out)
    add_tracks(out, ["new0"], world[2][40:41])  # t040's audio
    rec = Recommender(out)
    assert rec.chosen_similarity is not None
    got = {r.track_id: r.score for r in rec.similar("t040", n=10, alpha=0.95)}
    assert got["new0"] == pytest.approx(0.95, abs=1e-5)


def test_the_radio_uses_the_same_similarity(rec: Recommender) -> None:
    # one seed, no prior, no variety, no noise, no artist rule: the radio plays similar()
    knobs = {"seed_weight": 1.0, "popularity": 0.0, "variety": 0.0, "temperature": 0.0,
             "artist_window": 1, "alpha": 0.0}
    page = rec.radio(["t010"], n=8, **knobs)
    assert [r.track_id for r in page.items] == \
        [r.track_id for r in rec.similar("t010", n=8, alpha=0.0)]
    assert {r.kind for r in page.items} == {"cf"} and page.items[0].because == "t010"
    pool = np.array([3, 40, 11, 0], dtype=np.int64)
    _, cf = rec.blend_parts(pool, np.array([10]))
    row = rec.chosen_similarity.row(10)  # type: ignore[union-attr]
    np.testing.assert_allclose(cf[:, 0], row[pool], rtol=1e-6)
    # the radio as a model without a chosen model plays differs
    factors = Recommender(rec.model_dir, similarity="factors")
    assert [r.track_id for r in factors.radio(["t010"], n=8, **knobs).items] == \
        [r.track_id for r in factors.similar("t010", n=8, alpha=0.0)]
    # and a default radio continues by cursor exactly as one long call
    first = rec.radio(["t010", "t070"], n=5)
    more = rec.radio(cursor=first.cursor, n=5)
    whole = rec.radio(["t010", "t070"], n=10)
    assert [r.track_id for r in first.items + more.items] == [r.track_id for r in whole.items]


def test_a_blend_weighs_its_members_scaled_rows(world) -> None:  # type: ignore[no-untyped-def]
    log = world[0]
    knn = ItemKNNModel(k=10).fit(log)
    ease = EASEModel(l2=50.0).fit(log)

    class Blend:  # what ChosenSimilarity reads of a ServedModel whose choice is a blend
        n_items_ = knn.n_items_

        def parts(self) -> list[tuple[object, float]]:
            return [(knn, 0.75), (ease, 0.25)]

    row = ChosenSimilarity(Blend()).row(7)  # type: ignore[arg-type]
    assert row is not None
    k = np.asarray(knn.similarity_[7].toarray(), dtype=np.float64)[0]
    e = np.asarray(ease.b_[np.searchsorted(ease.active_, 7)], dtype=np.float64)
    e_full = np.zeros(knn.n_items_)
    e_full[ease.active_] = e
    expected = 0.75 * k / k.max() + 0.25 * np.maximum(e_full / e_full.max(), -1.0)
    expected[7] = 1.0
    np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-6)
    assert row.max() == pytest.approx(1.0) and row.min() >= -1.0


def test_models_without_a_chosen_model_answer_with_the_factor_cosine(
        world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log, catalog, content = world
    out = build_model_dir(tmp_path / "m", log=log, catalog=catalog, content_ids=IDS,
                          content=content,
                          cf_model=CFModel(factors=8, iterations=8, random_state=0))
    rec = Recommender(out)
    assert rec.served is None and rec.chosen_similarity is None
    unit = np.asarray(rec.unit_items, dtype=np.float64)
    audio = np.asarray(rec.content, dtype=np.float64)
    for r in rec.similar("t020", n=10, alpha=0.5):
        j = rec.tracks.to_idx(r.track_id)
        assert r.score == pytest.approx(0.5 * audio[j] @ audio[20] + 0.5 * unit[j] @ unit[20],
                                        abs=1e-6)
    with pytest.raises(ParameterError, match="similarity='chosen' must be"):
        Recommender(out, similarity="chosen")
