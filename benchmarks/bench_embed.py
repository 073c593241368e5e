"""Benchmark the audio embedders: speed (decode and model, tracks per hour) and quality.

Quality is query by example (QBE) on the real recordings of ``../shared/datasets/
librosa-audio`` (librosa's example audio; CC BY / CC BY-NC / CC0 / public domain, see each
``.txt``): every recording is cut into non-overlapping 10-s excerpts; each excerpt, with
white noise at 20 dB SNR and a -6 dB gain, is a query; the database is every clean excerpt
except the query's own; a hit is a nearest neighbour from the same recording.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_embed.py \
        --model whisper-tiny --layer 2 --window-seconds 10 --n-windows 1

Prints one JSON line per configuration. Timings are medians of ``--repeats`` runs.
``--demo DATASET/catalog.csv`` adds same-label precision@10 on a ``musicrec demo-data``
catalogue (``--label collection,style``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from musicrec.embedding.audio import load_audio
from musicrec.embedding.batch import embed_paths
from musicrec.embedding.registry import get_embedder

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT.parent / "shared" / "datasets" / "librosa-audio"


def recordings(folder: Path) -> list[Path]:
    """The decodable high-quality recordings (``*.hq.ogg``), one per recording."""
    import soundfile as sf

    out = []
    for p in sorted(folder.glob("*.hq.ogg")):
        try:
            sf.info(p)
        except Exception:  # noqa: BLE001 - e.g. a link stored as text
            continue
        out.append(p)
    return out


def qbe_excerpts(paths: list[Path], *, sr: int, seconds: float = 10.0
                 ) -> tuple[list[np.ndarray], list[int]]:
    clips, owner = [], []
    for k, p in enumerate(paths):
        wave = load_audio(p, sample_rate=sr, window_seconds=None).windows[0]
        width = int(seconds * sr)
        for start in range(0, max(1, len(wave) - width + 1), width):
            clips.append(wave[start:start + width])
            owner.append(k)
    return clips, owner


def degrade(wave: np.ndarray, rng: np.random.Generator, *, snr_db: float = 20.0,
            gain_db: float = -6.0) -> np.ndarray:
    power = float(np.mean(wave.astype(np.float64) ** 2)) + 1e-12
    noise = rng.normal(scale=np.sqrt(power / 10 ** (snr_db / 10)), size=len(wave))
    return ((wave + noise) * 10 ** (gain_db / 20)).astype(np.float32)


def qbe_top1(embedder, clips: list[np.ndarray], owner: list[int], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    clean = embedder.embed(clips)
    noisy = embedder.embed([degrade(c, rng) for c in clips])
    counts = np.bincount(owner)
    queries = [i for i in range(len(clips)) if counts[owner[i]] >= 2]
    sims = noisy @ clean.T
    hits = 0
    for i in queries:
        s = sims[i].copy()
        s[i] = -np.inf
        hits += owner[int(np.argmax(s))] == owner[i]
    return {"qbe_top1": hits / len(queries), "qbe_queries": len(queries),
            "qbe_database": len(clips) - 1}


def qbe_track_top1(embedder, paths: list[Path], seed: int = 0) -> dict:
    """Track-level QBE: the database holds each recording's track vector (the embedder's
    windows over the whole recording, clean); a query is a 10-s excerpt at 15 %, 55 % or
    80 % of a recording of at least 20 s, with noise and gain; a hit is its own recording."""
    rng = np.random.default_rng(seed)
    sr = embedder.sample_rate
    waves = [load_audio(p, sample_rate=sr, window_seconds=None).windows[0] for p in paths]
    db = embedder.embed(waves)
    queries, owner = [], []
    for i, w in enumerate(waves):
        if len(w) < 20 * sr:
            continue
        for frac in (0.15, 0.55, 0.8):
            s = int(frac * (len(w) - 10 * sr))
            queries.append(degrade(w[s:s + 10 * sr], rng))
            owner.append(i)
    best = np.argmax(embedder.embed(queries) @ db.T, axis=1)
    return {"qbe_track_top1": float(np.mean(best == np.asarray(owner))),
            "qbe_track_queries": len(queries), "qbe_track_database": len(waves)}


def label_precision_at_10(embedder, catalog: Path, *, labels: list[str]) -> dict:
    """Same-label precision@10 over a demo catalogue (``musicrec demo-data``): for each
    track, the share of its 10 nearest other tracks with the same label, per label column."""
    import pandas as pd

    from musicrec.embedding.batch import embed_catalog

    result = embed_catalog(catalog, embedder=embedder, use_cache=False, show_progress=False)
    frame = pd.read_csv(catalog, dtype=str).set_index("track_id")
    sims = result.vectors @ result.vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :10]
    row: dict = {"demo_tracks": len(result.track_ids), "demo_failures": len(result.failures)}
    for label in labels:
        values = frame.loc[result.track_ids, label].to_numpy()
        row[f"demo_p_at_10_{label}"] = round(float(np.mean(values[top] == values[:, None])), 4)
    return row


def speed(embedder, paths: list[Path], *, repeats: int, n_tracks: int, workers: int) -> dict:
    batch = (paths * (n_tracks // len(paths) + 1))[:n_tracks]
    decode, total = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in batch:
            embedder.load(p)
        decode.append((time.perf_counter() - t0) / len(batch))
        t0 = time.perf_counter()
        embed_paths(batch, embedder=embedder, track_ids=[str(i) for i in range(len(batch))],
                    use_cache=False, n_workers=workers, show_progress=False)
        total.append((time.perf_counter() - t0) / len(batch))
    med_total = statistics.median(total)
    return {"decode_s_per_track_1thread": round(statistics.median(decode), 4),
            "end_to_end_s_per_track": round(med_total, 4),
            "tracks_per_hour": int(3600 / med_total), "speed_tracks": len(batch)}


def quantize_int8(embedder) -> None:
    """Replace a float32 Whisper embedder's encoder by torch's int8 dynamic quantisation."""
    import warnings

    import torch

    if getattr(embedder, "precision", None) != "float32":
        raise SystemExit("--int8 needs --precision float32 and a Whisper model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embedder._encoder = torch.ao.quantization.quantize_dynamic(
            embedder._encoder, {torch.nn.Linear}, dtype=torch.qint8)
    embedder.name += "+int8"  # a different id: the cache never mixes them


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="whisper-tiny")
    ap.add_argument("--layer", type=int)
    ap.add_argument("--window-seconds", type=float)
    ap.add_argument("--n-windows", type=int)
    ap.add_argument("--pooling")
    ap.add_argument("--precision", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--int8", action="store_true",
                    help="experiment: torch's (deprecated) int8 dynamic quantisation of the "
                    "Whisper encoder's linear layers, from float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--speed-tracks", type=int, default=48)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-qbe", action="store_true")
    ap.add_argument("--audio", type=Path, default=AUDIO)
    ap.add_argument("--demo", type=Path,
                    help="catalog.csv of a `musicrec demo-data` folder, for same-label P@10")
    ap.add_argument("--label", default="collection,style",
                    help="demo label column(s) for P@10, comma-separated")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    opts = {k: v for k, v in {"layer": args.layer, "window_seconds": args.window_seconds,
                              "n_windows": args.n_windows, "pooling": args.pooling,
                              "precision": args.precision}.items()
            if v is not None}
    embedder = get_embedder(args.model, **opts)
    if args.int8:
        quantize_int8(embedder)
    paths = recordings(args.audio)
    if not paths:
        print(f"no recordings under {args.audio}", file=sys.stderr)
        return 1
    row = {"model": args.model, **embedder.options, "int8": args.int8, "dim": embedder.dim}
    if not args.no_qbe:
        clips, owner = qbe_excerpts(paths, sr=embedder.sample_rate)
        row.update(qbe_top1(embedder, clips, owner))
        row.update(qbe_track_top1(embedder, paths))
    if not args.no_speed:
        row.update(speed(embedder, paths, repeats=args.repeats, n_tracks=args.speed_tracks,
                         workers=args.workers))
    if args.demo is not None:
        row.update(label_precision_at_10(embedder, args.demo, labels=args.label.split(",")))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
