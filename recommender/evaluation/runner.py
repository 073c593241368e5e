"""The offline evaluation runner: split, fit, rank, score, compare.

Ranking is over the full catalogue with each user's training tracks excluded, except for
the ``cold-tracks`` protocol, where each test user ranks only the held-out (cold) tracks:
the other tracks were all in training, so ranking them would only measure how well a
model re-finds warm tracks. This is the protocol of the hybrid issue's reference.
Ties in scores are broken by a seeded random order of the tracks (:func:`rank_top`),
never by track index, which would favour whatever the ids sort first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicrec.data.logs import ListeningLog
from musicrec.data.splits import PROTOCOLS, Split, make_split
from musicrec.errors import ModelSkipped, ParameterError
from musicrec.recommender import metrics as M
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.evaluation.stats import (
    bootstrap_ci,
    bootstrap_indices,
    paired_comparison,
)
from musicrec.recommender.registry import create_model, model_class

log = logging.getLogger(__name__)

DEFAULT_KS = (10, 20, 50)
DEFAULT_MODELS = ("random", "popularity", "als", "itemknn", "ease")


@dataclass
class ModelResult:
    """One model's outcome: per-user values (accuracy, novelty, diversity, bias) and sums."""

    name: str
    params: dict[str, Any]
    status: str  # "ok" or "skipped"
    message: str = ""
    fit_seconds: float = 0.0
    score_seconds: float = 0.0
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    ranked: np.ndarray | None = None
    #: what a model that chooses (``served``) chose inside this training split: its
    #: ``report`` (every trial's validation score and the choice); None for the others
    choice: dict[str, Any] | None = None

    def mean(self, metric: str) -> float:
        """The mean over users with a value; NaN when the metric is undefined for all."""
        values = self.per_user[metric]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` measured; :mod:`.report` turns it into files."""

    protocol: str
    split_params: dict[str, Any]
    ks: list[int]
    metrics: list[str]
    test_users: np.ndarray
    user_ids: list[str]
    n_train: int
    n_test: int
    n_candidates: int
    candidates: str
    models: list[ModelResult]
    reference: str | None
    primary_metric: str
    comparisons: list[dict[str, Any]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    bootstrap: dict[str, Any]
    data: dict[str, Any]
    has_content: bool
    split: Split | None = None
    #: :meth:`Split.fingerprint` of the split evaluated
    split_sha256: str = ""

    def model(self, name: str) -> ModelResult:
        for m in self.models:
            if m.name == name:
                return m
        raise ParameterError(f"no model {name!r} in this evaluation")

    @property
    def evaluated(self) -> list[ModelResult]:
        return [m for m in self.models if m.status == "ok"]

    def table(self, *, k: int | None = None) -> tuple[list[list[Any]], list[str]]:
        """Rows and header of the console table (means at one k, the smallest by default)."""
        k = k or self.ks[0]
        header = ["model", *[f"{m}@{k}" for m in self.metrics], f"coverage@{k}",
                  f"novelty@{k}", f"pop_bias@{k}"]
        if self.has_content:
            header.append(f"diversity@{k}")
        rows: list[list[Any]] = []
        for m in self.models:
            if m.status != "ok":
                rows.append([m.name, *["skipped"] * (len(header) - 1)])
                continue
            row: list[Any] = [m.name, *[m.mean(f"{x}@{k}") for x in self.metrics],
                              m.coverage[f"coverage@{k}"], m.mean(f"novelty@{k}"),
                              m.mean(f"popularity_bias@{k}")]
            if self.has_content:
                row.append(m.mean(f"diversity@{k}"))
            rows.append(row)
        return rows, header


def parse_ks(text: str | Sequence[int]) -> list[int]:
    """``"10,20,50"`` (or a sequence) as a sorted list of distinct positive ints."""
    items = text.split(",") if isinstance(text, str) else list(text)
    ks: list[int] = []
    for item in items:
        try:
            k = int(str(item).strip())
        except ValueError:
            raise ParameterError(f"k={item!r} is not an integer") from None
        if k < 1:
            raise ParameterError(f"k={k} must be a positive integer")
        ks.append(k)
    if not ks:
        raise ParameterError("give at least one k")
    return sorted(set(ks))


def rank_top(
    model: RecommenderBase,
    users: np.ndarray,
    *,
    k: int,
    exclude: Any,
    candidates: np.ndarray | None = None,
    batch_size: int = 256,
    progress: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """The top ``k`` track indices per user, best first, padded with -1.

    Ties are broken by a seeded random order of the tracks, never by track index: an id
    order that happens to correlate with relevance would otherwise flatter a model with
    many ties (popularity on cold tracks scores them all 0).

    Parameters
    ----------
    model : RecommenderBase
        A fitted model.
    users : np.ndarray [shape=(n_users,), dtype=int]
    k : int
    exclude : scipy.sparse.csr_matrix [shape=(n_all_users, n_tracks)]
        Tracks never ranked for a user (their training tracks).
    candidates : np.ndarray, optional
        Rank only these track indices (cold-tracks); ``None`` ranks every track.
    """
    out = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), batch_size):
        rows = users[start : start + batch_size]
        scores = np.asarray(model.scores(rows), dtype=np.float32)
        if scores.shape != (len(rows), exclude.shape[1]):
            raise ParameterError(
                f"model {getattr(model, 'name', model)!r} returned scores of shape "
                f"{scores.shape}, expected {(len(rows), exclude.shape[1])}")
        scores = np.where(np.isnan(scores), -np.inf, scores)
        sub = exclude[rows].tocoo()
        scores[sub.row, sub.col] = -np.inf
        cols = np.arange(scores.shape[1])
        if candidates is not None:
            scores = scores[:, candidates]
            cols = np.asarray(candidates)
        shuffle = np.random.default_rng(seed).permutation(scores.shape[1])
        scores, cols = scores[:, shuffle], cols[shuffle]
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < scores.shape[1] \
            else np.tile(np.arange(scores.shape[1]), (len(rows), 1))
        vals = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        best = np.take_along_axis(part, order, axis=1)
        best_vals = np.take_along_axis(vals, order, axis=1)
        ranked = np.where(np.isfinite(best_vals), cols[best], -1)
        out[start : start + len(rows), :kk] = ranked
        if progress is not None:
            progress.update(len(rows))
    return out


def evaluate(
    log_: ListeningLog,
    *,
    protocol: str = "random-holdout",
    models: Sequence[str | RecommenderBase] = DEFAULT_MODELS,
    ks: Sequence[int] = DEFAULT_KS,
    fraction: float | None = None,
    min_history: int | None = None,
    seed: int = 0,
    content: np.ndarray | None = None,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    reference: str | None = None,
    metrics: Sequence[str] = tuple(M.ACCURACY_METRICS),
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    split: Split | None = None,
    batch_size: int = 256,
    keep_rankings: bool = False,
    show_progress: bool = False,
) -> EvaluationResult:
    """Evaluate models on one split of a listening log.

    Parameters
    ----------
    log_ : ListeningLog
        The whole log; it is split with ``protocol`` (or pass a ready ``split``).
    protocol : {"random-holdout", "leave-last-out", "temporal", "cold-tracks"}
    models : sequence of str or RecommenderBase
        Model names (see :func:`~musicrec.recommender.registry.available_models`), or
        unfitted models (each is cloned before fitting, and named by its ``name``).
    ks : sequence of int
        Cut-offs; each must not exceed the number of ranked tracks.
    fraction, min_history, seed :
        Split parameters (see :func:`musicrec.data.splits.make_split`); ``seed`` also
        seeds the random model and the bootstrap.
    content : np.ndarray [shape=(n_tracks, dim)], optional
        Content vectors by track index (zero rows for tracks without one). Needed by
        models registered with ``requires_content`` and for intra-list diversity.
    model_params : mapping, optional
        Hyper-parameters per model name, e.g. ``{"als": {"factors": 128}}``.
    reference : str, optional
        Compare every model with this one; default: the best by ``ndcg@{min(ks)}``.
    n_bootstrap, confidence :
        Paired bootstrap resamples and interval level.

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> result = evaluate(log, models=["popularity", "als"], ks=[10])  # doctest: +SKIP
    >>> result.model("als").mean("ndcg@10")  # doctest: +SKIP
    """
    ks = parse_ks(ks)
    if protocol not in PROTOCOLS:
        raise ParameterError(f"protocol={protocol!r} must be one of {list(PROTOCOLS)}")
    if not models:
        raise ParameterError("give at least one model")
    names = [m if isinstance(m, str) else m.name for m in models]
    if len(set(names)) != len(names):
        raise ParameterError(f"models {names} name a model more than once")
    model_params = dict(model_params or {})
    # unknown names fail before any work
    classes = [model_class(m) if isinstance(m, str) else type(m) for m in models]
    if content is not None:
        content = np.asarray(content, dtype=np.float32)
        if content.ndim != 2 or content.shape[0] != log_.n_tracks:
            raise ParameterError(
                f"content must have shape (n_tracks={log_.n_tracks}, dim), got {content.shape}")
    for name, cls in zip(names, classes, strict=True):
        if cls.requires_content and content is None:
            raise ParameterError(
                f"model {name!r} needs content vectors and none were given "
                "(pass content=..., or --content on the command line)")
    if reference is not None and reference not in names:
        raise ParameterError(f"reference={reference!r} is not one of the models {names}")

    if split is None:
        candidates_for_cold = None
        if protocol == "cold-tracks" and content is not None:
            candidates_for_cold = np.flatnonzero(np.abs(content).sum(axis=1) > 0)
        split = make_split(log_, protocol=protocol, fraction=fraction, min_history=min_history,
                           seed=seed, candidates=candidates_for_cold)
    elif len(split.test) == 0:
        raise ParameterError("the given split has an empty test set")
    train, test = split.train, split.test
    if split.cold_tracks is not None:
        candidates: np.ndarray | None = np.asarray(split.cold_tracks, dtype=np.int64)
        n_candidates = len(split.cold_tracks)
    else:
        candidates = None
        n_candidates = log_.n_tracks
    if max(ks) > n_candidates:
        raise ParameterError(
            f"k={max(ks)} is larger than the {n_candidates} tracks ranked "
            f"({'cold tracks' if candidates is not None else 'the catalogue'})")

    users = np.unique(test.user_idx).astype(np.int64)
    order = np.argsort(test.user_idx, kind="stable")
    bounds = np.searchsorted(test.user_idx[order], users, side="left")
    bounds = np.append(bounds, len(order))
    relevant = [test.track_idx[order[bounds[i] : bounds[i + 1]]] for i in range(len(users))]
    n_relevant = np.array([len(r) for r in relevant], dtype=np.int64)
    exclude = train.to_csr()
    listeners = np.bincount(train.track_idx, minlength=train.n_tracks)
    n_train_users = int(len(np.unique(train.user_idx)))
    information = M.self_information(listeners, max(n_train_users, int(listeners.max())))
    percentile = M.popularity_percentile(
        listeners if candidates is None else listeners[candidates])
    if candidates is not None:
        full = np.zeros(log_.n_tracks)
        full[candidates] = percentile
        percentile = full
    kmax = max(ks)
    log.info("%s split: %d train, %d test interactions, %d test users, %d ranked tracks",
             protocol, len(train), len(test), len(users), n_candidates)

    from tqdm.auto import tqdm

    results: list[ModelResult] = []
    for name, given in zip(names, models, strict=True):
        model = _model_for(given, model_params.get(name, {}), seed=seed)
        result = ModelResult(name, _params_of(model), "ok")
        started = time.perf_counter()
        try:
            model.fit(train.to_csr(), content=content)
        except ModelSkipped as exc:
            log.warning("%s", exc)
            result.status, result.message = "skipped", str(exc)
            results.append(result)
            continue
        result.fit_seconds = time.perf_counter() - started
        report = getattr(model, "report", None)
        result.choice = report if isinstance(report, dict) else None
        started = time.perf_counter()
        with tqdm(total=len(users), desc=f"evaluate {name}", unit="user",
                  disable=not show_progress, leave=False) as bar:
            ranked = rank_top(model, users, k=kmax, exclude=exclude, candidates=candidates,
                              batch_size=batch_size, progress=bar, seed=seed)
        result.score_seconds = time.perf_counter() - started
        hits = M.hits_matrix(ranked, relevant)
        result.per_user = M.accuracy_from_hits(hits, n_relevant, ks, metrics)
        for k in ks:
            result.coverage[f"coverage@{k}"] = M.catalog_coverage(ranked, k, n_items=n_candidates)
            if candidates is not None:
                # every ranked (cold) track has no training plays: novelty and popularity
                # bias would be one constant for every model, so they are undefined here
                undefined = np.full(len(users), np.nan)
                result.per_user[f"novelty@{k}"] = undefined
                result.per_user[f"popularity_bias@{k}"] = undefined.copy()
            else:
                result.per_user[f"novelty@{k}"] = M.novelty(ranked, k,
                                                             item_information=information)
                result.per_user[f"popularity_bias@{k}"] = M.popularity_bias(
                    ranked, k, item_percentile=percentile)
            if content is not None:
                result.per_user[f"diversity@{k}"] = M.intra_list_diversity(
                    ranked, k, vectors=content)
        if keep_rankings:
            result.ranked = ranked
        log.info("%s: ndcg@%d %.4f (fit %.1f s, ranking %.1f s)", name, ks[0],
                 result.mean(f"ndcg@{ks[0]}"), result.fit_seconds, result.score_seconds)
        results.append(result)

    primary = f"ndcg@{ks[0]}" if "ndcg" in metrics else f"{metrics[0]}@{ks[0]}"
    ok = [r for r in results if r.status == "ok"]
    if reference is None and ok:
        reference = max(ok, key=lambda r: r.mean(primary)).name
    elif reference is not None and reference not in {r.name for r in ok}:
        raise ParameterError(f"reference model {reference!r} was skipped")
    indices = bootstrap_indices(len(users), n_resamples=n_bootstrap, seed=seed)
    keys = [f"{m}@{k}" for m in metrics for k in ks]
    intervals = {r.name: {key: bootstrap_ci(v, indices=indices, confidence=confidence)
                          for key, v in r.per_user.items()} for r in ok}
    comparisons: list[dict[str, Any]] = []
    ref = next((r for r in ok if r.name == reference), None)
    if ref is not None:
        for r in ok:
            if r.name == ref.name:
                continue
            for key in keys:
                cmp = paired_comparison(r.per_user[key], ref.per_user[key], indices=indices,
                                        seed=seed, confidence=confidence)
                comparisons.append({"model": r.name, "reference": ref.name, "metric": key,
                                    **cmp.to_dict()})
    return EvaluationResult(
        protocol=split.protocol,
        split_params={k: (v.item() if isinstance(v, np.generic) else v)
                      for k, v in split.params.items()},
        ks=ks, metrics=list(metrics), test_users=users,
        user_ids=log_.users.to_ids(users), n_train=len(train), n_test=len(test),
        n_candidates=n_candidates,
        candidates="cold-tracks" if candidates is not None else "catalogue",
        models=results, reference=reference, primary_metric=primary,
        comparisons=comparisons, intervals=intervals,
        bootstrap={"n_resamples": n_bootstrap, "seed": seed, "confidence": confidence,
                   "method": "paired percentile bootstrap over test users"},
        data={"source": log_.report.source, "fingerprint": log_.fingerprint(),
              "n_users": log_.n_users, "n_tracks": log_.n_tracks,
              "n_interactions": len(log_), "has_timestamps": log_.has_timestamps},
        has_content=content is not None, split=split, split_sha256=split.fingerprint(),
    )


def _model_for(given: str | RecommenderBase, params: Mapping[str, Any], *, seed: int
               ) -> RecommenderBase:
    """An unfitted model: by name with ``params``, or a clone of ``given`` updated with
    them. A named model's ``random_state``, unless given, is ``seed`` (a given model's,
    when it is None)."""
    model = (create_model(given, **params) if isinstance(given, str)
             else given.clone().set_params(**params))
    if "random_state" in model.param_names() and "random_state" not in params and (
            isinstance(given, str) or getattr(model, "random_state", None) is None):
        model.set_params(random_state=seed)
    return model


def _params_of(model: RecommenderBase) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in model.get_params().items() if k != "show_progress"}
