"""Recommenders without factors: random, popularity, item-kNN, RP3beta and EASE.

Each implements :class:`~musicrec.recommender.base.RecommenderBase` (fit, scores,
recommend, similar items, save/load), as the factor models of
:mod:`musicrec.recommender.cf` and the content models of :mod:`musicrec.recommender.hybrid`
do. Hyper-parameters are constructor keywords; learned state ends in ``_``.

* ``random``: uniform scores from ``numpy.random.default_rng([random_state, user])``.
* ``popularity``: the number of distinct training listeners of each track.
* ``itemknn``: a shrunk cosine between weighted play columns (each track keeps its ``k``
  most similar other tracks); score = ``X_u @ S``, ``X`` the confidence-weighted play
  matrix.
* ``rp3beta``: popularity-damped three-step random walks (Paudel et al. 2016), kept as a
  sparse top-``k`` track-track matrix; score = ``X_u @ W``.
* ``ease``: Steck (2019), ``B = I - P diag(1/diag(P))``, ``P = (X^T X + l2 I)^-1``, dense,
  in float32 through a Cholesky factorisation (LAPACK ``spotrf``/``spotri``). Tracks with no
  training play have an all-zero column in ``X``; they decouple from the rest and get a
  zero row and column in ``B``, so the inverse only runs over the played tracks (exact).
  Above ``max_items`` played tracks (memory grows as their square) it keeps the
  ``max_items`` tracks with the most listeners; the others are never recommended by it
  (they score below every kept track).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.errors import ParameterError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.cf import PER_PLAY, confidence_values, confidence_weights

log = logging.getLogger(__name__)


class RandomModel(RecommenderBase):
    """Uniformly random scores; ``random_state`` makes them repeatable (same users, same
    scores, whatever the batch)."""

    name = "random"
    description = "uniformly random scores (seeded)"

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        pass

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        out = np.empty((len(rows), self.n_items_), dtype=np.float32)
        for i, row in enumerate(rows):  # per user, so a user's scores do not depend on batching
            out[i] = np.random.default_rng([self.random_state, int(row)]).random(self.n_items_)
        return out


class PopularityModel(RecommenderBase):
    """Every user gets the tracks with the most distinct training listeners."""

    name = "popularity"
    description = "tracks by number of training listeners"
    scores_from_plays = True

    def __init__(self) -> None:
        pass

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        self.listeners_ = user_items.getnnz(axis=0).astype(np.float32)

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.listeners_, (len(rows), self.n_items_)).copy()


def topk_similarity(
    left: sp.csr_matrix,
    right: sp.csc_matrix,
    *,
    k: int,
    column_scale: np.ndarray | None = None,
    row_scale: np.ndarray | None = None,
    shrink: float = 0.0,
    block: int = 512,
) -> sp.csr_matrix:
    """Item-item similarities ``left @ right``, each row cut to its ``k`` largest entries.

    Computed sparse, in blocks of ``block`` rows, so memory stays at one block's
    co-occurrences plus the result. The diagonal (an item with itself) is never kept, nor
    are entries that are not positive.

    Parameters
    ----------
    left : sparse [shape=(n_items, n_users)]
    right : sparse [shape=(n_users, n_items)]
    k : int
        Entries kept per row (the neighbours of each item).
    column_scale, row_scale : np.ndarray [shape=(n_items,)], optional
        Multiply column ``j`` (row ``i``) of the product; with ``shrink``, the product
        is divided by ``row_scale_i * column_scale_j + shrink`` instead (a shrunk cosine).
    shrink : float
        See above; 0 keeps the plain product.

    Returns
    -------
    scipy.sparse.csr_matrix [shape=(n_items, n_items), dtype=float32]
    """
    n = left.shape[0]
    k = int(k)
    indptr, indices, data = [0], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        part = sp.csr_matrix(left[start:stop] @ right, dtype=np.float32)
        part.sum_duplicates()
        rows = np.repeat(np.arange(stop - start), np.diff(part.indptr))
        values, cols = part.data, part.indices
        if shrink:
            rs = np.ones(stop - start, np.float32) if row_scale is None else row_scale[start:stop]
            cs = np.ones(n, np.float32) if column_scale is None else column_scale
            values = values / (rs[rows] * cs[cols] + np.float32(shrink))
        else:
            if column_scale is not None:
                values = values * column_scale[cols]
            if row_scale is not None:
                values = values * row_scale[start:stop][rows]
        values = np.where(cols == rows + start, 0.0, values).astype(np.float32)
        for r in range(stop - start):
            lo, hi = part.indptr[r], part.indptr[r + 1]
            row_values, row_cols = values[lo:hi], cols[lo:hi]
            keep = row_values > 0
            row_values, row_cols = row_values[keep], row_cols[keep]
            if len(row_values) > k:
                top = np.argpartition(-row_values, k - 1)[:k]
                row_values, row_cols = row_values[top], row_cols[top]
            order = np.argsort(row_cols)
            indices.append(row_cols[order])
            data.append(row_values[order])
            indptr.append(indptr[-1] + len(order))
    return sp.csr_matrix(
        (np.concatenate(data) if data else np.zeros(0, np.float32),
         np.concatenate(indices) if indices else np.zeros(0, np.int64), np.array(indptr)),
        shape=(n, n), dtype=np.float32)


#: Tracks up to which a neighbour model keeps a dense copy of its similarities to score
#: one listener (at most 4096² float32: 64 MB)
DENSE_NEIGHBOURS_BELOW = 4096


def _one_listener(user_items: sp.csr_matrix, confidence: str, dense: np.ndarray
                  ) -> np.ndarray | None:
    """``weights @ dense`` for one listener's plays by gathering just the rows of the
    played tracks (no sparse product); None where this does not apply (several rows, or
    a weighting that needs the whole matrix)."""
    if user_items.shape[0] != 1 or confidence not in PER_PLAY:
        return None
    weights = confidence_values(user_items.data, confidence)
    return (weights @ dense[user_items.indices])[None]


class _NeighbourModel(RecommenderBase):
    """Scores ``X_u @ S``: a user's weighted plays times a sparse item-item matrix whose
    rows hold each track's top-``k`` neighbours (``similarity_``, CSR)."""

    scores_from_plays = True
    k: int
    confidence: str
    similarity_: sp.csr_matrix

    def _check_k(self) -> None:
        if not isinstance(self.k, int | np.integer) or isinstance(self.k, bool) or self.k < 1:
            raise ParameterError(f"k={self.k!r} must be a positive integer")

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        if user_items.shape[0] == 1 and self.n_items_ <= DENSE_NEIGHBOURS_BELOW:
            one = _one_listener(user_items, self.confidence, self._dense_similarity())
            if one is not None:
                return one
        weights = confidence_weights(user_items, self.confidence)
        return np.asarray((weights @ self.similarity_).toarray(), dtype=np.float32)

    def _dense_similarity(self) -> np.ndarray:
        """``similarity_`` as a dense array, made once (not saved): on a small catalogue a
        listener's scores gather its played rows, cheaper than a sparse product."""
        dense = getattr(self, "_dense", None)
        if dense is None:
            dense = self._dense = np.asarray(self.similarity_.toarray(), dtype=np.float32)
        return dense

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[items].toarray(), dtype=np.float32)


