"""Hyper-parameter search that never looks at the test set.

The caller passes the *training* part of an evaluation split. :func:`validation_split`
splits it again (random holdout, its own seed); every candidate is fitted on the inner
training part and scored on the inner held-out part. The outer test set is never read.

:func:`tune_als` runs a coordinate search over ALS's hyper-parameters: starting from the
defaults, it tries every value of one parameter while holding the others at their best so
far, keeps the best, and moves to the next parameter; ``rounds`` passes are made, and a
time budget stops it early. :func:`sweep_parameter` evaluates one parameter over a list of
values; the hybrid uses it for its blend weight α, and its rows feed the report's α-sweep
plot (:meth:`TuneResult.as_sweep`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicrec.data.logs import ListeningLog
from musicrec.data.splits import Split, random_holdout
from musicrec.errors import ParameterError
from musicrec.recommender import metrics as M
from musicrec.recommender.evaluation.runner import rank_top
from musicrec.recommender.registry import create_model, model_class

log = logging.getLogger(__name__)

#: The values :func:`tune_als` tries per hyper-parameter, in the order it tunes them.
ALS_SPACE: dict[str, list[Any]] = {
    "confidence": ["log1p", "bm25", "none"],
    "factors": [32, 64, 128, 192, 256],
    "regularization": [0.01, 0.05, 0.2, 1.0, 5.0, 20.0],
    "alpha": [1.0, 2.0, 5.0, 10.0, 20.0, 40.0],
    "iterations": [10, 20, 30, 50],
}

#: Where the search starts: the ``musicrec train`` defaults.
ALS_DEFAULTS: dict[str, Any] = {"factors": 64, "regularization": 0.05, "alpha": 10.0,
                                "iterations": 20, "confidence": "log1p"}


@dataclass
class Trial:
    params: dict[str, Any]
    score: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "score": self.score, "seconds": round(self.seconds, 2)}


@dataclass
class TuneResult:
    """The trials of a search and the best of them."""

    model: str
    metric: str
    trials: list[Trial]
    validation: dict[str, Any]
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Trial:
        return max(self.trials, key=lambda t: t.score)

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``musicrec evaluate --params`` reads this file."""
        return {"schema": "musicrec.tune", "schema_version": 1, "model": self.model,
                "metric": self.metric, "best_params": self.best_params,
                "best_score": self.best.score, "validation": self.validation,
                "stopped_early": self.stopped_early, **self.extra,
                "trials": [t.to_dict() for t in self.trials]}

    def as_sweep(self, param: str = "alpha") -> list[dict[str, Any]]:
        """Rows ``{"alpha": value, "metric": ..., "value": score}`` for the report's plot."""
        return [{"alpha": float(t.params[param]), "metric": self.metric, "value": t.score}
                for t in self.trials if param in t.params]


def validation_split(train: ListeningLog, *, fraction: float = 0.2, min_history: int = 5,
                     seed: int = 1) -> Split:
    """A random holdout of the training log only (the inner split of the search)."""
    split = random_holdout(train, fraction=fraction, min_history=min_history, seed=seed)
    if len(split.test) == 0:
        raise ParameterError(
            f"the validation split of the training data is empty (min_history={min_history}, "
            f"fraction={fraction})")
    return split


def validate_model(
    name: str,
    params: Mapping[str, Any],
    split: Split,
    *,
    metric: str = "ndcg@10",
    content: np.ndarray | None = None,
) -> float:
    """Fit model ``name`` on ``split.train`` and return the mean ``metric`` on ``split.test``."""
    metric_name, _, k_text = metric.partition("@")
    if metric_name not in M.ACCURACY_METRICS or not k_text.isdigit() or int(k_text) < 1:
        raise ParameterError(f"metric={metric!r} must look like 'ndcg@10' with one of "
                             f"{list(M.ACCURACY_METRICS)}")
    k = int(k_text)
    model = create_model(name, **params)
    if "random_state" in model.param_names() and "random_state" not in params:
        model.set_params(random_state=0)  # trials differ only by their parameters
    model.fit(split.train.to_csr(), content=content)
    test = split.test
    users = np.unique(test.user_idx).astype(np.int64)
    order = np.argsort(test.user_idx, kind="stable")
    bounds = np.append(np.searchsorted(test.user_idx[order], users), len(order))
    relevant = [test.track_idx[order[bounds[i]: bounds[i + 1]]] for i in range(len(users))]
    ranked = rank_top(model, users, k=k, exclude=split.train.to_csr())
    values = M.accuracy_from_hits(M.hits_matrix(ranked, relevant),
                                  np.array([len(r) for r in relevant]), [k], [metric_name])
    return float(values[metric].mean())


