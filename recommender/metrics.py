"""Ranking metrics, computed per user so that differences can be tested for significance.

Each function takes ``ranked`` (the recommended track indices, best first, ``-1`` for
padding) and ``relevant`` (the held-out track indices of that user) and returns one
float. Relevance is binary.

* ``precision@k = hits / k``
* ``recall@k = hits / |relevant|``
* ``ndcg@k = DCG / IDCG`` with ``DCG = sum_{hit at rank r} 1 / log2(r + 1)`` and IDCG the
  DCG of ``min(k, |relevant|)`` hits at the top
* ``ap@k = (sum_{hit at rank r} precision@r) / min(k, |relevant|)`` (MAP is its mean)
* ``hit@k = 1`` if any hit, else 0
* ``mrr@k = 1 / rank of the first hit`` (0 if none)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from musicrec.errors import ParameterError


def _hits(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> np.ndarray:
    if k < 1:
        raise ParameterError(f"k={k} must be a positive integer")
    rel = relevant if isinstance(relevant, set) else set(np.asarray(relevant).tolist())
    top = np.asarray(ranked)[:k]
    return np.fromiter((int(r) in rel for r in top), dtype=bool, count=len(top))


def _n_relevant(relevant: np.ndarray | set[int]) -> int:
    n = len(relevant)
    if n == 0:
        raise ParameterError("a user with no relevant items cannot be scored")
    return n


def precision_at_k(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> float:
    return float(_hits(ranked, relevant, k).sum()) / k


def recall_at_k(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> float:
    return float(_hits(ranked, relevant, k).sum()) / _n_relevant(relevant)


def ndcg_at_k(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> float:
    hits = _hits(ranked, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(discounts[: len(hits)][hits].sum())
    idcg = float(discounts[: min(k, _n_relevant(relevant))].sum())
    return dcg / idcg


def ap_at_k(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> float:
    hits = _hits(ranked, relevant, k)
    if not hits.any():
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    precisions = np.arange(1, len(ranks) + 1) / ranks
    return float(precisions.sum()) / min(k, _n_relevant(relevant))


def hit_rate_at_k(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> float:
    return float(_hits(ranked, relevant, k).any())


def mrr_at_k(ranked: np.ndarray, relevant: np.ndarray | set[int], k: int) -> float:
    hits = _hits(ranked, relevant, k)
    return 1.0 / (int(np.argmax(hits)) + 1) if hits.any() else 0.0


ACCURACY_METRICS: dict[str, Callable[[np.ndarray, np.ndarray | set[int], int], float]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": ap_at_k,
    "hit_rate": hit_rate_at_k,
    "mrr": mrr_at_k,
}


def hits_matrix(ranked: np.ndarray, relevant: Sequence[np.ndarray | set[int]]) -> np.ndarray:
    """``hits[u, r]`` is true when ``ranked[u, r]`` is one of ``relevant[u]``.

    Vectorised: each (row, item) pair is encoded as one integer key and looked up with
    :func:`numpy.isin`. Padding (``-1``) never hits.

    Parameters
    ----------
    ranked : np.ndarray [shape=(n_users, k), dtype=int]
    relevant : sequence of int arrays or sets, one per row of ``ranked``

    Returns
    -------
    np.ndarray [shape=(n_users, k), dtype=bool]
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != len(relevant):
        raise ParameterError(
            f"ranked has shape {ranked.shape}; it needs one row per user ({len(relevant)})")
    rel_arrays = [np.fromiter(r, dtype=np.int64) if isinstance(r, set)
                  else np.asarray(r, dtype=np.int64).ravel() for r in relevant]
    width = int(max(ranked.max(initial=-1),
                    max((int(a.max(initial=-1)) for a in rel_arrays), default=-1))) + 2
    rows = np.repeat(np.arange(len(rel_arrays), dtype=np.int64),
                     [len(a) for a in rel_arrays])
    rel_keys = rows * width + (np.concatenate(rel_arrays) + 1 if rel_arrays else rows)
    keys = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * width + (ranked + 1)
    hits = np.isin(keys, rel_keys)
    hits &= ranked >= 0
    return hits


