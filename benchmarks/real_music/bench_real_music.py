"""Every embedder on the real-music set (``build_set.py``), in one run.

    nice -n 10 .venv/bin/python benchmarks/real_music/bench_real_music.py \
        --embedders mfcc,whisper-tiny,aisfx [--set DIR] [--json results.json]

An embedder's options follow its name after ``@`` (``musicnn-msd@n_windows=4@batch_size=1``).

Each embedder runs in its own process (so its peak memory is its own), with ``--threads``
torch threads and ``--workers`` decoding threads (2 and 2: the 2-core machine), and
measures:

- **speed**: every track of the set embedded from its file, full length, through
  :func:`musicrec.embedding.batch.embed_paths` without the cache (decoding included):
  tracks per hour and hours of audio per hour (wall clock), and CPU seconds per track
  (user + system, every thread: less sensitive than wall time to other jobs on a shared
  machine; the 1-minute load average at the end is recorded);
- **same-source P@10**: for each track of the seven packages, the share of its 10 nearest
  other tracks (cosine, the query left out) from the same package; librosa's recordings are
  in every ranking as distractors but are not queries. A 95 % percentile bootstrap interval
  over queries (``recommender.evaluation.stats``, 1000 resamples, seed 0) and the chance
  level (the expected P@10 of a random ranking) are given;
- **query-by-example top-1**: from every track of at least 20 s, two 10-s excerpts (at
  30 % and 70 % of the track), each with white noise at 20 dB SNR and -6 dB of gain
  (``bench_embed.degrade``), embedded alone and searched against the whole-track vectors
  of the set; a hit is the excerpt's own track (the embedding alone: no fingerprint);
- **peak memory**: the process's maximum resident set size.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench_embed import degrade  # noqa: E402

from musicrec.embedding.base import resolve_cache_dir  # noqa: E402

QBE_FRACTIONS = (0.3, 0.7)
QBE_SECONDS = 10.0


def same_source_precision(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray,
                          *, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the share of its ``k`` nearest other tracks with its label, and the same
    share expected from a random ranking.

    Examples
    --------
    >>> v = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    >>> p, chance = same_source_precision(v, np.array(list("aabb")), np.ones(4, bool), k=1)
    >>> p.tolist(), chance.round(3).tolist()
    ([1.0, 1.0, 1.0, 1.0], [0.333, 0.333, 0.333, 0.333])
    """
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    rows = np.flatnonzero(queries)
    top = np.argsort(-sims[rows], axis=1, kind="stable")[:, :k]
    hits = labels[top] == labels[rows][:, None]
    same = np.array([np.sum(labels == labels[r]) - 1 for r in rows])
    return hits.mean(axis=1), same / (len(labels) - 1)


