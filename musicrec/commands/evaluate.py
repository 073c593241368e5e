"""``musicrec evaluate`` and ``musicrec tune``: offline evaluation and hyper-parameter search."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.errors import DataFormatError, ParameterError

log = logging.getLogger(__name__)

PROTOCOL_CHOICES = ("random-holdout", "leave-last-out", "temporal", "cold-tracks", "sessions")
DEFAULT_MODELS = "random,popularity,als,itemknn,ease"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} must lie strictly between 0 and 1")
    return value


def _split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="random-holdout",
                   help="how the test set is held out (default: random-holdout)")
    p.add_argument("--fraction", type=_fraction,
                   help="held-out share (default 0.2; cold-tracks 0.1)")
    p.add_argument("--min-history", type=int,
                   help="minimum items of a user to hold any out (default 5; leave-last-out "
                        "2), or minimum listeners of a cold track (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split, the random model and the bootstrap (default 0)")
    p.add_argument("--catalog", type=Path,
                   help="catalogue table (CSV/TSV/Parquet): its tracks without plays are "
                        "ranked too")
    p.add_argument("--content", type=Path,
                   help="content vectors for the content models and intra-list diversity: "
                        "a model directory (musicrec build), an embedding file (musicrec "
                        "embed: .parquet or .npy), or an .npz with 'track_ids' and 'vectors'")


def read_content(path: Path, track_ids: np.ndarray) -> np.ndarray:
    """Content vectors aligned to ``track_ids`` (zero rows for tracks without one).

    ``path`` is a model directory, an embedding file written by ``musicrec embed``
    (Parquet, or ``.npy`` with its ``.ids.json``), or an ``.npz`` with ``track_ids`` and
    ``vectors``.
    """
    if path.is_dir():
        from musicrec.recommender.model_dir import content_vectors

        ids, vectors = content_vectors(path)
        if vectors.shape[1] == 0 or len(ids) == 0:
            raise DataFormatError(path, "this model has no content vectors")
    elif path.suffix.lower() in (".parquet", ".npy"):
        from musicrec.embedding.batch import read_embeddings

        id_list, vectors = read_embeddings(path)
        ids = np.asarray(id_list, dtype=str)
    else:
        try:
            with np.load(path, allow_pickle=False) as arrays:
                ids = arrays["track_ids"].astype(str)
                vectors = np.asarray(arrays["vectors"], dtype=np.float32)
        except KeyError as exc:
            raise DataFormatError(path, f"content file lacks the array {exc}") from None
        except (OSError, ValueError) as exc:
            raise DataFormatError(path, f"not a readable .npz of content vectors ({exc})"
                                  ) from None
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise DataFormatError(path, f"vectors {vectors.shape} must be one row per track id "
                                    f"({len(ids)})")
    row_of = {t: i for i, t in enumerate(ids)}
    out = np.zeros((len(track_ids), vectors.shape[1]), dtype=np.float32)
    found = [(j, row_of[t]) for j, t in enumerate(track_ids) if t in row_of]
    if not found:
        raise DataFormatError(path, "no track id of the log has a content vector")
    dst, src = map(np.asarray, zip(*found, strict=True))
    out[dst] = vectors[src]
    return out


def _load(args: argparse.Namespace) -> tuple[Any, np.ndarray | None]:
    from musicrec.cli import load_interactions

    log_, _ = load_interactions(args)
    if args.catalog is not None:
        from musicrec.data.catalog import read_catalog

        catalog = read_catalog(args.catalog)
        extra = [t for t in catalog.track_ids if t not in log_.tracks]
        if extra:
            log_ = replace(log_, tracks=log_.tracks.extend(extra))
            print(f"{len(extra)} catalogue tracks without plays are ranked too", file=sys.stderr)
    content = read_content(args.content, log_.tracks.ids.astype(str)) if args.content else None
    return log_, content


def _read_params(path: Path | None) -> dict[str, dict[str, Any]]:
    """``--params``: ``{"als": {...}, ...}`` or the output of ``musicrec tune``."""
    if path is None:
        return {}
    try:
        payload = json.loads(path.read_text())
    except ValueError as exc:
        raise DataFormatError(path, f"not valid JSON ({exc})") from None
    if isinstance(payload, dict) and payload.get("schema") == "musicrec.tune":
        return {str(payload["model"]): dict(payload["best_params"])}
    if not isinstance(payload, dict) or not all(isinstance(v, dict) for v in payload.values()):
        raise DataFormatError(path, "expected {model name: {parameter: value}} or the "
                                    "output of `musicrec tune`")
    return payload


#: Values of the hybrid's blend weight (β, the content-profile weight in user scores).
SWEEP_VALUES = (0.0, 0.25, 0.5, 1.0, 2.0)


def _sweep_hybrid(result: Any, content: np.ndarray | None, args: argparse.Namespace
                  ) -> list[dict[str, Any]]:
    """The hybrid's blend weight swept on a validation split of the training part only."""
    from musicrec.recommender.evaluation.tune import sweep_parameter

    if content is None:
        raise ParameterError("--sweep-hybrid needs --content")
    params = _read_params(args.params).get("hybrid", {})
    tuned = sweep_parameter(result.split.train, model="hybrid", param="content_weight",
                            values=SWEEP_VALUES, base_params=params, content=content,
                            seed=args.seed + 1, show_progress=True)
    rows = tuned.as_sweep("content_weight")
    print("hybrid blend sweep (validation on the training part): " + ", ".join(
        f"β={r['alpha']:g}: {r['metric']} {r['value']:.4f}" for r in rows), file=sys.stderr)
    return rows