def accuracy_from_hits(
    hits: np.ndarray,
    n_relevant: np.ndarray,
    ks: Sequence[int],
    metrics: Sequence[str] = tuple(ACCURACY_METRICS),
) -> dict[str, np.ndarray]:
    """Every accuracy metric at every k from a hits matrix (see :func:`hits_matrix`).

    Gives exactly the values of the per-user functions above, for all users at once.

    Parameters
    ----------
    hits : np.ndarray [shape=(n_users, max_k), dtype=bool]
    n_relevant : np.ndarray [shape=(n_users,), dtype=int]
        How many relevant items each user has (all >= 1).
    ks : sequence of int
    metrics : sequence of str
        Names from :data:`ACCURACY_METRICS`.

    Returns
    -------
    dict
        ``{"ndcg@10": np.ndarray [shape=(n_users,)], ...}``
    """
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if len(n_relevant) and n_relevant.min() < 1:
        row = int(np.argmin(n_relevant))
        raise ParameterError(f"user row {row} has no relevant items and cannot be scored")
    unknown = [m for m in metrics if m not in ACCURACY_METRICS]
    if unknown:
        raise ParameterError(f"unknown metric {unknown[0]!r}; known: {list(ACCURACY_METRICS)}")
    for k in ks:
        if k < 1:
            raise ParameterError(f"k={k} must be a positive integer")
    if ks and max(ks) > hits.shape[1]:
        raise ParameterError(f"k={max(ks)} exceeds the {hits.shape[1]} ranked items")
    h = hits.astype(np.float64)
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    disc = 1.0 / np.log2(ranks + 1)
    cum = np.cumsum(h, axis=1)
    prec_at_hit = h * cum / ranks
    first = np.where(hits.any(axis=1), np.argmax(hits, axis=1) + 1, 0)
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        for k in ks:
            n_hits = cum[:, k - 1]
            cut = np.minimum(k, n_relevant)
            if name == "precision":
                value = n_hits / k
            elif name == "recall":
                value = n_hits / n_relevant
            elif name == "ndcg":
                idcg = np.cumsum(disc[:k])[cut - 1]
                value = (h[:, :k] @ disc[:k]) / idcg
            elif name == "map":
                value = prec_at_hit[:, :k].sum(axis=1) / cut
            elif name == "hit_rate":
                value = (n_hits > 0).astype(np.float64)
            else:  # mrr
                value = np.where((first > 0) & (first <= k), 1.0 / np.maximum(first, 1), 0.0)
            out[f"{name}@{k}"] = value
    return out