def sweep_parameter(
    train: ListeningLog,
    *,
    model: str,
    param: str,
    values: Sequence[Any],
    base_params: Mapping[str, Any] | None = None,
    content: np.ndarray | None = None,
    metric: str = "ndcg@10",
    split: Split | None = None,
    seed: int = 1,
    show_progress: bool = False,
) -> TuneResult:
    """Validate ``model`` at each value of one parameter (e.g. the hybrid's ``alpha``).

    Examples
    --------
    >>> sweep = sweep_parameter(train, model="hybrid", param="alpha",
    ...                         values=[0.0, 0.5, 1.0], content=vectors)  # doctest: +SKIP
    >>> write_report(result, "out", alpha_sweep=sweep.as_sweep())  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    model_class(model)
    if not values:
        raise ParameterError(f"give at least one value of {param!r}")
    split = split or validation_split(train, seed=seed)
    trials = []
    for value in tqdm(list(values), desc=f"sweep {model}.{param}", disable=not show_progress):
        params = {**(base_params or {}), param: value}
        started = time.perf_counter()
        score = validate_model(model, params, split, metric=metric, content=content)
        trials.append(Trial(params, score, time.perf_counter() - started))
        log.info("%s %s=%s: %s %.4f", model, param, value, metric, score)
    return TuneResult(model, metric, trials, _split_info(split))


def tune_als(
    train: ListeningLog,
    *,
    space: Mapping[str, Sequence[Any]] | None = None,
    start: Mapping[str, Any] | None = None,
    rounds: int = 1,
    metric: str = "ndcg@10",
    fraction: float = 0.2,
    min_history: int = 5,
    seed: int = 1,
    random_state: int = 0,
    time_budget_s: float | None = None,
    show_progress: bool = False,
) -> TuneResult:
    """Coordinate search over ALS hyper-parameters, validated inside ``train`` only.

    Parameters
    ----------
    train : ListeningLog
        The training part of the evaluation split (never the test set).
    space : mapping, optional
        Values to try per parameter, in tuning order; default :data:`ALS_SPACE`.
    start : mapping, optional
        The starting point; default :data:`ALS_DEFAULTS`.
    rounds : int
        Passes over the parameters.
    metric : str
        What to maximise, e.g. ``"ndcg@10"``.
    fraction, min_history, seed :
        The inner validation split (see :func:`validation_split`).
    random_state : int
        Seed of every ALS fit, so trials differ only by their parameters.
    time_budget_s : float, optional
        Stop starting new trials after this many seconds.

    Returns
    -------
    TuneResult
    """
    from tqdm.auto import tqdm

    space = dict(space or ALS_SPACE)
    unknown = set(space) - set(ALS_DEFAULTS)
    if unknown:
        raise ParameterError(f"cannot tune {sorted(unknown)}; ALS parameters: "
                             f"{sorted(ALS_DEFAULTS)}")
    if rounds < 1:
        raise ParameterError(f"rounds={rounds} must be a positive integer")
    split = validation_split(train, fraction=fraction, min_history=min_history, seed=seed)
    current = {**ALS_DEFAULTS, **(start or {})}
    cache: dict[str, Trial] = {}
    started = time.perf_counter()
    stopped = False

    def run(params: dict[str, Any]) -> Trial:
        key = json.dumps(params, sort_keys=True)
        if key not in cache:
            t0 = time.perf_counter()
            score = validate_model("als", {**params, "random_state": random_state}, split,
                                   metric=metric)
            cache[key] = Trial(dict(params), score, time.perf_counter() - t0)
            log.info("als %s: %s %.4f", params, metric, score)
        return cache[key]

    total = 1 + rounds * sum(len(v) for v in space.values())
    with tqdm(total=total, desc="tune als", disable=not show_progress) as bar:
        best = run(current)
        bar.update(1)
        for _ in range(rounds):
            for name, values in space.items():
                for value in values:
                    if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                        stopped = True
                        break
                    trial = run({**best.params, name: value})
                    bar.update(1)
                    bar.set_postfix({"best": f"{max(best.score, trial.score):.4f}"})
                    if trial.score > best.score:
                        best = trial
                if stopped:
                    break
            if stopped:
                break
    if stopped:
        log.warning("tuning stopped after the %.0f s budget with %d trials", time_budget_s,
                    len(cache))
    return TuneResult("als", metric, list(cache.values()), _split_info(split), stopped,
                      {"seconds": round(time.perf_counter() - started, 1)})


def _split_info(split: Split) -> dict[str, Any]:
    return {"protocol": f"{split.protocol} of the training data", "params": split.params,
            "n_train": len(split.train), "n_validation": len(split.test)}
