"""``musicrec verify``: check a model directory against its manifest, byte for byte."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_verify(args: argparse.Namespace) -> int:
    from musicrec.recommender.model_dir import verify_model_dir

    checked = verify_model_dir(args.model_dir)
    print(f"{args.model_dir}: {checked['files']} files, {checked['bytes']} bytes: sizes and "
          "sha256 match the manifest, arrays are finite")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="check every file of a model against its manifest",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("model_dir", type=Path, help="model directory")
    p.set_defaults(handler=cmd_verify)
