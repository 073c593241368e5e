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
from musicrec.errors import NotFittedError, ParameterError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.index import normalize_rows

log = logging.getLogger(__name__)


class HybridModel:
    """Blend per-track content vectors with a fitted :class:`CFModel`.

    Parameters
    ----------
    shrinkage : float
        Listener count at which a track's own CF vector and its content prediction weigh
        the same.
    ridge : float
        L2 penalty of the content → CF regression.
    content_weight : float
        β, the weight of the user-profile content match in user scores.
    """

    def __init__(self, *, shrinkage: float = 10.0, ridge: float = 1.0,
                 content_weight: float = 0.5) -> None:
        self.shrinkage = shrinkage
        self.ridge = ridge
        self.content_weight = content_weight

    def get_params(self) -> dict[str, float]:
        return {"shrinkage": self.shrinkage, "ridge": self.ridge,
                "content_weight": self.content_weight}

    def fit(
        self,
        *,
        cf: CFModel | None,
        content_ids: list[str] | np.ndarray | None,
        content: np.ndarray | None,
    ) -> HybridModel:
        """Blend; either part may be missing (content-only or CF-only models)."""
        for name in ("shrinkage", "ridge", "content_weight"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ParameterError(f"{name}={value!r} must be a finite number >= 0")
        if cf is None and content is None:
            raise ParameterError("a hybrid model needs CF, content vectors, or both")
        if content is not None:
            if content_ids is None or len(content_ids) != len(content):
                raise ParameterError("content_ids must name one track per content vector")
            if content.ndim != 2 or not np.isfinite(content).all():
                raise ParameterError("content vectors must be a finite [n, dim] array")
        cf_ids = list(cf.tracks_.ids) if cf is not None else []
        extra = [] if content_ids is None else [str(t) for t in content_ids]
        self.tracks_ = IdMap(list(dict.fromkeys([*cf_ids, *extra])), kind="track")
        n = len(self.tracks_)
        self.cf_ = cf

        self.has_content_ = np.zeros(n, dtype=bool)
        dim = 0 if content is None else content.shape[1]
        self.content_ = np.zeros((n, dim), dtype=np.float32)
        if content is not None and content_ids is not None:
            rows = self.tracks_.to_idx_many([str(t) for t in content_ids])
            unit = normalize_rows(content)
            self.content_[rows] = unit
            self.has_content_[rows] = np.linalg.norm(unit, axis=1) > 0

        self.evidence_ = np.zeros(n, dtype=np.float32)
        if cf is None:
            self.mapping_ = None
            self.item_vectors_ = np.zeros((n, 0), dtype=np.float32)
            self.blend_weight_ = np.zeros(n, dtype=np.float32)
            return self
        listeners = np.asarray((cf.user_items_ > 0).sum(axis=0)).ravel()
        self.evidence_[: len(cf_ids)] = listeners
        own = np.zeros((n, cf.item_factors_.shape[1]), dtype=np.float32)
        own[: len(cf_ids)] = cf.item_factors_
        weight = self.evidence_ / (self.evidence_ + self.shrinkage) if self.shrinkage > 0 \
            else (self.evidence_ > 0).astype(np.float32)
        weight = np.where(self.has_content_, weight, 1.0).astype(np.float32)
        predicted = np.zeros_like(own)
        train = self.has_content_ & (self.evidence_ > 0)
        if content is not None and train.sum() >= 2:
            self.mapping_ = self._fit_mapping(self.content_[train], own[train],
                                              np.log1p(self.evidence_[train]))
            predicted[self.has_content_] = self.predict_cf(self.content_[self.has_content_])
        else:
            self.mapping_ = None
            weight = np.where(self.evidence_ > 0, 1.0, 0.0).astype(np.float32)
        self.blend_weight_ = weight
        self.item_vectors_ = (weight[:, None] * own + (1 - weight[:, None]) * predicted
                              ).astype(np.float32)
        return self

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
        profile = (weights[:, None] * self.content_[track_idx]).sum(axis=0)
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

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        """Scores of known users (indices of the CF model) over every track."""
        if self.cf_ is None:
            raise NotFittedError("this model has no CF part: it knows no users")
        ui: sp.csr_matrix = self.cf_.user_items_
        out = np.empty((len(user_idx), len(self.tracks_)), dtype=np.float32)
        for row, u in enumerate(user_idx):
            items = ui.indices[ui.indptr[u] : ui.indptr[u + 1]]
            plays = ui.data[ui.indptr[u] : ui.indptr[u + 1]]
            out[row] = self.score_user(self.cf_.user_factors_[u], items, plays)
        return out

    def unit_cf(self) -> np.ndarray:
        """Unit CF-space vectors for track-to-track similarity.

        A track with plays keeps its own CF vector ("listeners also played" means what
        its listeners did); a track without plays uses its content prediction.
        """
        vectors = np.array(self.item_vectors_, dtype=np.float32, copy=True)
        if self.cf_ is not None and vectors.shape[1]:
            n_cf = len(self.cf_.tracks_)
            own = np.asarray(self.evidence_[:n_cf]) > 0
            vectors[:n_cf][own] = self.cf_.item_factors_[own]
        return normalize_rows(vectors)


# -- evaluation scorers (registered as the models "content" and "hybrid") -------------------
class ContentScorer:
    """Content only: the cosine between a track and the user's content profile."""

    name = "content"

    def fit(self, train: Any, *, content: np.ndarray | None = None) -> ContentScorer:
        if content is None:
            raise ParameterError("the content model needs content vectors")
        self.content_ = normalize_rows(content)
        self.user_items_ = train.to_csr()
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        ui = self.user_items_[np.asarray(user_idx)]
        weights = ui.copy()
        weights.data = np.log1p(weights.data)
        profiles = normalize_rows(np.asarray(weights @ self.content_))
        return (profiles @ self.content_.T).astype(np.float32)


class HybridScorer:
    """The engine's hybrid: ALS blended with content (see the module docstring)."""

    name = "hybrid"

    def __init__(self, *, shrinkage: float = 10.0, ridge: float = 1.0,
                 content_weight: float = 0.5, **cf_params: Any) -> None:
        self.blend = {"shrinkage": shrinkage, "ridge": ridge, "content_weight": content_weight}
        self.cf_params = cf_params

    def fit(self, train: Any, *, content: np.ndarray | None = None) -> HybridScorer:
        if content is None:
            raise ParameterError("the hybrid model needs content vectors")
        cf = CFModel(**{"random_state": 0, **self.cf_params}).fit(train)
        has = np.linalg.norm(content, axis=1) > 0
        self.model_ = HybridModel(**self.blend).fit(
            cf=cf, content_ids=train.tracks.ids[has], content=content[has])
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        return self.model_.score_users(np.asarray(user_idx))


def _register() -> None:
    from musicrec.recommender.evaluation.registry import register_model

    register_model("content", ContentScorer, requires_content=True, replace=True,
                   description="cosine between a track and the user's content profile")
    register_model("hybrid", HybridScorer, requires_content=True, replace=True,
                   description="ALS blended with content (the engine's model)")


_register()
