"""The :class:`Recommender` facade over a model directory: what the CLI and the API use.

A model directory (written by :func:`write_hybrid_model_dir`) holds::

    manifest.json        format, versions, embedder, dimensions, blend, counts, fingerprints
    catalog.parquet      track metadata
    tracks.npy           raw track ids, in index order
    content.npy          unit content vectors [n_tracks, d_content] (zero rows: no content)
    has_content.npy      which tracks have content
    items.npy            blended CF-space track vectors [n_tracks, d_cf]
    similar_cf.npy       unit CF-space vectors for track-to-track similarity
    evidence.npy         listeners per track; blend_weight.npy: w_i of the blend
    mapping.npy          the content -> CF ridge matrix (when learned)
    tags.npy             tag probabilities [n_tracks, n_tags] from a tagging embedder
                         (zero rows: no audio); the names are the manifest's "tags"
    cf/                  the CF model (RecommenderBase.save): user vectors, plays, id maps
    layout.npz           the web page's catalogue map, per space (recommender/layout.py;
                         absent from older models)
    index/content.*      Annoy or HNSW (cosine) over content vectors
    index/cf.*           Annoy or HNSW (cosine) over unit blended vectors
    index/user.*         Annoy or HNSW (dot) over blended vectors, for user recommendations

Arrays are loaded with ``mmap_mode="r"`` and Annoy files are mmap'd, so several server
processes share one copy in memory; HNSW indexes are read into memory by the gunicorn
master before it forks, and shared copy-on-write.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.data.catalog import TrackCatalog
from musicrec.data.idmap import IdMap
from musicrec.errors import CapabilityError, ModelFormatError, ParameterError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.cf import CFModel
from musicrec.recommender.hybrid import HybridModel
from musicrec.recommender.index import Backend, Metric, VectorIndex, served_recall
from musicrec.recommender.layout import LAYOUT_FILE, write_hybrid_layouts
from musicrec.recommender.model_dir import read_manifest, write_model_dir
from musicrec.recommender.radio import RadioPage, RadioState
from musicrec.recommender.served import minmax_rows
from musicrec.recommender.tags import DEFAULT_TAU, TagSearch, TextQuery, TrackTags
from musicrec.recommender.types import Recommendation

log = logging.getLogger(__name__)

#: Candidates fetched from each index per result, before exact re-scoring.
CANDIDATES_PER_RESULT = 10
MIN_CANDIDATES = 100
#: Below this many tracks, scoring every track exactly is faster than an Annoy search
#: (benchmarks/bench_index.py: 0.15 ms exact vs 0.14-1.7 ms Annoy at 10k 64-d vectors),
#: so the indexes are used only for larger catalogues.
EXACT_BELOW = 10_000
#: Sampled queries per index for the recall stored in the manifest at build time.
RECALL_SAMPLE = 200


@dataclass
class AudioQuery:
    """The answer to a query by example."""

    neighbours: list[Recommendation]
    match: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TextSearch:
    """The answer to a search by words: ranked tracks, each with the tags that explain
    it (``because``), and how the query mapped onto tags (``parsed``: ``parsed.weak`` is
    True when no word of it matched a tag). On a CLAP model (``encoder="clap"``) the
    scores are text-to-audio cosines and ``parsed`` is None."""

    query: str
    results: list[Recommendation]
    parsed: TextQuery | None
    tag_names: list[str]
    encoder: str

    @property
    def weak(self) -> bool:
        return self.parsed is not None and self.parsed.weak

    def to_dict(self) -> dict[str, Any]:
        parts = [] if self.parsed is None else [p.to_dict(self.tag_names)
                                                for p in self.parsed.parts]
        return {"q": self.query, "weak_match": self.weak, "text_encoder": self.encoder,
                "parts": parts}


def write_hybrid_model_dir(
    out: str | Path,
    *,
    hybrid: HybridModel,
    catalog: TrackCatalog | None = None,
    manifest: dict[str, Any] | None = None,
    n_trees: int | None = None,
    search_k_factor: int | None = None,
    extra_files: dict[str, Any] | None = None,
    index: str = "auto",
    index_params: dict[str, int] | None = None,
    threads: int | None = None,
    tags: TrackTags | None = None,
    layout: bool = True,
) -> Path:
    """Write a fitted :class:`HybridModel` (with its indexes) as a model directory;
    ``tags``, when given, are stored as ``tags.npy`` in the model's track order;
    ``layout`` stores the web page's catalogue map (:mod:`musicrec.recommender.layout`).

    ``index`` is ``annoy``, ``hnsw`` or ``auto`` (:meth:`Backend.choose` by catalogue
    size); ``index_params`` are the backend's own parameters (``n_trees`` and
    ``search_k_factor`` are Annoy's, kept as keywords), ``threads`` the build threads
    (``-1``: every core; default: one for Annoy, whose build is then reproducible byte for
    byte, every core for HNSW, whose parallel build is not). The manifest's ``index``
    records the backend, its parameters and each index's recall@10 against exact search,
    measured here as the engine serves it (candidates re-scored exactly;
    ``served_recall_at_10`` is 1 where the catalogue is small enough to be searched
    exactly).
    """
    tracks = hybrid.tracks_
    if catalog is None:
        catalog = TrackCatalog.from_ids(tracks.ids)
    missing = [t for t in tracks if t not in catalog]
    if missing:
        extra = TrackCatalog.from_ids(missing).frame
        import pandas as pd

        catalog = TrackCatalog(pd.concat([catalog.frame, extra], ignore_index=True))
    backend = Backend.choose(index, len(tracks))
    params = dict(index_params or {})
    if n_trees:
        params["n_trees"] = n_trees
    if search_k_factor:
        params["search_k_factor"] = search_k_factor
    index_opts: dict[str, Any] = {"backend": backend, **params}
    probe = VectorIndex(1, **index_opts)  # validates the parameters before any work
    if threads is None:
        threads = 1 if backend is Backend.ANNOY else -1
    recall: dict[str, float] = {}

    def build_index(name: str, vectors: np.ndarray, ids: np.ndarray, tmp: Path, *,
                    metric: Metric = Metric.COSINE, queries: np.ndarray | None = None) -> None:
        built = VectorIndex(vectors.shape[1], metric=metric, threads=threads,
                            **index_opts).add_items(vectors, ids)
        built.save(tmp / "index" / name)
        recall[name] = round(served_recall(built, vectors, queries=queries,
                                           candidates=MIN_CANDIDATES,
                                           sample=RECALL_SAMPLE), 4)

    def write(tmp: Path) -> dict[str, Any]:
        files = ["catalog.parquet", "tracks.npy", "content.npy", "has_content.npy",
                 "items.npy", "similar_cf.npy", "evidence.npy", "blend_weight.npy"]
        unit_cf = hybrid.unit_cf()
        catalog.save(tmp / "catalog.parquet")
        np.save(tmp / "tracks.npy", tracks.to_array(), allow_pickle=False)
        np.save(tmp / "content.npy", hybrid.content_, allow_pickle=False)
        np.save(tmp / "has_content.npy", hybrid.has_content_, allow_pickle=False)
        np.save(tmp / "items.npy", hybrid.item_vectors_, allow_pickle=False)
        np.save(tmp / "similar_cf.npy", unit_cf, allow_pickle=False)
        np.save(tmp / "evidence.npy", hybrid.evidence_, allow_pickle=False)
        np.save(tmp / "blend_weight.npy", hybrid.blend_weight_, allow_pickle=False)
        if hybrid.mapping_ is not None:
            np.save(tmp / "mapping.npy", hybrid.mapping_, allow_pickle=False)
            files.append("mapping.npy")
        if hybrid.cf_ is not None:
            hybrid.cf_.save(tmp / "cf")
            files.append("cf")
        (tmp / "index").mkdir()
        ids = tracks.ids
        suffix = ".ann" if backend is Backend.ANNOY else ".hnsw"
        if hybrid.has_content:
            rows = np.flatnonzero(hybrid.has_content_)
            build_index("content", np.asarray(hybrid.content_[rows]), ids[rows], tmp)
            files.append(f"index/content{suffix}")
        if hybrid.has_cf:
            assert hybrid.cf_ is not None
            build_index("cf", unit_cf, ids, tmp)
            build_index("user", np.asarray(hybrid.item_vectors_), ids, tmp, metric=Metric.DOT,
                        queries=np.asarray(hybrid.cf_.user_factors_))
            files += [f"index/cf{suffix}", f"index/user{suffix}"]
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
            files.append(name)
        tag_info = None
        if tags is not None:
            aligned = tags.aligned(tracks)
            np.save(tmp / "tags.npy", aligned, allow_pickle=False)
            files.append("tags.npy")
            tag_info = {"names": list(tags.names), "source": tags.source,
                        "tracks": int((aligned.sum(axis=1) > 0).sum())}
        # the catalogue map of the web page (h18: recommender/layout.py; optional on load)
        maps = write_hybrid_layouts(tmp, hybrid, unit_cf) if layout else {}
        files += [LAYOUT_FILE] if maps else []
        kind = "hybrid" if hybrid.has_cf and hybrid.has_content else (
            "cf" if hybrid.has_cf else "content")
        counts: dict[str, Any] = {"tracks": len(tracks),
                                  "tracks_with_content": int(hybrid.has_content_.sum()),
                                  "tracks_with_plays": int((hybrid.evidence_ > 0).sum())}
        if hybrid.cf_ is not None:
            counts["users"] = len(hybrid.cf_.users_)
            counts["interactions"] = int(hybrid.cf_.user_items_.nnz)
        return {
            **(manifest or {}),
            "kind": kind,
            "files": files,
            "counts": {**counts, **(manifest or {}).get("counts", {})},
            "dims": {"content": int(hybrid.content_.shape[1]),
                     "cf": int(hybrid.item_vectors_.shape[1])},
            "blend": hybrid.get_params(),
            "cf": None if hybrid.cf_ is None else {**hybrid.cf_.get_params(),
                                                   "seed": hybrid.cf_.seed_,
                                                   "model": hybrid.cf_.name},
            "index": {"backend": backend.value, **probe.params, "exact_below": EXACT_BELOW,
                      "recall_sample": RECALL_SAMPLE, "candidates": MIN_CANDIDATES,
                      "index_recall_at_10": recall,
                      "served_recall_at_10": {k: 1.0 if len(tracks) < EXACT_BELOW else v
                                              for k, v in recall.items()}},
            **({} if tag_info is None else {"tags": tag_info}),
            **({"layout": maps} if maps else {}),
        }

    return write_model_dir(out, write)


class Recommender:
    """Recommendations, similar tracks and query by example from one model directory."""

    def __init__(self, model_dir: str | Path, *, exact_below: int = EXACT_BELOW,
                 candidates: int | None = None) -> None:
        """Load a model directory.

        Parameters
        ----------
        model_dir : str or Path
        exact_below : int
            Catalogues smaller than this are searched exactly; larger ones through the
            indexes, with exact re-scoring of their candidates.
        candidates : int or None
            Candidates fetched from each index per request (at least ``n``; HNSW searches
            with ``ef`` of at least this many). ``None``: ``max(100, 10 * n)``, with which
            the manifest's recall was measured. Fewer are faster, with less recall and
            less room for the per-artist filter.
        """
        if candidates is not None and (isinstance(candidates, bool)
                                       or not isinstance(candidates, int) or candidates < 1):
            raise ParameterError(f"candidates={candidates!r} must be a positive integer")
        self.model_dir = Path(model_dir)
        self.exact_below = exact_below
        self.candidates = candidates
        self.manifest = read_manifest(self.model_dir)
        d = self.model_dir
        try:
            self.catalog = TrackCatalog.load(d / "catalog.parquet")
            self.tracks = IdMap.from_array(np.load(d / "tracks.npy", allow_pickle=False),
                                           kind="track")
            self.content = np.load(d / "content.npy", mmap_mode="r")
            self.items = np.load(d / "items.npy", mmap_mode="r")
            # Unit CF-space vectors for similarity, precomputed at build time so server
            # processes share them through the page cache instead of each computing a copy.
            self.unit_items = np.load(d / "similar_cf.npy", mmap_mode="r")
            self.has_content = np.load(d / "has_content.npy", allow_pickle=False)
            self.evidence = np.load(d / "evidence.npy", mmap_mode="r")
            self.blend_weight = np.load(d / "blend_weight.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{d}: model directory is incomplete or corrupt ({exc})"
                                   ) from None
        dims = self.manifest.get("dims", {})
        n = len(self.tracks)
        if self.content.shape != (n, dims.get("content")) or \
                self.items.shape != (n, dims.get("cf")) or \
                self.unit_items.shape != self.items.shape or self.has_content.shape != (n,):
            raise ModelFormatError(f"{d}: array shapes do not match the manifest's dims {dims}")
        by_id = dict(zip(self.catalog.frame["track_id"], self.catalog.frame["artist"],
                         strict=True))
        self.artist_of = np.array([by_id.get(t, "") for t in self.tracks], dtype=object)
        self._any_content = bool(self.has_content.any())
        # Plain ndarray views of the mmap'd arrays for the request path: the same pages,
        # without np.memmap's per-slice bookkeeping (a third of a small model's request).
        self._content = self.content.view(np.ndarray)
        self._unit_items = self.unit_items.view(np.ndarray)
        self.cf = CFModel.load(d / "cf") if (d / "cf").exists() else None
        #: the model chosen on validation that ranks known users (``build --cf auto``)
        self.served = (RecommenderBase.load(d / "served") if (d / "served").exists()
                       else None)
        self.hybrid = self._hybrid()
        #: name -> (index, the model's track index of each index position, or None when
        #: the index holds every track in the model's order)
        self._indexes: dict[str, tuple[VectorIndex, np.ndarray | None]] = {}
        for name, dim in (("content", dims.get("content")), ("cf", dims.get("cf")),
                          ("user", dims.get("cf"))):
            path = d / "index" / name
            if VectorIndex.file_of(path) is not None:
                index = VectorIndex.load(path, dim=dim)
                rows = None if index.ids == self.tracks else self.tracks.to_idx_many(index.ids)
                self._indexes[name] = (index, rows)
        self.content_index = self._indexes.get("content", (None, None))[0]
        self.cf_index = self._indexes.get("cf", (None, None))[0]
        self.user_index = self._indexes.get("user", (None, None))[0]
        self._embedder: Any = None
        self._tag_search: dict[tuple[str, float], TagSearch] = {}
        self.tags: np.ndarray | None = None
        self.tag_names: list[str] = list(self.manifest.get("tags", {}).get("names", []))
        if (d / "tags.npy").exists():
            self.tags = np.load(d / "tags.npy", mmap_mode="r")
            if self.tags.shape != (n, len(self.tag_names)):
                raise ModelFormatError(f"{d}: tags.npy has shape {self.tags.shape}; the "
                                       f"manifest names {len(self.tag_names)} tags of {n} "
                                       "tracks")
        self.fingerprints: Any = None
        if (d / "fingerprints").exists():
            from musicrec.embedding.fingerprint import FingerprintIndex

            self.fingerprints = FingerprintIndex.load(d / "fingerprints", mmap=True)

    @classmethod
    def load(cls, model_dir: str | Path) -> Recommender:
        return cls(model_dir)

    def _hybrid(self) -> HybridModel:
        params = self.manifest.get("blend", {})
        model = HybridModel(**params)
        model.tracks_ = self.tracks
        model.cf_ = self.cf
        model.users_ = self.cf.users_ if self.cf is not None else IdMap([], kind="user")
        model.n_users_ = len(model.users_)
        model.n_items_ = len(self.tracks)
        model.user_items_ = sp.csr_matrix((model.n_users_, model.n_items_), dtype=np.float32)
        if self.cf is not None:
            ui = self.cf.user_items_
            model.user_items_ = sp.csr_matrix((ui.data, ui.indices, ui.indptr),
                                              shape=(model.n_users_, model.n_items_))
        model.content_ = self.content.view(np.ndarray)
        model.has_content_ = self.has_content
        model.item_vectors_ = self.items.view(np.ndarray)
        model.evidence_ = self.evidence
        model.blend_weight_ = self.blend_weight
        mapping = self.model_dir / "mapping.npy"
        model.mapping_ = np.load(mapping) if mapping.exists() else None
        return model

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    # -- helpers ---------------------------------------------------------------------
    def _require_cf(self, what: str) -> CFModel:
        if self.cf is None:
            raise CapabilityError(f"this is a {self.kind}-only model built without listening "
                                  f"logs: it cannot {what}; rebuild with --interactions")
        return self.cf

    def _filter(
        self,
        order: np.ndarray,
        scores: np.ndarray,
        n: int,
        exclude: set[int],
        max_per_artist: int | None,
    ) -> list[tuple[int, float]]:
        """The first ``n`` of ``order`` (track indices, best first; ``scores`` aligned)
        that are not excluded, have a finite score and fit the per-artist cap."""
        out: list[tuple[int, float]]
        if max_per_artist is None:  # the common case: the first n + |exclude| suffice
            head = n + len(exclude)
            out = [(i, score) for i, score in zip(order[:head].tolist(),
                                                  scores[:head].tolist(), strict=True)
                   if i not in exclude and math.isfinite(score)]
            if len(out) >= n or head >= len(order):
                return out[:n]
        out = []
        per_artist: dict[str, int] = {}
        for i, score in zip(order.tolist(), scores.tolist(), strict=True):
            if i in exclude or not math.isfinite(score):
                continue
            if max_per_artist is not None:
                artist = self.artist_of[i]
                if artist:
                    if per_artist.get(artist, 0) >= max_per_artist:
                        continue
                    per_artist[artist] = per_artist.get(artist, 0) + 1
            out.append((i, score))
            if len(out) == n:
                break
        return out

    def _candidates(self, queries: list[tuple[str, np.ndarray]], k: int) -> np.ndarray:
        """Track indices to score exactly: every track on a small catalogue, else the union
        of the ``k`` nearest items of each named index to its query vector."""
        if len(self.tracks) < self.exact_below:
            # Every track is a candidate; the caller scores them all exactly.
            return np.arange(len(self.tracks), dtype=np.int64)
        found: list[np.ndarray] = []
        for name, vector in queries:
            entry = self._indexes.get(name)
            vector = np.asarray(vector)
            if entry is None or not vector.any():
                continue
            index, rows = entry
            pos = index.query_candidates(vector, k)
            # Index positions follow its own ids; map them to the model's track indices.
            found.append(pos if rows is None else rows[pos])
        if not found:
            return np.zeros(0, dtype=np.int64)
        return found[0] if len(found) == 1 else np.unique(np.concatenate(found))

    def _k(self, n: int) -> int:
        """Candidates to fetch from each index for ``n`` results."""
        if self.candidates is None:
            return max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * n)
        return max(self.candidates, n)

    def _validate(self, n: int, max_per_artist: int | None) -> None:
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or not 1 <= n <= 1000:
            raise ParameterError(f"n={n!r} must be an integer from 1 to 1000")
        if max_per_artist is not None and (not isinstance(max_per_artist, int)
                                           or max_per_artist < 1):
            raise ParameterError(f"max_per_artist={max_per_artist!r} must be a positive integer")

    def _user_results(
        self,
        user_vector: np.ndarray | None,
        history: np.ndarray,
        plays: np.ndarray | None,
        *,
        n: int,
        exclude: set[int],
        max_per_artist: int | None,
    ) -> list[Recommendation]:
        k = self._k(n) + len(exclude)
        queries: list[tuple[str, np.ndarray]] = []
        if len(self.tracks) >= self.exact_below:
            queries.append(("content", self.hybrid.user_profile(history, plays)))
            if user_vector is not None:
                queries.append(("user", user_vector))
        cand = self._candidates(queries, k)
        every = len(cand) == len(self.tracks)  # every track, in order: no gather needed
        scores = (self.hybrid.score_user(user_vector, history, plays, None if every else cand)
                  if len(cand) else np.zeros(0, dtype=np.float32))
        picked = self._pick(cand, scores, n, exclude, max_per_artist)
        return self._explain_user(picked, history)

    def _pick(
        self,
        cand: np.ndarray,
        scores: np.ndarray,
        n: int,
        exclude: set[int],
        max_per_artist: int | None,
    ) -> list[tuple[int, float]]:
        """The best ``n`` candidates (``scores[j]`` is the score of track ``cand[j]``) after
        the filters, ties broken by track index.

        Only the top of the candidates is sorted; the cut grows until the filters leave
        ``n`` results or every candidate was considered.
        """
        scores = np.asarray(scores, dtype=np.float64)
        need = n + len(exclude) + 1
        while True:
            if len(cand) > 4 * need:
                threshold = scores[np.argpartition(-scores, need - 1)[need - 1]]
                top = np.flatnonzero(scores >= threshold)  # keeps every tie at the cut
                order = top[np.lexsort((cand[top], -scores[top]))]
                every = len(top) == len(cand)
            else:  # few candidates (the index's usual answer): sort them all
                order = np.lexsort((cand, -scores))
                every = True
            picked = self._filter(cand[order], scores[order], n, exclude, max_per_artist)
            if len(picked) == n or every:
                return picked
            need *= 4

    def _explain_user(self, picked: list[tuple[int, float]], history: np.ndarray
                      ) -> list[Recommendation]:
        """Each result with its reason: the played track closest to it, by content where
        content leads its blend, else by CF."""
        ids = self.tracks.ids
        if len(history) == 0 or not picked:
            return [Recommendation(str(ids[i]), s, "popular") for i, s in picked]
        idx = np.fromiter((i for i, _ in picked), dtype=np.int64, count=len(picked))
        content_led = self.has_content[idx] & (np.asarray(self.blend_weight[idx]) < 0.5)
        because = np.empty(len(idx), dtype=np.int64)
        for led, vectors in ((True, self._content), (False, self._unit_items)):
            sel = np.flatnonzero(content_led == led)
            if len(sel):
                sims = vectors[history] @ vectors[idx[sel]].T
                because[sel] = history[np.argmax(sims, axis=0)]
        kinds = np.where(content_led, "played-content", "cf")
        return [Recommendation(str(ids[i]), s, str(kind), str(ids[b]))
                for (i, s), kind, b in zip(picked, kinds.tolist(), because.tolist(),
                                           strict=True)]

    # -- public API ------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        *,
        n: int = 10,
        exclude_played: bool = True,
        exclude: Sequence[str] = (),
        max_per_artist: int | None = None,
    ) -> list[Recommendation]:
        """The ``n`` best tracks for a user in the training logs."""
        cf = self._require_cf("recommend for users")
        self._validate(n, max_per_artist)
        u = cf.users_.to_idx(user_id)
        ui = cf.user_items_
        history = ui.indices[ui.indptr[u] : ui.indptr[u + 1]].astype(np.int64)
        plays = ui.data[ui.indptr[u] : ui.indptr[u + 1]]
        skip = set(self.tracks.to_idx_many(exclude).tolist())
        if exclude_played:
            skip |= set(history.tolist())
        if self.served is not None:
            scores = self._served_scores(u, history, plays)
            picked = self._pick(np.arange(len(scores)), scores, n, skip, max_per_artist)
            return self._explain_user(picked, history)
        return self._user_results(cf.user_factors_[u], history, plays, n=n, exclude=skip,
                                  max_per_artist=max_per_artist)

    def _served_scores(self, u: int, history: np.ndarray, plays: np.ndarray) -> np.ndarray:
        """A known user's scores from the model chosen on validation, scaled to [0, 1];
        tracks nobody played (added by content) score ``content_weight`` times their
        content cosine to the user's profile (negative cosines count as 0)."""
        assert self.served is not None
        scores = np.full(len(self.tracks), -np.inf, dtype=np.float64)
        served = minmax_rows(self.served.scores(u))[0]
        scores[: len(served)] = served
        cold = np.flatnonzero(np.asarray(self.evidence) <= 0)
        cold = cold[cold >= len(served)]
        weight = float(self.hybrid.content_weight)
        if len(cold) and self._any_content and weight > 0:
            profile = self.hybrid.user_profile(history, plays)
            scores[cold] = weight * np.maximum(0.0, self._content[cold] @ profile)
        return scores

    def history(self, user_id: str, *, n: int = 10) -> tuple[list[tuple[str, float]], int]:
        """A user's most-played tracks in the training logs, and how many tracks they played.

        Returns ``([(track_id, plays), ...], total)``, most played first (ties by track
        id), at most ``n`` of them.
        """
        cf = self._require_cf("show a user's listening history")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParameterError(f"n={n!r} must be a positive integer")
        u = cf.users_.to_idx(user_id)
        ui = cf.user_items_
        played = ui.indices[ui.indptr[u] : ui.indptr[u + 1]]
        plays = np.asarray(ui.data[ui.indptr[u] : ui.indptr[u + 1]], dtype=np.float64)
        ids = [str(t) for t in cf.tracks_.to_ids(played)]
        order = sorted(range(len(ids)), key=lambda k: (-plays[k], ids[k]))[:n]
        return [(ids[k], float(plays[k])) for k in order], len(ids)

    def recommend_for_tracks(
        self,
        track_ids: Sequence[str],
        *,
        n: int = 10,
        plays: Sequence[float] | None = None,
        exclude: Sequence[str] = (),
        max_per_artist: int | None = None,
    ) -> list[Recommendation]:
        """Recommendations for a listener who is not in the data, from what they played."""
        self._validate(n, max_per_artist)
        if not track_ids:
            raise ParameterError("tracks must name at least one track")
        if plays is not None and len(plays) != len(track_ids):
            raise ParameterError(f"{len(plays)} play counts for {len(track_ids)} tracks")
        history = self.tracks.to_idx_many(track_ids)
        play_arr = None if plays is None else np.asarray(plays, dtype=np.float32)
        vector = None
        if self.cf is not None:
            known = history < len(self.cf.tracks_)
            if known.any():
                vector = self.cf.fold_in(history[known],
                                         None if play_arr is None else play_arr[known])
        skip = set(history.tolist()) | set(self.tracks.to_idx_many(exclude).tolist())
        return self._user_results(vector, history, play_arr, n=n, exclude=skip,
                                  max_per_artist=max_per_artist)

    def similar(
        self,
        track_id: str,
        *,
        n: int = 10,
        alpha: float | None = None,
        exclude: Sequence[str] = (),
        max_per_artist: int | None = None,
    ) -> list[Recommendation]:
        """Tracks similar to a seed: ``alpha * content cosine + (1 - alpha) * CF cosine``.

        ``alpha=1`` means "sounds like", ``alpha=0`` "listeners also played"; the default
        is 0.5 on a hybrid model, and whichever part exists otherwise.
        """
        self._validate(n, max_per_artist)
        i = self.tracks.to_idx(track_id)
        alpha = self._alpha(alpha, i)
        k = self._k(n)
        content, unit_cf = self._content[i], self._unit_items[i]
        queries: list[tuple[str, np.ndarray]] = []
        if alpha > 0:
            queries.append(("content", content))
        if alpha < 1:
            queries.append(("cf", unit_cf))
        cand = self._candidates(queries, k)
        scores = self._blend_scores(cand, content, unit_cf, alpha)
        skip = {i} | set(self.tracks.to_idx_many(exclude).tolist()) if exclude else {i}
        kind = "content" if alpha >= 0.5 else "cf"
        ids = self.tracks.ids
        return [Recommendation(str(ids[j]), s, kind, track_id)
                for j, s in self._pick(cand, scores, n, skip, max_per_artist)]

    def _alpha(self, alpha: float | None, i: int | None = None) -> float:
        has_cf = self.items.shape[1] > 0
        has_content = self._any_content
        if alpha is None:
            alpha = 0.5 if (has_cf and has_content) else (1.0 if has_content else 0.0)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
            raise ParameterError(f"alpha={alpha!r} must be a number from 0 to 1")
        if alpha > 0 and not has_content:
            raise CapabilityError(f"alpha={alpha} needs content vectors, and this model has "
                                  "none; use alpha=0")
        if alpha < 1 and not has_cf:
            raise CapabilityError(f"alpha={alpha} needs listening data, and this model has "
                                  "none; use alpha=1")
        return float(alpha)

    def _blend_scores(self, cand: np.ndarray, content: np.ndarray, unit_cf: np.ndarray,
                      alpha: float) -> np.ndarray:
        """``alpha * content cosine + (1 - alpha) * CF cosine`` of each candidate."""
        if len(cand) == 0:
            return np.zeros(0, dtype=np.float64)
        every = len(cand) == len(self.tracks)  # every track, in order: no gather needed
        if alpha == 1 or alpha == 0:  # one part: its cosines as they are (float32)
            vectors, query = (self._content, content) if alpha else (self._unit_items, unit_cf)
            return (vectors if every else vectors[cand]) @ query
        total = np.zeros(len(cand), dtype=np.float64)
        if alpha > 0:
            total += alpha * ((self._content if every else self._content[cand]) @ content)
        if alpha < 1:
            total += (1 - alpha) * ((self._unit_items if every else self._unit_items[cand])
                                    @ unit_cf)
        return total

    def blend_parts(self, rows: np.ndarray, cols: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Content and CF cosines between tracks ``rows`` and ``cols``.

        Returns two ``[len(rows), len(cols)]`` float64 arrays; the similarity of
        :meth:`similar` is ``alpha * content + (1 - alpha) * cf``.
        """
        content = np.asarray(self.content[rows], dtype=np.float64) @ \
            np.asarray(self.content[cols], dtype=np.float64).T
        cf = np.asarray(self.unit_items[rows], dtype=np.float64) @ \
            np.asarray(self.unit_items[cols], dtype=np.float64).T
        return content, cf

    def radio(
        self,
        seeds: Sequence[str] = (),
        *,
        n: int = 10,
        user: str | None = None,
        artist: str | None = None,
        cursor: str | RadioState | None = None,
        alpha: float | None = None,
        variety: float | None = None,
        artist_window: int | None = None,
        reach: int | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> RadioPage:
        """An endless, varied playlist: the next ``n`` tracks and a cursor to continue.

        Seeds are track ids, an ``artist``'s tracks, or (without either) the ``user``'s
        most played tracks. Pass the returned page's ``cursor`` (or ``state``) back as
        ``cursor`` to continue; the seeds and knobs are then the cursor's. The knobs
        (``alpha``, ``variety``, ``artist_window``, ``reach``, ``seed`` and the other
        fields of :class:`~musicrec.recommender.radio.RadioParams`, whose defaults apply
        to those not given) are described in :mod:`musicrec.recommender.radio`.

        Examples
        --------
        >>> page = rec.radio(["t00001"], n=10)  # doctest: +SKIP
        >>> more = rec.radio(cursor=page.cursor, n=10)  # doctest: +SKIP
        """
        from musicrec.recommender import radio

        self._validate(n, None)
        knobs = {k: v for k, v in {"alpha": alpha, "variety": variety,
                                   "artist_window": artist_window, "reach": reach,
                                   "seed": seed, **options}.items() if v is not None}
        if cursor is not None:
            if seeds or user is not None or artist is not None:
                raise ParameterError("give either a cursor or seeds/artist/user, not both")
            if knobs:
                raise ParameterError(f"the cursor carries the radio's settings; "
                                     f"{sorted(knobs)[0]} cannot change them")
            state = (cursor if isinstance(cursor, radio.RadioState)
                     else radio.RadioState.from_cursor(cursor))
        else:
            try:
                params = radio.RadioParams(**knobs)
            except TypeError as exc:
                raise ParameterError(f"unknown radio option ({exc})") from None
            if alpha is not None:
                self._alpha(alpha)
            state = radio.start_state(self, seeds, artist=artist, user=user, params=params)
        return radio.play(self, state, n)

    def exact_similar(self, track_id: str, *, n: int = 10, alpha: float | None = None
                      ) -> list[str]:
        """Brute-force :meth:`similar` over every track (the reference for ANN recall)."""
        i = self.tracks.to_idx(track_id)
        alpha = self._alpha(alpha, i)
        everything = np.arange(len(self.tracks))
        scores = self._blend_scores(everything, np.asarray(self.content[i]),
                                    self.unit_items[i], alpha)
        scores[i] = -np.inf
        order = np.lexsort((everything, -scores))[:n]
        return self.tracks.to_ids(order)

    def ann_agreement(
        self, *, n: int = 10, alphas: tuple[float, ...] = (0.0, 0.5, 1.0), sample: int = 200,
        seed: int = 0,
    ) -> dict[float, float]:
        """Mean overlap@n between :meth:`similar` as served and brute-force search.

        Computed on ``sample`` random seed tracks for each α this model can answer; it
        is 1.0 where the catalogue is small enough to be searched exactly.
        """
        rng = np.random.default_rng(seed)
        seeds = rng.choice(len(self.tracks), size=min(sample, len(self.tracks)), replace=False)
        out: dict[float, float] = {}
        for alpha in alphas:
            try:
                self._alpha(alpha)
            except CapabilityError:
                continue
            overlaps = []
            for i in seeds:
                track_id = self.tracks.to_id(int(i))
                served = {r.track_id for r in self.similar(track_id, n=n, alpha=alpha)}
                exact = set(self.exact_similar(track_id, n=n, alpha=alpha))
                overlaps.append(len(served & exact) / max(len(exact), 1))
            out[alpha] = float(np.mean(overlaps))
        return out

    # -- query by example ------------------------------------------------------------------
    def embedder(self) -> Any:
        if self._embedder is None:
            spec = self.manifest.get("embedder")
            if not spec:
                raise CapabilityError("this model has no audio embedder (its content vectors "
                                      "came from another source): query by example needs one")
            from musicrec.embedding.registry import get_embedder

            self._embedder = get_embedder(spec["spec"], **spec.get("options", {}))
            if self._embedder.id != spec["id"]:
                raise CapabilityError(
                    f"the embedder available here ({self._embedder.id}) differs from the one "
                    f"the model was built with ({spec['id']}); install the same weights, or "
                    "rebuild the model with `musicrec build`")
        return self._embedder

    def similar_to_audio(
        self,
        audio: str | Path | np.ndarray,
        *,
        n: int = 10,
        sample_rate: int | None = None,
        max_per_artist: int | None = None,
    ) -> AudioQuery:
        """Query by example: which catalogue recording is this clip, and what sounds like it.

        ``match`` is the identified catalogue track (``track_id``, ``offset_s`` in the
        track, ``confidence``, ``score``) when the model has fingerprints and the clip's
        aligned landmark votes clear the calibrated threshold, else ``None`` ("no match").
        ``neighbours`` are the "sounds like" tracks from the embeddings, in both cases.
        """
        self._validate(n, max_per_artist)
        if self.content_index is None:
            raise CapabilityError("this model has no content vectors: query by example "
                                  "needs a model built from audio")
        embedder = self.embedder()
        if isinstance(audio, str | Path):
            vector = embedder.embed_files([audio])[0]
        else:
            vector = embedder.embed([np.asarray(audio)], sample_rate=sample_rate)[0]
        k = self._k(n)
        cand = self._candidates([("content", vector)], k)
        scores = np.asarray(self.content[cand]) @ vector
        picked = self._pick(cand, scores, n, set(), max_per_artist)
        neighbours = [Recommendation(self.tracks.to_id(i), s, "content", "the clip")
                      for i, s in picked]
        match = None
        if self.fingerprints is not None:
            found = self.fingerprints.identify(
                audio, sr=None if isinstance(audio, str | Path) else sample_rate)
            if found is not None:
                match = {"track_id": found.track_id, "offset_s": found.offset_s,
                         "confidence": found.confidence, "score": found.score}
        return AudioQuery(neighbours=neighbours, match=match,
                          info={"fingerprints": self.fingerprints is not None})

    # -- search by words -----------------------------------------------------------------
    def tag_search(self, *, text_encoder: str | None = None, tau: float = DEFAULT_TAU
                   ) -> TagSearch:
        """The :class:`TagSearch` over this model's tags (built once per encoder and τ)."""
        from musicrec.embedding.text import DEFAULT_TEXT_ENCODER, get_text_encoder

        if self.tags is None:
            raise CapabilityError("this model has no tag probabilities: search by words "
                                  "needs a model built with a tagging embedder "
                                  "(--embedder musicnn-mtt or musicnn-msd) or a CLAP "
                                  "model (hf:)")
        name = text_encoder or DEFAULT_TEXT_ENCODER
        key = (name, float(tau))
        if key not in self._tag_search:
            self._tag_search[key] = TagSearch(self.tag_names, get_text_encoder(name), tau=tau)
        return self._tag_search[key]

    def search_text(
        self,
        query: str,
        *,
        n: int = 10,
        text_encoder: str | None = None,
        tau: float = DEFAULT_TAU,
        max_per_artist: int | None = None,
    ) -> TextSearch:
        """Tracks that fit a description ("calm piano"), zero-shot through their tags.

        Each result's ``because`` lists the query's tags the track carries ("piano,
        quiet"); :attr:`TextSearch.parsed` says which tags each word matched, and
        ``parsed.weak`` that none did (the ranking is then a guess). A model without tags
        whose content came from a CLAP model (``hf:`` CLAP) answers with CLAP's text tower:
        the cosine of the query's text embedding with each track's audio embedding.
        """
        self._validate(n, max_per_artist)
        if self.tags is None and self._is_clap():
            return self._search_clap(query, n=n, max_per_artist=max_per_artist)
        search = self.tag_search(text_encoder=text_encoder, tau=tau)
        parsed = search.parse(query)
        probs = np.asarray(self.tags)
        scores = search.score(parsed, probs)
        scores[probs.sum(axis=1) <= 0] = -np.inf  # tracks without audio have no tags
        cand = np.arange(len(self.tracks), dtype=np.int64)
        picked = self._pick(cand, scores, n, set(), max_per_artist)
        results = [Recommendation(self.tracks.to_id(i), s, "tags",
                                  ", ".join(search.reasons(parsed, probs[i])))
                   for i, s in picked]
        return TextSearch(query, results, parsed, self.tag_names, search.encoder.name)

    def _is_clap(self) -> bool:
        spec = (self.manifest.get("embedder") or {}).get("spec", "")
        return str(spec).startswith("hf:") and getattr(self.embedder(), "model_type",
                                                       "") == "clap"

    def _search_clap(self, query: str, *, n: int, max_per_artist: int | None) -> TextSearch:
        from musicrec.recommender.tags import MAX_QUERY_CHARS

        if not isinstance(query, str) or not query.strip():
            raise ParameterError(f"q={query!r} must be a non-empty text")
        if len(query) > MAX_QUERY_CHARS:
            raise ParameterError(f"q has {len(query)} characters; at most {MAX_QUERY_CHARS} "
                                 "are allowed")
        vector = self.embedder().encode_text([query])[0]
        k = max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * n)
        cand = self._candidates([("content", vector)], k)
        cand = cand[self.has_content[cand]]
        scores = self._content[cand] @ vector
        results = [Recommendation(self.tracks.to_id(i), s, "clap")
                   for i, s in self._pick(cand, scores, n, set(), max_per_artist)]
        return TextSearch(query, results, None, [], "clap")

    def track_tags(self, track_id: str, top: int = 5) -> dict[str, float]:
        """The ``top`` most probable tags of a track (empty without tags)."""
        i = self.tracks.to_idx(track_id)
        if self.tags is None:
            return {}
        row = np.asarray(self.tags[i])
        order = np.argsort(-row, kind="stable")[:top]
        return {self.tag_names[j]: round(float(row[j]), 4) for j in order if row[j] > 0}

    def track(self, track_id: str) -> dict[str, Any]:
        i = self.tracks.to_idx(track_id)
        info = self.catalog.get(track_id)
        info.update({"has_content": bool(self.has_content[i]),
                     "listeners": int(self.evidence[i])})
        return info
