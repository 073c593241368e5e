"""The hybrid model and the Recommender facade over a model directory (either index)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import ListeningLog
from musicrec.data.splits import cold_tracks
from musicrec.errors import (
    CapabilityError,
    ModelFormatError,
    ParameterError,
    UnknownTrackError,
    UnknownUserError,
)
from musicrec.recommender.cf import CFModel
from musicrec.recommender.facade import Recommender
from musicrec.recommender.hybrid import HybridModel
from musicrec.recommender.model_dir import FORMAT_VERSION, write_hybrid_model_dir
from musicrec.recommender.pipeline import add_tracks, build_model_dir

N_TRACKS, N_USERS, N_STYLES, N_SCENES, DIM = 400, 600, 6, 5, 16


def world(seed: int = 0) -> tuple[ListeningLog, TrackCatalog, np.ndarray, dict[str, np.ndarray]]:
    """Tracks have a style (heard in their content) and a scene (seen only in listening).

    A listener plays mostly tracks of their scene, of any style, and some of their
    favourite style; popularity is long-tailed.
    """
    rng = np.random.default_rng(seed)
    style = rng.integers(N_STYLES, size=N_TRACKS)
    scene = rng.integers(N_SCENES, size=N_TRACKS)
    centroids = rng.standard_normal((N_STYLES, DIM))
    content = centroids[style] + 0.35 * rng.standard_normal((N_TRACKS, DIM))
    popularity = 1.0 / np.arange(1, N_TRACKS + 1) ** 0.7
    popularity = popularity[rng.permutation(N_TRACKS)]
    rows = []
    for u in range(N_USERS):
        fav_scene, fav_style = rng.integers(N_SCENES), rng.integers(N_STYLES)
        for _ in range(rng.integers(8, 30)):
            pool = scene == fav_scene if rng.random() < 0.5 else style == fav_style
            p = popularity * pool
            t = rng.choice(N_TRACKS, p=p / p.sum())
            rows.append((f"u{u}", f"t{t:03d}", int(rng.integers(1, 6))))
    frame = pd.DataFrame(rows, columns=["user", "track", "plays"])
    log = ListeningLog.from_frame(frame, weight_col="plays")
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    catalog = TrackCatalog(pd.DataFrame({"track_id": ids, "title": [f"Song {t}" for t in ids],
                                         "artist": [f"artist{t % 40}" for t in range(N_TRACKS)],
                                         "style": style}))
    return log, catalog, content.astype(np.float32), {"style": style, "scene": scene}


@pytest.fixture(scope="module")
def synthetic() -> tuple[ListeningLog, TrackCatalog, np.ndarray, dict[str, np.ndarray]]:
    return world()


@pytest.fixture(scope="module")
def model_dir(synthetic, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    log, catalog, content, _ = synthetic
    out = tmp_path_factory.mktemp("models") / "hybrid"
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    return build_model_dir(out, log=log, catalog=catalog, content_ids=ids, content=content,
                           cf_model=CFModel(factors=16, iterations=10, random_state=0))


def _idx(track_id: str) -> int:
    return int(track_id[1:])


def test_alpha_moves_from_listeners_to_sound(model_dir: Path, synthetic) -> None:  # type: ignore[no-untyped-def]
    truth = synthetic[3]
    rec = Recommender(model_dir)
    seeds = [f"t{t:03d}" for t in range(0, N_TRACKS, 8)]
    share = {}
    for alpha in (0.0, 1.0):
        same_style = same_scene = 0
        for seed in seeds:
            for r in rec.similar(seed, n=10, alpha=alpha):
                same_style += truth["style"][_idx(r.track_id)] == truth["style"][_idx(seed)]
                same_scene += truth["scene"][_idx(r.track_id)] == truth["scene"][_idx(seed)]
        share[alpha] = (same_style / (10 * len(seeds)), same_scene / (10 * len(seeds)))
    # alpha=1 ("sounds like") shares the seed's style far more; alpha=0 shares its listeners.
    assert share[1.0][0] > 0.9 and share[1.0][0] > share[0.0][0] + 0.15, share
    assert share[0.0][1] > share[1.0][1] + 0.2, share


def test_ann_recall_against_exact(model_dir: Path) -> None:
    rec = Recommender(model_dir, exact_below=0)  # force the Annoy path on this small model
    exact = Recommender(model_dir)  # small catalogues are searched exactly
    assert exact.similar("t007", n=10, alpha=0.5) != []
    assert [r.track_id for r in exact.similar("t007", n=10, alpha=0.5)] == \
        exact.exact_similar("t007", n=10, alpha=0.5)
    for alpha in (0.0, 0.5, 1.0):
        recalls = []
        for seed in [f"t{t:03d}" for t in range(0, N_TRACKS, 5)]:
            got = {r.track_id for r in rec.similar(seed, n=10, alpha=alpha)}
            recalls.append(len(got & set(rec.exact_similar(seed, n=10, alpha=alpha))) / 10)
        assert np.mean(recalls) >= 0.95, (alpha, np.mean(recalls))


def test_ann_agreement_of_the_served_configuration(model_dir: Path) -> None:
    served = Recommender(model_dir).ann_agreement(sample=40)
    assert served == {0.0: 1.0, 0.5: 1.0, 1.0: 1.0}  # small catalogues are searched exactly
    forced = Recommender(model_dir, exact_below=0).ann_agreement(sample=40)
    assert set(forced) == {0.0, 0.5, 1.0} and min(forced.values()) >= 0.95


def test_cold_tracks_reach_their_listeners(synthetic) -> None:  # type: ignore[no-untyped-def]
    log, _, content, _ = synthetic
    split = cold_tracks(log, fraction=0.3, min_listeners=2, seed=1)
    cold = split.cold_tracks
    assert cold is not None
    cf = CFModel(factors=16, iterations=10, random_state=0).fit(split.train)
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    hybrid = HybridModel().blend(cf=cf, content_ids=ids, content=content)
    cold_rows = hybrid.tracks_.to_idx_many(log.tracks.to_ids(cold))
    assert np.all(hybrid.blend_weight_[cold_rows] == 0)  # no plays: content alone
    recall = []
    for u in np.unique(split.test.user_idx):
        relevant = set(hybrid.tracks_.to_idx_many(
            log.tracks.to_ids(split.test.track_idx[split.test.user_idx == u])).tolist())
        scores = hybrid.scores(u)[0][cold_rows]
        top = cold_rows[np.argsort(-scores, kind="stable")[:10]]
        recall.append(len(relevant & set(top.tolist())) / len(relevant))
    # A random ranking's expected recall@10 over the cold tracks is exactly 10 / |cold|.
    chance = 10 / len(cold_rows)
    assert np.mean(recall) >= 3 * chance, (np.mean(recall), chance)


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["annoy", "exact"])
def test_users_and_new_listeners(model_dir: Path, synthetic, exact_below: int) -> None:  # type: ignore[no-untyped-def]
    log = synthetic[0]
    rec = Recommender(model_dir, exact_below=exact_below)
    user = log.users.to_id(0)
    played = set(log.tracks.to_ids(log.track_idx[log.user_idx == 0]))
    recs = rec.recommend(user, n=10)
    assert len(recs) == 10 and not played & {r.track_id for r in recs}
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert all(r.because in played for r in recs)
    capped = rec.recommend(user, n=10, max_per_artist=1)
    artists = rec.catalog.artists([r.track_id for r in capped])
    assert len(set(artists)) == len(artists) == 10
    skip = [r.track_id for r in recs[:3]]
    assert not set(skip) & {r.track_id for r in rec.recommend(user, n=10, exclude=skip)}
    new = rec.recommend_for_tracks(sorted(played), n=5)
    assert len(new) == 5 and not played & {r.track_id for r in new}
    overlap = {r.track_id for r in new} & {r.track_id for r in rec.recommend(user, n=20)}
    assert len(overlap) >= 3  # a listener re-entering a history gets similar advice


def test_errors(model_dir: Path) -> None:
    rec = Recommender(model_dir)
    with pytest.raises(UnknownUserError):
        rec.recommend("nobody")
    with pytest.raises(UnknownTrackError, match="unknown track 'zz'"):
        rec.similar("zz")
    with pytest.raises(ParameterError, match="alpha=1.5 must be a number from 0 to 1"):
        rec.similar("t001", alpha=1.5)
    with pytest.raises(ParameterError, match="n=0 must be an integer from 1 to 1000"):
        rec.similar("t001", n=0)
    with pytest.raises(ParameterError, match="tracks must name at least one track"):
        rec.recommend_for_tracks([])


def test_round_trip_and_concurrent_readers(model_dir: Path) -> None:
    a, b = Recommender(model_dir), Recommender(model_dir)
    assert a.similar("t010", n=5) == b.similar("t010", n=5)
    assert isinstance(a.items, np.memmap)  # mmap'd: processes share one copy
    expected = {t: a.similar(t, n=5, alpha=0.5) for t in ("t001", "t002", "t003", "t004")}
    errors: list[str] = []

    def worker() -> None:
        for _ in range(20):
            for t, want in expected.items():
                if b.similar(t, n=5, alpha=0.5) != want:
                    errors.append(t)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_corrupt_or_mismatched_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["dims"]["content"] = 99
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="do not match the manifest's dims"):
        Recommender(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="corrupt manifest"):
        Recommender(broken)
    manifest["dims"]["content"] = DIM
    manifest["format_version"] = 7
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="format version 7 is not supported"):
        Recommender(broken)
    manifest["format_version"] = FORMAT_VERSION
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (broken / "items.npy").unlink()
    with pytest.raises(ModelFormatError, match="manifest lists items.npy, which is missing"):
        Recommender(broken)


def test_content_only_model(synthetic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, content, truth = synthetic
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    out = build_model_dir(tmp_path / "content", content_ids=ids, content=content)
    rec = Recommender(out)
    assert rec.kind == "content"
    recs = rec.similar("t000", n=5)
    assert all(truth["style"][_idx(r.track_id)] == truth["style"][0] for r in recs)
    with pytest.raises(CapabilityError, match="cannot recommend for users"):
        rec.recommend("u1")
    with pytest.raises(CapabilityError, match="needs listening data"):
        rec.similar("t000", alpha=0.0)


def test_add_tracks_without_retraining(model_dir: Path, synthetic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    _, _, content, truth = synthetic
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    new = content[:3] + 0.01  # three new tracks that sound like t000..t002
    add_tracks(target, ["new0", "new1", "new2"], new)
    rec = Recommender(target)
    assert len(rec.tracks) == N_TRACKS + 3 and rec.manifest["added_tracks"] == 3
    top = rec.similar("new0", n=3, alpha=1.0)
    assert "t000" in {r.track_id for r in top}
    assert rec.blend_weight[rec.tracks.to_idx("new1")] == 0
    # The new tracks can be recommended to users: their CF vectors are predicted.
    assert np.linalg.norm(rec.items[rec.tracks.to_idx("new2")]) > 0
    with pytest.raises(ParameterError, match="track 'new0' is already in the model"):
        add_tracks(target, ["new0"], new[:1])
    assert not list(tmp_path.glob(".model.*"))


@pytest.fixture(scope="module")
def both_backends(synthetic, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """One fitted model written twice: with Annoy indexes and with HNSW indexes."""
    log, catalog, content, _ = synthetic
    cf = CFModel(factors=16, iterations=10, random_state=0).fit(log)
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    hybrid = HybridModel().blend(cf=cf, content_ids=ids, content=content)
    root = tmp_path_factory.mktemp("backends")
    return {name: write_hybrid_model_dir(root / name, hybrid=hybrid, catalog=catalog,
                                         index=name)
            for name in ("annoy", "hnsw")}


def test_either_index_backend_answers_identically(both_backends: dict[str, Path]) -> None:
    annoy = Recommender(both_backends["annoy"], exact_below=0)  # force the index path
    hnsw = Recommender(both_backends["hnsw"], exact_below=0)
    assert annoy.manifest["index"]["backend"] == "annoy"
    assert hnsw.manifest["index"]["backend"] == "hnsw"
    assert "index/content.hnsw" in hnsw.manifest["files"]
    for seed in [f"t{t:03d}" for t in range(0, N_TRACKS, 20)]:
        for alpha in (0.0, 0.5, 1.0):
            assert hnsw.similar(seed, n=10, alpha=alpha) == annoy.similar(seed, n=10,
                                                                         alpha=alpha)
    for user in ("u0", "u17", "u300"):
        assert hnsw.recommend(user, n=10) == annoy.recommend(user, n=10)
        assert hnsw.recommend(user, n=5, max_per_artist=1) == annoy.recommend(
            user, n=5, max_per_artist=1)
    assert hnsw.recommend_for_tracks(["t001", "t002"], n=5) == annoy.recommend_for_tracks(
        ["t001", "t002"], n=5)


def test_manifest_records_the_index_and_its_measured_recall(
        both_backends: dict[str, Path]) -> None:
    from musicrec.api import create_app

    for name, params in (("annoy", {"n_trees": 20, "search_k_factor": 10}),
                         ("hnsw", {"m": 16, "ef_construction": 100, "ef_search": 100})):
        index = Recommender(both_backends[name]).manifest["index"]
        assert {k: index[k] for k in params} == params and index["backend"] == name
        assert index["candidates"] == 100 and index["exact_below"] == 10_000
        assert set(index["index_recall_at_10"]) == {"content", "cf", "user"}
        assert min(index["index_recall_at_10"].values()) >= 0.95, index
        # 400 tracks are searched exactly, so the served recall is 1.
        assert index["served_recall_at_10"] == {"content": 1.0, "cf": 1.0, "user": 1.0}
        shown = create_app({"MODEL_DIR": both_backends[name]}).test_client().get("/v1/model")
        assert shown.json["manifest"]["index"] == index


def test_bad_index_choice_is_refused(synthetic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, content, _ = synthetic
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    hybrid = HybridModel().blend(cf=None, content_ids=ids, content=content)
    with pytest.raises(ParameterError, match="index='kd' must be one of annoy, hnsw, auto"):
        write_hybrid_model_dir(tmp_path / "m", hybrid=hybrid, index="kd")
    with pytest.raises(ParameterError, match="m=0 must be a positive integer"):
        write_hybrid_model_dir(tmp_path / "m", hybrid=hybrid, index="hnsw",
                               index_params={"m": 0})
    assert not (tmp_path / "m").exists()


def test_fewer_candidates_still_answer_n_results(both_backends: dict[str, Path]) -> None:
    full = Recommender(both_backends["hnsw"], exact_below=0)
    few = Recommender(both_backends["hnsw"], exact_below=0, candidates=15)
    assert few._k(10) == 15 and few._k(40) == 40 and full._k(10) == 100 and full._k(20) == 200
    overlap = []
    for seed in [f"t{t:03d}" for t in range(0, N_TRACKS, 20)]:
        got = few.similar(seed, n=10, alpha=1.0)
        assert len(got) == 10
        overlap.append(len({r.track_id for r in got}
                           & {r.track_id for r in full.similar(seed, n=10, alpha=1.0)}) / 10)
    assert np.mean(overlap) >= 0.9
    with pytest.raises(ParameterError, match="candidates=0 must be a positive integer"):
        Recommender(both_backends["hnsw"], candidates=0)


def test_with_tracks_extends_a_copy(synthetic) -> None:  # type: ignore[no-untyped-def]
    log, _, content, _ = synthetic
    cf = CFModel(factors=8, iterations=5, random_state=0).fit(log)
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    model = HybridModel().blend(cf=cf, content_ids=ids, content=content)
    before = model.scores(np.arange(3)).copy()
    bigger = model.with_tracks(["new0", "new1"], content[:2] * 2)
    assert model.n_items_ == N_TRACKS and bigger.n_items_ == N_TRACKS + 2
    np.testing.assert_array_equal(model.scores(np.arange(3)), before)  # untouched
    # a new track's vector is the content prediction (its unit content, like t000's)
    np.testing.assert_allclose(bigger.item_vectors_[N_TRACKS], model.predict_cf(content[0])[0],
                               rtol=1e-5)
    assert bigger.evidence_[N_TRACKS] == 0 and bigger.has_content_[N_TRACKS + 1]
    # the old tracks keep their scores; the new ones can be recommended
    np.testing.assert_allclose(bigger.scores(np.arange(3))[:, :N_TRACKS], before, rtol=1e-5)
    with pytest.raises(ParameterError, match=r"new vectors have shape \(1, 3\); expected "
                                             rf"\(1, {DIM}\)"):
        model.with_tracks(["x"], np.ones((1, 3)))


def test_a_model_directory_loads_as_the_fitted_hybrid(synthetic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from musicrec.recommender.model_dir import load_model_dir

    log, catalog, content, _ = synthetic
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    out = build_model_dir(tmp_path / "m", log=log, catalog=catalog, content_ids=ids,
                          content=content,
                          cf_model=CFModel(factors=8, iterations=5, random_state=0))
    files = load_model_dir(out)
    assert files.served is None and files.tracks == files.hybrid.tracks_
    assert isinstance(files.arrays["items"], np.memmap)
    built = HybridModel().blend(cf=CFModel(factors=8, iterations=5, random_state=0).fit(log),
                                content_ids=ids, content=content)
    np.testing.assert_allclose(files.hybrid.scores(np.arange(4)), built.scores(np.arange(4)),
                               rtol=1e-5)
    hybrid = files.hybrid
    parts = {"tracks": hybrid.tracks_, "cf": hybrid.cf_, "content": hybrid.content_,
             "has_content": hybrid.has_content_, "item_vectors": hybrid.item_vectors_,
             "evidence": hybrid.evidence_, "blend_weight": hybrid.blend_weight_,
             "mapping": hybrid.mapping_}
    with pytest.raises(ParameterError, match=rf"evidence has shape \({N_TRACKS - 1},\); "
                                             rf"{N_TRACKS} tracks"):
        HybridModel.assemble({}, **{**parts, "evidence": hybrid.evidence_[1:]})


def test_build_inputs_name_the_bad_keyword(tmp_path: Path) -> None:
    from musicrec.recommender.pipeline import BuildInputs

    with pytest.raises(ParameterError, match="unknown build input 'contents'"):
        build_model_dir(tmp_path / "m", contents=np.ones((2, 2)))
    with pytest.raises(ParameterError, match="logs, content vectors, or both"):
        build_model_dir(tmp_path / "m", BuildInputs())
    with pytest.raises(ParameterError, match="give BuildInputs or keywords, not both"):
        build_model_dir(tmp_path / "m", BuildInputs(), index="annoy")


def test_build_serves_the_model_chosen_on_validation(synthetic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from musicrec.recommender.served import ServedModel, minmax_rows

    log, catalog, content, _ = synthetic
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    served = ServedModel(grids={"popularity": [{}], "itemknn": [{"k": 50}]}, blend_weights=[],
                         random_state=0)
    out = build_model_dir(tmp_path / "m", log=log, catalog=catalog, content_ids=ids,
                          content=content, served=served,
                          cf_model=CFModel(factors=8, iterations=5, random_state=0))
    from musicrec.recommender.model_dir import verify_model_dir

    assert verify_model_dir(out)["files"] > 20  # served/ is checksummed like the rest
    rec = Recommender(out)
    report = rec.manifest["served"]
    assert [t["model"] for t in report["trials"]] == ["popularity", "itemknn"]
    assert report["choice"]["model"] == "itemknn"  # listeners' scenes beat popularity
    assert rec.served is not None and (out / "served" / "first" / "similarity.data.npy").exists()
    # known users get exactly the chosen model's ranking (its scores scaled to [0, 1])
    knn = rec.served.first_
    for user in ("u0", "u7"):
        u = log.users.to_idx(user)
        expected, raw = knn.recommend(u, n=10)
        got = rec.recommend(user, n=10)
        assert [r.track_id for r in got] == list(log.tracks.to_ids(expected))
        scaled = minmax_rows(knn.scores(u))[0]  # the chosen model's scores, in [0, 1]
        np.testing.assert_allclose([r.score for r in got], scaled[expected], rtol=1e-6)
        assert got[0].because in set(log.tracks.to_ids(log.to_csr()[u].indices))
    # tracks added later, nobody's yet, reach users through their content
    add_tracks(out, ["new0"], content[:1] + 0.01)
    rec = Recommender(out)
    assert rec.manifest["served"] == report and rec.served is not None
    u = rec.cf.users_.to_idx("u0") if rec.cf is not None else 0
    history = log.to_csr()[u].indices
    scores = rec._served_scores(rec.served.scores(u)[0], history, log.to_csr()[u].data)
    profile = rec.hybrid.user_profile(history, log.to_csr()[u].data)
    assert scores[-1] == pytest.approx(0.5 * max(0.0, float(rec.content[-1] @ profile)))
    # a new listener who played what u0 played is ranked by the chosen item-kNN too
    # (its neighbour matrix scores the plays as it does u0's), with u0's answer
    plays = log.to_csr()[u]
    played = list(log.tracks.to_ids(plays.indices))
    new = rec.recommend_for_tracks(played, plays=plays.data.tolist(), n=10)
    assert [(r.track_id, r.score) for r in new] == \
        [(r.track_id, r.score) for r in rec.recommend("u0", n=10)]
    # only tracks nobody played: the blend (content) answers, as without a chosen model
    cold = rec.recommend_for_tracks(["new0"], n=5)
    assert len(cold) == 5 and "new0" not in {r.track_id for r in cold}


def test_logs_too_small_to_choose_on_keep_the_blend(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from musicrec.recommender.served import ServedModel

    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c"],
                          "track": ["t0", "t1", "t1", "t2", "t0"]})
    log = ListeningLog.from_frame(frame)
    with caplog.at_level("WARNING"):
        out = build_model_dir(tmp_path / "m", log=log, served=ServedModel(),
                              cf_model=CFModel(factors=2, iterations=2, random_state=0))
    assert "served: no listener has 5 plays" in caplog.text
    rec = Recommender(out)
    assert rec.served is None and "served" not in rec.manifest
    assert len(rec.recommend("a", n=1)) == 1
