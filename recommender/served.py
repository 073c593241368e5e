"""The model chosen on validation: each candidate tuned on a split of the training plays.

:class:`ServedModel` is a :class:`~musicrec.recommender.base.RecommenderBase` whose
``fit`` makes the choice: it cuts a random holdout (``fraction`` of each user's tracks,
users with at least ``min_history``) from the plays it is given, fits every candidate at
every point of its small grid on the rest, and scores NDCG@``k`` on the held-out part.
The best is also blended with each of the others, ``w · s₁ + (1 - w) · s₂`` over per-user
min-max normalised scores, for ``w`` in ``blend_weights``. The winner (one candidate, or
the blend) is refitted on all the plays. Only the plays given to ``fit`` are read, so
inside an evaluation it re-chooses within each training split and never sees the test set.

``report_`` (JSON) records every candidate's validation score and the choice.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.data.logs import ListeningLog
from musicrec.data.splits import random_holdout
from musicrec.errors import ModelSkipped, ParameterError
from musicrec.recommender import metrics as M
from musicrec.recommender._rank import top_n
from musicrec.recommender.base import RecommenderBase

log = logging.getLogger(__name__)

#: Candidates and their grids: small, so that a choice costs a few fits of each.
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "als": [{}],
    "itemknn": [{"k": 100, "shrink": 0.0}, {"k": 400, "shrink": 50.0}],
    "rp3beta": [{"k": 200, "alpha": 1.0, "beta": 0.2}],
    "ease": [{"l2": 200.0}],
}
#: The hybrid's grid, when there is content: the defaults, and a larger ALS (128 factors,
#: λ=40) with a heavier content match (β=1), better on HetRec 2K's validation split
#: (README, *HetRec 2K*).
HYBRID_GRID: list[dict[str, Any]] = [
    {}, {"cf_params": {"factors": 128, "regularization": 40.0}, "content_weight": 1.0}]
BLEND_WEIGHTS = (0.25, 0.5, 0.75)


class ServedModel(RecommenderBase):
    """The candidate (or blend of the best with another) that wins on validation.

    Parameters
    ----------
    grids : dict, optional
        Candidate model name -> list of hyper-parameter dicts to try; default
        :data:`DEFAULT_GRIDS`, plus the hybrid when ``fit`` is given content vectors.
    k : int
        NDCG@k decides.
    fraction, min_history :
        The validation holdout cut from the plays given to ``fit``.
    blend_weights : list of float
        Weights of the best candidate in a blend with each other one; empty: no blends.
    random_state : int, optional
        Seeds the validation split and every candidate with a ``random_state``.
    """

    name = "served"
    description = "what build serves: the candidate or blend best on validation"

    def __init__(self, *, grids: dict[str, list[dict[str, Any]]] | None = None, k: int = 10,
                 fraction: float = 0.2, min_history: int = 5,
                 blend_weights: list[float] | None = None,
                 random_state: int | None = None) -> None:
        self.grids = grids
        self.k = k
        self.fraction = fraction
        self.min_history = min_history
        self.blend_weights = blend_weights
        self.random_state = random_state

    def _candidate(self, name: str, params: dict[str, Any]) -> RecommenderBase:
        from musicrec.recommender.registry import create_model  # the registry lists us

        model = create_model(name, **params)
        if "random_state" in model.param_names() and "random_state" not in params:
            model.set_params(random_state=0 if self.random_state is None
                             else self.random_state)
        return model

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        grids = self.grids
        if grids is None:  # the hybrid (ALS + content) joins them when there is content
            grids = DEFAULT_GRIDS if content is None else {**DEFAULT_GRIDS,
                                                           "hybrid": HYBRID_GRID}
        if not grids or any(not points for points in grids.values()):
            raise ParameterError(f"grids={grids!r} must name candidates, each with at least "
                                 "one parameter set")
        weights = list(BLEND_WEIGHTS if self.blend_weights is None else self.blend_weights)
        coo = user_items.tocoo()
        plays = ListeningLog(self.users_, self.tracks_, coo.row.astype(np.int32),
                             coo.col.astype(np.int32), coo.data.astype(np.float32))
        split = random_holdout(plays, fraction=self.fraction, min_history=self.min_history,
                               seed=1 if self.random_state is None else self.random_state)
        trials: list[dict[str, Any]] = []
        fitted: list[tuple[float, str, dict[str, Any], RecommenderBase]] = []
        if len(split.test) == 0:
            raise ModelSkipped(f"served: no listener has {self.min_history} plays, so there "
                               "is no validation split to choose on (lower min_history)")
        train = split.train.to_csr()
        users = np.unique(split.test.user_idx).astype(np.int64)
        relevant = _relevant(split.test, users)
        for name, points in grids.items():
            for params in points:
                started = time.perf_counter()
                model = self._candidate(name, dict(params)).fit(train, content=content)
                score = _ndcg(lambda rows, m=model: m.scores(rows), train, users, relevant,
                              self.k)
                trials.append({"model": name, "params": dict(params), "ndcg": round(score, 5),
                               "seconds": round(time.perf_counter() - started, 2)})
                fitted.append((score, name, dict(params), model))
                log.info("served: %s %s validation ndcg@%d %.4f", name, params, self.k, score)
        # the best point of each candidate, best candidate first
        best_of: dict[str, tuple[float, str, dict[str, Any], RecommenderBase]] = {}
        for entry in fitted:
            if entry[1] not in best_of or entry[0] > best_of[entry[1]][0]:
                best_of[entry[1]] = entry
        ranked = sorted(best_of.values(), key=lambda e: -e[0])
        choice: dict[str, Any] = {"model": ranked[0][1], "params": ranked[0][2],
                                  "ndcg": round(ranked[0][0], 5)}
        best_score, weight, partner = ranked[0][0], 1.0, 0
        for other in range(1, len(ranked)):  # the best candidate with each of the others
            for w in weights:
                score = _ndcg(lambda rows, w=w, a=ranked[0][3], b=ranked[other][3]: _blend(
                    a.scores(rows), b.scores(rows), w), train, users, relevant, self.k)
                trials.append({"model": "blend", "params": {"first": ranked[0][1],
                                                            "second": ranked[other][1],
                                                            "weight": w},
                               "ndcg": round(score, 5)})
                if score > best_score:
                    best_score, weight, partner = score, w, other
        # free the validation fits (EASE's is n_tracks² floats) before refitting
        winners = [(name, params) for _, name, params, _ in (ranked[0], ranked[partner])]
        del fitted, best_of, ranked
        self.first_ = self._candidate(*winners[0]).fit(user_items, content=content)
        self.second_: RecommenderBase | None = None
        if weight < 1.0:
            self.second_ = self._candidate(*winners[1]).fit(user_items, content=content)
            choice = {"model": "blend", "first": winners[0][0], "second": winners[1][0],
                      "weight": weight, "ndcg": round(best_score, 5)}
        self.weight_ = float(weight)
        self.report_ = json.dumps({"metric": f"ndcg@{self.k}", "trials": trials,
                                   "choice": choice,
                                   "validation": {"fraction": self.fraction,
                                                  "min_history": self.min_history,
                                                  "users": int(len(users))}})
        log.info("served: chose %s", choice)

    @property
    def report(self) -> dict[str, Any]:
        """Every candidate's validation score and the choice."""
        self._check_fitted()
        return dict(json.loads(self.report_))

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        first = self.first_.scores(rows, user_items)
        if self.second_ is None:
            return first
        return _blend(first, self.second_.scores(rows, user_items), self.weight_)

    def _new_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """As for a known user: the chosen model's (or blend's) scores of the plays, each
        model scoring a new listener its own way (item-item models through their
        neighbour matrix, ALS by fold-in)."""
        first = self.first_.scores_new(user_items)
        if self.second_ is None:
            return first
        return _blend(first, self.second_.scores_new(user_items), self.weight_)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return self.first_._similar_scores(items)

    # -- added for similar tracks and the radio (h15sim, issue 15): the one method that
    # -- recommender/similarity.py reads; keep it true if the blend changes shape
    def parts(self) -> list[tuple[RecommenderBase, float]]:
        """The fitted model(s) this choice serves, each with its weight in the blend
        (weights sum to 1): ``[(first_, 1.0)]``, or ``[(first_, w), (second_, 1 - w)]``."""
        self._check_fitted()
        if self.second_ is None:
            return [(self.first_, 1.0)]
        return [(self.first_, self.weight_), (self.second_, 1.0 - self.weight_)]


