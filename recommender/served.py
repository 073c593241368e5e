"""The model chosen on validation: each candidate tuned on a split of the training plays.

:class:`ServedModel` is a :class:`~musicrec.recommender.base.RecommenderBase` whose
``fit`` makes the choice: it cuts a random holdout (``fraction`` of each user's tracks,
users with at least ``min_history``) from the plays it is given, fits every candidate at
every point of its grid on the rest, and scores NDCG@``k`` on the held-out part (EASE's
``λ`` grid shares one Gram matrix, :func:`~musicrec.recommender.baselines.ease_l2_path`).

Then an ensemble is grown greedily from the best candidate (forward selection with
replacement, Caruana et al., ICML 2004): each step tries every candidate (the best point of
each) at each weight ``w`` of ``blend_weights``, ``(1 - w) · ensemble + w · candidate``
over per-user normalised scores, and keeps the trial that improves validation NDCG by more
than ``min_gain`` and by more than ``min_z`` standard errors of the per-user paired
differences (a gain the validation users' noise explains is not taken); it stops when none
does, after ``max_steps`` steps, and never holds more than ``max_members`` models (serving
cost grows with each). Each normalisation of
``normalisations`` (per-user min-max, or z-score, over every track) grows its own
ensemble; a later one replaces the first one's only if it passes the same gate against
it. The winner (one candidate, or the ensemble) is
refitted on all the plays. Only the plays given to ``fit`` are read, so inside an
evaluation it re-chooses within each training split and never sees the test set.

``report_`` (JSON) records every trial's validation score (each candidate's grid points and
each ensemble tried) and the choice.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.data.logs import ListeningLog
from musicrec.data.splits import random_holdout
from musicrec.errors import ModelSkipped, ParameterError
from musicrec.recommender import metrics as M
from musicrec.recommender._rank import top_n_rows
from musicrec.recommender.base import RecommenderBase

log = logging.getLogger(__name__)

#: EASE's λ grid: log-spaced over a few orders (each point costs one dense factorisation)
EASE_L2 = (30.0, 100.0, 300.0, 1000.0, 3000.0)
#: Candidates and their grids: small, so that a choice costs a few fits of each.
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "als": [{}],
    "itemknn": [{"k": 100, "shrink": 0.0}, {"k": 400, "shrink": 50.0}],
    "rp3beta": [{"k": 200, "alpha": 1.0, "beta": 0.2}],
    "ease": [{"l2": l2} for l2 in EASE_L2],
}
#: The hybrid's grid, when there is content: the defaults, and a larger ALS (128 factors,
#: λ=40) with a heavier content match (β=1), better on HetRec 2K's validation split
#: (README, *HetRec 2K*).
HYBRID_GRID: list[dict[str, Any]] = [
    {}, {"cf_params": {"factors": 128, "regularization": 40.0}, "content_weight": 1.0}]
#: Weights of a candidate added to the ensemble at each step.
BLEND_WEIGHTS = (0.1, 0.25, 0.5)
NORMALISATIONS = ("minmax", "zscore")
#: Memory for the candidates' validation scores (float32, users x tracks, one matrix per
#: candidate and per normalisation): above it, a seeded sample of validation users.
VALIDATION_BYTES = 2 * 2**30


class ServedModel(RecommenderBase):
    """The candidate, or greedy ensemble of candidates, that wins on validation.

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
        Weights ``w`` in (0, 1) of a candidate added to the ensemble; empty: no ensemble.
    normalisations : list of {"minmax", "zscore"}, optional
        Per-user score scalings to grow an ensemble with; default both.
    max_members : int
        Most models in the ensemble (at most 3: serving scores each of them).
    max_steps : int
        Most forward-selection steps.
    min_gain : float
        A step must improve validation NDCG@k by more than this.
    min_z : float
        ... and by more than this many standard errors of the per-user differences.
    random_state : int, optional
        Seeds the validation split and every candidate with a ``random_state``.
    """

    name = "served"
    description = "what build serves: the candidate or blend best on validation"

    def __init__(self, *, grids: dict[str, list[dict[str, Any]]] | None = None, k: int = 10,
                 fraction: float = 0.2, min_history: int = 5,
                 blend_weights: list[float] | None = None,
                 normalisations: list[str] | None = None, max_members: int = 3,
                 max_steps: int = 3, min_gain: float = 0.0, min_z: float = 2.0,
                 random_state: int | None = None) -> None:
        self.grids = grids
        self.k = k
        self.fraction = fraction
        self.min_history = min_history
        self.blend_weights = blend_weights
        self.normalisations = normalisations
        self.max_members = max_members
        self.max_steps = max_steps
        self.min_gain = min_gain
        self.min_z = min_z
        self.random_state = random_state

    def _candidate(self, name: str, params: dict[str, Any]) -> RecommenderBase:
        from musicrec.recommender.registry import create_model  # the registry lists us

        model = create_model(name, **params)
        if "random_state" in model.param_names() and "random_state" not in params:
            model.set_params(random_state=0 if self.random_state is None
                             else self.random_state)
        return model

    def _fitted_points(self, name: str, points: list[dict[str, Any]], plays: sp.csr_matrix,
                       content: np.ndarray | None
                       ) -> Iterator[tuple[dict[str, Any], RecommenderBase]]:
        """Each grid point's model fitted on ``plays``, one at a time; EASE points that
        differ only in ``l2`` share one Gram matrix."""
        others = [{key: v for key, v in p.items() if key != "l2"} for p in points]
        if name == "ease" and len(points) > 1 and all("l2" in p for p in points) and all(
                o == others[0] for o in others):
            from musicrec.recommender.baselines import ease_l2_path

            for params, model in zip(points, ease_l2_path(
                    plays, [p["l2"] for p in points], **others[0]), strict=True):
                yield dict(params), model
            return
        for params in points:
            yield dict(params), self._candidate(name, dict(params)).fit(plays,
                                                                        content=content)

    def _check(self) -> tuple[list[float], list[str]]:
        weights = list(BLEND_WEIGHTS if self.blend_weights is None else self.blend_weights)
        if any(not 0 < w < 1 for w in weights):
            raise ParameterError(f"blend_weights={weights!r} must each be in (0, 1)")
        normalisations = list(NORMALISATIONS if self.normalisations is None
                              else self.normalisations)
        unknown = sorted(set(normalisations) - set(NORMALISE))
        if unknown or not normalisations:
            raise ParameterError(f"normalisations={normalisations!r} must name some of "
                                 f"{list(NORMALISE)}")
        if (not 1 <= self.max_members <= 3 or not self.max_steps >= 0 or self.min_gain < 0
                or self.min_z < 0):
            raise ParameterError(f"max_members={self.max_members!r} must be 1, 2 or 3, "
                                 f"max_steps={self.max_steps!r}, min_gain="
                                 f"{self.min_gain!r} and min_z={self.min_z!r} at least 0")
        return weights, normalisations

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        grids = self.grids
        if grids is None:  # the hybrid (ALS + content) joins them when there is content
            grids = DEFAULT_GRIDS if content is None else {**DEFAULT_GRIDS,
                                                           "hybrid": HYBRID_GRID}
        if not grids or any(not points for points in grids.values()):
            raise ParameterError(f"grids={grids!r} must name candidates, each with at least "
                                 "one parameter set")
        weights, normalisations = self._check()
        seed = 1 if self.random_state is None else self.random_state
        coo = user_items.tocoo()
        plays = ListeningLog(self.users_, self.tracks_, coo.row.astype(np.int32),
                             coo.col.astype(np.int32), coo.data.astype(np.float32))
        split = random_holdout(plays, fraction=self.fraction, min_history=self.min_history,
                               seed=seed)
        if len(split.test) == 0:
            raise ModelSkipped(f"served: no listener has {self.min_history} plays, so there "
                               "is no validation split to choose on (lower min_history)")
        train = split.train.to_csr()
        users = np.unique(split.test.user_idx).astype(np.int64)
        # room for each candidate's scores, raw and normalised, and two more matrices
        most = max(1, VALIDATION_BYTES // (4 * self.n_items_ * (2 * len(grids) + 2)))
        if len(users) > most:
            users = np.sort(np.random.default_rng(seed).choice(users, most, replace=False))
        validation = _Validation(train, users, _relevant(split.test, users), self.k)
        trials: list[dict[str, Any]] = []
        best_of: dict[str, tuple[float, dict[str, Any], np.ndarray, np.ndarray]] = {}
        for name, points in grids.items():
            started = time.perf_counter()
            for params, model in self._fitted_points(name, points, train, content):
                scores = validation.scores_of(model)
                del model  # EASE's is n_tracks² floats
                per_user = validation.per_user(scores.copy())
                score = float(per_user.mean())
                trials.append({"model": name, "params": params, "ndcg": round(score, 5),
                               "seconds": round(time.perf_counter() - started, 2)})
                log.info("served: %s %s validation ndcg@%d %.4f", name, params, self.k,
                         score)
                if name not in best_of or score > best_of[name][0]:
                    best_of[name] = (score, params, scores, per_user)
                started = time.perf_counter()
        single = {name: found[0] for name, found in best_of.items()}
        ranked = sorted(single, key=lambda n: -single[n])  # stable: grid order on ties
        best_score = single[ranked[0]]
        members, how = {ranked[0]: 1.0}, "minmax"
        if weights and len(ranked) > 1:
            kept: np.ndarray | None = None  # the per-user scores of the ensemble kept
            for norm in normalisations:
                chosen, per_user = _forward_selection(
                    {name: normalise_rows(best_of[name][2], norm) for name in ranked},
                    {name: best_of[name][3] for name in ranked}, validation,
                    weights=weights, max_members=self.max_members, max_steps=self.max_steps,
                    min_gain=self.min_gain, min_z=self.min_z, trials=trials,
                    normalisation=norm)
                # a later normalisation replaces the first one's ensemble only past the
                # same gate as a step (its steps already passed it against the best single)
                if len(chosen) > 1 and (kept is None or _passes(
                        per_user, kept, self.min_gain, self.min_z)):
                    best_score, members, how = float(per_user.mean()), chosen, norm
                    kept = per_user
        params_of = {name: best_of[name][1] for name in members}
        del best_of, validation  # free the validation scores before refitting
        order = sorted(members, key=lambda n: -members[n])
        fitted = [self._candidate(name, dict(params_of[name])).fit(user_items,
                                                                    content=content)
                  for name in order]
        self.first_ = fitted[0]
        self.second_: RecommenderBase | None = fitted[1] if len(fitted) > 1 else None
        self.third_: RecommenderBase | None = fitted[2] if len(fitted) > 2 else None
        self.weights_ = np.array([members[name] for name in order], dtype=np.float64)
        self.normalisation_ = how
        if len(order) == 1:
            choice: dict[str, Any] = {"model": order[0], "params": params_of[order[0]],
                                      "ndcg": round(best_score, 5)}
        else:
            choice = {"model": "blend", "normalisation": how,
                      "members": [{"model": name, "params": params_of[name],
                                   "weight": round(members[name], 4)} for name in order],
                      "ndcg": round(best_score, 5)}
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

    def _members(self) -> list[RecommenderBase]:
        return [m for m in (self.first_, self.second_, self.third_) if m is not None]

    def _combine(self, parts: list[np.ndarray]) -> np.ndarray:
        """The weighted sum of the members' normalised scores (one member: as it is)."""
        if len(parts) == 1:
            return parts[0]
        total = np.zeros(parts[0].shape, dtype=np.float32)
        for part, weight in zip(parts, self.weights_, strict=True):
            scaled = normalise_rows(part, self.normalisation_)  # a new array: scaled in place
            scaled *= np.float32(weight)
            total += scaled
        return total

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        # the members' own _scores: rows and plays were checked once, by scores()
        return self._combine([m._scores(rows, user_items) for m in self._members()])

    def _new_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        """As for a known user: the chosen model's (or ensemble's) scores of the plays,
        each model scoring a new listener its own way (item-item models through their
        neighbour matrix, ALS by fold-in)."""
        return self._combine([m._new_scores(user_items) for m in self._members()])

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        return self.first_._similar_scores(items)

    def _loaded(self) -> None:
        """A served model saved before ensembles (``first_``, ``second_``, ``weight_``)."""
        if not hasattr(self, "weights_"):
            weight = float(getattr(self, "weight_", 1.0))
            self.weights_ = np.array([weight] if self.second_ is None
                                     else [weight, 1.0 - weight])
            self.third_ = None
            self.normalisation_ = "minmax"

    def parts(self) -> list[tuple[RecommenderBase, float]]:
        """The fitted model(s) this choice serves, each with its weight in the ensemble
        (weights sum to 1), heaviest first."""
        self._check_fitted()
        return [(m, float(w)) for m, w in zip(self._members(), self.weights_, strict=True)]


