"""Annoy against exact numpy search on synthetic track vectors.

``.venv/bin/python benchmarks/bench_index.py --sizes 10000 100000 --dim 384``
For each size: build time, median query latency, QPS (one thread), and recall@10 against
exact search, for several ``n_trees``/``search_k_factor`` settings; exact numpy search is
measured beside it. Vectors are clustered Gaussians (like embeddings), unit length.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from musicrec.recommender.index import VectorIndex, exact_top_k, normalize_rows


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 200, 8), dim))
    return normalize_rows(centres[rng.integers(len(centres), size=n)]
                          + 0.6 * rng.standard_normal((n, dim)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--settings", nargs="+", default=["20:10", "50:10", "10:5"],
                        help="n_trees:search_k_factor pairs")
    args = parser.parse_args()
    print("| tracks | method | build (s) | p50 query (ms) | QPS | recall@10 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in args.sizes:
        data = vectors(n, args.dim)
        queries = data[np.random.default_rng(1).choice(n, args.queries, replace=False)]
        truth = [set(exact_top_k(data, q, 10)[0].tolist()) for q in queries]
        times = []
        for q in queries:
            start = time.perf_counter()
            exact_top_k(data, q, 10)
            times.append(time.perf_counter() - start)
        p50 = statistics.median(times)
        print(f"| {n:,} | exact numpy | – | {p50 * 1e3:.2f} | {1 / p50:.0f} | 1.000 |")
        ids = [str(i) for i in range(n)]
        for setting in args.settings:
            trees, factor = (int(x) for x in setting.split(":"))
            start = time.perf_counter()
            index = VectorIndex(args.dim, n_trees=trees, search_k_factor=factor).add_items(
                data, ids)
            build = time.perf_counter() - start
            times, recall = [], []
            for q, t in zip(queries, truth, strict=True):
                start = time.perf_counter()
                pos, _ = index.query_positions(q, 10)
                times.append(time.perf_counter() - start)
                recall.append(len(t & set(pos.tolist())) / 10)
            p50 = statistics.median(times)
            print(f"| {n:,} | annoy trees={trees} search_k={factor}·k·trees | {build:.1f} "
                  f"| {p50 * 1e3:.2f} | {1 / p50:.0f} | {np.mean(recall):.3f} |", flush=True)


if __name__ == "__main__":
    main()
