"""Timing of the evaluation pieces on HetRec 2K (or a synthetic log without one).

``.venv/bin/python benchmarks/bench_evaluate.py --data ../shared/datasets/hetrec2011-lastfm-2k``

Reports, as medians over ``--repeats`` runs: the random-holdout split, the fit and the
ranking (top 50 over the whole catalogue, training tracks excluded) of popularity,
item-kNN and ALS, the metrics on the rankings, and the paired bootstrap. EASE's closed form
is timed once with ``--ease`` (it takes minutes on 2 cores: a 15,360² float32 Cholesky
inverse). Keep ``OPENBLAS_NUM_THREADS=1`` for the other rows; EASE raises it itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from musicrec.data.logs import ListeningLog
from musicrec.data.splits import random_holdout
from musicrec.recommender import metrics as M
from musicrec.recommender.evaluation import create_model, rank_top
from musicrec.recommender.evaluation.stats import bootstrap_ci, bootstrap_indices


def synthetic(seed: int = 0) -> ListeningLog:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 2000, 90_000)
    tracks = np.minimum(rng.zipf(1.3, 90_000), 17_000)
    frame = pd.DataFrame({"user": users.astype(str), "track": tracks.astype(str),
                          "plays": rng.integers(1, 100, 90_000)})
    return ListeningLog.from_frame(frame, weight_col="plays", source="synthetic")


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", help="a HetRec 2011 Last.fm 2K folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ease", action="store_true", help="also time EASE (minutes)")
    args = parser.parse_args()
    if args.data:
        from musicrec.data.hetrec import read_hetrec

        log = read_hetrec(args.data).log
    else:
        log = synthetic()
    print(f"{log.report.source}: {log.n_users} users, {log.n_tracks} tracks, {len(log)} pairs")
    print("| step | median (s) |")
    print("| --- | --- |")
    t, split = timed(lambda: random_holdout(log, seed=0), args.repeats)
    print(f"| random-holdout split | {t:.3f} |")
    test = split.test
    users = np.unique(test.user_idx)
    relevant = [test.track_idx[test.user_idx == u] for u in users]
    exclude = split.train.to_csr()
    names = ["popularity", "itemknn", "als"] + (["ease"] if args.ease else [])
    ranked = None
    for name in names:
        repeats = 1 if name == "ease" else args.repeats
        t, model = timed(lambda name=name: create_model(name).fit(split.train), repeats)
        print(f"| fit {name} | {t:.3f} |")
        t, ranked = timed(lambda model=model: rank_top(model, users, k=50, exclude=exclude),
                          repeats)
        print(f"| rank {name} ({len(users)} users, top 50 of {log.n_tracks}) | {t:.3f} |")
    assert ranked is not None
    t, hits = timed(lambda: M.hits_matrix(ranked, relevant), args.repeats)
    n_rel = np.array([len(r) for r in relevant])
    t2, values = timed(lambda: M.accuracy_from_hits(hits, n_rel, [10, 20, 50]), args.repeats)
    print(f"| metrics: hits + 6 metrics x 3 k | {t + t2:.3f} |")
    indices = bootstrap_indices(len(users), n_resamples=1000, seed=0)
    t, _ = timed(lambda: [bootstrap_ci(v, indices=indices) for v in values.values()],
                 args.repeats)
    print(f"| paired bootstrap, 1000 resamples x {len(values)} metrics | {t:.3f} |")


if __name__ == "__main__":
    main()