def cmd_evaluate(args: argparse.Namespace) -> int:
    from musicrec.cli import print_table
    from musicrec.recommender.evaluation import MODELS, evaluate, parse_ks
    from musicrec.recommender.evaluation.report import write_report

    if args.list_models:
        for name, cls in sorted(MODELS.items()):
            print(f"{name:<11} {cls.description}")
        return 0
    if args.interactions is None or args.report is None:
        raise ParameterError("--interactions and --report are required")
    if args.protocol == "sessions":
        return _evaluate_sessions(args)
    models = [m.strip() for m in (args.models or DEFAULT_MODELS).split(",") if m.strip()]
    ks = parse_ks(args.k)
    sweep = None
    if args.alpha_sweep is not None:
        try:
            sweep_payload = json.loads(args.alpha_sweep.read_text())
        except ValueError as exc:
            raise DataFormatError(args.alpha_sweep, f"not valid JSON ({exc})") from None
        sweep = (sweep_payload.get("alpha_sweep") if isinstance(sweep_payload, dict)
                 else sweep_payload)
    log_, content = _load(args)
    print(log_.report.summary(), file=sys.stderr)
    result = evaluate(log_, protocol=args.protocol, models=models, ks=ks,
                      fraction=args.fraction, min_history=args.min_history, seed=args.seed,
                      content=content, model_params=_read_params(args.params),
                      reference=args.reference, n_bootstrap=args.bootstrap,
                      show_progress=True)
    if args.sweep_hybrid:
        sweep = _sweep_hybrid(result, content, args)
    paths = write_report(result, args.report, alpha_sweep=sweep)
    for k in ks:
        rows, header = result.table(k=k)
        print(f"\n{result.protocol}: {len(result.test_users)} test users, "
              f"{result.n_candidates} ranked tracks, k={k}")
        print_table(rows, header)
    primary = result.primary_metric
    print(f"\n{primary}: difference to {result.reference} with 95 % CI and p-values")
    print_table([(c["model"], c["mean_diff"], f"[{c['ci_low']:.4f}, {c['ci_high']:.4f}]",
                  f"{c['p_wilcoxon']:.2g}", f"{c['p_ttest']:.2g}")
                 for c in result.comparisons if c["metric"] == primary],
                ("model", "delta", "95% CI", "p wilcoxon", "p t-test"))
    for m in result.models:
        if m.status != "ok":
            print(f"{m.name}: {m.message}")
    print(f"\nreport written to {paths['html'].parent} (report.json, report.md, report.html, "
          "per_user.parquet)")
    return 0


