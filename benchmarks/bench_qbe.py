"""Query by example on a built model: noisy excerpts of catalogue tracks.

``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_qbe.py --model demo/model``
For ``--queries`` random tracks, an 8-s excerpt from a random offset, at −6 dB with white
noise at ``--snr`` dB, is sent to ``Recommender.similar_to_audio``. Prints how often the
fingerprint identifies the track, how often the embedding's top-1 neighbour is the track,
and the median query time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musicrec.recommender.facade import Recommender


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path("demo/model"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--snr", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rec = Recommender(args.model)
    catalog = rec.catalog.frame.set_index("track_id")
    root = Path(rec.manifest["data"]["content"]["audio"]).parent
    rng = np.random.default_rng(args.seed)
    tracks = rng.choice(len(rec.tracks), size=min(args.queries, len(rec.tracks)), replace=False)
    identified = top1 = 0
    times = []
    for i in tracks:
        track_id = rec.tracks.to_id(int(i))
        y, sr = sf.read(root / catalog.at[track_id, "audio_path"], dtype="float32")
        n = int(args.seconds * sr)
        start = int(rng.integers(0, max(1, len(y) - n)))
        clip = 0.5 * y[start : start + n]
        noise = rng.standard_normal(len(clip)).astype(np.float32)
        noise *= np.sqrt(np.mean(clip**2) / (np.mean(noise**2) * 10 ** (args.snr / 10)))
        began = time.perf_counter()
        answer = rec.similar_to_audio(clip + noise, sample_rate=sr, n=1)
        times.append(time.perf_counter() - began)
        identified += bool(answer.match and answer.match["track_id"] == track_id)
        top1 += answer.neighbours[0].track_id == track_id
    q = len(tracks)
    print(f"{q} queries, {args.seconds:g}-s excerpts at -6 dB, white noise {args.snr:g} dB SNR")
    print("| answer | rate |\n| --- | --- |")
    print(f"| fingerprint identifies the track | {identified / q:.3f} |")
    print(f"| embedding top-1 is the track | {top1 / q:.3f} |")
    print(f"median query time (embed + fingerprint + search): "
          f"{statistics.median(times) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
