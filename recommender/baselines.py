"""Baseline recommenders for offline evaluation: random, popularity, ALS/BPR, item-kNN, EASE.

Each implements the scorer protocol of :mod:`musicrec.recommender.evaluation.registry`:
``fit(train, *, content=None) -> self`` and ``score(user_idx) -> [n, n_tracks]``.
Hyper-parameters are constructor keywords; learned state ends in ``_``.

* ``random``: uniform scores from ``numpy.random.default_rng(seed)``.
* ``popularity``: the number of distinct training listeners of each track.
* ``als`` / ``bpr``: :class:`~musicrec.recommender.cf.CFModel`; score = ``U @ V.T``.
* ``itemknn``: implicit's ``CosineRecommender`` (each track keeps its ``k`` most similar
  tracks); score = ``X_u @ S``, ``X`` the confidence-weighted play matrix.
* ``ease``: Steck (2019), ``B = I - P diag(1/diag(P))``, ``P = (X^T X + l2 I)^-1``, dense,
  in float32 through a Cholesky factorisation (LAPACK ``spotrf``/``spotri``). Tracks with no
  training play have an all-zero column in ``X``; they decouple from the rest and get a
  zero row and column in ``B``, so the inverse only runs over the played tracks (exact).
  Above ``max_items`` played tracks the model raises :class:`ModelSkipped`.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import scipy.sparse as sp

from musicrec.data.logs import ListeningLog
from musicrec.errors import NotFittedError, ParameterError
from musicrec.recommender.cf import DEFAULTS, CFModel, confidence_weights
from musicrec.recommender.evaluation.registry import ModelSkipped

log = logging.getLogger(__name__)


class _Base:
    name = "base"

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_tracks_"):
            raise NotFittedError(f"model {self.name!r} is not fitted yet; call fit()")

    def _rows(self, user_idx: np.ndarray) -> np.ndarray:
        self._check_fitted()
        rows = np.asarray(user_idx, dtype=np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= self.n_users_)):
            raise ParameterError(
                f"user_idx must be a 1-d array of indices in 0..{self.n_users_ - 1}")
        return rows

    def _fit_shape(self, train: ListeningLog) -> None:
        if len(train) == 0:
            raise ParameterError(f"cannot fit {self.name!r} on an empty training log")
        self.n_users_ = train.n_users
        self.n_tracks_ = train.n_tracks


class RandomScorer(_Base):
    """Uniformly random scores; ``seed`` makes them repeatable (same users, same scores)."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: ListeningLog, *, content: np.ndarray | None = None) -> RandomScorer:
        self._fit_shape(train)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = self._rows(user_idx)
        out = np.empty((len(rows), self.n_tracks_), dtype=np.float32)
        for i, row in enumerate(rows):  # per user, so a user's scores do not depend on batching
            out[i] = np.random.default_rng([self.seed, int(row)]).random(self.n_tracks_)
        return out


class PopularityScorer(_Base):
    """Every user gets the tracks with the most distinct training listeners."""

    name = "popularity"

    def __init__(self) -> None:
        pass

    def fit(self, train: ListeningLog, *, content: np.ndarray | None = None) -> PopularityScorer:
        self._fit_shape(train)
        self.listeners_ = np.bincount(train.track_idx, minlength=train.n_tracks).astype(
            np.float32)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = self._rows(user_idx)
        return np.broadcast_to(self.listeners_, (len(rows), self.n_tracks_)).copy()


