"""Nearest-neighbour indexes over track vectors: Annoy or HNSW, with an exact numpy reference.

Neither library speaks the engine's language: Annoy has no id map, cannot add items after
``build`` and reports angular distance; hnswlib reports ``1 - similarity``. :class:`VectorIndex`
owns the map from dense position to raw id, turns either library's distance into a cosine
(or dot) score, refuses a mismatched dimension on load, and is rebuilt (then swapped in)
to add items. :class:`Backend` names the library; ``benchmarks/bench_index.py`` chose
them (see the README): Annoy on small catalogues (fast to build, mmap'd), HNSW from
:data:`HNSW_FROM` tracks on (an order of magnitude more queries per second at the same
recall).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.data.idmap import IdMap
from musicrec.errors import ModelFormatError, ParameterError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: Defaults chosen from benchmarks/bench_index.py (see the README).
DEFAULT_N_TREES = 20
DEFAULT_SEARCH_K_FACTOR = 10
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 100
DEFAULT_EF_SEARCH = 100
#: ``--index auto`` builds HNSW from this many tracks on, Annoy below.
HNSW_FROM = 100_000
#: Every backend's parameters, as the index metadata and the manifest name them.
INDEX_PARAMS = ("n_trees", "search_k_factor", "m", "ef_construction", "ef_search")


class Metric(StrEnum):
    """``cosine`` searches unit vectors by angle; ``dot`` by inner product."""

    COSINE = "cosine"
    DOT = "dot"


class Backend(StrEnum):
    """The library behind a :class:`VectorIndex`."""

    ANNOY = "annoy"
    HNSW = "hnsw"

    @classmethod
    def choose(cls, choice: str, n_items: int) -> Backend:
        """``annoy``, ``hnsw``, or ``auto``: HNSW from :data:`HNSW_FROM` items on."""
        if choice == "auto":
            return cls.HNSW if n_items >= HNSW_FROM else cls.ANNOY
        try:
            return cls(choice)
        except ValueError:
            raise ParameterError(f"index={choice!r} must be one of annoy, hnsw, auto") from None


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _anonymous_regions() -> set[tuple[int, int]]:
    """This process's anonymous memory mappings, as ``(start, end)`` addresses (Linux)."""
    regions = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) == 5 and fields[4] == "0":  # no path, inode 0: anonymous
                start, end = fields[0].split("-")
                regions.add((int(start, 16), int(end, 16)))
    return regions


_MADV_HUGEPAGE, _MADV_COLLAPSE = 14, 25
#: HNSW files from this size on are loaded onto huge pages, which pay off where the index
#: outgrows what the TLB covers with 4 kB pages (a few MB). From 32 MB on, glibc's malloc
#: always maps a block of its own (its largest dynamic mmap threshold), the region found.
HUGE_PAGES_FROM = 2**25