class ItemKNNModel(_NeighbourModel):
    """Item-based k nearest neighbours with a shrunk cosine similarity.

    ``s_ij = x_i . x_j / (|x_i| |x_j| + shrink)`` over the weighted play columns ``x``;
    each track keeps its ``k`` most similar other tracks (never itself), and a user's
    score is ``X_u @ S``.

    Parameters
    ----------
    k : int
        Neighbours kept per track.
    shrink : float
        Shrinkage of the cosine towards 0 for tracks with few common listeners.
    confidence : {"none", "log1p", "bm25"}
        Weighting of play counts before the cosine (see ``confidence_weights``).
    """

    name = "itemknn"
    description = "item-kNN, shrunk cosine, K=100"

    def __init__(self, *, k: int = 100, shrink: float = 0.0, confidence: str = "log1p"
                 ) -> None:
        self.k = k
        self.shrink = shrink
        self.confidence = confidence

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        self._check_k()
        if not np.isfinite(self.shrink) or self.shrink < 0:
            raise ParameterError(f"shrink={self.shrink!r} must be a number >= 0")
        weights = confidence_weights(user_items, self.confidence).astype(np.float32).tocsr()
        norms = np.sqrt(np.asarray(weights.power(2).sum(axis=0)).ravel()).astype(np.float32)
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        if self.shrink:
            self.similarity_ = topk_similarity(
                weights.T.tocsr(), weights.tocsc(), k=int(self.k),
                row_scale=norms, column_scale=norms, shrink=float(self.shrink))
        else:
            self.similarity_ = topk_similarity(
                weights.T.tocsr(), weights.tocsc(), k=int(self.k),
                row_scale=inverse, column_scale=inverse)


