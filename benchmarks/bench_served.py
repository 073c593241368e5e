"""What ``build --cf auto`` costs: build time with and without the choice, and the
in-process latency of a known user's recommendations as served, and of a new listener's
(``recommend_for_tracks`` with a known user's plays), from a listening log.

Builds two CF-only model directories from the same log (``--cf auto``: the model chosen on
validation; ``--cf hybrid``: ALS), then times ``Recommender.recommend(user, n=10)`` for
random known users (one call each, after a warm-up; also their CPU time per request) and
``recommend_for_tracks`` with their plays.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_served.py \
        --interactions demo/data/plays.csv [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from musicrec.data.logs import read_log
from musicrec.recommender.facade import Recommender
from musicrec.recommender.pipeline import build_model_dir
from musicrec.recommender.served import ServedModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    log = read_log(args.interactions)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as name:
        for cf in ("hybrid", "auto"):
            started = time.perf_counter()
            out = build_model_dir(Path(name) / cf, log=log,
                                  served=ServedModel(random_state=args.seed)
                                  if cf == "auto" else None)
            build_s = time.perf_counter() - started
            rec = Recommender(out)
            assert rec.cf is not None
            users = rec.cf.users_.ids[rng.integers(len(rec.cf.users_), size=args.requests)]
            for user in users[:50]:
                rec.recommend(str(user), n=10)
            times = []
            cpu = time.process_time()  # CPU time: less sensitive to other load than wall
            for user in users:
                t0 = time.perf_counter()
                rec.recommend(str(user), n=10)
                times.append((time.perf_counter() - t0) * 1e3)
            cpu_us = (time.process_time() - cpu) / len(users) * 1e6
            # a new listener (POST /v1/recommendations) with a known user's plays
            plays = log.to_csr()
            new_times = []
            for user in users:
                u = log.users.to_idx(str(user))
                row = slice(plays.indptr[u], plays.indptr[u + 1])
                history = [str(t) for t in log.tracks.to_ids(plays.indices[row])]
                t0 = time.perf_counter()
                rec.recommend_for_tracks(history, plays=plays.data[row].tolist(), n=10)
                new_times.append((time.perf_counter() - t0) * 1e3)
            choice = rec.manifest.get("served", {}).get("choice")
            print(json.dumps({"cf": cf, "tracks": len(rec.tracks), "users": len(rec.cf.users_),
                              "build_s": round(build_s, 1), "choice": choice,
                              "cpu_us_per_request": round(cpu_us, 1),
                              "p50_ms": round(float(np.percentile(times, 50)), 3),
                              "p99_ms": round(float(np.percentile(times, 99)), 3),
                              "new_p50_ms": round(float(np.percentile(new_times, 50)), 3),
                              "new_p99_ms": round(float(np.percentile(new_times, 99)), 3)}),
                  flush=True)


if __name__ == "__main__":
    main()