def huge_pages(regions: set[tuple[int, int]], *, min_bytes: int) -> int:
    """Back the anonymous ``regions`` of at least ``min_bytes`` with 2 MB pages; the bytes
    advised.

    An index searched at random over hundreds of MB spends much of each query on TLB
    misses with 4 kB pages (``benchmarks/bench_index.py``: hnswlib at 1M 64-d vectors
    answers 1.3-1.5 times more queries per second on huge pages). The kernel here leaves
    transparent huge pages to ``madvise``; ``MADV_COLLAPSE`` (Linux 6.1) converts the
    pages already loaded at once. Anything refused is left as it is: it is only speed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    advised = 0
    for start, end in sorted(regions):
        if end - start < min_bytes:
            continue
        for advice in (_MADV_HUGEPAGE, _MADV_COLLAPSE):
            if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start),
                            ctypes.c_int(advice)) != 0:
                log.debug("madvise(%d) on %d bytes refused: errno %d", advice, end - start,
                          ctypes.get_errno())
                break
        else:
            advised += end - start
    return advised


class _Annoy:
    """Annoy: random-projection trees in one mmap'd file (``.ann``)."""

    suffix = ".ann"

    def __init__(self, dim: int, metric: Metric, params: dict[str, Any]) -> None:
        from annoy import AnnoyIndex

        self.n_trees = int(params["n_trees"])
        self.search_k_factor = int(params["search_k_factor"])
        self.lib = AnnoyIndex(dim, "angular" if metric is Metric.COSINE else "dot")
        self.metric = metric

    def build(self, vectors: np.ndarray, seed: int, threads: int) -> None:
        self.lib.set_seed(seed)
        for i, vector in enumerate(vectors):
            self.lib.add_item(i, vector)
        self.lib.build(self.n_trees, threads)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        search_k = self.search_k_factor * k * self.n_trees
        pos, dist = self.lib.get_nns_by_vector(vector, k, search_k, include_distances=True)
        dist_arr = np.asarray(dist, dtype=np.float32)
        if self.metric is Metric.COSINE:
            # Annoy normalises the query itself; a zero query has no angle to anything.
            scores = 1.0 - dist_arr**2 / 2.0 if vector.any() else np.zeros_like(dist_arr)
        else:
            scores = dist_arr
        return np.asarray(pos, dtype=np.int64), scores

    def positions(self, vector: np.ndarray, k: int) -> np.ndarray:
        search_k = self.search_k_factor * k * self.n_trees
        return np.asarray(self.lib.get_nns_by_vector(vector, k, search_k), dtype=np.int64)

    def save(self, file: Path) -> None:
        self.lib.save(str(file))

    def load(self, file: Path) -> int:
        self.lib.load(str(file))  # mmap: processes that load the same file share its pages
        return int(self.lib.get_n_items())


