"""``musicrec demo-data``: build the embedded demo dataset (rendered corpus + simulated logs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from musicrec.cli import positive_int

    p = sub.add_parser(
        "demo-data",
        help="build the demo dataset: real scores rendered to audio, simulated listeners",
        description="Render excerpts of music21 corpus scores through a General MIDI "
        "soundfont and simulate listening logs (see the dataset's README.md).",
    )
    p.add_argument("--tracks", type=positive_int, default=1000, help="number of tracks")
    p.add_argument("--users", type=positive_int, default=2000, help="number of users")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole build")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--workers", type=positive_int, default=2,
                   help="processes that parse and render scores (default 2)")
    p.add_argument("--cache", type=Path, default=None,
                   help="folder that keeps parsed note lists and rendered clips between "
                   "builds (a rebuild from it takes about a second)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_demo_data)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from musicrec.cli import print_json
    from musicrec.data.demo import build_demo_dataset

    ds = build_demo_dataset(args.out, n_tracks=args.tracks, n_users=args.users, seed=args.seed,
                            force=args.force, show_progress=True, n_workers=args.workers,
                            cache_dir=args.cache)
    if args.json:
        print_json({"path": str(ds.path), "tracks": ds.n_tracks, "users": ds.n_users,
                    "log_rows": ds.n_rows, "plays": ds.n_plays,
                    "files_parsed": ds.n_pieces_parsed, "reused_pieces": ds.n_reused_pieces,
                    "skipped": ds.n_skipped, "skip_reasons": ds.skip_reasons(),
                    "seconds": round(ds.seconds, 1)})
    else:
        print(ds.summary())
        if ds.n_skipped:
            print(f"skipped pieces are listed in {ds.path / 'truth' / 'skipped.csv'}",
                  file=sys.stderr)
    return 0