class ALSScorer(_Base):
    """:class:`CFModel` (``algorithm="als"``); keywords are CFModel's hyper-parameters,
    with CFModel's defaults (tuned on HetRec 2K)."""

    name = "als"
    algorithm = "als"

    def __init__(
        self,
        *,
        factors: int = DEFAULTS["factors"],
        regularization: float = DEFAULTS["regularization"],
        iterations: int = DEFAULTS["iterations"],
        alpha: float = DEFAULTS["alpha"],
        confidence: str = DEFAULTS["confidence"],
        learning_rate: float = DEFAULTS["learning_rate"],
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.confidence = confidence
        self.learning_rate = learning_rate
        self.random_state = random_state

    def get_params(self) -> dict[str, object]:
        return {"factors": self.factors, "regularization": self.regularization,
                "iterations": self.iterations, "alpha": self.alpha,
                "confidence": self.confidence, "random_state": self.random_state,
                **({"learning_rate": self.learning_rate} if self.algorithm == "bpr" else {})}

    def fit(self, train: ListeningLog, *, content: np.ndarray | None = None) -> ALSScorer:
        self._fit_shape(train)
        self.model_ = CFModel(
            algorithm=self.algorithm, factors=int(self.factors),
            regularization=float(self.regularization), iterations=int(self.iterations),
            alpha=float(self.alpha), confidence=self.confidence,
            learning_rate=float(self.learning_rate), random_state=self.random_state,
        ).fit(train)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = self._rows(user_idx)
        return self.model_.user_factors_[rows] @ self.model_.item_factors_.T


class BPRScorer(ALSScorer):
    """:class:`CFModel` with ``algorithm="bpr"``."""

    name = "bpr"
    algorithm = "bpr"

    def __init__(self, *, factors: int = 64, regularization: float = 0.01,
                 iterations: int = 100, learning_rate: float = 0.01,
                 confidence: str = "log1p", random_state: int = 0) -> None:
        super().__init__(factors=factors, regularization=regularization, iterations=iterations,
                         confidence=confidence, learning_rate=learning_rate,
                         random_state=random_state)


class ItemKNNScorer(_Base):
    """Item-based k nearest neighbours with cosine similarity (as implicit's CosineRecommender).

    Parameters
    ----------
    k : int
        Neighbours kept per track.
    confidence : {"none", "log1p", "bm25"}
        Weighting of play counts before the cosine (see ``confidence_weights``).
    """

    name = "itemknn"

    def __init__(self, *, k: int = 100, confidence: str = "log1p") -> None:
        self.k = k
        self.confidence = confidence

    def get_params(self) -> dict[str, object]:
        return {"k": self.k, "confidence": self.confidence}

    def fit(self, train: ListeningLog, *, content: np.ndarray | None = None) -> ItemKNNScorer:
        from implicit.nearest_neighbours import ItemItemRecommender

        if not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ParameterError(f"k={self.k!r} must be a positive integer")
        self._fit_shape(train)
        self.user_items_ = confidence_weights(train.to_csr(), self.confidence)
        # implicit's CosineRecommender, with the column normalisation done here so that
        # the matrix handed to implicit is CSR (it warns on anything else).
        norms = np.sqrt(np.asarray(self.user_items_.power(2).sum(axis=0)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        unit = (self.user_items_.astype(np.float64) @ sp.diags(scale)).tocsr()
        knn = ItemItemRecommender(K=int(self.k), num_threads=1)
        knn.fit(unit, show_progress=False)
        self.similarity_ = sp.csr_matrix(knn.similarity, dtype=np.float32)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = self._rows(user_idx)
        return np.asarray((self.user_items_[rows] @ self.similarity_).toarray(),
                          dtype=np.float32)


class EASEScorer(_Base):
    """EASE (Steck, WWW 2019): a dense item-item model with a closed form.

    Parameters
    ----------
    l2 : float
        The L2 penalty λ added to the diagonal of the Gram matrix.
    confidence : {"none", "log1p", "bm25"}
        Weighting of play counts (``none`` is the paper's binary matrix).
    max_items : int
        Above this many played tracks the fit raises :class:`ModelSkipped` (memory grows
        as ``4 n²`` bytes, time as ``n³``).
    n_threads : int, optional
        BLAS threads for the factorisation; ``None`` uses every core.
    """

    name = "ease"

    def __init__(self, *, l2: float = 200.0, confidence: str = "none",
                 max_items: int = 20_000, n_threads: int | None = None) -> None:
        self.l2 = l2
        self.confidence = confidence
        self.max_items = max_items
        self.n_threads = n_threads

    def get_params(self) -> dict[str, object]:
        return {"l2": self.l2, "confidence": self.confidence, "max_items": self.max_items}

    def fit(self, train: ListeningLog, *, content: np.ndarray | None = None) -> EASEScorer:
        from scipy.linalg import lapack
        from threadpoolctl import threadpool_limits

        if not np.isfinite(self.l2) or self.l2 <= 0:
            raise ParameterError(f"l2={self.l2!r} must be a positive number")
        self._fit_shape(train)
        weights = confidence_weights(train.to_csr(), self.confidence)
        active = np.flatnonzero(weights.getnnz(axis=0) > 0)
        if len(active) > self.max_items:
            raise ModelSkipped(
                f"EASE skipped: {len(active)} played tracks exceed max_items={self.max_items} "
                f"(the dense inverse would need {4 * len(active) ** 2 / 2**30:.1f} GiB)")
        started = time.perf_counter()
        x = weights[:, active].tocsc()
        gram = np.asarray((x.T @ x).toarray(), dtype=np.float32, order="F")
        gram[np.diag_indices_from(gram)] += np.float32(self.l2)
        threads = self.n_threads or os.cpu_count() or 1
        with threadpool_limits(limits=threads):
            chol, info = lapack.spotrf(gram, lower=1, overwrite_a=1, clean=0)
            if info != 0:
                raise ParameterError(f"EASE: the Gram matrix is not positive definite "
                                     f"(LAPACK info={info}); raise l2={self.l2}")
            inv, info = lapack.spotri(chol, lower=1, overwrite_c=1)
        del gram, chol
        _symmetrise_lower(inv)
        # LAPACK hands back a Fortran-ordered array; its transpose is the same symmetric
        # matrix in C order, whose rows ``score`` gathers contiguously.
        inv = inv.T
        diag = inv.diagonal().copy()
        inv /= -diag[None, :]
        inv[np.diag_indices_from(inv)] = 0.0
        self.active_ = active
        self.weights_ = weights[:, active].tocsr()
        self.b_ = inv
        self.fit_seconds_ = time.perf_counter() - started
        log.info("EASE: %d x %d inverse in %.1f s", len(active), len(active), self.fit_seconds_)
        return self

    def score(self, user_idx: np.ndarray) -> np.ndarray:
        rows = self._rows(user_idx)
        out = np.zeros((len(rows), self.n_tracks_), dtype=np.float32)
        out[:, self.active_] = self.weights_[rows] @ self.b_
        return out


def _symmetrise_lower(a: np.ndarray, *, block: int = 2048) -> None:
    """Copy the lower triangle of a square array onto its upper triangle, in place."""
    n = a.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        a[start:stop, stop:] = a[stop:, start:stop].T
        tile = a[start:stop, start:stop]
        tile[np.triu_indices(stop - start, 1)] = tile.T[np.triu_indices(stop - start, 1)]
