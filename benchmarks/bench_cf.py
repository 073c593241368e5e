"""CF benchmark on HetRec 2011 Last.fm 2K: training time and recommend latency.

Run by hand (not a test): ``make bench`` or ``OPENBLAS_NUM_THREADS=1
.venv/bin/python benchmarks/bench_cf.py --data ../shared/datasets/hetrec2011-lastfm-2k``.
Prints a Markdown table of medians over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from musicrec.data.hetrec import read_hetrec
from musicrec.recommender.cf import DEFAULTS, CFModel


def median_seconds(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/hetrec2011-lastfm-2k")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    log = read_hetrec(args.data).log
    users = list(log.users.ids)
    rng = np.random.default_rng(0)
    batch = log.users.to_idx_many([str(u) for u in rng.choice(users, size=256,
                                                               replace=False)])
    rows = []
    for algorithm, iterations in (("als", DEFAULTS["iterations"]), ("bpr", 100)):
        model = CFModel(algorithm=algorithm, iterations=iterations, random_state=0)
        fit = median_seconds(lambda m=model: m.fit(log), args.repeats)
        single = median_seconds(lambda m=model: [m.recommend(int(u), n=10)
                                                 for u in batch[:64]], args.repeats) / 64
        many = median_seconds(lambda m=model: m.recommend(batch, n=10), args.repeats)
        fold = median_seconds(
            lambda m=model: [m.recommend_for_tracks(list(m.tracks_.ids[:20]), n=10)
                             for _ in range(16)], args.repeats) / 16
        rows.append((algorithm.upper(), iterations, fit, single * 1e3, many * 1e3,
                     many / len(batch) * 1e3, fold * 1e3))
    print(f"HetRec 2K: {log.n_users} users x {log.n_tracks} artists, {len(log)} pairs; "
          f"{platform.processor() or platform.machine()}, OPENBLAS_NUM_THREADS=1, "
          f"median of {args.repeats}")
    print("| model | iterations | fit (s) | recommend, 1 user (ms) | batch of 256 (ms) "
          "| per user in batch (ms) | new listener fold-in + recommend (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.1f} | {r[5]:.3f} "
              f"| {r[6]:.2f} |")


if __name__ == "__main__":
    main()