def _evaluate_sessions(args: argparse.Namespace) -> int:
    """``--protocol sessions``: the radio and its baselines continue held-out sessions."""
    from musicrec.cli import print_table
    from musicrec.data.catalog import TrackCatalog, read_catalog
    from musicrec.data.logs import read_play_events
    from musicrec.recommender.evaluation import parse_ks
    from musicrec.recommender.evaluation.sessions import METHODS, evaluate_sessions

    if args.format == "hetrec" or args.interactions.is_dir():
        raise ParameterError("--protocol sessions needs a log of single timed plays (CSV, "
                             "TSV or Parquet); HetRec 2011 has no play times")
    methods = [m.strip() for m in (args.models or ",".join(METHODS)).split(",") if m.strip()]
    k = parse_ks(args.k)[0]  # the smallest cut-off: default 10
    events = read_play_events(args.interactions, format=args.format, user_col=args.user_col,
                              track_col=args.track_col, weight_col=args.weight_col,
                              timestamp_col=args.timestamp_col)
    catalog = None
    if args.catalog is not None:
        catalog = read_catalog(args.catalog)
    elif args.content is not None and (args.content / "catalog.parquet").exists():
        catalog = TrackCatalog.load(args.content / "catalog.parquet")
    ids = list(dict.fromkeys([*events.frame["track"].tolist(),
                              *([] if catalog is None else catalog.track_ids)]))
    content = read_content(args.content, np.asarray(ids)) if args.content else None
    print(f"{events.report.source}: {len(events.frame)} plays", file=sys.stderr)
    result = evaluate_sessions(
        events, content_ids=ids if content is not None else None, content=content,
        catalog=catalog, methods=methods, k=k, gap=args.session_gap * 60,
        n_seeds=args.seed_tracks, max_sessions=args.max_sessions, seed=args.seed,
        n_bootstrap=args.bootstrap, show_progress=True)
    paths = result.write(args.report)
    split = result.split
    print(f"\nsessions: {split['n_test']} held-out sessions of {split['n_sessions']} "
          f"({args.session_gap:g}-min gaps, {args.seed_tracks} seed tracks), next {result.k} "
          "tracks; means with 95 % bootstrap CIs")
    print_table(*result.table())
    print("\ndifference to the radio (method - radio), 95 % paired bootstrap CI")
    print_table([(c["model"], c["metric"], c["mean_diff"],
                  f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]") for c in result.comparisons],
                ("method", "metric", "delta", "95% CI"))
    print(f"\nreport written to {paths['md'].parent} (report.json, report.md)")
    return 0


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive number of minutes")
    return value


def cmd_tune(args: argparse.Namespace) -> int:
    from musicrec.data.splits import make_split
    from musicrec.recommender.evaluation.tune import ALS_SPACE, tune_als

    log_, _ = _load(args)
    outer = make_split(log_, protocol=args.protocol, fraction=args.fraction,
                       min_history=args.min_history, seed=args.seed)
    space = dict(ALS_SPACE)
    if args.factors:
        space["factors"] = [int(x) for x in args.factors.split(",")]
    print(f"tuning ALS on the training part of the {outer.protocol} split "
          f"({len(outer.train)} of {len(log_)} interactions); the test part is not used",
          file=sys.stderr)
    result = tune_als(outer.train, space=space, rounds=args.rounds, metric=args.metric,
                      seed=args.seed + 1, time_budget_s=args.budget_minutes * 60,
                      show_progress=True)
    payload = result.to_dict()
    payload["outer_split"] = {"protocol": outer.protocol, "params": outer.params}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, args.out)
    best = result.best
    print(f"best validation {result.metric} {best.score:.4f} with {best.params} "
          f"({len(result.trials)} trials); written to {args.out}")
    print(f"evaluate it with: musicrec evaluate ... --params {args.out}")
    return 0


def register(sub: Any) -> None:
    from musicrec.cli import add_log_options, positive_int

    p = sub.add_parser("evaluate", help="offline evaluation of recommenders on listening logs")
    add_log_options(p)
    for action in p._actions:  # --list-models needs no data
        if action.dest == "interactions":
            action.required = False
    _split_options(p)
    p.add_argument("--k", default="10,20,50", help="cut-offs, comma-separated (default 10,20,50)")
    p.add_argument("--models",
                   help=f"comma-separated model names (see --list-models; default "
                        f"{DEFAULT_MODELS}); with --protocol sessions: radio, similar-last, "
                        "popularity, user (default all)")
    p.add_argument("--report", type=Path, help="directory for report.json/.md/.html")
    p.add_argument("--params", type=Path,
                   help="JSON of hyper-parameters per model, or the output of `musicrec tune`")
    p.add_argument("--reference", help="compare every model with this one (default: the best)")
    p.add_argument("--bootstrap", type=positive_int, default=1000,
                   help="bootstrap resamples (default 1000)")
    p.add_argument("--sweep-hybrid", action="store_true",
                   help="sweep the hybrid's blend weight on a validation split of the "
                        "training part and plot it in the report")
    p.add_argument("--alpha-sweep", type=Path,
                   help="JSON rows {alpha, metric, value} of a hybrid α sweep to plot")
    p.add_argument("--session-gap", type=_minutes, default=30.0,
                   help="--protocol sessions: minutes of silence that end a session (30)")
    p.add_argument("--seed-tracks", type=positive_int, default=2,
                   help="--protocol sessions: first tracks of a session given as seeds (2)")
    p.add_argument("--max-sessions", type=positive_int,
                   help="--protocol sessions: test at most this many sessions (seeded sample)")
    p.add_argument("--list-models", action="store_true", help="list the available models")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("tune", help="search ALS hyper-parameters on a split of the training "
                                    "data (never the test set)")
    add_log_options(p)
    _split_options(p)
    p.add_argument("--out", required=True, type=Path, help="JSON file of the best parameters")
    p.add_argument("--metric", default="ndcg@10", help="what to maximise (default ndcg@10)")
    p.add_argument("--rounds", type=positive_int, default=1, help="coordinate-search passes")
    p.add_argument("--factors", help="factor counts to try, comma-separated")
    p.add_argument("--budget-minutes", type=float, default=15.0,
                   help="stop starting new trials after this long (default 15)")
    p.set_defaults(handler=cmd_tune)
