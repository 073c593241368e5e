"""Reading a large ListenBrainz dump: time and peak memory of the streaming reader.

Writes a synthetic JSON lines file of ``--listens`` listens (default 10 M) in the layout of
ListenBrainz's dumps, reads it with :func:`musicrec.data.listenbrainz.read_listenbrainz` in
a fresh process, and prints the wall and CPU time (the CPU time is what a shared machine does not
inflate) and that process's peak resident memory
(``VmHWM``) beside its peak before reading (the imports). The file is deleted afterwards
unless ``--keep``.

``nice -n 10 .venv/bin/python benchmarks/bench_logs.py --listens 10000000 --dir /tmp``

Synthetic data: 20,000 users with log-normal activity, 100,000 recordings by 20,000
artists drawn from a Zipf-like popularity (exponent 1.0), 60 % of recordings with a
recording MBID, 10 % of listens with the artist spelt in upper case.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

T0 = 1_500_000_000


def generate(path: Path, listens: int, *, seed: int = 0, users: int = 20_000,
             tracks: int = 100_000, artists: int = 20_000) -> None:
    rng = np.random.default_rng(seed)
    track_artist = rng.integers(artists, size=tracks)
    has_mbid = rng.random(tracks) < 0.6
    metas, shouted = [], []
    for t in range(tracks):
        artist = f"Artist {track_artist[t]} and the Band"
        extra = {"release_name": f"Album {t // 10}",
                 "additional_info": {"recording_mbid": str(uuid.UUID(int=int(
                     rng.integers(2**62)))), "media_player": "musicrec-bench"}
                 if has_mbid[t] else {"media_player": "musicrec-bench"}}
        for name, out in ((artist, metas), (artist.upper(), shouted)):
            out.append(json.dumps({"artist_name": name, "track_name": f"Song number {t}",
                                   **extra}))
    popularity = 1.0 / np.arange(1, tracks + 1)
    popularity /= popularity.sum()
    activity = rng.lognormal(0.0, 1.0, size=users)
    activity /= activity.sum()
    block = 1_000_000
    with path.open("w", encoding="utf-8") as fh:
        for start in range(0, listens, block):
            n = min(block, listens - start)
            who = rng.choice(users, size=n, p=activity)
            what = rng.choice(tracks, size=n, p=popularity)
            upper = rng.random(n) < 0.1
            when = T0 + start + np.arange(n)
            fh.write("".join(
                f'{{"user_name": "user{u}", "listened_at": {w}, '
                f'"track_metadata": {(shouted if s else metas)[t]}}}\n'
                for u, t, s, w in zip(who.tolist(), what.tolist(), upper.tolist(),
                                      when.tolist(), strict=True)))


def read(path: Path) -> dict[str, float]:
    """Read in this process; measure time and peak memory (run it in a fresh process)."""
    from musicrec.data.listenbrainz import read_listenbrainz

    before = _peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    log = read_listenbrainz(path, show_progress=False).log
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _peak_rss_mib()
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "peak_rss_mib": round(peak),
            "rss_before_mib": round(before), "listens": log.report.rows_read,
            "users": log.n_users, "tracks": log.n_tracks, "pairs": len(log)}


def _peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM, which (unlike ``ru_maxrss``) does not
    carry over the parent's peak across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listens", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.read is not None:
        print(json.dumps(read(args.read)))
        return
    path = args.dir / f"musicrec-bench-listens-{args.listens}.jsonl"
    try:
        start = time.perf_counter()
        generate(path, args.listens)
        size = path.stat().st_size
        print(f"wrote {args.listens:,} listens ({size / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--read", str(path)], check=True,
                               capture_output=True, text=True,
                               env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        result = json.loads(child.stdout)
        result["file_gib"] = round(size / 2**30, 2)
        print(json.dumps(result, indent=2))
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
