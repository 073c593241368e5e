"""Reading a large CSV log: streamed in chunks against the whole table at once.

Writes a synthetic ``user,track,plays,timestamp`` CSV of ``--rows`` rows, then reads it
with :func:`musicrec.data.logs.read_log` twice, each in a fresh process: streamed (the
default, ``CHUNK_ROWS`` rows at a time) and whole (``CHUNK_ROWS = None``, what musicrec did
before). Prints each run's wall and CPU time and peak resident memory (``VmHWM``) beside
the peak before reading (the imports). The file is deleted afterwards unless ``--keep``.

    nice -n 10 .venv/bin/python benchmarks/bench_read_csv.py --rows 7500000 --dir /tmp

Synthetic data: 50,000 users, 200,000 tracks of Zipf-like popularity (exponent 1.0),
play counts 1-20, unix timestamps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def generate(path: Path, rows: int, *, users: int = 50_000, tracks: int = 200_000) -> None:
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, tracks + 1)
    popularity /= popularity.sum()
    with path.open("w") as f:
        f.write("user,track,plays,timestamp\n")
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            frame = pd.DataFrame({
                "user": np.char.add("u", rng.integers(users, size=n).astype(str)),
                "track": np.char.add("t", rng.choice(tracks, size=n, p=popularity).astype(str)),
                "plays": rng.integers(1, 21, size=n),
                "timestamp": rng.integers(1_500_000_000, 1_700_000_000, size=n)})
            frame.to_csv(f, header=False, index=False)


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read(path: Path, mode: str) -> dict[str, float]:
    import musicrec.data.logs as logs

    if mode == "whole":
        logs.CHUNK_ROWS = None  # type: ignore[assignment]
    before = _peak_mib()
    started, cpu = time.perf_counter(), time.process_time()
    log = logs.read_log(path)
    return {"mode": mode, "rows": log.report.rows_read, "pairs": len(log),
            "users": log.n_users, "tracks": log.n_tracks,
            "wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(time.process_time() - cpu, 1),
            "peak_mib_before": round(before), "peak_mib": round(_peak_mib())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7_500_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--modes", default="streamed,whole")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read(args.read, args.mode)), flush=True)
        return
    path = args.dir / f"musicrec-bench-{args.rows}.csv"
    started = time.perf_counter()
    generate(path, args.rows)
    print(json.dumps({"file_mib": round(path.stat().st_size / 2**20),
                      "rows": args.rows, "generate_s": round(time.perf_counter() - started)}),
          flush=True)
    try:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        for mode in args.modes.split(","):
            subprocess.run([sys.executable, __file__, "--read", str(path), "--mode", mode],
                           check=True, env=env)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