def per_user_metrics(
    ranked: np.ndarray,
    relevant: Sequence[np.ndarray | set[int]],
    ks: Sequence[int],
    metrics: Sequence[str] = tuple(ACCURACY_METRICS),
) -> dict[str, np.ndarray]:
    """Every metric at every k for every user: ``{"ndcg@10": array[n_users], ...}``.

    ``ranked`` is ``[n_users, max(ks)]``; row ``i`` is scored against ``relevant[i]``.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(relevant):
        raise ParameterError("ranked must have one row per user with relevant items")
    if max(ks) > ranked.shape[1]:
        raise ParameterError(f"k={max(ks)} exceeds the {ranked.shape[1]} ranked items")
    hits = hits_matrix(ranked, relevant)
    n_rel = np.array([len(r) for r in relevant], dtype=np.int64)
    return accuracy_from_hits(hits, n_rel, ks, metrics)


# -- beyond accuracy ------------------------------------------------------------------------
def _top(ranked: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ParameterError(f"k={k} must be a positive integer")
    return np.asarray(ranked, dtype=np.int64)[:, :k]


def catalog_coverage(ranked: np.ndarray, k: int, *, n_items: int) -> float:
    """The share of the ``n_items`` candidate tracks that appear in at least one top-k list.

    Example: two users, top-2 lists ``[0, 1]`` and ``[1, 2]`` over 10 tracks cover
    ``{0, 1, 2}``: 3 / 10 = 0.3.
    """
    if n_items < 1:
        raise ParameterError(f"n_items={n_items} must be a positive integer")
    top = _top(ranked, k)
    return float(len(np.unique(top[top >= 0]))) / n_items


def self_information(listeners: np.ndarray, n_users: int) -> np.ndarray:
    """``-log2 p(i)`` per track, ``p(i) = (listeners_i + 1) / (n_users + 1)``.

    ``listeners_i`` is the number of training users who played track ``i``; the +1
    smoothing keeps tracks never played in training finite (``log2(n_users + 1)``).
    """
    listeners = np.asarray(listeners, dtype=np.float64)
    if n_users < 1 or (listeners > n_users).any():
        raise ParameterError(f"n_users={n_users} must be >= every listener count (>= 1)")
    return -np.log2((listeners + 1.0) / (n_users + 1.0))


def novelty(ranked: np.ndarray, k: int, *, item_information: np.ndarray) -> np.ndarray:
    """Per user, the mean self-information (see :func:`self_information`) of the top k.

    Padding (``-1``) is ignored; a row with no item gets NaN.
    """
    return _mean_over_items(_top(ranked, k), np.asarray(item_information, dtype=np.float64))


def popularity_percentile(listeners: np.ndarray) -> np.ndarray:
    """Each track's popularity percentile in [0, 100]: ``100 * (rank - 1) / (n - 1)``.

    ``rank`` is the average rank (1 = least popular) of its listener count, so tied tracks
    share a percentile; the most popular track is at 100.
    """
    from scipy.stats import rankdata

    listeners = np.asarray(listeners, dtype=np.float64)
    if len(listeners) < 2:
        return np.full(len(listeners), 100.0)
    return 100.0 * (rankdata(listeners, method="average") - 1.0) / (len(listeners) - 1.0)


def popularity_bias(ranked: np.ndarray, k: int, *, item_percentile: np.ndarray) -> np.ndarray:
    """Per user, the mean popularity percentile (see :func:`popularity_percentile`) of the top k."""
    return _mean_over_items(_top(ranked, k), np.asarray(item_percentile, dtype=np.float64))


def intra_list_diversity(ranked: np.ndarray, k: int, *, vectors: np.ndarray) -> np.ndarray:
    """Per user, the mean pairwise cosine distance ``1 - cos`` between the top-k tracks.

    Computed as ``1 - (|sum v|^2 - m) / (m (m - 1))`` over the ``m`` unit vectors of the
    list; tracks with a zero vector are left out. A list of fewer than two usable tracks
    gets NaN.

    Parameters
    ----------
    ranked : np.ndarray [shape=(n_users, >=k), dtype=int]
    k : int
    vectors : np.ndarray [shape=(n_tracks, dim)]
        Content vectors, one per track index.
    """
    top = _top(ranked, k)
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors),
                     where=norms[:, None] > 0)
    valid = (top >= 0) & (norms[np.maximum(top, 0)] > 0)
    gathered = unit[np.maximum(top, 0)] * valid[..., None]
    m = valid.sum(axis=1).astype(np.float64)
    total = np.einsum("ud,ud->u", gathered.sum(axis=1), gathered.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_cos = (total - m) / (m * (m - 1.0))
    return np.where(m >= 2, 1.0 - mean_cos, np.nan)


def _mean_over_items(top: np.ndarray, values: np.ndarray) -> np.ndarray:
    valid = top >= 0
    gathered = np.where(valid, values[np.maximum(top, 0)], 0.0)
    count = valid.sum(axis=1)
    return np.divide(gathered.sum(axis=1), count, out=np.full(len(top), np.nan),
                     where=count > 0)


def ranking_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per row, ``|top_k(a) ∩ top_k(b)| / k``: how far an approximate ranking agrees.

    Use it to compare the ANN index's results with the exact ranking of the served
    configuration. Padding (``-1``) never counts as a match.

    Parameters
    ----------
    a, b : np.ndarray [shape=(n_rows, >=k), dtype=int]
        Ranked track indices, best first (a 1-d array is one row).
    k : int

    Examples
    --------
    >>> ranking_overlap(np.array([[1, 2, 3]]), np.array([[3, 9, 1]]), 3)
    array([0.66666667])
    """
    a2 = np.atleast_2d(np.asarray(a, dtype=np.int64))
    b2 = np.atleast_2d(np.asarray(b, dtype=np.int64))
    if a2.shape[0] != b2.shape[0]:
        raise ParameterError(f"the rankings have {a2.shape[0]} and {b2.shape[0]} rows")
    if k < 1 or k > min(a2.shape[1], b2.shape[1]):
        raise ParameterError(
            f"k={k} must lie in 1..{min(a2.shape[1], b2.shape[1])} (the rankings' length)")
    hits = hits_matrix(a2[:, :k], [row[row >= 0] for row in b2[:, :k]])
    return hits.sum(axis=1) / k
