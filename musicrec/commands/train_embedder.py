"""``musicrec train-embedder``: train an audio embedder on a catalogue's own audio, no labels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    from musicrec.cli import positive_int
    from musicrec.embedding.trained import ARCHS

    p = sub.add_parser(
        "train-embedder", help="train an audio embedder on a catalogue (contrastive, no labels)",
        description="Train a GRU or a CNN over log-mel frames so that two windows of one "
        "track are closer than windows of other tracks (COLA); with --cf-model, also to "
        "predict each track's CF vector from listening logs (van den Oord et al. 2013). Use "
        "it with --embedder trained:DIR.")
    p.add_argument("--catalog", required=True, type=Path,
                   help="CSV/TSV/Parquet with track_id and audio_path columns")
    p.add_argument("--out", required=True, type=Path, help="folder to write")
    p.add_argument("--arch", choices=list(ARCHS), default="gru",
                   help="architecture (default gru)")
    p.add_argument("--hidden", type=positive_int, default=128,
                   help="GRU width or the CNN's last channels; the embedding has twice as "
                   "many dimensions")
    p.add_argument("--layers", type=positive_int,
                   help="GRU layers (default 2) or CNN blocks (default 4)")
    p.add_argument("--window-seconds", type=float, default=3.0, help="training window")
    p.add_argument("--train-windows", type=positive_int, default=8,
                   help="windows decoded per track")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=32, help="tracks per step")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cf-model", type=Path,
                   help="a musicrec model directory whose CF item vectors (from its listening "
                   "logs) the embedder also learns to predict")
    p.add_argument("--cf-weight", type=float, default=1.0,
                   help="weight of the CF error in the loss (default 1)")
    p.add_argument("--threads", type=positive_int, help="torch threads")
    p.set_defaults(handler=cmd_train_embedder)


def cmd_train_embedder(args: argparse.Namespace) -> int:
    import json

    import torch

    from musicrec.embedding.trained import train_embedder

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cf_vectors = None
    if args.cf_model is not None:
        from musicrec.errors import ParameterError
        from musicrec.recommender.facade import Recommender

        cf = Recommender(args.cf_model).cf
        if cf is None:
            raise ParameterError(f"{args.cf_model}: the model has no CF part (it was built "
                                 "without listening logs)")
        cf_vectors = (list(cf.tracks_), cf.item_factors_)
    out = train_embedder(args.catalog, args.out, arch=args.arch, hidden=args.hidden,
                         layers=args.layers, window_seconds=args.window_seconds,
                         train_windows=args.train_windows, epochs=args.epochs,
                         batch_size=args.batch_size, learning_rate=args.learning_rate,
                         seed=args.seed, cf_vectors=cf_vectors, cf_weight=args.cf_weight,
                         show_progress=True)
    manifest = json.loads((out / "manifest.json").read_text())
    training, cf_target = manifest["training"], manifest.get("cf_target")
    print(f"trained a {args.arch.upper()} embedder on {training['tracks']} tracks "
          f"({len(training['failures'])} not used) in {training['seconds']} s; loss "
          f"{training['loss'][0]} -> {training['loss'][-1]}; written to {out}")
    if cf_target:
        print(f"  CF target: {cf_target['tracks']} tracks with a CF vector "
              f"({cf_target['dim']}-d); its error {cf_target['loss'][0]} -> "
              f"{cf_target['loss'][-1]}")
    for failure in training["failures"]:
        print(f"  not used: {failure['track_id']}: {failure['reason']}")
    print(f"use it with --embedder trained:{out}")
    return 0