def _blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """``weight · a + (1 - weight) · b``, each row min-max scaled to [0, 1] over its finite
    entries (a track one model cannot score stays at -inf)."""
    return (weight * minmax_rows(a) + (1 - weight) * minmax_rows(b)).astype(np.float32)


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] over its finite entries; -inf stays -inf."""
    finite = np.isfinite(scores)
    lo = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(finite, (scores - lo) / span, -np.inf)


def _relevant(test: ListeningLog, users: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(test.user_idx, kind="stable")
    bounds = np.append(np.searchsorted(test.user_idx[order], users), len(order))
    return [test.track_idx[order[bounds[i]: bounds[i + 1]]] for i in range(len(users))]


def _ndcg(score: Any, train: sp.csr_matrix, users: np.ndarray, relevant: list[np.ndarray],
          k: int, batch: int = 256) -> float:
    """Mean NDCG@k of ``score(rows)`` with each user's training tracks excluded."""
    ranked = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), batch):
        rows = users[start: start + batch]
        scores = score(rows)
        for i, u in enumerate(rows):
            best = top_n(scores[i], k, train.indices[train.indptr[u]: train.indptr[u + 1]])
            ranked[start + i, : len(best)] = best
    values = M.accuracy_from_hits(M.hits_matrix(ranked, relevant),
                                  np.array([len(r) for r in relevant]), [k], ["ndcg"])
    return float(values[f"ndcg@{k}"].mean())
