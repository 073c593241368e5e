"""Full-length catalogues: tracks/hour of ``embed`` and ``build`` on real 3-10 minute
recordings, with the time split by decode, model, fingerprint and index.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_full_length.py \
        --models mfcc,whisper-tiny,musicnn --limit 30

The recordings are the real-music set's tracks of at least ``--min-seconds`` (built by
``benchmarks/real_music/build_set.py``; ``--set DIR``, default
``$MUSICREC_CACHE/real_music``), ``--limit`` of them taken round-robin over its
soundtracks. Every stage runs on one thread and is timed in CPU seconds
(``time.process_time``; each decode the fastest of ``--repeats``), so the numbers hold
on a shared machine; tracks/hour on 2 cores
is ``2 * 3600 / CPU-s per track`` (the decoding threads and the model run in parallel in
``embed_paths``; ``--end-to-end`` also runs it, 2 threads, and prints its wall clock).

Per track:

- ``decode alone`` (the reference): the whole track decoded once at its own rate, as
  ``load_audio`` does (block reads mixed down into one mono array); ``decode, one read``
  is the previous way (one read of the interleaved track, then ``to_mono``), timed
  beside it;
- ``embed``: the embedder's windows decoded (seek + decode + resample) and the model
  (batches of ``--batch``), as ``musicrec embed`` does;
- ``build``: one decode of the whole track, the embedder's windows cut from it and the
  fingerprint's signal resampled from it (decode once), the model, the landmark
  fingerprint, and the index (fingerprint index build + save, vector index build), as
  ``musicrec build --catalog`` does (CF is left out: it depends on the logs, not the
  audio);
- ``build, decoded twice``: the same with the windows and the fingerprint each decoded
  from the file, as before decode once.

``--end-to-end`` also accounts for every thread of the process from
``/proc/self/task/*/schedstat`` (sampled every 0.1 s): CPU seconds, and seconds a thread
was ready to run but waited for a core (held by other jobs on a shared machine). Cores
used = CPU / wall; cores wanted = (CPU + waiting) / wall. Wanted near 2 while used is
lower means the machine's other jobs, not the GIL, kept the threads from the cores (a
thread blocked on the GIL sleeps: it neither runs nor waits for a core).

Prints one JSON line per model and a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.audio import load_audio, resample_mono, rewindow, to_mono
from musicrec.embedding.base import resolve_cache_dir
from musicrec.embedding.fingerprint import FingerprintIndex, FingerprintParams, fingerprint
from musicrec.embedding.registry import get_embedder


def full_length_tracks(folder: Path, *, min_seconds: float, limit: int
                       ) -> list[tuple[str, Path, float]]:
    """(track id, path, seconds) of ``limit`` tracks of at least ``min_seconds``, taken in
    turn from each soundtrack of the real-music set's ``catalog.csv``."""
    catalog = folder / "catalog.csv"
    if not catalog.is_file():
        sys.exit(f"{catalog} is missing: run benchmarks/real_music/build_set.py first")
    groups: dict[str, list[tuple[str, Path, float]]] = defaultdict(list)
    with open(catalog, newline="") as f:
        for row in csv.DictReader(f):
            if float(row["duration_s"]) >= min_seconds:
                groups[row["label"]].append((row["track_id"], folder / row["audio_path"],
                                             float(row["duration_s"])))
    out: list[tuple[str, Path, float]] = []
    while len(out) < limit and any(groups.values()):
        for label in sorted(groups):
            if groups[label] and len(out) < limit:
                out.append(groups[label].pop(0))
    return out


def add_track_args(ap: argparse.ArgumentParser, *, batch: int = 16) -> None:
    """The options that pick the full-length recordings (shared with bench_musicnn.py)."""
    ap.add_argument("--set", type=Path, help="the real-music set (default "
                                              "$MUSICREC_CACHE/real_music)")
    ap.add_argument("--min-seconds", type=float, default=180.0)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--batch", type=int, default=batch)


