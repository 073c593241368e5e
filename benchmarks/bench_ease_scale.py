"""EASE on large catalogues: fit time and peak memory at 30k and 100k played tracks.

Synthetic log: ``--users`` listeners, each playing 40 tracks drawn from a Zipf-like
popularity over ``n`` tracks. Above ``max_items`` (default 20,000) EASE keeps the tracks
with the most listeners. Each size runs in its own process so that its peak resident
memory (``ru_maxrss``) is its own.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ease_scale.py [--sizes 30000,100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def one(n_tracks: int, n_users: int, max_items: int) -> dict[str, float]:
    from musicrec.data.logs import ListeningLog
    from musicrec.recommender.baselines import EASEModel

    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, n_tracks + 1) ** 0.9
    popularity /= popularity.sum()
    tracks = rng.choice(n_tracks, size=(n_users, 40), p=popularity)
    frame = pd.DataFrame({"user": np.repeat(np.arange(n_users), 40).astype(str),
                          "track": tracks.ravel().astype(str)})
    log = ListeningLog.from_frame(frame)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    model = EASEModel(max_items=max_items).fit(log)
    fit = time.perf_counter() - started
    started = time.perf_counter()
    model.score(np.arange(256))
    return {"tracks": n_tracks, "played": int((log.to_csr().getnnz(axis=0) > 0).sum()),
            "kept": len(model.active_), "users": n_users, "fit_s": round(fit, 1),
            "score_256_users_s": round(time.perf_counter() - started, 3),
            "peak_rss_mb_before_fit": round(before), "peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30000,100000")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--max-items", type=int, default=20_000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.users, args.max_items)), flush=True)
        return
    for size in args.sizes.split(","):
        subprocess.run([sys.executable, __file__, "--one", size, "--users", str(args.users),
                        "--max-items", str(args.max_items)], check=True)


if __name__ == "__main__":
    main()
