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
    """Row-wise :func:`top_n` for a ``[n_rows, n_items]`` score matrix.

    Rows with fewer than ``n`` candidates are padded with -1.
    """
    out = np.full((scores.shape[0], n), -1, dtype=np.int64)
    for row in range(scores.shape[0]):
        excl = None
        if exclude is not None:
            excl = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
        best = top_n(scores[row], n, excl)
        out[row, : len(best)] = best
    return out
