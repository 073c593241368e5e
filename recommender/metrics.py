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
    out: dict[str, np.ndarray] = {}
    rel_sets = [r if isinstance(r, set) else set(np.asarray(r).tolist()) for r in relevant]
    for name in metrics:
        fn = ACCURACY_METRICS[name]
        for k in ks:
            out[f"{name}@{k}"] = np.array(
                [fn(row, rel, k) for row, rel in zip(ranked, rel_sets, strict=True)]
            )
    return out
