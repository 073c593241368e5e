"""Build-time benchmark of the demo dataset (``musicrec demo-data``): a Markdown table.

Builds the demo dataset at each size (fresh: no render cache), ``--repeats`` times, in a
temporary folder, and prints one Markdown row per size with the median wall time, the
files music21 parsed, the tracks that are further excerpts of a piece, the skipped
pieces, and the load average before and after (the machine is shared: quote it). Optionally
times a rebuild from a warm ``--cache`` too.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_demo_data.py \\
        --sizes 40x50 1000x2000 [--repeats 3] [--workers 2] [--cached]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    tracks, _, users = text.partition("x")
    return int(tracks), int(users or 2 * int(tracks))


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    from musicrec.data.demo import build_demo_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(40, 50), (1000, 2000)],
                        help="TRACKSxUSERS, e.g. 40x50 1000x2000 5000x2000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cached", action="store_true",
                        help="also time a rebuild from a cache warmed by the first build")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    print(f"workers: {args.workers}, cpus: {os.cpu_count()}, repeats: {args.repeats}")
    print()
    print("| tracks | users | build | median s | runs s | files parsed | further excerpts "
          "| skipped | load avg before | load avg after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n_tracks, n_users in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
            kinds = [("fresh", None)]
            if args.cached:
                kinds.append(("cached", str(Path(tmp) / "cache")))
            if args.cached:  # warm the cache (not timed)
                build_demo_dataset(Path(tmp) / "warm", n_tracks=n_tracks, n_users=n_users,
                                   seed=args.seed, show_progress=False,
                                   n_workers=args.workers, cache_dir=kinds[1][1])
            for kind, cache in kinds:
                times = []
                before = _load()
                ds = None
                for r in range(args.repeats):
                    out = Path(tmp) / f"{kind}-{r}"
                    started = time.perf_counter()
                    ds = build_demo_dataset(out, n_tracks=n_tracks, n_users=n_users,
                                            seed=args.seed, show_progress=False,
                                            n_workers=args.workers, cache_dir=cache)
                    times.append(time.perf_counter() - started)
                assert ds is not None
                runs = ", ".join(f"{t:.1f}" for t in times)
                print(f"| {n_tracks} | {n_users} | {kind} | {statistics.median(times):.1f} "
                      f"| {runs} | {ds.n_pieces_parsed} | {ds.n_reused_pieces} "
                      f"| {ds.n_skipped} | {before} | {_load()} |", flush=True)


if __name__ == "__main__":
    main()