class _Validation:
    """The validation users' held-out tracks, and NDCG@k of score matrices over them."""

    def __init__(self, train: sp.csr_matrix, users: np.ndarray,
                 relevant: list[np.ndarray], k: int) -> None:
        self.users, self.relevant, self.k = users, relevant, k
        self.n_relevant = np.array([len(r) for r in relevant])
        played = train[users]
        self.played = (np.repeat(np.arange(len(users)), np.diff(played.indptr))
                       * train.shape[1] + played.indices)

    def scores_of(self, model: RecommenderBase, batch: int = 256) -> np.ndarray:
        """The model's scores of every track for the validation users (float32)."""
        out = np.empty((len(self.users), model.n_items_), dtype=np.float32)
        for start in range(0, len(self.users), batch):
            out[start: start + batch] = model.scores(self.users[start: start + batch])
        return out

    def per_user(self, scores: np.ndarray) -> np.ndarray:
        """Each validation user's NDCG@k of ``scores`` (overwritten: training tracks are
        set to -inf)."""
        scores.ravel()[self.played] = -np.inf
        ranked = top_n_rows(scores, self.k)
        values = M.accuracy_from_hits(M.hits_matrix(ranked, self.relevant), self.n_relevant,
                                      [self.k], ["ndcg"])
        return np.asarray(values[f"ndcg@{self.k}"], dtype=np.float64)

    def ndcg(self, scores: np.ndarray) -> float:
        """Mean NDCG@k of ``scores`` (overwritten, as by :meth:`per_user`)."""
        return float(self.per_user(scores).mean())


