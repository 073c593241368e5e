"""The facade's request path for users: the served blend's answers against a plain
reference computation, and the answer cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import ListeningLog
from musicrec.errors import ParameterError, UnknownTrackError, UnknownUserError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.facade import AnswerCache, Recommender, _plays_row
from musicrec.recommender.pipeline import add_tracks, build_model_dir
from musicrec.recommender.served import ServedModel, minmax_rows
from musicrec.recommender.types import Recommendation

N_TRACKS, N_USERS, DIM = 120, 240, 8


@pytest.fixture(scope="module")
def blend_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hybrid model whose served choice is a blend of item-kNN and ALS, plus three
    tracks added later that nobody played (scored by content)."""
    rng = np.random.default_rng(3)
    scene = rng.integers(4, size=N_TRACKS)
    content = (rng.standard_normal((4, DIM))[scene]
               + 0.5 * rng.standard_normal((N_TRACKS, DIM))).astype(np.float32)
    popularity = 1.0 / np.arange(1, N_TRACKS + 1) ** 0.7
    rows = []
    for u in range(N_USERS):
        pool = (scene == rng.integers(4)).astype(float) + 0.1
        p = popularity * pool
        for t in rng.choice(N_TRACKS, size=int(rng.integers(8, 20)), replace=False,
                            p=p / p.sum()):
            rows.append((f"u{u}", f"t{t:03d}", int(rng.integers(1, 6))))
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    ids = [f"t{t:03d}" for t in range(N_TRACKS)]
    catalog = TrackCatalog(pd.DataFrame({"track_id": ids, "title": ids,
                                         "artist": [f"a{t % 9}" for t in range(N_TRACKS)]}))
    served = ServedModel(grids={"itemknn": [{"k": 30}], "als": [{"factors": 8,
                                                                  "iterations": 5}]},
                         blend_weights=[0.25, 0.5], min_z=0.0, random_state=0)
    out = build_model_dir(tmp_path_factory.mktemp("facade") / "m", log=log, catalog=catalog,
                          content_ids=ids, content=content, served=served,
                          cf_model=CFModel(factors=8, iterations=5, random_state=0))
    add_tracks(out, ["new0", "new1", "new2"], content[:3] + 0.05)
    return out


