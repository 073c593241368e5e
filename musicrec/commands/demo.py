"""``musicrec demo``: the whole engine on the embedded demo dataset, end to end.

Steps, each reusing its cache on a second run:

1. build the demo dataset (real compositions rendered through a soundfont, simulated
   listeners) into ``DIR/data`` — reused when its parameters match;
2. embed the audio, train CF, blend, index and fingerprint into ``DIR/model`` — reused
   when the model was built from the same logs and catalogue with the same embedder
   (embeddings are cached by file content in ``DIR/cache`` anyway);
3. evaluate popularity, ALS, item-kNN, content, hybrid and served on a random holdout and on
   cold tracks, print the tables and write HTML reports to ``DIR/report-*``;
4. serve the API, the web page and the Subsonic API (``/rest/``, user ``demo``, password
   ``demo``, from ``DIR/subsonic-users.txt``) on http://127.0.0.1:8000 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _step(title: str) -> None:
    print(f"\n== {title}", file=sys.stderr, flush=True)


def _data_is_current(data: Path, args: argparse.Namespace) -> bool:
    summary = data / "truth" / "model.json"
    if not (data / "catalog.csv").exists() or not summary.exists():
        return False
    try:
        meta = json.loads(summary.read_text())
    except json.JSONDecodeError:
        return False
    want = {"n_tracks": args.tracks, "n_users": args.users, "seed": args.seed}
    return all(meta.get(k) == v for k, v in want.items())


def _model_is_current(model: Path, data: Path, embedder: str) -> bool:
    from musicrec.data.logs import read_log
    from musicrec.errors import MusicrecError
    from musicrec.recommender.model_dir import read_manifest

    try:
        manifest = read_manifest(model)
    except MusicrecError:
        return False
    interactions = manifest.get("data", {}).get("interactions", {})
    built = manifest.get("embedder") or {}
    if built.get("spec") != embedder or \
            interactions.get("sha256") != read_log(data / "plays.csv").fingerprint():
        return False
    from musicrec.embedding.registry import get_embedder

    # same model, weights and options (a model from an older musicrec is rebuilt)
    return bool(get_embedder(embedder, **built.get("options", {})).id == built.get("id"))


def cmd_demo(args: argparse.Namespace) -> int:
    from musicrec.cli import main

    root: Path = args.dir
    data, model, cache = root / "data", root / "model", root / "cache"
    started = time.perf_counter()

    _step(f"1/4 demo dataset: {args.tracks} tracks, {args.users} listeners -> {data}")
    if _data_is_current(data, args):
        print("reusing the existing dataset", file=sys.stderr)
    else:
        code = main(["demo-data", "--tracks", str(args.tracks), "--users", str(args.users),
                     "--seed", str(args.seed), "--out", str(data), "--force",
                     "--cache", str(cache / "render")])
        if code:
            return code

    _step(f"2/4 model: embed ({args.embedder}), CF, blend, index, fingerprints -> {model}")
    if _model_is_current(model, data, args.embedder):
        print("reusing the existing model", file=sys.stderr)
    else:
        code = main(["build", "--interactions", str(data / "plays.csv"),
                     "--catalog", str(data / "catalog.csv"), "--embedder", args.embedder,
                     "--cache-dir", str(cache / "embeddings"), "--out", str(model)])
        if code:
            return code

    from musicrec.recommender.facade import Recommender

    for exact_below, label in ((10_000, "as served"), (0, "through the Annoy indexes")):
        agreement = Recommender(model, exact_below=exact_below).ann_agreement(sample=100)
        print(f"similar tracks, {label}: overlap@10 with exact search " + ", ".join(
            f"α={a:g}: {v:.3f}" for a, v in agreement.items()), file=sys.stderr)

    for protocol in ("random-holdout", "cold-tracks"):
        _step(f"3/4 evaluation, {protocol} -> {root / f'report-{protocol}'}")
        models = "random,popularity,als,itemknn,content,hybrid,served"
        ks = "10,50" if args.tracks >= 1000 else "5,10"
        if protocol == "cold-tracks":
            # 10 % of the tracks are cold; each user ranks those only.
            models = "random,popularity,content,hybrid"
            ks = "10,50" if args.tracks >= 1000 else "3"
        code = main(["evaluate", "--interactions", str(data / "plays.csv"),
                     "--content", str(model), "--protocol", protocol, "--k", ks,
                     "--models", models, "--report", str(root / f"report-{protocol}"),
                     "--bootstrap", "300",
                     *(["--sweep-hybrid"] if protocol == "random-holdout" else [])])
        if code:
            return code
    users = root / "subsonic-users.txt"
    if not users.exists():  # the Subsonic API's demo user (the file is yours to edit)
        users.write_text("# Subsonic users of the demo: user:password, one per line\n"
                         "demo:demo\n")
    print(f"\nprepared in {time.perf_counter() - started:.0f} s; reports: "
          f"{root / 'report-random-holdout' / 'report.html'}", file=sys.stderr)

    if args.no_serve:
        return 0
    _step("4/4 serving the API, the web page and the Subsonic API (Ctrl-C stops)")
    print(f"open http://{args.host}:{args.port}/  (API docs: /docs)\n"
          f"Subsonic apps: server http://{args.host}:{args.port}, user demo, password demo "
          f"(users in {users})", flush=True)
    serve = ["serve", "--model", str(model), "--host", args.host, "--port", str(args.port),
             "--subsonic", "--subsonic-users", str(users)]
    try:
        return main(serve)
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 0


def register(sub: Any) -> None:
    from musicrec.cli import positive_int
    from musicrec.embedding.registry import DEFAULT_MODEL

    p = sub.add_parser("demo", help="the whole engine on the demo dataset, then serve it")
    p.add_argument("--dir", type=Path, default=Path("demo"), help="working folder (demo/)")
    p.add_argument("--tracks", type=positive_int, default=1000)
    p.add_argument("--users", type=positive_int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedder", default=DEFAULT_MODEL,
                   help=f"audio model (default {DEFAULT_MODEL}: vectors and tags)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--no-serve", action="store_true", help="stop after the evaluation")
    p.set_defaults(handler=cmd_demo)