class _HNSW:
    """hnswlib: a navigable small-world graph, read into memory (``.hnsw``).

    Not mmap'd: ``musicrec serve`` loads the model before gunicorn forks its workers, so
    they share the pages copy-on-write (searching does not write to them).
    """

    suffix = ".hnsw"

    def __init__(self, dim: int, metric: Metric, params: dict[str, Any]) -> None:
        import hnswlib

        self.m = int(params["m"])
        self.ef_construction = int(params["ef_construction"])
        self.ef_search = int(params["ef_search"])
        # hnswlib's "cosine" normalises vectors and queries itself (a zero query stays
        # zero); both spaces report 1 - similarity.
        self.lib = hnswlib.Index(space="cosine" if metric is Metric.COSINE else "ip", dim=dim)
        self._ef = 0

    def build(self, vectors: np.ndarray, seed: int, threads: int) -> None:
        self.lib.init_index(max_elements=max(len(vectors), 1), M=self.m,
                            ef_construction=self.ef_construction, random_seed=seed)
        self.lib.add_items(vectors, np.arange(len(vectors)), num_threads=threads)

    def _set_ef(self, k: int) -> None:
        ef = max(self.ef_search, k)  # the search keeps ef candidates; it needs k of them
        if ef != self._ef:
            self.lib.set_ef(ef)
            self._ef = ef

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._set_ef(k)
        labels, dist = self.lib.knn_query(vector, k=k, num_threads=1)
        return labels[0].astype(np.int64), 1.0 - dist[0]

    def positions(self, vector: np.ndarray, k: int) -> np.ndarray:
        self._set_ef(k)
        # hnswlib's labels are uint64 (our positions, < 2**63): viewed as int64, not copied.
        return self.lib.knn_query(vector, k=k, num_threads=1)[0][0].view(np.int64)

    def save(self, file: Path) -> None:
        self.lib.save_index(str(file))

    def load(self, file: Path) -> int:
        size = file.stat().st_size
        before = (_anonymous_regions() if sys.platform == "linux" and size >= HUGE_PAGES_FROM
                  else None)
        self.lib.load_index(str(file))
        if before is not None:  # the graph and vectors: one block the size of the file
            huge_pages(_anonymous_regions() - before, min_bytes=size // 2)
        return int(self.lib.get_current_count())


_ENGINES: dict[Backend, type[_Annoy] | type[_HNSW]] = {Backend.ANNOY: _Annoy,
                                                        Backend.HNSW: _HNSW}


class VectorIndex:
    """An approximate nearest-neighbour index with raw ids and cosine (or dot) scores.

    Parameters
    ----------
    dim : int
    metric : Metric
    backend : Backend
        ``annoy`` or ``hnsw``; the parameters of the other backend are ignored.
    n_trees : int
        Annoy: more trees mean better recall, a bigger index and a slower build.
    search_k_factor : int
        Annoy: nodes inspected per query = ``search_k_factor * k * n_trees`` (Annoy's
        default is ``k * n_trees``); more means better recall and slower queries.
    m : int
        HNSW: links per node; more means better recall, more memory, a slower build.
    ef_construction : int
        HNSW: candidates kept while inserting; more means a better graph, a slower build.
    ef_search : int
        HNSW: candidates kept while searching (at least ``k``); more means better recall
        and slower queries.
    seed : int
    threads : int
        Build threads (``-1``: every core). Searching uses one thread per query.
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: Metric | str = Metric.COSINE,
        backend: Backend | str = Backend.ANNOY,
        n_trees: int = DEFAULT_N_TREES,
        search_k_factor: int = DEFAULT_SEARCH_K_FACTOR,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        if dim < 1:
            raise ParameterError(f"dim={dim} must be a positive integer")
        for name, value in (("n_trees", n_trees), ("search_k_factor", search_k_factor),
                            ("m", m), ("ef_construction", ef_construction),
                            ("ef_search", ef_search)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ParameterError(f"{name}={value!r} must be a positive integer")
        try:
            self.backend = Backend(backend)
        except ValueError:
            raise ParameterError(f"backend={backend!r} must be one of "
                                 f"{', '.join(b.value for b in Backend)}") from None
        self.dim = dim
        self.metric = Metric(metric)
        self.n_trees = n_trees
        self.search_k_factor = search_k_factor
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.seed = seed
        self.threads = threads
        self._engine: _Annoy | _HNSW | None = None
        self._ids: IdMap | None = None

    @property
    def params(self) -> dict[str, int]:
        """The backend's own parameters (what the manifest records)."""
        if self.backend is Backend.ANNOY:
            return {"n_trees": self.n_trees, "search_k_factor": self.search_k_factor}
        return {"m": self.m, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search}

    def _new_engine(self) -> _Annoy | _HNSW:
        return _ENGINES[self.backend](self.dim, self.metric, self.params)

    def add_items(self, vectors: np.ndarray, ids: list[str] | np.ndarray) -> VectorIndex:
        """Add every vector under its raw id and build the index (once: it is static)."""
        if self._engine is not None:
            raise ParameterError("the index is built; build a new one to add items")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ParameterError(f"vectors of shape {vectors.shape} do not have dim={self.dim}")
        if len(ids) != len(vectors):
            raise ParameterError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not np.isfinite(vectors).all():
            raise ParameterError("vectors contain NaN or infinity")
        self._ids = IdMap(ids, kind="track")
        engine = self._new_engine()
        engine.build(vectors, self.seed,
                     (os.cpu_count() or 1) if self.threads < 1 else self.threads)
        self._engine = engine
        return self

    def __len__(self) -> int:
        return 0 if self._ids is None else len(self._ids)

    def __contains__(self, track_id: object) -> bool:
        return self._ids is not None and track_id in self._ids

    @property
    def ids(self) -> IdMap:
        if self._ids is None:
            raise ParameterError("the index is empty")
        return self._ids

    def query_positions(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense positions and scores (cosine or dot) of the ``k`` nearest items, best first."""
        if self._engine is None:
            raise ParameterError("the index is empty")
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ParameterError(f"a query of shape {vector.shape} does not have dim={self.dim}")
        return self._engine.search(vector, min(k, len(self)))

    def query_candidates(self, vector: np.ndarray, k: int) -> np.ndarray:
        """Dense positions of the ``k`` nearest items, best first, without their scores.

        The request path's search: callers that re-score the candidates exactly
        (:class:`~musicrec.recommender.facade.Recommender`) need no score and no copy; a
        float32 vector of shape ``(dim,)`` goes to the library as it is.
        """
        if self._engine is None or self._ids is None:
            raise ParameterError("the index is empty")
        if vector.dtype != np.float32 or vector.shape != (self.dim,):
            vector = np.asarray(vector, dtype=np.float32)
            if vector.shape != (self.dim,):
                raise ParameterError(f"a query of shape {vector.shape} does not have "
                                     f"dim={self.dim}")
        return self._engine.positions(vector, min(k, len(self._ids)))

    def query(self, vector: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """Raw ids and scores of the ``k`` nearest items, best first."""
        pos, scores = self.query_positions(vector, k)
        return self.ids.to_ids(pos), scores

    def save(self, path: str | Path) -> None:
        """Write ``<path>.ann`` (or ``.hnsw``), ``<path>.ids.npy`` and ``<path>.json``."""
        if self._engine is None or self._ids is None:
            raise ParameterError("cannot save an empty index")
        path = Path(path)
        self._engine.save(path.with_suffix(self._engine.suffix))
        np.save(path.with_suffix(".ids.npy"), self._ids.to_array(), allow_pickle=False)
        meta = {"format_version": FORMAT_VERSION, "dim": self.dim, "metric": self.metric.value,
                "backend": self.backend.value, **self.params, "seed": self.seed,
                "n_items": len(self._ids)}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")

    @staticmethod
    def file_of(path: str | Path) -> Path | None:
        """The library's file of a saved index (``None`` when no index is saved there)."""
        path = Path(path)
        for engine in _ENGINES.values():
            if path.with_suffix(engine.suffix).exists():
                return path.with_suffix(engine.suffix)
        return None

    @classmethod
    def load(cls, path: str | Path, *, dim: int | None = None) -> VectorIndex:
        """Load a saved index (Annoy's is mmap'd); ``dim``, when given, must match."""
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: cannot read index metadata ({exc})") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(f"{path}: index format {meta.get('format_version')!r} is "
                                   f"not supported (expected {FORMAT_VERSION})")
        if dim is not None and meta["dim"] != dim:
            raise ModelFormatError(f"{path}: index has dim={meta['dim']}, expected dim={dim}")
        backend = meta.get("backend", Backend.ANNOY.value)  # indexes before HNSW: Annoy
        if backend not in set(Backend):
            raise ModelFormatError(f"{path}: unknown index backend {backend!r}")
        index = cls(meta["dim"], metric=meta["metric"], backend=backend, seed=meta["seed"],
                    **{k: meta[k] for k in INDEX_PARAMS if k in meta})
        ids = np.load(path.with_suffix(".ids.npy"), allow_pickle=False)
        index._ids = IdMap.from_array(ids, kind="track")
        engine = index._new_engine()
        file = path.with_suffix(engine.suffix)
        if not file.exists():
            raise ModelFormatError(f"{file}: index file missing")
        n_items = engine.load(file)
        if n_items != len(index._ids):
            raise ModelFormatError(f"{file}: holds {n_items} items, ids list {len(index._ids)}")
        index._engine = engine
        return index


def served_recall(
    index: VectorIndex, vectors: np.ndarray, *, candidates: int, n: int = 10,
    queries: np.ndarray | None = None, sample: int = 200, seed: int = 0,
) -> float:
    """Recall@n of the index as the engine serves it, against exact search.

    For ``sample`` rows of ``queries`` (default: of ``vectors``, the indexed vectors in
    index order): the index's ``candidates`` nearest items re-scored exactly, top ``n``,
    against the exact top ``n`` of ``vectors @ query``. Zero queries are skipped.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    pool = vectors if queries is None else np.asarray(queries, dtype=np.float32)
    rows = np.random.default_rng(seed).choice(len(pool), size=min(sample, len(pool)),
                                              replace=False)
    hits = total = 0
    for query in pool[rows]:
        if not query.any():
            continue
        truth, _ = exact_top_k(vectors, query, n)
        pos, _ = index.query_positions(query, candidates)
        top, _ = exact_top_k(vectors[pos], query, n)
        hits += len(set(truth.tolist()) & set(pos[top].tolist()))
        total += len(truth)
    return hits / total if total else 1.0


def exact_top_k(
    matrix: np.ndarray, vector: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k positions and scores of ``matrix @ vector`` (the reference for recall)."""
    scores = matrix @ vector
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return order, scores[order]
