"""Speed of the musicnn embedders on full-length real recordings, before and after: CPU
seconds per track, split by stage, for this checkout's ``embedding/musicnn.py`` and for
the same file at another git revision, measured in one run, with their agreement.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_musicnn.py \
        --models musicnn --limit 30 --baseline main

The recordings are those of ``bench_full_length.py`` (the real-music set's tracks of at
least ``--min-seconds``, ``--limit`` of them taken in turn from each soundtrack). Every
stage runs on one torch thread and is timed in CPU seconds (``time.process_time``, every
thread of the process), each the fastest of ``--repeats`` rounds, the two versions taking
turns in every round, so that both see the same load. Per track:

- ``window decode``: the embedder's windows decoded from the file (``embedder.load``:
  seek, decode, resample; the same code for both versions);
- ``log-mel``: the spectrograms of the windows and their 3-s patches;
- ``net <name>``: one network's forward passes over the track's patches, one patch per
  pass (a combined embedder runs two networks on every patch);
- ``model``: ``embed_decoded`` on batches of ``--batch`` tracks with the embedder's
  defaults, all of the above but the decode (what ``bench_full_length.py`` calls model);
- tracks/hour on 2 cores: ``2 * 3600 / (window decode + model)``.

Agreement, the baseline's output against this checkout's on every track: the smallest
cosine of the track vectors, the largest difference of a tag probability, and the tracks
whose 10 most probable tags differ (names or order).

Prints one JSON line per model and version, then a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from bench_full_length import add_track_args, tracks_from_args

from musicrec.embedding import musicnn

ROOT = Path(__file__).resolve().parents[1]


def load_revision(ref: str, folder: Path) -> ModuleType:
    """``embedding/musicnn.py`` as it is at git revision ``ref``, imported as a module of
    its own (it imports the rest of musicrec from this checkout)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:embedding/musicnn.py"],
                            check=True, capture_output=True, text=True).stdout
    name = "musicnn_at_" + "".join(c if c.isalnum() else "_" for c in ref)
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def cpu(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.process_time()
    value = fn(*args)
    return value, time.process_time() - start


def stages(module: ModuleType, embedder: Any, decoded: list, batch: int) -> dict[str, float]:
    """CPU seconds of each stage, summed over the tracks."""
    import torch

    out: dict[str, float] = {}
    windows = [w for track in decoded for w in track.windows]

    def cut() -> Any:
        return torch.from_numpy(np.concatenate(
            [module.patches(module.log_mel(w)) for w in windows]))

    batch_of_patches, out["log-mel"] = cpu(cut)
    with torch.inference_mode():
        for part, net in zip(module.COMBINED.get(embedder.name, (embedder.name,)),
                             embedder._nets, strict=True):
            _, out[f"net {part}"] = cpu(lambda net=net: [
                net(batch_of_patches[i:i + 1]) for i in range(len(batch_of_patches))])
    out["model"] = sum(cpu(embedder.embed_decoded, decoded[k:k + batch])[1]
                       for k in range(0, len(decoded), batch))
    return out


def agreement(after: tuple[np.ndarray, np.ndarray], before: tuple[np.ndarray, np.ndarray],
              *, k: int = 10) -> dict[str, float | int]:
    vectors, tags = after
    old_vectors, old_tags = before
    top = np.argsort(-tags, axis=1, kind="stable")[:, :k]
    old_top = np.argsort(-old_tags, axis=1, kind="stable")[:, :k]
    return {"min_cosine": round(float(np.min(np.sum(vectors * old_vectors, axis=1))), 8),
            "max_tag_difference": float(np.abs(tags - old_tags).max()),
            f"tracks_whose_top{k}_tags_differ": int(np.sum(np.any(top != old_top, axis=1)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="musicnn")
    ap.add_argument("--baseline", default="main", help="git revision to compare with")
    add_track_args(ap)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tracks = tracks_from_args(args)
    n = len(tracks)
    print(f"{n} tracks, {sum(t[2] for t in tracks) / n:.0f} s on average", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this checkout": musicnn,
                    args.baseline: load_revision(args.baseline, Path(tmp))}
        for name in [m for m in args.models.split(",") if m]:
            embedders = {v: module.MusicnnEmbedder(model=name)
                         for v, module in versions.items()}
            current = embedders["this checkout"]
            for _, path, _ in tracks:  # the files in the page cache
                path.read_bytes()
            decoded, decode = [], 0.0
            for _, path, _ in tracks:
                best = np.inf
                for _ in range(args.repeats):
                    track, t = cpu(current.load, path)
                    best = min(best, t)
                decoded.append(track)
                decode += best
            for embedder in embedders.values():  # first calls: imports, mel basis
                embedder.embed_decoded(decoded[:1])
            best_stages: dict[str, dict[str, float]] = {v: {} for v in versions}
            for _ in range(args.repeats):
                for v, module in versions.items():
                    for key, t in stages(module, embedders[v], decoded, args.batch).items():
                        best_stages[v][key] = min(best_stages[v].get(key, np.inf), t)
            outputs = {v: e.embed_decoded_tagged(decoded) for v, e in embedders.items()}
            for v in versions:
                per = {"window decode": decode / n,
                       **{key: t / n for key, t in best_stages[v].items()}}
                embed = per["window decode"] + per["model"]
                row = {"model": name, "code": v, "tracks": n,
                       "cpu_s_per_track": {key: round(t, 4) for key, t in per.items()},
                       "embed_cpu_s": round(embed, 4),
                       "embed_tracks_per_hour_2_cores": round(2 * 3600 / embed),
                       "load_avg_1min": round(os.getloadavg()[0], 1)}
                if v != "this checkout":
                    row["agreement"] = agreement(outputs["this checkout"], outputs[v])
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(table(rows))


def table(rows: list[dict]) -> str:
    nets = sorted({k for r in rows for k in r["cpu_s_per_track"] if k.startswith("net ")})
    head = ["model", "code", "window decode", "log-mel", *nets, "model (all)", "embed",
            "tracks/h, 2 cores"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        c = r["cpu_s_per_track"]
        cells = [r["model"], r["code"], f"{c['window decode']:.3f}", f"{c['log-mel']:.3f}",
                 *[f"{c[k]:.3f}" if k in c else "" for k in nets], f"{c['model']:.3f}",
                 f"{r['embed_cpu_s']:.3f}", f"{r['embed_tracks_per_hour_2_cores']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
