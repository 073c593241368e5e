"""Nearest-neighbour indexes over track vectors: Annoy, with an exact numpy reference.

Annoy has no id map, cannot add items after ``build`` and reports angular distance, not
cosine. :class:`VectorIndex` owns the map from dense position to raw id, converts the
angular distance ``d`` of unit vectors to a cosine (``cos = 1 - d**2 / 2``), refuses a
mismatched dimension on load, and is rebuilt (then swapped in) to add items.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.data.idmap import IdMap
from musicrec.errors import ModelFormatError, ParameterError

FORMAT_VERSION = 1
#: Defaults chosen from benchmarks/bench_index.py (see the README).
DEFAULT_N_TREES = 20
DEFAULT_SEARCH_K_FACTOR = 10


class Metric(StrEnum):
    """``cosine`` searches unit vectors by angle; ``dot`` by inner product."""

    COSINE = "cosine"
    DOT = "dot"


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class VectorIndex:
    """An Annoy index with raw ids and cosine (or dot) scores.

    Parameters
    ----------
    dim : int
    metric : Metric
    n_trees : int
        More trees: better recall, bigger index, slower build.
    search_k_factor : int
        Nodes inspected per query = ``search_k_factor * k * n_trees`` (Annoy's default
        is ``k * n_trees``); more means better recall and slower queries.
    seed : int
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: Metric | str = Metric.COSINE,
        n_trees: int = DEFAULT_N_TREES,
        search_k_factor: int = DEFAULT_SEARCH_K_FACTOR,
        seed: int = 0,
    ) -> None:
        if dim < 1:
            raise ParameterError(f"dim={dim} must be a positive integer")
        if n_trees < 1 or search_k_factor < 1:
            raise ParameterError("n_trees and search_k_factor must be positive integers")
        self.dim = dim
        self.metric = Metric(metric)
        self.n_trees = n_trees
        self.search_k_factor = search_k_factor
        self.seed = seed
        self._annoy = None
        self._ids: IdMap | None = None

    def _new_annoy(self) -> Any:
        from annoy import AnnoyIndex

        return AnnoyIndex(self.dim, "angular" if self.metric is Metric.COSINE else "dot")

    def add_items(self, vectors: np.ndarray, ids: list[str] | np.ndarray) -> VectorIndex:
        """Add every vector under its raw id and build the index (once: Annoy is static)."""
        if self._annoy is not None:
            raise ParameterError("the index is built; build a new one to add items")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ParameterError(f"vectors of shape {vectors.shape} do not have dim={self.dim}")
        if len(ids) != len(vectors):
            raise ParameterError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not np.isfinite(vectors).all():
            raise ParameterError("vectors contain NaN or infinity")
        self._ids = IdMap(ids, kind="track")
        annoy = self._new_annoy()
        annoy.set_seed(self.seed)
        for i, vector in enumerate(vectors):
            annoy.add_item(i, vector)
        annoy.build(self.n_trees, 1)
        self._annoy = annoy
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
        """Dense positions and scores (cosine or dot) of the ``k`` nearest items."""
        if self._annoy is None:
            raise ParameterError("the index is empty")
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ParameterError(f"a query of shape {vector.shape} does not have dim={self.dim}")
        k = min(k, len(self))
        search_k = self.search_k_factor * k * self.n_trees
        pos, dist = self._annoy.get_nns_by_vector(vector, k, search_k, include_distances=True)
        dist_arr = np.asarray(dist, dtype=np.float32)
        if self.metric is Metric.COSINE:
            norm = float(np.linalg.norm(vector))
            scores = 1.0 - dist_arr**2 / 2.0 if norm > 0 else np.zeros_like(dist_arr)
        else:
            scores = dist_arr
        return np.asarray(pos, dtype=np.int64), scores

    def query(self, vector: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """Raw ids and scores of the ``k`` nearest items, best first."""
        pos, scores = self.query_positions(vector, k)
        return self.ids.to_ids(pos), scores

    def save(self, path: str | Path) -> None:
        """Write ``<path>.ann``, ``<path>.ids.npy`` and ``<path>.json``."""
        if self._annoy is None or self._ids is None:
            raise ParameterError("cannot save an empty index")
        path = Path(path)
        self._annoy.save(str(path.with_suffix(".ann")))
        np.save(path.with_suffix(".ids.npy"), self._ids.to_array(), allow_pickle=False)
        meta = {"format_version": FORMAT_VERSION, "dim": self.dim, "metric": self.metric.value,
                "n_trees": self.n_trees, "search_k_factor": self.search_k_factor,
                "seed": self.seed, "n_items": len(self._ids)}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, *, dim: int | None = None) -> VectorIndex:
        """Memory-map a saved index; ``dim``, when given, must match the saved one."""
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
        index = cls(meta["dim"], metric=meta["metric"], n_trees=meta["n_trees"],
                    search_k_factor=meta["search_k_factor"], seed=meta["seed"])
        ids = np.load(path.with_suffix(".ids.npy"), allow_pickle=False)
        index._ids = IdMap.from_array(ids, kind="track")
        annoy = index._new_annoy()
        ann = path.with_suffix(".ann")
        if not ann.exists():
            raise ModelFormatError(f"{ann}: index file missing")
        annoy.load(str(ann))  # mmap: processes that load the same file share its pages
        if annoy.get_n_items() != len(index._ids):
            raise ModelFormatError(f"{ann}: holds {annoy.get_n_items()} items, "
                                   f"ids list {len(index._ids)}")
        index._annoy = annoy
        return index


def exact_top_k(
    matrix: np.ndarray, vector: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k positions and scores of ``matrix @ vector`` (the reference for recall)."""
    scores = matrix @ vector
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return order, scores[order]
