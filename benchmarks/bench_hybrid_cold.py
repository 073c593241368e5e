"""HetRec 2K cold artists with tag vectors: the hybrid against its baselines.

``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hybrid_cold.py --seeds 0 1 2``
prints a Markdown table (mean over seeds, with the range).
"""

from __future__ import annotations

import argparse

import numpy as np

from musicrec.recommender.coldstart import hetrec_tag_cold_start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/hetrec2011-lastfm-2k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    runs = [hetrec_tag_cold_start(args.data, seed=s) for s in args.seeds]
    first = runs[0]["hybrid"]
    print(f"{int(first['cold_artists'])} cold artists, {int(first['users'])} users (seed "
          f"{args.seeds[0]}); seeds {args.seeds}")
    print("| method | recall@10 | recall@50 |")
    print("| --- | --- | --- |")
    for name in ("hybrid", "ridge", "content_profile", "tag_popularity", "random"):
        cells = []
        for metric in ("recall@10", "recall@50"):
            vals = np.array([r[name][metric] for r in runs])
            cells.append(f"{vals.mean():.3f} ({vals.min():.3f}–{vals.max():.3f})")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