class RP3betaModel(_NeighbourModel):
    """RP3beta (Paudel et al., ACM TiiS 2016): three-step random walks, popularity-damped.

    ``W = P_iu^a P_ui^a`` with ``P`` the row-normalised track-user and user-track
    transition matrices, each column ``j`` divided by ``popularity_j^b``; each track keeps
    its ``k`` largest entries (never itself). A user's score is ``X_u @ W``. Dacrema et al.
    (RecSys 2019) found it among the strongest simple baselines.

    Parameters
    ----------
    k : int
        Neighbours kept per track.
    alpha : float
        Exponent of the transition probabilities (1 = plain random walk).
    beta : float
        Popularity damping (0 = P3alpha).
    confidence : {"none", "log1p", "bm25"}
        Weighting of play counts (``none``: the paper's binary matrix).
    """

    name = "rp3beta"
    description = "RP3beta random walks (Paudel et al. 2016)"

    def __init__(self, *, k: int = 100, alpha: float = 1.0, beta: float = 0.5,
                 confidence: str = "none") -> None:
        self.k = k
        self.alpha = alpha
        self.beta = beta
        self.confidence = confidence

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        self._check_k()
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ParameterError(f"{name}={value!r} must be a number >= 0")
        weights = confidence_weights(user_items, self.confidence).astype(np.float32).tocsr()
        p_ui = _row_normalised(weights)
        p_iu = _row_normalised(weights.T.tocsr())
        if self.alpha != 1:
            p_ui, p_iu = p_ui.power(self.alpha), p_iu.power(self.alpha)
        popularity = weights.getnnz(axis=0).astype(np.float32)
        damping = np.divide(1.0, popularity ** np.float32(self.beta),
                            out=np.zeros_like(popularity), where=popularity > 0)
        self.similarity_ = topk_similarity(p_iu.tocsr(), p_ui.tocsc(), k=int(self.k),
                                           column_scale=damping)