def _reference(rec: Recommender, scores: np.ndarray, history: np.ndarray, *, n: int,
               skip: set[int], max_per_artist: int | None) -> list[Recommendation]:
    """The plain computation the request path must match: every track sorted by score
    (ties by index), then filtered one by one; each reason the played track closest by
    content (content-led tracks) or by CF."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    picked: list[tuple[int, float]] = []
    per_artist: dict[str, int] = {}
    for i in order.tolist():
        if i in skip or not np.isfinite(scores[i]):
            continue
        artist = rec.artist_of[i]
        if max_per_artist is not None and artist:
            if per_artist.get(artist, 0) >= max_per_artist:
                continue
            per_artist[artist] = per_artist.get(artist, 0) + 1
        picked.append((i, float(scores[i])))
        if len(picked) == n:
            break
    if len(history) == 0:
        return [Recommendation(rec.tracks.to_id(i), s, "popular") for i, s in picked]
    out = []
    idx = np.array([i for i, _ in picked], dtype=np.int64)
    for led, vectors, kind in ((True, np.asarray(rec.content), "played-content"),
                               (False, np.asarray(rec.unit_items), "cf")):
        content_led = rec.has_content[idx] & (np.asarray(rec.blend_weight)[idx] < 0.5)
        sel = np.flatnonzero(content_led == led)
        if len(sel):
            sims = vectors[history] @ vectors[idx[sel]].T
            for j, b in zip(sel.tolist(), history[np.argmax(sims, axis=0)].tolist(),
                            strict=True):
                out.append((j, Recommendation(rec.tracks.to_id(int(idx[j])), picked[j][1],
                                              kind, rec.tracks.to_id(b))))
    return [r for _, r in sorted(out, key=lambda pair: pair[0])]


def _served_reference(rec: Recommender, served: np.ndarray, history: np.ndarray,
                      plays: np.ndarray | None) -> np.ndarray:
    """The served scores over every track: the chosen model's, min-max scaled; tracks it
    never saw and nobody played, ``content_weight`` times their content cosine (≥ 0)."""
    scores = np.full(len(rec.tracks), -np.inf)
    scores[: len(served)] = minmax_rows(served[None])[0]
    cold = [t for t in range(len(served), len(rec.tracks)) if rec.evidence[t] <= 0]
    cosines = np.asarray(rec.content)[cold] @ rec.hybrid.user_profile(history, plays)
    scores[cold] = np.float32(rec.hybrid.content_weight) * np.maximum(np.float32(0), cosines)
    return scores


PARAMS = [dict(n=10), dict(n=3, exclude_played=False), dict(n=25, max_per_artist=1),
          dict(n=10, max_per_artist=2, exclude=["t000", "t001", "new1"]), dict(n=200)]


@pytest.mark.parametrize("params", PARAMS)
def test_known_users_match_the_reference(blend_dir: Path, params: dict) -> None:  # type: ignore[type-arg]
    rec = Recommender(blend_dir)
    assert rec.served is not None and len(rec.served.parts()) == 2  # the blend is served
    assert len(rec.tracks) == rec.served.n_items_ + 3
    cf = rec.cf
    assert cf is not None
    for user in ("u0", "u5", "u17", "u99", "u238"):
        u = cf.users_.to_idx(user)
        row = cf.user_items_[[u]]
        history, plays = row.indices.astype(np.int64), row.data
        scores = _served_reference(rec, rec.served.scores(np.array([u]))[0], history, plays)
        skip = set(history.tolist()) if params.get("exclude_played", True) else set()
        skip |= set(rec.tracks.to_idx_many(params.get("exclude", [])).tolist())
        expected = _reference(rec, scores, history, n=params["n"], skip=skip,
                              max_per_artist=params.get("max_per_artist"))
        assert rec.recommend(user, **params) == expected, (user, params)
    # the three tracks nobody played reach some listener through their content
    reached = {r.track_id for u in cf.users_.ids[:40]
               for r in rec.recommend(str(u), n=200)}
    assert reached & {"new0", "new1", "new2"}


@pytest.mark.parametrize("tracks, plays", [
    (["t004"], [3.0]), (["t010", "t002", "t050"], None),
    (["t010", "t002", "t010", "t007"], [1.0, 2.0, 4.0, 1.0]),  # a track named twice
    (["t003", "new0"], [2.0, 5.0])])
def test_new_listeners_match_the_reference(blend_dir: Path, tracks: list[str],
                                           plays: list[float] | None) -> None:
    rec = Recommender(blend_dir)
    assert rec.served is not None
    history = rec.tracks.to_idx_many(tracks)
    weights = np.ones(len(tracks), np.float32) if plays is None else np.float32(plays)
    known = history < rec.served.n_items_
    row = sp.csr_matrix((weights[known], (np.zeros(int(known.sum())), history[known])),
                        shape=(1, rec.served.n_items_), dtype=np.float32)
    play_arr = None if plays is None else np.float32(plays)
    scores = _served_reference(rec, rec.served.scores_new(row)[0], history, play_arr)
    for n, max_per_artist in ((10, None), (40, 1)):
        expected = _reference(rec, scores, history, n=n, skip=set(history.tolist()),
                              max_per_artist=max_per_artist)
        assert rec.recommend_for_tracks(tracks, plays=plays, n=n,
                                        max_per_artist=max_per_artist) == expected


def test_plays_row_is_scipys_row() -> None:
    for tracks, plays in (([7, 2, 9], [1.0, 3.0, 2.0]), ([4], [5.0]),
                          ([6, 1, 6, 6, 0], [0.1, 2.0, 0.7, 1e-8, 3.0]), ([], [])):
        t, p = np.array(tracks, dtype=np.int64), np.array(plays, dtype=np.float32)
        got = _plays_row(t, p, 10)
        want = sp.csr_matrix((p, (np.zeros(len(t)), t)), shape=(1, 10), dtype=np.float32)
        assert got.dtype == np.float32 and got.shape == (1, 10)
        assert got.indices.tolist() == want.indices.tolist()
        assert got.data.tobytes() == want.data.tobytes()  # the same floats, bit for bit
        assert got.indptr.tolist() == want.indptr.tolist()


def test_answer_cache_keeps_the_live_answers(blend_dir: Path) -> None:
    live = Recommender(blend_dir)
    cached = Recommender(blend_dir, answer_cache=60)
    assert cached.answers is not None and live.answers is None
    calls = [("u3", dict(n=10)), ("u3", dict(n=10, exclude_played=False)),
             ("u3", dict(n=5, max_per_artist=1)), ("u8", dict(n=10, exclude=["t000"])),
             ("u9", dict(n=10))]
    for _ in range(2):
        for user, params in calls:
            got = cached.recommend(user, **params)
            assert got == live.recommend(user, **params)
            got.pop()  # a caller changing its list changes nothing kept
    assert (cached.answers.hits, cached.answers.misses) == (5, 5)
    # bounded in results: 10 + 10 + 5 + 10 + 10 = 45 kept; 3 answers of 10 more push the
    # least recently used out until at most 60 remain
    assert cached.answers.size == 45
    for user in ("u20", "u21", "u22"):
        cached.recommend(user, n=10)
    assert cached.answers.size <= 60 and len(cached.answers) == 6
    assert cached.answers.get((cached.cf.users_.to_idx("u3"), 10, True, (), None)) is None
    # errors are never kept, and are raised as without the cache
    for _ in range(2):
        with pytest.raises(UnknownUserError):
            cached.recommend("nobody")
        with pytest.raises(UnknownTrackError):
            cached.recommend("u3", exclude=["no-such-track"])
        with pytest.raises(ParameterError, match="n=True"):
            cached.recommend("u3", n=True)  # True == 1, but it is refused, never a hit
    with pytest.raises(ParameterError, match="answer_cache=-1"):
        Recommender(blend_dir, answer_cache=-1)


def test_answer_cache_bounds() -> None:
    cache = AnswerCache(5)
    cache.put("a", (1, 2))
    cache.put("b", (3, 4))
    assert cache.get("a") == (1, 2)  # now the most recently used
    cache.put("c", (5, 6))  # 6 results > 5: "b", the least recently used, goes
    assert cache.get("b") is None and cache.get("a") == (1, 2) and cache.size == 4
    cache.put("a", (7,))  # replacing an answer frees its old results
    assert cache.size == 3 and cache.get("a") == (7,)
    cache.put("big", tuple(range(6)))  # larger than the whole cache: not kept
    assert cache.get("big") is None and cache.size == 3
    cache.put("empty", ())  # an empty answer still counts one
    assert cache.size == 4 and cache.get("empty") == ()
    with pytest.raises(ParameterError, match="capacity=0"):
        AnswerCache(0)


def test_minmax_of_one_row_is_the_matrix_path(rng: np.random.Generator) -> None:
    """A request scales one row; it must match that row scaled among others, bit for bit."""
    for dtype in (np.float32, np.float64):
        for trial in range(50):
            row = (rng.standard_normal(int(rng.integers(1, 40))) * 10.0 ** (trial % 5 - 2)
                   ).astype(dtype)
            if trial % 4 == 0:
                row[:] = row[0]  # a constant row: no span
            if trial % 6 == 1:
                row[0] = -np.inf  # a track one model cannot score
            other = np.linspace(-1, 1, len(row)).astype(dtype)
            alone = minmax_rows(row[None])[0]
            among = minmax_rows(np.vstack([other, row]))[1]
            assert alone.dtype == among.dtype == dtype
            assert alone.tobytes() == among.tobytes(), (row, alone, among)
    assert minmax_rows(np.array([[np.nan, 1.0]])).tolist() == [[-np.inf, 0.0]]  # NaN: not finite
