"""``musicrec embed``: audio files to vectors, with a cache and a failure summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from musicrec.cli import positive_int
    from musicrec.embedding.registry import DEFAULT_MODEL

    p = sub.add_parser("embed", help="embed the audio of a folder or a catalogue file",
                       description="Embed every audio file of a folder, or every row of a "
                       "catalogue (CSV/TSV/Parquet with track_id and audio_path columns).")
    p.add_argument("source", type=Path, metavar="AUDIO_DIR_OR_CATALOG")
    p.add_argument("--out", required=True, type=Path,
                   help="output: .parquet (track_id, embedding) or .npy (+ .ids.json)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="musicnn, musicnn-mtt, musicnn-msd, mfcc, whisper-tiny, whisper-base, "
                   "aisfx, pann:<checkpoint>, trained:<folder>, openai/whisper-*, "
                   f"hf:<id or folder>, or a model folder (default: {DEFAULT_MODEL})")
    p.add_argument("--layer", type=positive_int, help="encoder layer to pool (Whisper, hf)")
    p.add_argument("--window-seconds", type=float, help="length of each window")
    p.add_argument("--n-windows", type=positive_int, help="windows per track")
    p.add_argument("--pooling", choices=["mean", "meanstd"], help="frame pooling (Whisper)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="tracks per batch")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding threads")
    p.add_argument("--threads", type=positive_int, help="torch threads")
    p.add_argument("--cache-dir", type=Path,
                   help="cache folder (default: $MUSICREC_CACHE or ~/.cache/musicrec)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub model's own code (needed for MERT)")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                   help="encoder arithmetic (Whisper; default auto: bfloat16 where the CPU "
                   "has it natively, else float32)")
    from musicrec.commands.engine import add_engine_options

    add_engine_options(p)
    p.set_defaults(handler=cmd_embed)


def embedder_options(args: argparse.Namespace) -> dict[str, Any]:
    """The embedder keywords given on the command line."""
    options: dict[str, Any] = {k: v for k, v in {
        "layer": args.layer, "window_seconds": args.window_seconds,
        "n_windows": args.n_windows, "pooling": args.pooling, "num_threads": args.threads,
        "precision": args.precision,
    }.items() if v is not None}
    if args.cache_dir is not None:
        options["cache_dir"] = args.cache_dir
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    return options


def write_and_report(result: Any, out: Any) -> int:
    """Write the vectors, print the summary and the failures; exit 1 if any file failed."""
    from musicrec.cli import print_table
    from musicrec.embedding.batch import write_embeddings

    written = write_embeddings(result, out)
    print(f"{result.summary()}; {result.vectors.shape[1]}-d vectors from {result.embedder_id}")
    print("wrote " + ", ".join(str(p) for p in written))
    if result.failures:
        print(f"\n{len(result.failures)} file(s) failed:", file=sys.stderr)
        sys.stdout.flush()
        print_table([(f.track_id, f.kind, f.reason) for f in result.failures],
                    ("track", "kind", "reason"))
        return 1
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from musicrec.commands.engine import run_embed_engine

        return run_embed_engine(args)
    from musicrec.embedding.batch import embed_catalog
    from musicrec.embedding.registry import get_embedder

    embedder = get_embedder(args.model, **embedder_options(args))
    result = embed_catalog(args.source, embedder=embedder, cache_dir=args.cache_dir,
                           use_cache=not args.no_cache, batch_size=args.batch_size,
                           n_workers=args.workers, show_progress=True)
    return write_and_report(result, args.out)
