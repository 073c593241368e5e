"""The session-continuation protocol: does a playlist continue a real listening session?

Sessions are cut at gaps (:mod:`musicrec.data.sessions`); each eligible user's last
session is held out, its first tracks are the seeds, and the rest is what the listener
really played next. A model directory is built from the remaining plays (CF on them,
the given content vectors, the catalogue's artists), and each method proposes ``k``
tracks from the seeds:

=================  ===========================================================================
``radio``          :meth:`Recommender.radio` from the seeds
``similar-last``   the top ``k`` similar tracks to the last seed (the same α blend)
``popularity``     the tracks with the most training listeners
``user``           the user's recommendations (:meth:`Recommender.recommend`, played tracks
                   allowed: sessions replay favourites)
=================  ===========================================================================

The seeds are never proposed. Per session: ``hit_rate@k`` (any continuation track in the
list), ``ndcg@k`` (binary relevance against the continuation's distinct tracks),
``artists@k`` (distinct artists in the list; a track without an artist counts as its
own) and ``coherence@k`` (mean content cosine between consecutive tracks of the list,
over pairs where both have content). Means carry percentile-bootstrap CIs over sessions,
and each baseline is compared with the radio on the same sessions.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import PlayEvents
from musicrec.data.sessions import DEFAULT_GAP_SECONDS, SessionSplit, session_split
from musicrec.errors import ParameterError
from musicrec.recommender import metrics as M
from musicrec.recommender.evaluation.stats import (
    bootstrap_ci,
    bootstrap_indices,
    paired_comparison,
)

if TYPE_CHECKING:
    from musicrec.recommender.served import ServedModel

METHODS = ("radio", "similar-last", "popularity", "user")
METRICS = ("hit_rate", "ndcg", "artists", "coherence")


@dataclass
class SessionResult:
    """Per-session values of every method, their means with CIs, and comparisons."""

    k: int
    methods: list[str]
    per_session: dict[str, dict[str, np.ndarray]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    comparisons: list[dict[str, Any]]
    split: dict[str, Any]
    bootstrap: dict[str, Any]
    radio: dict[str, Any] = field(default_factory=dict)

    def mean(self, method: str, metric: str) -> float:
        return float(np.nanmean(self.per_session[method][metric]))

    def table(self) -> tuple[list[list[Any]], list[str]]:
        header = ["method", *[f"{m}@{self.k}" for m in METRICS]]
        rows = []
        for name in self.methods:
            row: list[Any] = [name]
            for metric in METRICS:
                low, high = self.intervals[name][metric]
                row.append(f"{self.mean(name, metric):.3f} [{low:.3f}, {high:.3f}]")
            rows.append(row)
        return rows, header

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "musicrec.sessions", "k": self.k, "split": self.split,
            "bootstrap": self.bootstrap, "radio": self.radio,
            "results": {name: {metric: {"mean": self.mean(name, metric),
                                        "ci": list(self.intervals[name][metric])}
                               for metric in METRICS} for name in self.methods},
            "comparisons": self.comparisons,
        }

    def write(self, out: str | Path) -> dict[str, Path]:
        """``report.json`` and ``report.md`` in folder ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows, header = self.table()
        lines = [f"# Session continuation, next {self.k} tracks",
                 "", f"{self.split['n_test']} held-out sessions "
                 f"({self.split['gap_minutes']:g}-minute gaps, {self.split['n_seeds']} seed "
                 "tracks); means with 95 % bootstrap CIs.", "",
                 "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        lines += ["", "Differences to the radio (method − radio), 95 % paired bootstrap CI:", ""]
        lines += [f"* {c['model']} {c['metric']}: {c['mean_diff']:+.3f} "
                  f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" for c in self.comparisons]
        paths = {"json": out / "report.json", "md": out / "report.md"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        paths["md"].write_text("\n".join(lines) + "\n")
        return paths


def evaluate_sessions(
    events: PlayEvents,
    *,
    content_ids: Sequence[str] | None = None,
    content: np.ndarray | None = None,
    catalog: TrackCatalog | None = None,
    methods: Sequence[str] = METHODS,
    k: int = 10,
    gap: float = DEFAULT_GAP_SECONDS,
    n_seeds: int = 2,
    max_sessions: int | None = None,
    seed: int = 0,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    radio_options: Mapping[str, Any] | None = None,
    model_dir: str | Path | None = None,
    served: ServedModel | None = None,
    show_progress: bool = False,
) -> SessionResult:
    """Run the session-continuation protocol (see the module docstring).

    ``model_dir`` keeps the model built from the training sessions (default: a
    temporary folder, removed afterwards). ``served``: an unfitted
    :class:`~musicrec.recommender.served.ServedModel` to choose a model on the training
    sessions, as ``build --cf auto`` does (similar tracks and the radio then use its
    similarity); default none, the ALS + content blend.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ParameterError(f"method {unknown[0] if unknown else None!r} is not one of "
                             f"{list(METHODS)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise ParameterError(f"k={k!r} must be an integer from 1 to 1000")
    from musicrec.data.idmap import IdMap

    ids = list(dict.fromkeys([*events.frame["track"].tolist(), *(content_ids or [])]))
    split = session_split(events, gap=gap, n_seeds=n_seeds, max_sessions=max_sessions,
                          seed=seed, tracks=IdMap(ids, kind="track"))
    if model_dir is not None:
        return _run(split, Path(model_dir), content_ids, content, catalog, methods, k, seed,
                    n_bootstrap, confidence, radio_options, show_progress, served)
    with tempfile.TemporaryDirectory(prefix="musicrec-sessions-") as tmp:
        return _run(split, Path(tmp) / "model", content_ids, content, catalog, methods, k,
                    seed, n_bootstrap, confidence, radio_options, show_progress, served)


def _run(split: SessionSplit, model_dir: Path, content_ids: Sequence[str] | None,
         content: np.ndarray | None, catalog: TrackCatalog | None, methods: Sequence[str],
         k: int, seed: int, n_bootstrap: int, confidence: float,
         radio_options: Mapping[str, Any] | None, show_progress: bool,
         served: ServedModel | None = None) -> SessionResult:
    from tqdm.auto import tqdm

    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.pipeline import build_model_dir

    build_model_dir(model_dir, log=split.train, catalog=catalog,
                    content_ids=None if content_ids is None else list(content_ids),
                    content=content, cf_model=CFModel(random_state=seed), served=served)
    rec = Recommender(model_dir)
    options = {"seed": seed, **dict(radio_options or {})}
    popular = np.lexsort((np.arange(len(rec.tracks)), -np.asarray(rec.evidence)))
    per: dict[str, dict[str, list[float]]] = {m: {x: [] for x in METRICS} for m in methods}
    for session in tqdm(split.sessions, desc="sessions", disable=not show_progress):
        truth = set(rec.tracks.to_idx_many(session.continuation).tolist())
        for method in methods:
            proposed = _propose(rec, method, session.seeds, session.user_id, k, popular,
                                options)
            ranked = rec.tracks.to_idx_many(proposed)
            per[method]["hit_rate"].append(M.hit_rate_at_k(ranked, truth, k))
            per[method]["ndcg"].append(M.ndcg_at_k(ranked, truth, k))
            per[method]["artists"].append(float(distinct_artists(rec.artist_of[ranked])))
            per[method]["coherence"].append(coherence(rec, ranked))
    arrays = {m: {x: np.asarray(v, dtype=np.float64) for x, v in d.items()}
              for m, d in per.items()}
    indices = bootstrap_indices(len(split.sessions), n_resamples=n_bootstrap, seed=seed)
    intervals = {m: {x: bootstrap_ci(v, indices=indices, confidence=confidence)
                     for x, v in d.items()} for m, d in arrays.items()}
    comparisons = []
    if "radio" in methods:
        for method in methods:
            if method == "radio":
                continue
            for metric in METRICS:
                cmp = paired_comparison(arrays[method][metric], arrays["radio"][metric],
                                        indices=indices, seed=seed, confidence=confidence)
                comparisons.append({"model": method, "reference": "radio",
                                    "metric": f"{metric}@{k}", **cmp.to_dict()})
    from musicrec.recommender.radio import RadioParams

    params = {**RadioParams().__dict__, **options}
    return SessionResult(
        k=k, methods=list(methods), per_session=arrays, intervals=intervals,
        comparisons=comparisons,
        split={**split.params, "gap_minutes": split.params["gap_seconds"] / 60,
               "n_sessions": split.n_sessions, "n_eligible": split.n_eligible,
               "n_test": len(split.sessions), "n_train_pairs": len(split.train)},
        bootstrap={"n_resamples": n_bootstrap, "seed": seed, "confidence": confidence,
                   "method": "percentile bootstrap over held-out sessions"},
        radio=params)


def _propose(rec: Any, method: str, seeds: tuple[str, ...], user: str, k: int,
             popular: np.ndarray, radio_options: Mapping[str, Any]) -> list[str]:
    if method == "radio":
        return [r.track_id for r in rec.radio(seeds, n=k, **radio_options).items]
    if method == "similar-last":
        return [r.track_id for r in rec.similar(seeds[-1], n=k, exclude=seeds[:-1])]
    if method == "user":
        return [r.track_id for r in rec.recommend(user, n=k, exclude_played=False,
                                                  exclude=seeds)]
    skip = set(rec.tracks.to_idx_many(seeds).tolist())
    return rec.tracks.to_ids([int(i) for i in popular[: k + len(skip)] if i not in skip][:k])


def distinct_artists(artists: np.ndarray) -> int:
    """Distinct artists in a list; a track without an artist counts as its own.

    >>> distinct_artists(np.array(["a", "b", "a", "", ""], dtype=object))
    4
    """
    named = [a for a in artists if a]
    return len(set(named)) + (len(artists) - len(named))


def coherence(rec: Any, ranked: np.ndarray) -> float:
    """Mean content cosine between consecutive tracks (pairs where both have content)."""
    if len(ranked) < 2:
        return float("nan")
    both = rec.has_content[ranked[:-1]] & rec.has_content[ranked[1:]]
    if not both.any():
        return float("nan")
    a = np.asarray(rec.content[ranked[:-1][both]], dtype=np.float64)
    b = np.asarray(rec.content[ranked[1:][both]], dtype=np.float64)
    return float(np.mean(np.sum(a * b, axis=1)))
