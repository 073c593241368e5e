"""The index contract: every :class:`VectorIndex` backend passes the same suite."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musicrec.errors import ModelFormatError, ParameterError
from musicrec.recommender import index as index_module
from musicrec.recommender.index import (
    HNSW_FROM,
    Backend,
    Metric,
    VectorIndex,
    _anonymous_regions,
    exact_top_k,
    huge_pages,
    normalize_rows,
    served_recall,
)

BACKENDS = [Backend.ANNOY, Backend.HNSW]


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int = 20) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim))
    return normalize_rows(centres[rng.integers(clusters, size=n)]
                          + 0.5 * rng.standard_normal((n, dim)))


@pytest.fixture(params=BACKENDS, ids=[b.value for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend(request.param)


def test_ids_scores_and_round_trip(backend: Backend, rng: np.random.Generator,
                                   tmp_path: Path) -> None:
    vectors = normalize_rows(rng.standard_normal((500, 8)))
    ids = [f"x{i}" for i in range(500)]
    index = VectorIndex(8, backend=backend).add_items(vectors, ids)
    assert len(index) == 500 and "x3" in index and "y" not in index
    got, scores = index.query(vectors[3], 5)
    assert got[0] == "x3" and scores[0] == pytest.approx(1.0, abs=1e-5)
    pos, exact = exact_top_k(vectors, vectors[3], 5)
    assert got == [f"x{p}" for p in pos]
    np.testing.assert_allclose(scores, exact, atol=1e-4)  # the library's distance -> cosine
    index.save(tmp_path / "v")
    meta = json.loads((tmp_path / "v.json").read_text())
    assert meta["backend"] == backend.value and meta["n_items"] == 500
    assert {k: meta[k] for k in index.params} == index.params
    assert VectorIndex.file_of(tmp_path / "v") == tmp_path / (
        "v.ann" if backend is Backend.ANNOY else "v.hnsw")
    loaded = VectorIndex.load(tmp_path / "v", dim=8)
    assert loaded.backend is backend and loaded.params == index.params
    for row in (0, 7, 123):
        a, b = loaded.query(vectors[row], 10), index.query(vectors[row], 10)
        assert a[0] == b[0]
        np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_dot_metric_scores_are_inner_products(backend: Backend,
                                              rng: np.random.Generator) -> None:
    vectors = rng.standard_normal((300, 6)).astype(np.float32)
    index = VectorIndex(6, metric=Metric.DOT, backend=backend).add_items(
        vectors, [str(i) for i in range(300)])
    query = rng.standard_normal(6).astype(np.float32)
    pos, scores = index.query_positions(query, 20)
    np.testing.assert_allclose(scores, vectors[pos] @ query, rtol=1e-4, atol=1e-4)
    assert list(scores) == sorted(scores, reverse=True)
    assert pos[0] == exact_top_k(vectors, query, 1)[0][0]


def test_recall_on_clustered_vectors(backend: Backend, rng: np.random.Generator) -> None:
    vectors = clustered(rng, 3000, 16)
    index = VectorIndex(16, backend=backend).add_items(vectors, [str(i) for i in range(3000)])
    recall = []
    for row in rng.choice(3000, 100, replace=False):
        truth = set(exact_top_k(vectors, vectors[row], 10)[0].tolist())
        recall.append(len(truth & set(index.query_positions(vectors[row], 10)[0].tolist())))
    assert np.mean(recall) / 10 >= 0.95
    # As served: 100 candidates re-scored exactly.
    assert served_recall(index, vectors, candidates=100, sample=100) >= 0.99


def test_k_larger_than_the_index_and_zero_queries(backend: Backend,
                                                  rng: np.random.Generator) -> None:
    vectors = normalize_rows(rng.standard_normal((30, 4)))
    index = VectorIndex(4, backend=backend).add_items(vectors, [str(i) for i in range(30)])
    pos, scores = index.query_positions(vectors[0], 100)
    assert sorted(pos.tolist()) == list(range(30)) and len(scores) == 30
    _, zero = index.query_positions(np.zeros(4, dtype=np.float32), 5)
    np.testing.assert_array_equal(zero, np.zeros(5, dtype=np.float32))


def test_query_candidates_are_the_query_positions(backend: Backend,
                                                 rng: np.random.Generator) -> None:
    vectors = clustered(rng, 400, 8)
    index = VectorIndex(8, backend=backend).add_items(vectors, [str(i) for i in range(400)])
    for row in (0, 17, 399):
        pos = index.query_candidates(vectors[row], 25)
        assert pos.dtype == np.int64 and pos[0] == row
        np.testing.assert_array_equal(pos, index.query_positions(vectors[row], 25)[0])
    # float64 (a user profile) and a non-contiguous row are converted; k is capped.
    column = np.asfortranarray(vectors.astype(np.float64))[5]
    np.testing.assert_array_equal(index.query_candidates(column, 10),
                                  index.query_positions(vectors[5], 10)[0])
    assert len(index.query_candidates(vectors[0], 1000)) == 400
    with pytest.raises(ParameterError, match=r"a query of shape \(3,\) does not have dim=8"):
        index.query_candidates(np.zeros(3, dtype=np.float32), 3)
    with pytest.raises(ParameterError, match="the index is empty"):
        VectorIndex(8, backend=backend).query_candidates(vectors[0], 3)


def test_refusals(backend: Backend, rng: np.random.Generator, tmp_path: Path) -> None:
    vectors = normalize_rows(rng.standard_normal((50, 8)))
    ids = [f"x{i}" for i in range(50)]
    with pytest.raises(ParameterError, match="the index is empty"):
        VectorIndex(8, backend=backend).query_positions(vectors[0], 3)
    with pytest.raises(ParameterError, match="cannot save an empty index"):
        VectorIndex(8, backend=backend).save(tmp_path / "empty")
    with pytest.raises(ParameterError, match=r"vectors of shape \(2, 3\) do not have dim=8"):
        VectorIndex(8, backend=backend).add_items(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ParameterError, match="2 ids for 50 vectors"):
        VectorIndex(8, backend=backend).add_items(vectors, ["a", "b"])
    bad = vectors.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ParameterError, match="NaN or infinity"):
        VectorIndex(8, backend=backend).add_items(bad, ids)
    with pytest.raises(ParameterError, match="track id 'x1' appears more than once"):
        VectorIndex(8, backend=backend).add_items(vectors[:3], ["x0", "x1", "x1"])
    index = VectorIndex(8, backend=backend).add_items(vectors, ids)
    with pytest.raises(ParameterError, match="the index is built"):
        index.add_items(vectors, ids)
    with pytest.raises(ParameterError, match=r"a query of shape \(4,\) does not have dim=8"):
        index.query_positions(np.zeros(4), 3)
    index.save(tmp_path / "v")
    with pytest.raises(ModelFormatError, match="index has dim=8, expected dim=4"):
        VectorIndex.load(tmp_path / "v", dim=4)
    VectorIndex.file_of(tmp_path / "v").unlink()  # type: ignore[union-attr]
    with pytest.raises(ModelFormatError, match="index file missing"):
        VectorIndex.load(tmp_path / "v")
    assert VectorIndex.file_of(tmp_path / "v") is None


def test_a_truncated_id_list_is_refused(backend: Backend, rng: np.random.Generator,
                                        tmp_path: Path) -> None:
    vectors = normalize_rows(rng.standard_normal((40, 4)))
    VectorIndex(4, backend=backend).add_items(vectors, [str(i) for i in range(40)]).save(
        tmp_path / "v")
    np.save(tmp_path / "v.ids.npy", np.array([str(i) for i in range(39)]))
    with pytest.raises(ModelFormatError, match="holds 40 items, ids list 39"):
        VectorIndex.load(tmp_path / "v")


def test_parameters_are_validated() -> None:
    with pytest.raises(ParameterError, match="m=0 must be a positive integer"):
        VectorIndex(4, backend="hnsw", m=0)
    with pytest.raises(ParameterError, match="ef_search=1.5 must be a positive integer"):
        VectorIndex(4, ef_search=1.5)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="backend='kd' must be one of annoy, hnsw"):
        VectorIndex(4, backend="kd")
    assert VectorIndex(4, backend="hnsw", m=8).params == {
        "m": 8, "ef_construction": 100, "ef_search": 100}
    assert VectorIndex(4).params == {"n_trees": 20, "search_k_factor": 10}


def test_backend_choice_by_catalogue_size() -> None:
    assert HNSW_FROM == 100_000
    assert Backend.choose("auto", 99_999) is Backend.ANNOY
    assert Backend.choose("auto", 100_000) is Backend.HNSW
    assert Backend.choose("annoy", 10**7) is Backend.ANNOY
    assert Backend.choose("hnsw", 10) is Backend.HNSW
    with pytest.raises(ParameterError, match="index='faiss' must be one of annoy, hnsw, auto"):
        Backend.choose("faiss", 10)


def test_an_index_saved_before_backends_loads_as_annoy(rng: np.random.Generator,
                                                       tmp_path: Path) -> None:
    vectors = normalize_rows(rng.standard_normal((60, 4)))
    VectorIndex(4).add_items(vectors, [str(i) for i in range(60)]).save(tmp_path / "v")
    meta = json.loads((tmp_path / "v.json").read_text())
    for key in ("backend",):
        del meta[key]
    (tmp_path / "v.json").write_text(json.dumps(meta))
    assert VectorIndex.load(tmp_path / "v").backend is Backend.ANNOY
    meta["backend"] = "kd"
    (tmp_path / "v.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="unknown index backend 'kd'"):
        VectorIndex.load(tmp_path / "v")


def test_served_recall_counts_what_exact_search_finds(rng: np.random.Generator) -> None:
    vectors = clustered(rng, 400, 8)
    index = VectorIndex(8, backend="hnsw").add_items(vectors, [str(i) for i in range(400)])
    # Every item a candidate: re-scoring is exact search itself.
    assert served_recall(index, vectors, candidates=400, sample=50) == 1.0
    # Against vectors the index does not hold (rows reversed), its answers are wrong.
    assert served_recall(index, vectors[::-1], candidates=10, sample=50) < 0.2
    # Zero queries are skipped; with none left the recall is 1 by definition.
    assert served_recall(index, vectors, queries=np.zeros((3, 8)), candidates=10) == 1.0


def test_build_index_option_and_add_tracks_keep_the_backend(
        rng: np.random.Generator, tmp_path: Path) -> None:
    import pandas as pd

    from musicrec.cli import main
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.pipeline import add_tracks

    vectors = clustered(rng, 60, 8)
    table = pd.DataFrame(vectors, columns=[f"v{i}" for i in range(8)])
    table.insert(0, "track_id", [f"t{i:02d}" for i in range(60)])
    table.to_parquet(tmp_path / "vectors.parquet")
    model = tmp_path / "model"
    assert main(["build", "--content-vectors", str(tmp_path / "vectors.parquet"), "--out",
                 str(model), "--index", "hnsw"]) == 0
    index = Recommender(model).manifest["index"]
    assert index["backend"] == "hnsw" and index["m"] == 16
    assert (model / "index" / "content.hnsw").exists()
    add_tracks(model, ["new"], vectors[:1])
    rec = Recommender(model, exact_below=0)
    assert rec.manifest["index"]["backend"] == "hnsw" and len(rec.content_index or []) == 61
    assert rec.similar("new", n=1)[0].track_id == "t00"  # the same vector, through HNSW
    with pytest.raises(SystemExit, match="argument --index: invalid choice: 'kd'"):
        main(["build", "--content-vectors", str(tmp_path / "vectors.parquet"), "--out",
              str(tmp_path / "other"), "--index", "kd"])


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/maps and madvise are Linux's")
def test_huge_pages_finds_and_advises_a_new_anonymous_block() -> None:
    before = _anonymous_regions()
    # a private anonymous block, like the one malloc maps for hnswlib's graph
    block = mmap.mmap(-1, 16 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    block.write(b"x" * len(block))
    new = _anonymous_regions() - before
    assert any(end - start >= len(block) for start, end in new)
    assert huge_pages(new, min_bytes=2 * len(block)) == 0  # too small: left alone
    advised = huge_pages(new, min_bytes=len(block))
    # A kernel without MADV_COLLAPSE (before Linux 6.1) refuses; then nothing is claimed.
    assert advised == 0 or advised >= len(block)
    block.seek(0)
    assert block.read(3) == b"xxx"  # the contents survive the collapse
    block.close()


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/maps and madvise are Linux's")
def test_an_hnsw_index_loads_onto_huge_pages(rng: np.random.Generator, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = normalize_rows(rng.standard_normal((2000, 32)))
    VectorIndex(32, backend=Backend.HNSW).add_items(
        vectors, [str(i) for i in range(2000)]).save(tmp_path / "v")
    size = (tmp_path / "v.hnsw").stat().st_size
    calls: list[int] = []
    monkeypatch.setattr(index_module, "huge_pages",
                        lambda regions, *, min_bytes: calls.append(min_bytes) or 0)
    VectorIndex.load(tmp_path / "v")
    assert calls == []  # a small index stays on 4 kB pages
    # Past the threshold, in a fresh process (whose malloc maps this block by itself, as it
    # does every block past 32 MB), the block hnswlib allocated is found among new regions.
    script = f"""
from musicrec.recommender import index as m
found = []
m.HUGE_PAGES_FROM = 0
m.huge_pages = lambda regions, *, min_bytes: found.append(
    max(end - start for start, end in regions) >= min_bytes == {size} // 2) or 0
print(m.VectorIndex.load({str(tmp_path / "v")!r}).query_candidates(
    m.np.full(32, 0.1, dtype=m.np.float32), 1).tolist(), found)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-1] == "[True]" and len(calls) == 0
