"""Top-n selection over score arrays."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_n(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first; excluded indices never appear.

    Ties are broken by the lower index, so results are deterministic.

    Parameters
    ----------
    scores : np.ndarray [shape=(n_items,)]
    n : int
    exclude : np.ndarray [shape=(k,), dtype=int], optional
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    valid = np.isfinite(scores)
    n = min(n, int(valid.sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n < len(scores):
        part = np.argpartition(-scores, n - 1)[:n]
        # Include every item tied with the n-th score, so the tie-break is stable.
        threshold = scores[part].min()
        part = np.flatnonzero(scores >= threshold)
    else:
        part = np.flatnonzero(valid)
    order = np.lexsort((part, -scores[part]))
    return part[order][:n].astype(np.int64)


def top_n_rows(
    scores: np.ndarray, n: int, exclude: sp.csr_matrix | None = None
) -> np.ndarray:
    """Row-wise :func:`top_n` for a ``[n_rows, n_items]`` score matrix, vectorised.

    Exactly :func:`top_n`'s choice and order for every row (ties go to the lower index;
    excluded and non-finite scores never appear); rows with fewer than ``n`` candidates
    are padded with -1. A row where the ``n``-th score is tied beyond the cut goes
    through :func:`top_n` itself.

    Parameters
    ----------
    scores : np.ndarray [shape=(n_rows, n_items)]
    n : int
    exclude : scipy.sparse.csr_matrix [shape=(n_rows, n_items)], optional
        Row ``r``'s indices are never returned for row ``r``.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    n_rows, width = scores.shape
    bad = ~np.isfinite(scores)
    if exclude is not None and exclude.nnz:
        bad[np.repeat(np.arange(n_rows), np.diff(exclude.indptr)), exclude.indices] = True
    if bad.any():
        scores = np.where(bad, -np.inf, scores)
    out = np.full((n_rows, n), -1, dtype=np.int64)
    k = min(n, width)
    if n_rows == 0 or k == 0:
        return out
    part = (np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < width
            else np.broadcast_to(np.arange(width), (n_rows, width)))
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    out[:, :k] = np.where(np.isfinite(np.take_along_axis(values, order, axis=1)), best, -1)
    kth = values.min(axis=1)
    # a finite k-th score tied by a track outside the cut: which one is kept is top_n's rule
    tied = np.isfinite(kth) & ((scores >= kth[:, None]).sum(axis=1) > k)
    for row in np.flatnonzero(tied):
        picked = top_n(scores[row], n)
        out[row] = -1
        out[row, : len(picked)] = picked
    return out
