"""The hybrid model: content vectors blended with CF vectors.

**Content → CF.** A ridge regression ``W`` maps a track's content vector ``c_i`` (unit
length, plus a bias) to the CF space: ``ĉf_i = [c_i, 1] W``, learned on tracks that have
both content and plays (each weighted by ``log1p`` of its listener count), as in van den
Oord et al. (2013) and CB2CF.

**Track vectors for users.** Each track's vector blends its own CF vector with the one
predicted from its content, by listening evidence: with ``n_i`` listeners,
``w_i = n_i / (n_i + shrinkage)`` and ``v_i = w_i cf_i + (1 - w_i) ĉf_i``. A track with no
plays (``w_i = 0``) is recommended from its content alone; a track with no content keeps
its CF vector (``w_i = 1``).

**User scores.** ``s(u, i) = x_u · v_i + β ‖x_u‖ cos(p_u, c_i)`` where ``x_u`` is the
user's CF vector and ``p_u`` the play-weighted mean content vector of their history: the
second term is a content-based profile match that also reaches tracks the mapping
predicts poorly. ``β = content_weight``.

**Similar tracks.** ``score = α cos_content + (1 - α) cos_cf`` where ``cos_cf`` is the
cosine of the tracks' own CF vectors (the content prediction for a track without plays).
A track without content has ``cos_content = 0``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.data.idmap import IdMap
from musicrec.errors import CapabilityError, NotFittedError, ParameterError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.cf import CFModel
from musicrec.recommender.index import normalize_rows

log = logging.getLogger(__name__)


class HybridModel(RecommenderBase):
    """Blend per-track content vectors with a fitted :class:`CFModel`.

    :meth:`fit` trains the CF part (``CFModel(**cf_params)``) on the play matrix and
    blends it with content vectors aligned to its columns; :meth:`blend` blends an
    already fitted CF model with content vectors named by raw track ids, which may name
    tracks nobody played (the build does this).

    Parameters
    ----------
    shrinkage : float
        Listener count at which a track's own CF vector and its content prediction weigh
        the same.
    ridge : float
        L2 penalty of the content → CF regression.
    content_weight : float
        β, the weight of the user-profile content match in user scores.
    cf_params : dict, optional
        Hyper-parameters of the CF part (:class:`CFModel`) that :meth:`fit` trains.
    random_state : int, optional
        Seed of the CF part, unless ``cf_params`` gives one.
    """

    name = "hybrid"
    requires_content = True
    description = "ALS blended with content (the engine's model)"

    def __init__(self, *, shrinkage: float = 10.0, ridge: float = 1.0,
                 content_weight: float = 0.5, cf_params: dict[str, Any] | None = None,
                 random_state: int | None = None) -> None:
        self.shrinkage = shrinkage
        self.ridge = ridge
        self.content_weight = content_weight
        self.cf_params = cf_params
        self.random_state = random_state

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        assert content is not None
        cf = CFModel(**{"random_state": self.random_state, **(self.cf_params or {})}
                     ).fit(user_items)
        cf.users_, cf.tracks_ = self.users_, self.tracks_
        has = np.linalg.norm(content, axis=1) > 0
        self._blend(cf, content, has)

    def blend(
        self,
        *,
        cf: CFModel | None,
        content_ids: list[str] | np.ndarray | None,
        content: np.ndarray | None,
    ) -> HybridModel:
        """Blend a fitted CF model (fitted on a log) with content vectors by raw track id;
        either part may be missing (content-only or CF-only models). Tracks named only by
        ``content_ids`` follow the CF model's tracks."""
        if cf is None and content is None:
            raise ParameterError("a hybrid model needs CF, content vectors, or both")
        if content is not None:
            if content_ids is None or len(content_ids) != len(content):
                raise ParameterError("content_ids must name one track per content vector")
            if content.ndim != 2 or not np.isfinite(content).all():
                raise ParameterError("content vectors must be a finite [n, dim] array")
        cf_ids = list(cf.tracks_.ids) if cf is not None else []
        extra = [] if content_ids is None else [str(t) for t in content_ids]
        tracks = IdMap(list(dict.fromkeys([*cf_ids, *extra])), kind="track")
        dim = 0 if content is None else content.shape[1]
        aligned = np.zeros((len(tracks), dim), dtype=np.float32)
        has = np.zeros(len(tracks), dtype=bool)
        if content is not None and content_ids is not None:
            rows = tracks.to_idx_many([str(t) for t in content_ids])
            aligned[rows] = content
            has[rows] = np.linalg.norm(content, axis=1) > 0
        self.users_ = IdMap([], kind="user") if cf is None else cf.users_
        self.tracks_ = tracks
        self._blend(cf, aligned, has)
        return self

    def _blend(self, cf: CFModel | None, content: np.ndarray, has: np.ndarray) -> None:
        """Blend ``cf`` with ``content`` (aligned rows; the first ones are CF's tracks)."""
        for name in ("shrinkage", "ridge", "content_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ParameterError(f"{name}={value!r} must be a finite number >= 0")
        n = len(content)
        n_cf = 0 if cf is None else cf.n_items_
        self._unit_cf: np.ndarray | None = None
        self.cf_ = cf
        self.n_items_ = n
        self.n_users_ = 0 if cf is None else cf.n_users_
        self.user_items_ = (sp.csr_matrix((0, n), dtype=np.float32) if cf is None else
                            sp.csr_matrix((cf.user_items_.data, cf.user_items_.indices,
                                           cf.user_items_.indptr), shape=(cf.n_users_, n)))
        self.has_content_ = has.astype(bool)
        self.content_ = np.zeros_like(content, dtype=np.float32)
        if has.any():
            self.content_[has] = normalize_rows(content[has])

        self.evidence_ = np.zeros(n, dtype=np.float32)
        if cf is None:
            self.mapping_ = None
            self.item_vectors_ = np.zeros((n, 0), dtype=np.float32)
            self.blend_weight_ = np.zeros(n, dtype=np.float32)
            return
        listeners = np.asarray((cf.user_items_ > 0).sum(axis=0)).ravel()
        self.evidence_[:n_cf] = listeners
        own = np.zeros((n, cf.item_factors_.shape[1]), dtype=np.float32)
        own[:n_cf] = cf.item_factors_
        weight = self.evidence_ / (self.evidence_ + self.shrinkage) if self.shrinkage > 0 \
            else (self.evidence_ > 0).astype(np.float32)
        weight = np.where(self.has_content_, weight, 1.0).astype(np.float32)
        predicted = np.zeros_like(own)
        train = self.has_content_ & (self.evidence_ > 0)
        if self.has_content_.any() and train.sum() >= 2:
            self.mapping_ = self._fit_mapping(self.content_[train], own[train],
                                              np.log1p(self.evidence_[train]))
            predicted[self.has_content_] = self.predict_cf(self.content_[self.has_content_])
        else:
            self.mapping_ = None
            weight = np.where(self.evidence_ > 0, 1.0, 0.0).astype(np.float32)
        self.blend_weight_ = weight
        self.item_vectors_ = (weight[:, None] * own + (1 - weight[:, None]) * predicted
                              ).astype(np.float32)

    @classmethod
    def assemble(cls, params: dict[str, Any], *, tracks: IdMap, cf: CFModel | None,
                 content: np.ndarray, has_content: np.ndarray, item_vectors: np.ndarray,
                 evidence: np.ndarray, blend_weight: np.ndarray,
                 mapping: np.ndarray | None) -> HybridModel:
        """A fitted model from its learned parts (as the model directory stores them, or
        as :meth:`with_tracks` extends them): no copy is made, so mmap'd arrays stay
        mmap'd. Shapes are checked against ``tracks``.

        Raises
        ------
        ParameterError
            A part whose shape does not fit the others, naming it.
        """
        n = len(tracks)
        dim = None if cf is None else int(cf.item_factors_.shape[1])
        for name, array, shape in (("content", content, (n, content.shape[-1])),
                                   ("has_content", has_content, (n,)),
                                   ("item_vectors", item_vectors, (n, dim or 0)),
                                   ("evidence", evidence, (n,)),
                                   ("blend_weight", blend_weight, (n,))):
            if array.shape != shape:
                raise ParameterError(f"{name} has shape {array.shape}; {n} tracks and "
                                     f"CF dim {dim or 0} need {shape}")
        if cf is not None and cf.n_items_ > n:
            raise ParameterError(f"the CF model has {cf.n_items_} tracks, more than {n}")
        model = cls(**params)
        model.tracks_ = tracks
        model.cf_ = cf
        model.users_ = IdMap([], kind="user") if cf is None else cf.users_
        model.n_users_ = len(model.users_)
        model.n_items_ = n
        model.user_items_ = (sp.csr_matrix((0, n), dtype=np.float32) if cf is None else
                             sp.csr_matrix((cf.user_items_.data, cf.user_items_.indices,
                                            cf.user_items_.indptr), shape=(cf.n_users_, n)))
        model.content_ = content
        model.has_content_ = has_content
        model.item_vectors_ = item_vectors
        model.evidence_ = evidence
        model.blend_weight_ = blend_weight
        model.mapping_ = mapping
        return model

    def with_tracks(self, track_ids: list[str], content: np.ndarray) -> HybridModel:
        """A copy of this model with tracks added from their content vectors, without
        retraining: their CF-space vectors are predicted by the content → CF mapping (zero
        without one), and they have no listeners. Learned arrays are copied, so this
        model (mmap'd, perhaps) is left as it is."""
        self._check_fitted()
        content = np.asarray(content, dtype=np.float32)
        if not self.has_content:
            raise ParameterError("a model without content vectors cannot add tracks by "
                                 "their content")
        if content.ndim != 2 or content.shape != (len(track_ids), self.content_.shape[1]):
            raise ParameterError(f"new vectors have shape {content.shape}; expected "
                                 f"({len(track_ids)}, {self.content_.shape[1]}), the "
                                 "model's content dim")
        if not np.isfinite(content).all():
            raise ParameterError("new content vectors must be finite")
        known = [t for t in track_ids if t in self.tracks_]
        if known:
            raise ParameterError(f"track {known[0]!r} is already in the model")
        added = len(track_ids)
        unit = normalize_rows(content)
        zeros = np.zeros(added, np.float32)
        dim = self.item_vectors_.shape[1]
        predicted = (self.predict_cf(unit) if dim and self.mapping_ is not None
                     else np.zeros((added, dim), np.float32))
        return HybridModel.assemble(
            self.get_params(), tracks=self.tracks_.extend(track_ids), cf=self.cf_,
            content=np.vstack([np.asarray(self.content_), unit]),
            has_content=np.concatenate([np.asarray(self.has_content_),
                                        np.linalg.norm(unit, axis=1) > 0]),
            item_vectors=np.vstack([np.asarray(self.item_vectors_), predicted]),
            evidence=np.concatenate([np.asarray(self.evidence_), zeros]),
            blend_weight=np.concatenate([np.asarray(self.blend_weight_), zeros]),
            mapping=self.mapping_)

    def _fit_mapping(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        xb = np.hstack([x, np.ones((len(x), 1), dtype=np.float32)]).astype(np.float64)
        sw = np.sqrt(w)[:, None]
        xw, yw = xb * sw, y.astype(np.float64) * sw
        penalty = self.ridge * np.eye(xb.shape[1])
        penalty[-1, -1] = 0.0  # the bias is not shrunk
        return np.linalg.solve(xw.T @ xw + penalty, xw.T @ yw).astype(np.float32)

    def predict_cf(self, content: np.ndarray) -> np.ndarray:
        """CF vectors predicted from content vectors (rows are normalised first)."""
        if getattr(self, "mapping_", None) is None:
            raise NotFittedError("this model has no content → CF mapping")
        assert self.mapping_ is not None
        unit = normalize_rows(np.atleast_2d(content))
        return (np.hstack([unit, np.ones((len(unit), 1), dtype=np.float32)]) @ self.mapping_
                ).astype(np.float32)

    # -- scoring -------------------------------------------------------------------------
    @property
    def has_cf(self) -> bool:
        return self.cf_ is not None

    @property
    def has_content(self) -> bool:
        return bool(self.has_content_.any())

    def user_profile(self, track_idx: np.ndarray, plays: np.ndarray | None = None) -> np.ndarray:
        """The play-weighted (log1p) mean content vector of a history, unit length."""
        if not self.has_content or len(track_idx) == 0:
            return np.zeros(self.content_.shape[1], dtype=np.float32)
        weights = np.ones(len(track_idx)) if plays is None else np.log1p(np.asarray(plays))
        # a plain view of the (mmap'd) array: np.memmap's bookkeeping is most of the cost
        profile = (weights[:, None] * np.asarray(self.content_)[track_idx]).sum(axis=0)
        norm = np.linalg.norm(profile)
        return (profile / norm if norm > 0 else profile).astype(np.float32)

    def score_user(
        self,
        user_vector: np.ndarray | None,
        history: np.ndarray,
        plays: np.ndarray | None,
        idx: np.ndarray | None = None,
    ) -> np.ndarray:
        """``s(u, ·)`` for a user vector and their history, over every track or ``idx``."""
        items = self.item_vectors_ if idx is None else self.item_vectors_[idx]
        content = self.content_ if idx is None else self.content_[idx]
        scores = np.zeros(len(items), dtype=np.float32)
        scale = 1.0
        if user_vector is not None and items.shape[1]:
            scores += items @ user_vector
            scale = float(np.linalg.norm(user_vector)) or 1.0
        if self.has_content and self.content_weight > 0:
            scores += self.content_weight * scale * (content @ self.user_profile(history, plays))
        return scores

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """``s(u, ·)`` of known users (CF indices), with histories from ``user_items``."""
        if self.cf_ is None:
            raise CapabilityError("this model has no CF part: it knows no users")
        out = np.empty((len(rows), self.n_items_), dtype=np.float32)
        for r, u in enumerate(rows):
            items = user_items.indices[user_items.indptr[r] : user_items.indptr[r + 1]]
            plays = user_items.data[user_items.indptr[r] : user_items.indptr[r + 1]]
            out[r] = self.score_user(self.cf_.user_factors_[u], items, plays)
        return out

    def fold_in(self, history: np.ndarray, plays: np.ndarray | None = None
                ) -> np.ndarray | None:
        """The CF user vector of a listener not in the data (the CF part's fold-in of
        their tracks that have plays), or None when there is none."""
        if self.cf_ is None:
            return None
        history = np.asarray(history, dtype=np.int64)
        known = history < self.cf_.n_items_
        if not known.any():
            return None
        return self.cf_.fold_in(history[known], None if plays is None
                                else np.asarray(plays, dtype=np.float32)[known])

    def _new_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """``s(u, ·)`` with the user vector folded in from the plays (:meth:`fold_in`)."""
        out = np.empty(user_items.shape, dtype=np.float32)
        for r in range(user_items.shape[0]):
            part = slice(user_items.indptr[r], user_items.indptr[r + 1])
            items, plays = user_items.indices[part], user_items.data[part]
            out[r] = self.score_user(self.fold_in(items, plays), items, plays)
        return out

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        """``0.5 cos_content + 0.5 cos_cf`` (whichever part exists, alone)."""
        parts: list[np.ndarray] = []
        if self.has_content:
            parts.append(np.asarray(self.content_[items]) @ np.asarray(self.content_).T)
        if self.has_cf:
            unit = self.unit_cf()
            parts.append(unit[items] @ unit.T)
        return np.asarray(sum(parts) / len(parts), dtype=np.float32)

    def unit_cf(self) -> np.ndarray:
        """Unit CF-space vectors for track-to-track similarity, made once and kept.

        A track with plays keeps its own CF vector ("listeners also played" means what
        its listeners did); a track without plays uses its content prediction.
        """
        if getattr(self, "_unit_cf", None) is None:
            vectors = np.array(self.item_vectors_, dtype=np.float32, copy=True)
            if self.cf_ is not None and vectors.shape[1]:
                n_cf = self.cf_.n_items_
                own = np.asarray(self.evidence_[:n_cf]) > 0
                vectors[:n_cf][own] = self.cf_.item_factors_[own]
            self._unit_cf = normalize_rows(vectors)
        assert self._unit_cf is not None
        return self._unit_cf


class ContentModel(RecommenderBase):
    """Content only: the cosine between a track and the user's content profile (the
    ``log1p``-play-weighted mean of their tracks' unit content vectors)."""

    name = "content"
    requires_content = True
    description = "cosine between a track and the user's content profile"
    scores_from_plays = True

    def __init__(self) -> None:
        pass

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        assert content is not None
        self.content_ = normalize_rows(content)

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        weights = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
        weights.data = np.log1p(weights.data)
        profiles = normalize_rows(np.asarray(weights @ self.content_))
        return (profiles @ np.asarray(self.content_).T).astype(np.float32)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.content_[items]) @ np.asarray(self.content_).T