def _forward_selection(scores: dict[str, np.ndarray], singles: dict[str, np.ndarray],
                       validation: _Validation, *, weights: list[float], max_members: int,
                       max_steps: int, min_gain: float, min_z: float,
                       trials: list[dict[str, Any]], normalisation: str
                       ) -> tuple[dict[str, float], np.ndarray]:
    """Greedy forward selection with replacement (Caruana et al. 2004).

    Starts from the best single candidate (by mean of ``singles``, each candidate's
    per-user NDCG; the first on ties); each step scores ``(1 - w) · ensemble + w ·
    candidate`` for every candidate and weight and appends each trial to ``trials``, with
    ``z``: its gain over the ensemble in standard errors of the per-user differences. The
    best trial whose gain exceeds ``min_gain`` and ``min_z`` standard errors is kept.
    Returns the members' weights (summing to 1) and the ensemble's per-user NDCG.
    """
    names = list(scores)
    start = max(names, key=lambda n: float(singles[n].mean()))
    members, current, now = {start: 1.0}, scores[start], singles[start]
    for _ in range(max_steps):
        step: tuple[float, str, float, np.ndarray] | None = None
        for name in names:
            if (name not in members and len(members) >= max_members) or (
                    list(members) == [name]):
                continue
            for w in weights:
                blend = np.float32(1 - w) * current + np.float32(w) * scores[name]
                per_user = validation.per_user(blend)
                gain, z = _paired_gain(per_user, now)
                mix = {m: v * (1 - w) for m, v in members.items()}
                mix[name] = mix.get(name, 0.0) + w
                trials.append({"model": "blend", "params": {
                    "normalisation": normalisation,
                    "members": {m: round(v, 4) for m, v in mix.items()}},
                    "ndcg": round(float(per_user.mean()), 5), "z": round(z, 2)})
                if _passes(per_user, now, min_gain, min_z) and (
                        step is None or per_user.mean() > step[3].mean()):
                    step = (gain, name, w, per_user)
        if step is None:
            break
        _, name, w, now = step
        current = np.float32(1 - w) * current + np.float32(w) * scores[name]
        members = {m: v * (1 - w) for m, v in members.items()}
        members[name] = members.get(name, 0.0) + w
        log.info("served: %s ensemble %s validation ndcg@%d %.4f", normalisation,
                 {m: round(v, 3) for m, v in members.items()}, validation.k, now.mean())
    return members, now


