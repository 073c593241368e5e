"""The catalogue map's layout: t-SNE (or PCA) into the unit square, sampling, storage,
and the web page's endpoints that serve it (``GET /v1/map``, ``GET /v1/catalog/details``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.errors import ModelFormatError, ParameterError
from musicrec.recommender.layout import (
    LAYOUT_FILE,
    layout_2d,
    read_layouts,
    write_layouts,
)


def clusters(rng: np.random.Generator, k: int, per: int, dim: int = 16
             ) -> tuple[np.ndarray, np.ndarray]:
    """``k`` tight clusters of ``per`` vectors around orthogonal directions."""
    centres = np.eye(dim, dtype=np.float32)[:k] * 5
    labels = np.repeat(np.arange(k), per)
    return (centres[labels] + rng.normal(0, 0.3, (k * per, dim))).astype(np.float32), labels


def nearest_on_map(xy: np.ndarray) -> np.ndarray:
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    return np.asarray(d.argmin(axis=1))


def test_tsne_keeps_each_track_beside_its_own_cluster(rng: np.random.Generator) -> None:
    x, labels = clusters(rng, 4, 15)
    xy, method = layout_2d(x)
    assert method == "tsne" and xy.shape == (60, 2) and xy.dtype == np.float32
    assert xy.min() >= 0 and xy.max() <= 1
    # the longer side spans the square; the map is centred
    span = xy.max(axis=0) - xy.min(axis=0)
    assert span.max() == pytest.approx(1.0, abs=1e-6)
    assert (xy.min(axis=0) + xy.max(axis=0)) / 2 == pytest.approx([0.5, 0.5], abs=1e-6)
    assert (labels[nearest_on_map(xy)] == labels).all()
    again, _ = layout_2d(x)
    np.testing.assert_array_equal(xy, again)  # the same seed gives the same map


def test_tracks_outside_the_sample_are_placed_beside_their_cluster(
        rng: np.random.Generator) -> None:
    x, labels = clusters(rng, 3, 20)
    xy, method = layout_2d(x, sample=24)
    assert method == "tsne+placed"
    assert (labels[nearest_on_map(xy)] == labels).all()
    # every cluster's points lie closer to their own centre than to any other's
    centres = np.stack([xy[labels == c].mean(axis=0) for c in range(3)])
    d = ((xy[:, None, :] - centres[None]) ** 2).sum(axis=2)
    assert (d.argmin(axis=1) == labels).all()


def test_pca_small_inputs_and_errors() -> None:
    # three orthogonal unit vectors: PCA puts them on an equilateral triangle
    xy, method = layout_2d(np.eye(3, dtype=np.float32), method="pca")
    assert method == "pca"
    sides = [np.linalg.norm(xy[i] - xy[j]) for i, j in ((0, 1), (1, 2), (0, 2))]
    assert sides == pytest.approx([sides[0]] * 3, rel=1e-4)
    assert layout_2d(np.ones((5, 4)))[1] == "pca"  # below MIN_TSNE rows
    assert layout_2d(np.ones((1, 4)))[0].tolist() == [[0.5, 0.5]]
    assert layout_2d(np.zeros((0, 4)))[0].shape == (0, 2)
    with pytest.raises(ParameterError, match="method='umap' must be"):
        layout_2d(np.ones((3, 4)), method="umap")
    with pytest.raises(ParameterError, match="sample=2 must be"):
        layout_2d(np.ones((3, 4)), sample=2)
    with pytest.raises(ParameterError, match=r"shape \(4,\)"):
        layout_2d(np.ones(4))


def test_write_and_read_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    assert read_layouts(tmp_path, 10) == {}  # an older model: no map, nothing fails
    x, _ = clusters(rng, 2, 10)
    methods = write_layouts(tmp_path, {"content": (np.arange(20), x),
                                       "cf": (np.arange(0), x[:0])})
    assert methods == {"content": "tsne"}
    layouts = read_layouts(tmp_path, 20)
    assert set(layouts) == {"content"}
    assert layouts["content"].rows.tolist() == list(range(20))
    np.testing.assert_array_equal(layouts["content"].xy, layout_2d(x)[0])
    with pytest.raises(ModelFormatError, match="does not fit the model's 19 tracks"):
        read_layouts(tmp_path, 19)
    with pytest.raises(ParameterError, match="space='words'"):
        write_layouts(tmp_path, {"words": (np.arange(20), x)})
    (tmp_path / LAYOUT_FILE).unlink()
    assert write_layouts(tmp_path, {}) == {} and not (tmp_path / LAYOUT_FILE).exists()


@pytest.fixture(scope="module")
def map_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    from musicrec.api import create_app
    from musicrec.data.catalog import TrackCatalog
    from musicrec.data.logs import ListeningLog
    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.pipeline import build_model_dir

    rng = np.random.default_rng(0)
    n = 30
    ids = [f"t{k:02d}" for k in range(n)]
    x, labels = clusters(rng, 3, 10)
    catalog = TrackCatalog(pd.DataFrame({
        "track_id": ids, "title": ["Etude" if k < 2 else f"Song {k}" for k in range(n)],
        "artist": ["band0" if k < 2 else f"band{k % 4}" for k in range(n)],
        "style": [f"style{c}" for c in labels], "album": [f"album{k}" for k in range(n)]}))
    # listeners play the first 8 tracks of one cluster: t08, t09, t18, t19, t28, t29 never
    rows = [(f"u{u}", ids[t], 1) for u in range(40)
            for t in rng.choice(np.flatnonzero(labels == u % 3)[:8], 4, replace=False)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    model = build_model_dir(tmp_path_factory.mktemp("map") / "model", log=log,
                            catalog=catalog, content_ids=ids, content=x,
                            cf_model=CFModel(factors=4, iterations=3, random_state=0),
                            n_trees=3)
    return create_app({"MODEL_DIR": model, "TESTING": True}).test_client(), model


def test_map_endpoint_serves_the_stored_layout(map_client: tuple[object, Path]) -> None:
    client, model = map_client
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["layout"] == {"content": "tsne", "cf": "tsne"}
    assert LAYOUT_FILE in manifest["files"] and LAYOUT_FILE in manifest["checksums"]
    body = client.get("/v1/map").json  # type: ignore[attr-defined]
    assert body["space"] == "content" and body["method"] == "tsne"
    assert body["n"] == 30 and body["tracks"] == 30 and body["colour_by"] == "style"
    assert sorted(body["groups"]) == ["style0", "style1", "style2"]
    stored = read_layouts(model, 30)["content"]
    ids = np.load(model / "tracks.npy", allow_pickle=False)[stored.rows].tolist()
    assert body["track_ids"] == ids
    xy = np.frombuffer(base64.b64decode(body["xy"]), dtype="<u2").reshape(-1, 2) / 65535
    np.testing.assert_allclose(xy, stored.xy, atol=1 / 65535)
    group = np.frombuffer(base64.b64decode(body["group"]), dtype=np.uint8)
    names = [body["groups"][g] for g in group]
    assert names == [f"style{int(t[1:]) // 10}" for t in ids]
    # repeated titles carry their detail (the album); labels name the artist
    etude = body["labels"][ids.index("t01")]
    assert etude == "Etude (album1) — band0"
    # the listening map holds only the tracks with plays
    cf = client.get("/v1/map?space=cf").json  # type: ignore[attr-defined]
    assert cf["space"] == "cf" and cf["n"] == 24
    assert not {"t08", "t09", "t18", "t19", "t28", "t29"} & set(cf["track_ids"])
    bad = client.get("/v1/map?space=words")  # type: ignore[attr-defined]
    assert bad.status_code == 400
    assert bad.json == {"error": "bad_request",
                        "message": "space='words' must be one of 'content', 'cf'"}
    details = client.get("/v1/catalog/details").json  # type: ignore[attr-defined]
    assert details == {"details": {"t00": "album0", "t01": "album1"}}
    doc = client.get("/openapi.json").json  # type: ignore[attr-defined]
    assert {"/v1/map", "/v1/catalog/details"} <= set(doc["paths"])


def test_a_model_without_a_space_answers_409(tmp_path: Path, rng: np.random.Generator
                                             ) -> None:
    from musicrec.api import create_app
    from musicrec.recommender.pipeline import build_model_dir

    x, _ = clusters(rng, 2, 6)
    model = build_model_dir(tmp_path / "model", content_ids=[f"a{k}" for k in range(12)],
                            content=x, n_trees=2)
    client = create_app({"MODEL_DIR": model, "TESTING": True}).test_client()
    assert client.get("/v1/map").json["n"] == 12
    answer = client.get("/v1/map?space=cf")
    assert answer.status_code == 409
    assert answer.json["message"].startswith("this model has no map of the cf space "
                                             "(maps: content)")


def test_a_model_without_a_map_loads_and_says_so(tmp_path: Path, rng: np.random.Generator
                                                 ) -> None:
    """``layout=False`` writes a model as builds before the map did: it loads and serves;
    only the map answers 409."""
    from musicrec.api import create_app
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.hybrid import HybridModel
    from musicrec.recommender.model_dir import write_hybrid_model_dir

    x, _ = clusters(rng, 2, 6)
    ids = [f"a{k}" for k in range(12)]
    model = write_hybrid_model_dir(
        tmp_path / "model", hybrid=HybridModel().blend(cf=None, content_ids=ids, content=x),
        layout=False)
    manifest = json.loads((model / "manifest.json").read_text())
    assert "layout" not in manifest and not (model / LAYOUT_FILE).exists()
    assert len(Recommender(model).similar("a0", n=3)) == 3
    client = create_app({"MODEL_DIR": model, "TESTING": True}).test_client()
    answer = client.get("/v1/map")
    assert answer.status_code == 409
    assert "no map of the content space (maps: none)" in answer.json["message"]