def _row_normalised(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    inverse = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return (sp.diags(inverse.astype(np.float32)) @ matrix).tocsr()


class EASEModel(RecommenderBase):
    """EASE (Steck, WWW 2019): a dense item-item model with a closed form.

    Parameters
    ----------
    l2 : float
        The L2 penalty λ added to the diagonal of the Gram matrix.
    confidence : {"none", "log1p", "bm25"}
        Weighting of play counts (``none`` is the paper's binary matrix).
    max_items : int
        Most tracks in the model: above this many played tracks, only the ``max_items``
        with the most listeners are kept (memory grows as ``4 n²`` bytes, time as
        ``n³``: 20,000 tracks take 1.6 GB).
    n_threads : int, optional
        BLAS threads for the factorisation; ``None`` uses every core.
    """

    name = "ease"
    description = "EASE, dense closed form (Steck 2019)"
    scores_from_plays = True
    #: ease_l2_path's request to keep the sparse Gram matrix after fit (``_gram``)
    _keep_gram = False
    _gram: sp.csr_matrix | None = None

    def __init__(self, *, l2: float = 200.0, confidence: str = "none",
                 max_items: int = 20_000, n_threads: int | None = None) -> None:
        self.l2 = l2
        self.confidence = confidence
        self.max_items = max_items
        self.n_threads = n_threads

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        self._check_l2()
        if not isinstance(self.max_items, int | np.integer) or self.max_items < 1:
            raise ParameterError(f"max_items={self.max_items!r} must be a positive integer")
        weights = confidence_weights(user_items, self.confidence)
        listeners = weights.getnnz(axis=0)
        active = np.flatnonzero(listeners > 0)
        self.dropped_ = np.zeros(0, dtype=np.int64)
        if len(active) > self.max_items:
            # the most-listened tracks, ties by index: deterministic
            keep = np.lexsort((active, -listeners[active]))[: self.max_items]
            log.warning("EASE keeps the %d tracks with the most listeners of %d played "
                        "(max_items); the others are not recommended by it",
                        self.max_items, len(active))
            self.dropped_ = np.setdiff1d(active, active[keep])
            active = np.sort(active[keep])
        x = weights[:, active].tocsc()
        self.active_ = active
        gram = sp.csr_matrix(x.T @ x, dtype=np.float32)
        if self._keep_gram:  # for ease_l2_path, which solves it again at other λ
            self._gram = gram
        self._solve(gram)

    def _check_l2(self) -> None:
        if not np.isfinite(self.l2) or self.l2 <= 0:
            raise ParameterError(f"l2={self.l2!r} must be a positive number")

    def _solve(self, gram_sparse: sp.csr_matrix) -> None:
        """``b_`` from the sparse Gram matrix of the active tracks and ``l2``."""
        from scipy.linalg import lapack
        from threadpoolctl import threadpool_limits

        started = time.perf_counter()
        gram = np.asarray(gram_sparse.toarray(order="F"), dtype=np.float32, order="F")
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
        # matrix in C order, whose rows ``_scores`` gathers contiguously.
        inv = inv.T
        diag = inv.diagonal().copy()
        inv /= -diag[None, :]
        inv[np.diag_indices_from(inv)] = 0.0
        self.b_ = np.ascontiguousarray(inv)
        self.fit_seconds_ = time.perf_counter() - started
        log.info("EASE: %d x %d inverse in %.1f s (l2=%g)", len(self.active_),
                 len(self.active_), self.fit_seconds_, self.l2)

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        if len(self.active_) == self.n_items_:  # every track played: no column gather
            one = _one_listener(user_items, self.confidence, self.b_)
            if one is not None:
                return one
            weights = confidence_weights(user_items, self.confidence)
            return np.asarray(weights @ self.b_, dtype=np.float32)
        weights = confidence_weights(user_items, self.confidence)
        out = np.zeros((len(rows), self.n_items_), dtype=np.float32)
        out[:, self.active_] = weights[:, self.active_] @ self.b_
        out[:, self.dropped_] = -np.inf
        return out

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        """Row ``i`` of ``B``: how much playing ``i`` predicts each track."""
        out = np.zeros((len(items), self.n_items_), dtype=np.float32)
        pos = np.searchsorted(self.active_, items)
        for r, (item, p) in enumerate(zip(items, pos, strict=True)):
            if p < len(self.active_) and self.active_[p] == item:
                out[r, self.active_] = self.b_[p]
        out[:, self.dropped_] = -np.inf
        return out


def _symmetrise_lower(a: np.ndarray, *, block: int = 2048) -> None:
    """Copy the lower triangle of a square array onto its upper triangle, in place."""
    n = a.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        a[start:stop, stop:] = a[stop:, start:stop].T
        tile = a[start:stop, start:stop]
        tile[np.triu_indices(stop - start, 1)] = tile.T[np.triu_indices(stop - start, 1)]


def ease_l2_path(user_items: sp.spmatrix, l2s: list[float], **params: Any
                 ) -> Iterator[EASEModel]:
    """EASE fitted on the same plays at each ``λ`` of ``l2s``, in order.

    The tracks kept and their (sparse) Gram matrix are computed once; each ``λ`` then
    costs one dense factorisation. Each model is yielded as soon as it is fitted and not
    kept here, so only one ``B`` is in memory at a time if the caller drops it.

    Parameters
    ----------
    user_items : scipy.sparse matrix [shape=(n_users, n_tracks)]
    l2s : list of float
    **params :
        Other hyper-parameters of :class:`EASEModel` (``confidence``, ``max_items``, ...).

    Examples
    --------
    >>> for model in ease_l2_path(plays, [100.0, 1000.0]):  # doctest: +SKIP
    ...     print(model.l2, model.recommend(0, n=5))
    """
    if not l2s:
        raise ParameterError("l2s must hold at least one value")
    first = EASEModel(l2=float(l2s[0]), **params)
    first._keep_gram = True
    first.fit(user_items)
    gram, first._gram = first._gram, None
    shared = {key: getattr(first, key) for key in ("users_", "tracks_", "n_users_",
                                                   "n_items_", "user_items_", "active_",
                                                   "dropped_")}
    yield first
    del first
    for l2 in l2s[1:]:
        model = EASEModel(**{**params, "l2": float(l2)})
        model._check_l2()
        for key, value in shared.items():
            setattr(model, key, value)
        model._solve(gram)
        yield model