def excerpt(path: Path, *, fraction: float, seconds: float, sample_rate: int) -> np.ndarray:
    """``seconds`` of a file starting at ``fraction`` of (duration - seconds), mono at
    ``sample_rate``."""
    import soundfile as sf

    from musicrec.embedding.audio import to_mono

    with sf.SoundFile(path) as f:
        width = int(seconds * f.samplerate)
        f.seek(int(fraction * max(0, f.frames - width)))
        data = f.read(width, dtype="float32", always_2d=True)
        rate = f.samplerate
    return to_mono(data, sample_rate=rate, target_rate=sample_rate)


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_spec(text: str) -> tuple[str, dict[str, int | float | str]]:
    """An embedder spec with options after ``@``, as ``--embedders`` takes it.

    Examples
    --------
    >>> parse_spec("musicnn-msd@n_windows=4@window_seconds=3.0")
    ('musicnn-msd', {'n_windows': 4, 'window_seconds': 3.0})
    >>> parse_spec("whisper-tiny@precision=float32")
    ('whisper-tiny', {'precision': 'float32'})
    """
    spec, *parts = text.split("@")
    options: dict[str, int | float | str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise SystemExit(f"{text!r}: option {part!r} is not key=value")
        for cast in (int, float):
            try:
                options[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return spec, options


def run_one(text: str, set_dir: Path, *, threads: int, workers: int, resamples: int) -> dict:
    import pandas as pd
    import torch

    from musicrec.embedding.batch import embed_paths
    from musicrec.embedding.registry import get_embedder
    from musicrec.recommender.evaluation.stats import bootstrap_ci, bootstrap_indices

    torch.set_num_threads(threads)
    catalog = pd.read_csv(set_dir / "catalog.csv", dtype={"track_id": str})
    paths = [set_dir / p for p in catalog["audio_path"]]
    spec, options = parse_spec(text)
    embedder = get_embedder(spec, **options)
    cpu_before = _cpu_seconds()
    began = time.perf_counter()
    result = embed_paths(paths, embedder=embedder, track_ids=list(catalog["track_id"]),
                         use_cache=False, n_workers=workers, show_progress=False)
    wall = time.perf_counter() - began
    cpu = _cpu_seconds() - cpu_before
    if result.failures:
        raise SystemExit(f"{spec}: {len(result.failures)} tracks failed: {result.failures[:3]}")
    row: dict = {"embedder": text, "id": embedder.id, "dim": embedder.dim,
                 "tracks": len(paths), "embed_s": round(wall, 1),
                 "tracks_per_hour": int(len(paths) / wall * 3600),
                 "cpu_s_per_track": round(cpu / len(paths), 3),
                 "load_average": round(os.getloadavg()[0], 1),
                 "audio_hours_per_hour": round(float(catalog["duration_s"].sum()) / wall, 1)}

    labels = catalog["label"].to_numpy()
    queries = catalog["query"].to_numpy(dtype=bool)
    precision, chance = same_source_precision(result.vectors, labels, queries)
    low, high = bootstrap_ci(precision, indices=bootstrap_indices(len(precision),
                                                                  n_resamples=resamples))
    row.update(p_at_10=round(float(precision.mean()), 4), p_at_10_ci=[round(low, 4),
                                                                      round(high, 4)],
               p_at_10_chance=round(float(chance.mean()), 4), p_at_10_queries=len(precision),
               p_at_10_by_label={str(lab): round(float(precision[labels[queries] == lab].mean()),
                                                 3)
                                 for lab in dict.fromkeys(labels[queries])})

    rng = np.random.default_rng(0)
    clips, owner = [], []
    for i, path in enumerate(paths):
        if catalog["duration_s"].iloc[i] < 2 * QBE_SECONDS:
            continue
        for frac in QBE_FRACTIONS:
            clip = excerpt(path, fraction=frac, seconds=QBE_SECONDS,
                           sample_rate=embedder.sample_rate)
            clips.append(degrade(clip, rng))
            owner.append(i)
    best = np.argmax(embedder.embed(clips) @ result.vectors.T, axis=1)
    hits = (best == np.asarray(owner)).astype(np.float64)
    low, high = bootstrap_ci(hits, indices=bootstrap_indices(len(hits), n_resamples=resamples))
    row.update(qbe_top1=round(float(hits.mean()), 4), qbe_top1_ci=[round(low, 4),
                                                                   round(high, 4)],
               qbe_queries=len(hits),
               peak_rss_mib=int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| embedder | dim | same-source P@10 [95 % CI] | QBE top-1 [95 % CI] | "
             "tracks/h | CPU s/track | peak RSS |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| `{r['embedder']}` | {r['dim']} | {r['p_at_10']:.3f} [{r['p_at_10_ci'][0]:.3f}, "
            f"{r['p_at_10_ci'][1]:.3f}] | {r['qbe_top1']:.3f} [{r['qbe_top1_ci'][0]:.3f}, "
            f"{r['qbe_top1_ci'][1]:.3f}] | {r['tracks_per_hour']:,} | "
            f"{r.get('cpu_s_per_track', float('nan')):.2f} | {r['peak_rss_mib']:,} MiB |")
    if rows:
        r = rows[0]
        lines.append(f"\n{r['tracks']} tracks, {r['p_at_10_queries']} P@10 queries (chance "
                     f"{r['p_at_10_chance']:.3f}), {r['qbe_queries']} QBE queries.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedders", default="mfcc,whisper-tiny,aisfx",
                    help="comma-separated embedder specs (any name get_embedder takes), "
                    "each with options after '@': musicnn-msd@n_windows=4")
    ap.add_argument("--set", type=Path, help="the folder build_set.py wrote (default "
                    "$MUSICREC_CACHE/real_music or ~/.cache/musicrec/real_music)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    set_dir = args.set or resolve_cache_dir() / "real_music"
    if not (set_dir / "catalog.csv").is_file():
        print(f"{set_dir / 'catalog.csv'} is missing: run build_set.py first", file=sys.stderr)
        return 2
    if args.one:
        print(json.dumps(run_one(args.one, set_dir, threads=args.threads,
                                 workers=args.workers, resamples=args.resamples)))
        return 0
    rows = []
    for spec in [s.strip() for s in args.embedders.split(",") if s.strip()]:
        done = subprocess.run(
            [sys.executable, __file__, "--one", spec, "--set", str(set_dir), "--threads",
             str(args.threads), "--workers", str(args.workers), "--resamples",
             str(args.resamples)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{spec} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
