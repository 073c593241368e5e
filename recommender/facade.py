"""The :class:`Recommender` facade over a model directory: what the CLI and the API use.

The model directory's layout, and how it is written and read, is
:mod:`musicrec.recommender.model_dir`'s: the facade asks it for the loaded models.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.errors import CapabilityError, ParameterError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.index import VectorIndex
from musicrec.recommender.model_dir import (
    EXACT_BELOW,
    MIN_CANDIDATES,
    load_model_dir,
)
from musicrec.recommender.radio import RadioPage, RadioState
from musicrec.recommender.served import minmax_rows
from musicrec.recommender.similarity import ChosenSimilarity
from musicrec.recommender.tags import DEFAULT_TAU, TagSearch, TextQuery
from musicrec.recommender.types import Recommendation

log = logging.getLogger(__name__)

#: Candidates fetched from each index per result, before exact re-scoring.
CANDIDATES_PER_RESULT = 10


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


class AnswerCache:
    """A bounded least-recently-used map of answers (tuples of results), thread-safe.

    It holds at most ``capacity`` results in all (an answer of ``n`` results counts
    ``n``), so its memory is bounded whatever ``n`` the callers ask for; the least
    recently used answers go first. An answer larger than the whole capacity is not kept.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ParameterError(f"capacity={capacity!r} must be a positive integer")
        self.capacity = capacity
        self.size = 0
        self.hits = self.misses = 0
        self._answers: OrderedDict[Any, tuple[Any, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: Any) -> tuple[Any, ...] | None:
        with self._lock:
            found = self._answers.get(key)
            if found is None:
                self.misses += 1
                return None
            self._answers.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: Any, answer: tuple[Any, ...]) -> None:
        cost = max(len(answer), 1)
        if cost > self.capacity:
            return
        with self._lock:
            old = self._answers.pop(key, None)
            if old is not None:
                self.size -= max(len(old), 1)
            self._answers[key] = answer
            self.size += cost
            while self.size > self.capacity:
                _, dropped = self._answers.popitem(last=False)
                self.size -= max(len(dropped), 1)