def tracks_from_args(args: argparse.Namespace) -> list[tuple[str, Path, float]]:
    """:func:`full_length_tracks` for the options of :func:`add_track_args`, on one torch
    thread; exits with a message when the set holds none long enough."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    folder = args.set or resolve_cache_dir(None) / "real_music"
    tracks = full_length_tracks(folder, min_seconds=args.min_seconds, limit=args.limit)
    if not tracks:
        sys.exit(f"no track of at least {args.min_seconds:g} s in {folder}")
    return tracks


def cpu(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.process_time()
    value = fn(*args, **kwargs)
    return value, time.process_time() - start


def decode_one_read(path: Path) -> np.ndarray:
    """The previous whole-track decode: one read of the interleaved track, then
    ``to_mono`` (the reference for the block reads of ``load_audio``)."""
    import soundfile as sf

    with sf.SoundFile(path) as handle:
        rate = handle.samplerate
        data = handle.read(dtype="float32", always_2d=True)
    return to_mono(data, sample_rate=rate, target_rate=rate)


def run(tracks: list[tuple[str, Path, float]], models: list[str], batch: int,
        repeats: int = 2) -> list[dict]:
    params = FingerprintParams()
    n = len(tracks)
    shared: dict[str, float] = defaultdict(float)
    wholes = []
    prints = []
    for _, path, _ in tracks:  # the files in the page cache: CPU time of decoding, not disk
        path.read_bytes()
    load_audio(tracks[0][1], sample_rate=params.sr)  # imports and first-call set-up, untimed
    # what every model's build shares: decode, fingerprint
    for _, path, _ in tracks:
        # the two decodes alternate, each timed ``repeats`` times: the fastest counts
        best = {"decode alone": np.inf, "fingerprint decode (apart)": np.inf,
                "decode, one read": np.inf}
        for _ in range(repeats):
            whole, t = cpu(load_audio, path, sample_rate=None)
            best["decode alone"] = min(best["decode alone"], t)
            _, t = cpu(load_audio, path, sample_rate=params.sr)
            best["fingerprint decode (apart)"] = min(best["fingerprint decode (apart)"], t)
            previous, t = cpu(decode_one_read, path)
            best["decode, one read"] = min(best["decode, one read"], t)
            if not np.array_equal(previous, whole.windows[0]):
                raise AssertionError(f"{path}: the block reads differ from one read")
            del previous
        for key, t in best.items():
            shared[key] += t
        signal, t = cpu(resample_mono, whole.windows[0], sample_rate=whole.sample_rate,
                        target_rate=params.sr)
        shared["fingerprint resample"] += t
        fp, t = cpu(fingerprint, signal, sr=params.sr, params=params)
        shared["fingerprint"] += t
        wholes.append(whole)
        prints.append(fp)
        del signal
    with tempfile.TemporaryDirectory() as tmp:
        def index_fingerprints() -> None:
            index = FingerprintIndex(params=params)
            for (track_id, _, _), fp in zip(tracks, prints, strict=True):
                index.add(track_id, fp)
            index.build().save(Path(tmp) / "fingerprints")

        _, shared["fingerprint index"] = cpu(index_fingerprints)
    rows = []
    for spec in models:
        embedder = get_embedder(spec)
        stage: dict[str, float] = defaultdict(float)
        apart, once = [], []
        for (_, path, _), whole in zip(tracks, wholes, strict=True):
            best = np.inf
            for _ in range(repeats):
                decoded, t = cpu(embedder.load, path)
                best = min(best, t)
            stage["window decode"] += best
            apart.append(decoded)
            decoded, t = cpu(rewindow, whole, sample_rate=embedder.sample_rate,
                             window_seconds=embedder.window_seconds,
                             n_windows=embedder.n_windows)
            stage["rewindow"] += t
            once.append(decoded)
        vectors = []
        for k in range(0, n, batch):
            out, t = cpu(embedder.embed_decoded, apart[k:k + batch])
            stage["model"] += t
            vectors.append(out)
        matrix = np.concatenate(vectors)
        agree = float(np.min(np.sum(matrix * embedder.embed_decoded(once), axis=1)))

        def index_vectors(matrix: np.ndarray = matrix) -> None:
            from musicrec.recommender.index import VectorIndex

            VectorIndex(matrix.shape[1]).add_items(matrix, [t[0] for t in tracks])

        _, stage["vector index"] = cpu(index_vectors)
        per = {k: v / n for k, v in {**shared, **stage}.items()}
        embed = per["window decode"] + per["model"]
        index = per["fingerprint index"] + per["vector index"]
        build = (per["decode alone"] + per["rewindow"] + per["fingerprint resample"]
                 + per["model"] + per["fingerprint"] + index)
        twice = (per["window decode"] + per["fingerprint decode (apart)"] + per["model"]
                 + per["fingerprint"] + index)
        rows.append({
            "model": spec, "tracks": n,
            "mean_seconds": round(sum(t[2] for t in tracks) / n, 1),
            "cpu_s_per_track": {k: round(v, 4) for k, v in per.items()},
            "embed_cpu_s": round(embed, 4), "build_cpu_s": round(build, 4),
            "build_twice_cpu_s": round(twice, 4),
            "decode_once_cpu_s": round(per["decode alone"] + per["rewindow"]
                                       + per["fingerprint resample"], 4),
            "decode_twice_cpu_s": round(per["window decode"]
                                        + per["fingerprint decode (apart)"], 4),
            "embed_tracks_per_hour_2_cores": round(2 * 3600 / embed),
            "build_tracks_per_hour_2_cores": round(2 * 3600 / build),
            "decode_alone_tracks_per_hour_2_cores": round(2 * 3600 / per["decode alone"]),
            "min_cosine_once_vs_apart": round(agree, 6),
        })
    return rows


class ThreadClock:
    """CPU and run-queue wait of every thread of this process while it runs (Linux
    ``schedstat``, sampled every ``every`` seconds so threads that end are counted up to
    their last sample)."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.first: dict[str, tuple[int, int]] = {}
        self.last: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/schedstat") as f:
                    run_ns, wait_ns = (int(v) for v in f.read().split()[:2])
            except OSError:  # the thread ended meanwhile
                continue
            self.first.setdefault(task, (run_ns, wait_ns))
            self.last[task] = (run_ns, wait_ns)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> ThreadClock:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def totals(self) -> tuple[float, float]:
        """(CPU seconds, seconds ready but waiting for a core) of all threads."""
        run = sum(self.last[t][0] - self.first[t][0] for t in self.last)
        wait = sum(self.last[t][1] - self.first[t][1] for t in self.last)
        return run / 1e9, wait / 1e9