def _passes(new: np.ndarray, old: np.ndarray, min_gain: float, min_z: float) -> bool:
    """Whether per-user scores ``new`` beat ``old`` by the selection's gate."""
    gain, z = _paired_gain(new, old)
    return gain > min_gain and z > min_z


def _paired_gain(new: np.ndarray, old: np.ndarray) -> tuple[float, float]:
    """The mean per-user gain of ``new`` over ``old`` and that gain in standard errors
    (``inf`` when every user gains the same positive amount, 0 when nobody's changes)."""
    diff = new - old
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    if se > 0:
        return gain, gain / se
    return gain, (np.inf if gain > 0 else 0.0)


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] over its finite entries; -inf stays -inf."""
    if scores.ndim == 2 and scores.shape[0] == 1 and scores.shape[1]:
        # one listener (a request): the same arithmetic on scalars, in fewer numpy calls
        lo, hi = scores.min(), scores.max()  # NaN and ±inf propagate here
        if math.isfinite(lo) and math.isfinite(hi):
            span = hi - lo
            return (scores - lo) / (span if span > 0 else scores.dtype.type(1.0))
    if np.isfinite(scores).all():  # the usual case, in fewer passes
        lo = scores.min(axis=1, keepdims=True)
        span = scores.max(axis=1, keepdims=True) - lo
        return (scores - lo) / np.where(span > 0, span, 1.0).astype(scores.dtype)
    finite = np.isfinite(scores)
    lo = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(finite, (scores - lo) / span, -np.inf)


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Each row's finite entries minus their mean, over their standard deviation (1 where
    it is 0); -inf stays -inf."""
    if np.isfinite(scores).all():
        mean = scores.mean(axis=1, keepdims=True)
        std = scores.std(axis=1, keepdims=True)
        return (scores - mean) / np.where(std > 0, std, 1.0).astype(scores.dtype)
    finite = np.isfinite(scores)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    values = np.where(finite, scores, 0.0)
    mean = values.sum(axis=1, keepdims=True) / count
    std = np.sqrt((np.where(finite, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True)
                  / count)
    return np.where(finite, (scores - mean) / np.where(std > 0, std, 1.0), -np.inf)


NORMALISE = {"minmax": minmax_rows, "zscore": zscore_rows}


def normalise_rows(scores: np.ndarray, how: str) -> np.ndarray:
    """``scores`` scaled per row by ``how`` (see :data:`NORMALISE`), as float32."""
    return np.asarray(NORMALISE[how](scores), dtype=np.float32)


def _relevant(test: ListeningLog, users: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(test.user_idx, kind="stable")
    bounds = np.searchsorted(test.user_idx[order], users)
    ends = np.searchsorted(test.user_idx[order], users, side="right")
    return [test.track_idx[order[bounds[i]: ends[i]]] for i in range(len(users))]
