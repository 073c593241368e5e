"""Speed of the musicnn taggers in torch: seconds per 10 s of audio, and tracks per hour.

* **model**: one 10-s window (three 3-s patches: spectrogram and network), median of
  ``--repeats`` runs, with 1 and with 2 torch threads; also the mean CPU time per run
  (on a shared machine the wall time of one thread includes waiting for a core).
* **tracks/h**: ``embed_paths`` over librosa's 8 full-length music recordings
  (``../shared/datasets/librosa-audio/*.hq.ogg``, 25 s to 3 min), decoding included, no
  cache, the embedder's defaults (10 windows of 3 s per track), 2 threads.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_musicnn.py --repeats 5

Prints one JSON line per model; peak RSS of the process is reported at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from bench_cf import median_seconds

from musicrec.embedding.batch import embed_paths
from musicrec.embedding.registry import get_embedder

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT.parent / "shared" / "datasets" / "librosa-audio"
SPEECH_AND_ANIMALS = ("198-209-0000", "3436-172162-0000", "5703-47212-0000", "pibble",
                      "glacier-bay-humpback", "456440__inspectorj__bird-whistling-robin")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+",
                        default=["musicnn-mtt", "musicnn-msd", "musicnn-mtt-vgg",
                                 "musicnn-msd-vgg"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--audio", type=Path, default=AUDIO)
    args = parser.parse_args()
    music = sorted(p for p in args.audio.glob("*.hq.ogg")
                   if not p.name.startswith(SPEECH_AND_ANIMALS))
    wave = np.random.default_rng(0).normal(scale=0.1, size=160_000).astype(np.float32)
    for name in args.models:
        row: dict[str, object] = {"model": name}
        for threads in (1, 2):
            emb = get_embedder(name, window_seconds=10.0, n_windows=1, num_threads=threads)
            emb._embed_windows_tagged([wave])  # warm up
            cpu = time.process_time()
            row[f"s_per_10s_{threads}t"] = round(median_seconds(
                lambda emb=emb: emb._embed_windows_tagged([wave]), args.repeats), 4)
            # CPU seconds per run: on a machine shared with other jobs, the wall time of
            # one thread overstates what it costs on an idle core; CPU time does not.
            row[f"cpu_s_per_10s_{threads}t"] = round(
                (time.process_time() - cpu) / args.repeats, 4)
        emb = get_embedder(name, num_threads=2)
        start = time.perf_counter()
        result = embed_paths(music, embedder=emb, use_cache=False, show_progress=False)
        seconds = time.perf_counter() - start
        assert len(result.track_ids) == len(music), result.failures
        row.update({"tracks": len(music), "tracks_per_h_2t": round(3600 * len(music) / seconds),
                    "load_avg_1min": os.getloadavg()[0], "torch": torch.__version__})
        print(json.dumps(row), flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(peak_mb)}))


if __name__ == "__main__":
    main()