def end_to_end(tracks: list[tuple[str, Path, float]], spec: str, batch: int) -> dict:
    """``embed_paths`` with fingerprints (2 decoding threads), as ``build`` runs it."""
    from musicrec.embedding.batch import embed_paths

    embedder = get_embedder(spec)
    with ThreadClock() as clock:
        start = time.perf_counter()
        result = embed_paths([t[1] for t in tracks], embedder=embedder, use_cache=False,
                             batch_size=batch, n_workers=2, show_progress=False,
                             fingerprint_params=FingerprintParams())
        wall = time.perf_counter() - start
    used, waited = clock.totals()
    return {"model": spec, "end_to_end": "embed_paths + fingerprints, 2 threads",
            "tracks": len(result.track_ids), "fingerprints": len(result.fingerprints),
            "wall_s": round(wall, 2), "cpu_s": round(used, 2),
            "waited_for_a_core_s": round(waited, 2),
            "cores_used": round(used / wall, 2), "cores_wanted": round((used + waited) / wall, 2),
            "load_1min": round(os.getloadavg()[0], 1),
            "tracks_per_hour_wall": round(len(tracks) * 3600 / wall)}


def table(rows: list[dict]) -> str:
    lines = ["| model | decode alone (one read) | embed: decode + model | build: decode once + "
             "model + fingerprint + index | build, decoded twice | embed tracks/h | "
             "build tracks/h |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        c = r["cpu_s_per_track"]
        lines.append(
            f"| {r['model']} | {c['decode alone']:.3f} ({c['decode, one read']:.3f}) | "
            f"{c['window decode']:.3f} + "
            f"{c['model']:.3f} = {r['embed_cpu_s']:.3f} | {r['decode_once_cpu_s']:.3f} + "
            f"{c['model']:.3f} + {c['fingerprint']:.3f} + "
            f"{c['fingerprint index'] + c['vector index']:.4f} = {r['build_cpu_s']:.3f} | "
            f"{r['build_twice_cpu_s']:.3f} | {r['embed_tracks_per_hour_2_cores']:,} | "
            f"{r['build_tracks_per_hour_2_cores']:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_track_args(ap)
    ap.add_argument("--models", default="mfcc,whisper-tiny,musicnn")
    ap.add_argument("--repeats", type=int, default=2,
                    help="times each decode is timed (the fastest counts)")
    ap.add_argument("--end-to-end", action="store_true")
    args = ap.parse_args()
    tracks = tracks_from_args(args)
    print(f"{len(tracks)} tracks, {sum(t[2] for t in tracks) / len(tracks):.0f} s on average "
          f"({min(t[2] for t in tracks):.0f}-{max(t[2] for t in tracks):.0f} s)",
          file=sys.stderr)
    models = [m for m in args.models.split(",") if m]
    rows = run(tracks, models, args.batch, args.repeats)
    for row in rows:
        print(json.dumps(row))
    if args.end_to_end:
        import torch

        torch.set_num_threads(2)
        for spec in models:
            print(json.dumps(end_to_end(tracks, spec, args.batch)))
    print(table(rows))


if __name__ == "__main__":
    main()