class Recommender:
    """Recommendations, similar tracks and query by example from one model directory."""

    def __init__(self, model_dir: str | Path, *, exact_below: int = EXACT_BELOW,
                 candidates: int | None = None, similarity: str = "served",
                 answer_cache: int = 0) -> None:
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
        similarity : {"served", "factors"}
            The CF part of similar tracks and the radio: ``"served"``, the model chosen on
            validation where the directory has one (:mod:`~musicrec.recommender.similarity`),
            else the factor cosine; ``"factors"``, the factor cosine always (as models
            built without a chosen model answer).
        answer_cache : int
            Known users' answers (:meth:`recommend`) kept in memory, counted in results
            (:class:`AnswerCache`, least recently used first out); 0 (the default): none,
            every answer is computed live. An answer is a function of the loaded model
            and the call's arguments only, so a kept one is the live one; a reloaded model
            is a new :class:`Recommender` with an empty cache.
        """
        if similarity not in ("served", "factors"):
            raise ParameterError(f"similarity={similarity!r} must be 'served' or 'factors'")
        if candidates is not None and (isinstance(candidates, bool)
                                       or not isinstance(candidates, int) or candidates < 1):
            raise ParameterError(f"candidates={candidates!r} must be a positive integer")
        if isinstance(answer_cache, bool) or not isinstance(answer_cache, int) \
                or answer_cache < 0:
            raise ParameterError(f"answer_cache={answer_cache!r} must be a whole number of "
                                 "results (0: no cache)")
        self.model_dir = Path(model_dir)
        self.exact_below = exact_below
        #: known users' answers (None: every answer is live)
        self.answers = AnswerCache(answer_cache) if answer_cache else None
        self.candidates = candidates
        files = load_model_dir(self.model_dir)
        self.manifest = files.manifest
        self.catalog = files.catalog
        self.tracks = files.tracks
        #: the blend of content and CF vectors; its arrays are mmap'd from the directory
        self.hybrid = files.hybrid
        self.cf: CFModel | None = files.hybrid.cf_
        #: the model chosen on validation that ranks users (``build --cf auto``)
        self.served = files.served
        #: the chosen model's track-to-track similarity (None: the factor cosine)
        self.chosen_similarity = (ChosenSimilarity(files.served)
                                  if files.served is not None and similarity == "served"
                                  else None)
        self.content = files.arrays["content"]
        self.items = files.arrays["items"]
        # unit CF-space vectors for similarity, precomputed at build time so server
        # processes share them through the page cache instead of each computing a copy
        self.unit_items = files.arrays["similar_cf"]
        self.evidence = files.arrays["evidence"]
        self.blend_weight = files.arrays["blend_weight"]
        self.has_content = self.hybrid.has_content_
        # plain ndarray views of the mmap'd arrays for the request path: the same pages,
        # without np.memmap's per-slice bookkeeping (a third of a small model's request)
        self._content = self.content.view(np.ndarray)
        self._unit_items = self.unit_items.view(np.ndarray)
        by_id = dict(zip(self.catalog.frame["track_id"], self.catalog.frame["artist"],
                         strict=True))
        self.artist_of = np.array([by_id.get(t, "") for t in self.tracks], dtype=object)
        self._any_content = bool(self.has_content.any())
        # constants of the request path, computed once per loaded model
        self._ids: list[str] = [str(t) for t in self.tracks.ids]
        self._every = np.arange(len(self.tracks), dtype=np.int64)
        #: tracks explained by the closest played track by content (else by CF)
        self._content_led = np.asarray(self.has_content) & (np.asarray(self.blend_weight) < 0.5)
        #: tracks nobody played (the chosen model cannot score those it never saw)
        self._cold = np.flatnonzero(np.asarray(self.evidence) <= 0)
        #: name -> (index, the model's track index of each index position, or None when
        #: the index holds every track in the model's order)
        self._indexes: dict[str, tuple[VectorIndex, np.ndarray | None]] = {
            name: (index, None if index.ids == self.tracks
                   else self.tracks.to_idx_many(index.ids))
            for name, index in files.indexes.items()}
        self.content_index = files.indexes.get("content")
        self.cf_index = files.indexes.get("cf")
        self.user_index = files.indexes.get("user")
        self._embedder: Any = None
        self._tag_search: dict[tuple[str, float], TagSearch] = {}
        self.tags: np.ndarray | None = files.tags
        self.tag_names: list[str] = files.tag_names
        self.fingerprints: Any = files.fingerprints

    @classmethod
    def load(cls, model_dir: str | Path) -> Recommender:
        return cls(model_dir)

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
        ids = self._ids
        if len(history) == 0 or not picked:
            return [Recommendation(ids[i], s, "popular") for i, s in picked]
        idx = np.fromiter((i for i, _ in picked), dtype=np.int64, count=len(picked))
        content_led = self._content_led[idx]
        because = np.empty(len(idx), dtype=np.int64)
        for led, vectors in ((True, self._content), (False, self._unit_items)):
            sel = np.flatnonzero(content_led == led)
            if len(sel) == len(idx):  # one kind for every result: no gather of the rows
                because = history[np.argmax(vectors[history] @ vectors[idx].T, axis=0)]
                break
            if len(sel):
                sims = vectors[history] @ vectors[idx[sel]].T
                because[sel] = history[np.argmax(sims, axis=0)]
        return [Recommendation(ids[i], s, "played-content" if led else "cf", ids[b])
                for (i, s), led, b in zip(picked, content_led.tolist(), because.tolist(),
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
        """The ``n`` best tracks for a user in the training logs (kept in
        :attr:`answers` when the facade has an answer cache)."""
        cf = self._require_cf("recommend for users")
        self._validate(n, max_per_artist)
        u = cf.users_.to_idx(user_id)
        if self.answers is None:
            return self._recommend(cf, u, n, exclude_played, exclude, max_per_artist)
        key = (u, int(n), bool(exclude_played), tuple(exclude), max_per_artist)
        found = self.answers.get(key)
        if found is not None:
            return list(found)
        recs = self._recommend(cf, u, n, exclude_played, exclude, max_per_artist)
        self.answers.put(key, tuple(recs))
        return recs

    def _recommend(self, cf: CFModel, u: int, n: int, exclude_played: bool,
                   exclude: Sequence[str], max_per_artist: int | None
                   ) -> list[Recommendation]:
        """The answer for known user ``u``, computed live."""
        ui = cf.user_items_
        lo, hi = ui.indptr[u], ui.indptr[u + 1]
        history = ui.indices[lo:hi].astype(np.int64)
        plays = ui.data[lo:hi]
        skip = set(history.tolist()) if exclude_played else set()
        if exclude:
            skip |= set(self.tracks.to_idx_many(exclude).tolist())
        if self.served is not None:
            scores = self._served_scores(self.served.scores(u)[0], history, plays)
            picked = self._pick(self._every, scores, n, skip, max_per_artist)
            return self._explain_user(picked, history)
        return self._user_results(cf.user_factors_[u], history, plays, n=n, exclude=skip,
                                  max_per_artist=max_per_artist)

    def _served_scores(self, served: np.ndarray, history: np.ndarray,
                       plays: np.ndarray | None) -> np.ndarray:
        """A listener's scores from the model chosen on validation (``served``, over its
        tracks), scaled to [0, 1]; tracks nobody played (added by content) score
        ``content_weight`` times their content cosine to the listener's profile (negative
        cosines count as 0)."""
        scores = np.full(len(self.tracks), -np.inf, dtype=np.float64)
        served = minmax_rows(served[None])[0]
        scores[: len(served)] = served
        cold = self._cold[self._cold >= len(served)]
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
        skip = set(history.tolist()) | set(self.tracks.to_idx_many(exclude).tolist())
        if self.served is not None and (history < self.served.n_items_).any():
            # the model chosen on validation, as for a known user (item-item models
            # through their neighbour matrix, ALS by fold-in)
            known = history < self.served.n_items_
            weights = np.ones(len(history), np.float32) if play_arr is None else play_arr
            row = _plays_row(history[known], weights[known], self.served.n_items_)
            scores = self._served_scores(self.served.scores_new(row)[0], history, play_arr)
            picked = self._pick(self._every, scores, n, skip, max_per_artist)
            return self._explain_user(picked, history)
        vector = self.hybrid.fold_in(history, play_arr)
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
        """Tracks similar to a seed: ``alpha * content cosine + (1 - alpha) * CF similarity``.

        ``alpha=1`` means "sounds like", ``alpha=0`` "listeners also played"; the default
        is 0.5 on a hybrid model, and whichever part exists otherwise. The CF similarity
        is that of the model chosen on validation (``build --cf auto``: item-kNN's or
        RP3beta's neighbour lists, EASE's weights, factor cosines, or their blend), scaled
        so that the seed's closest track scores 1
        (:mod:`~musicrec.recommender.similarity`); on a model without one, and for a seed
        it does not know, the cosine of the tracks' CF vectors. Candidates on a large
        catalogue: the content index's (``alpha > 0``) and the chosen model's top
        neighbours of the seed (or the CF index's), re-scored exactly.
        """
        self._validate(n, max_per_artist)
        i = self.tracks.to_idx(track_id)
        alpha = self._alpha(alpha, i)
        row = self._cf_row(i, alpha)
        cand = self._similar_candidates(np.array([i]), [row], alpha, self._k(n))
        scores = self._blend_scores(cand, self._content[i], self._unit_items[i], alpha, row)
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

    def _cf_row(self, i: int, alpha: float) -> np.ndarray | None:
        """The chosen model's CF similarity of every track to seed ``i`` (scaled), or None
        where the factor cosine answers (no chosen model, a seed it does not know, or
        ``alpha == 1``, where no CF part is needed)."""
        if alpha == 1 or self.chosen_similarity is None:
            return None
        return self.chosen_similarity.row(int(i))

    def _similar_candidates(self, seeds: np.ndarray, rows: Sequence[np.ndarray | None],
                            alpha: float, k: int) -> np.ndarray:
        """Tracks to score exactly for seeds (every track on a small catalogue): the ``k``
        nearest of each seed in the content index (``alpha > 0``) and, for ``alpha < 1``,
        its ``k`` best by the chosen model's ``rows`` (an item-item model needs no index
        for that), or the CF index's where a seed has no row."""
        queries: list[tuple[str, np.ndarray]] = []
        for s, row in zip(seeds.tolist(), rows, strict=True):
            if alpha > 0:
                queries.append(("content", self._content[s]))
            if alpha < 1 and row is None:
                queries.append(("cf", self._unit_items[s]))
        cand = self._candidates(queries, k)
        if len(cand) == len(self.tracks) or alpha == 1:
            return cand
        tops = [_best_positive(row, k) for row in rows if row is not None]
        return np.unique(np.concatenate([cand, *tops])) if tops else cand

    def _row_at(self, row: np.ndarray, cand: np.ndarray, every: bool = False) -> np.ndarray:
        """``row`` (over the chosen model's tracks) at track indices ``cand`` (``every``:
        they are every track, in order); 0 for the tracks it does not know."""
        if every:
            out = np.zeros(len(cand), dtype=np.float32)
            out[: len(row)] = row
            return out
        known = cand < len(row)
        if known.all():
            return row[cand]
        out = np.zeros(len(cand), dtype=np.float32)
        out[known] = row[cand[known]]
        return out

    def _blend_scores(self, cand: np.ndarray, content: np.ndarray, unit_cf: np.ndarray,
                      alpha: float, row: np.ndarray | None = None) -> np.ndarray:
        """``alpha * content cosine + (1 - alpha) * CF similarity`` of each candidate: the
        chosen model's ``row`` (:meth:`_cf_row`) where given, else the CF cosine."""
        if len(cand) == 0:
            return np.zeros(0, dtype=np.float64)
        every = len(cand) == len(self.tracks)  # every track, in order: no gather needed
        if row is not None:
            cf = self._row_at(row, cand, every)
            if alpha == 0:
                return cf
            return alpha * ((self._content if every else self._content[cand]) @ content
                            ).astype(np.float64) + (1 - alpha) * cf
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

    def blend_parts(self, rows: np.ndarray, cols: np.ndarray, *,
                    cache: dict[int, np.ndarray | None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Content cosines and CF similarities between tracks ``rows`` and seeds ``cols``.

        Returns two ``[len(rows), len(cols)]`` float64 arrays; the similarity of
        :meth:`similar` to seed ``cols[c]`` is ``alpha * content + (1 - alpha) * cf`` in
        column ``c``. The CF part is the one :meth:`similar` uses: the chosen model's
        similarity to each seed (scaled), else the CF cosine. ``cache`` (seed -> its
        chosen row) spares a caller that asks about the same seeds again (the radio).
        """
        content = np.asarray(self.content[rows], dtype=np.float64) @ \
            np.asarray(self.content[cols], dtype=np.float64).T
        cf = np.asarray(self.unit_items[rows], dtype=np.float64) @ \
            np.asarray(self.unit_items[cols], dtype=np.float64).T
        if self.chosen_similarity is not None:
            rows = np.asarray(rows, dtype=np.int64)
            for c, seed in enumerate(np.asarray(cols).tolist()):
                if cache is None or seed not in cache:
                    row = self.chosen_similarity.row(int(seed))
                    if cache is not None:
                        cache[seed] = row
                row = row if cache is None else cache[seed]
                if row is not None:
                    cf[:, c] = self._row_at(row, rows)
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
                                    self.unit_items[i], alpha, self._cf_row(i, alpha))
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


def _plays_row(tracks: np.ndarray, plays: np.ndarray, n_tracks: int) -> sp.csr_matrix:
    """One listener's plays as a ``[1, n_tracks]`` float32 CSR row, indices sorted and a
    track named twice summed (as scipy's COO conversion does); built directly when no
    track repeats, which skips the COO conversion (a third of a new listener's scoring)."""
    plays = np.asarray(plays, dtype=np.float32)
    order = np.argsort(tracks, kind="stable")
    ordered = tracks[order]
    if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        return sp.csr_matrix((plays, (np.zeros(len(plays)), tracks)), shape=(1, n_tracks),
                             dtype=np.float32)
    return sp.csr_matrix((plays[order], ordered, np.array([0, len(ordered)])),
                         shape=(1, n_tracks))


def _best_positive(row: np.ndarray, k: int) -> np.ndarray:
    """Indices of the (at most) ``k`` largest positive entries of ``row``, unordered."""
    if len(row) > k:
        top = np.argpartition(-row, k - 1)[:k]
        return top[row[top] > 0]
    return np.flatnonzero(row > 0)
