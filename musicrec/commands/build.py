"""``musicrec build`` and ``musicrec add-tracks``: the hybrid model pipeline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from musicrec.errors import ParameterError


def _audio_sources(source: Path) -> list[tuple[str, Path]]:
    from musicrec.embedding.batch import read_catalog_paths, scan_folder

    if source.is_dir():
        ids, paths, _ = scan_folder(source)
    else:
        ids, paths = read_catalog_paths(source)
    return list(zip(ids, paths, strict=True))


def embedder_info(spec: str) -> dict[str, Any]:
    """What the manifest records of the embedder (query by example rebuilds it from this)."""
    from musicrec.embedding.registry import get_embedder

    emb = get_embedder(spec)
    return {"spec": spec, "id": emb.id, "name": emb.name, "revision": emb.revision,
            "dim": emb.dim, "options": emb.pinned_options}


def _embed_local(source: Path, args: argparse.Namespace) -> Any:
    from musicrec.embedding.batch import embed_catalog
    from musicrec.embedding.fingerprint import FingerprintParams
    from musicrec.embedding.registry import get_embedder

    # decode once: with fingerprints, each track is decoded whole once for both its
    # vector and its fingerprint (EmbeddingResult.fingerprints; issue 17, part 3)
    params = None if args.no_fingerprints else FingerprintParams()
    return embed_catalog(source, embedder=get_embedder(args.embedder),
                         cache_dir=args.cache_dir, show_progress=True,
                         fingerprint_params=params)


def build_from_args(
    args: argparse.Namespace,
    *,
    embed: Callable[[Path, argparse.Namespace], Any],
    build: Callable[..., Path],
) -> int:
    """The body of ``musicrec build`` for any engine: ``embed(source, args)`` returns an
    :class:`~musicrec.embedding.batch.EmbeddingResult`, ``build(out, inputs)`` writes the
    model directory (:func:`~musicrec.recommender.pipeline.build_model_dir` or its Ray
    twin)."""
    from musicrec.cli import load_interactions
    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.hybrid import HybridModel
    from musicrec.recommender.model_dir import read_manifest
    from musicrec.recommender.pipeline import (
        BuildInputs,
        load_catalog_or_folder,
        read_content_vectors,
    )
    from musicrec.recommender.served import ServedModel

    if args.catalog is None and args.content_vectors is None and args.interactions is None:
        raise ParameterError("give --interactions, --catalog, --content-vectors, or several")
    log_, catalog = (None, None)
    if args.interactions is not None:
        log_, catalog = load_interactions(args)
        print(log_.report.summary(), file=sys.stderr)
    content_ids = content = embedder = source = tags = None
    fingerprint_sources = None
    if args.content_vectors is not None:
        content_ids, content = read_content_vectors(args.content_vectors)
        source = {"vectors": str(Path(args.content_vectors).resolve())}
    elif args.catalog is not None:
        result = embed(args.catalog, args)
        print(f"embedded {args.catalog}: {result.summary()}", file=sys.stderr)
        for failure in result.failures:
            print(f"  failed: {failure.path}: {failure.kind}: {failure.reason}",
                  file=sys.stderr)
        if len(result.track_ids) == 0:
            raise ParameterError(f"{args.catalog}: no audio file could be embedded")
        embedder = embedder_info(args.embedder)
        content_ids, content = result.track_ids, result.vectors
        if result.tag_names and result.tags is not None:
            from musicrec.recommender.tags import TrackTags

            tags = TrackTags(list(result.track_ids), result.tags, list(result.tag_names),
                             args.embedder)
        source = {"audio": str(Path(args.catalog).resolve()), "embedded": len(result.track_ids),
                  "failed": len(result.failures)}
        if not args.no_fingerprints:
            embedded = set(result.track_ids)
            # decode once (both engines): a fingerprint made with the vector is used as
            # it is; a track without one (its fingerprint failed) is fingerprinted from
            # its file, and the failure reported
            made = result.fingerprints
            fingerprint_sources = [(t, made.get(t, p)) for t, p in _audio_sources(args.catalog)
                                   if t in embedded]
    if args.catalog is not None and catalog is None:
        catalog = load_catalog_or_folder(args.catalog)
    cf = CFModel(algorithm=args.algorithm, factors=args.factors,
                 regularization=args.regularization, iterations=args.iterations,
                 alpha=args.alpha, confidence=args.confidence,
                 learning_rate=args.learning_rate, random_state=args.seed, show_progress=True)
    hybrid = HybridModel(shrinkage=args.shrinkage, content_weight=args.content_weight)
    served = ServedModel(random_state=args.seed) if args.cf == "auto" else None
    out = build(args.out, BuildInputs(
        log=log_, catalog=catalog, content_ids=content_ids, content=content, cf_model=cf,
        hybrid=hybrid, embedder=embedder, content_source=source, n_trees=args.n_trees,
        index=args.index, fingerprint_sources=fingerprint_sources, show_progress=True,
        tags=tags, served=served))
    manifest = read_manifest(out)
    print(f"built a {manifest['kind']} model of {manifest['counts']['tracks']} tracks "
          f"in {out}")
    if "served" in manifest:
        choice = manifest["served"]["choice"]
        print(f"known users are ranked by {choice['model']} (validation "
              f"{manifest['served']['metric']} {choice['ndcg']:.4f}; every candidate's score "
              "is in the manifest)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from musicrec.commands.engine import run_build_engine

        return run_build_engine(args)
    from musicrec.recommender.pipeline import build_model_dir

    return build_from_args(args, embed=_embed_local, build=build_model_dir)


def cmd_add_tracks(args: argparse.Namespace) -> int:
    from musicrec.embedding.batch import embed_paths
    from musicrec.embedding.registry import get_embedder
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.pipeline import add_tracks

    rec = Recommender(args.model_dir)
    spec = rec.manifest.get("embedder")
    if not spec:
        raise ParameterError(f"{args.model_dir}: the model was not built from audio")
    embedder = get_embedder(spec["spec"], **spec.get("options", {}))
    ids = [Path(p).stem for p in args.audio]
    result = embed_paths(args.audio, embedder=embedder, track_ids=ids,
                         cache_dir=args.cache_dir, show_progress=True)
    for failure in result.failures:
        print(f"  failed: {failure.path}: {failure.kind}: {failure.reason}", file=sys.stderr)
    if not result.track_ids:
        raise ParameterError("no audio file could be embedded")
    del rec
    by_id = dict(zip(ids, args.audio, strict=True))
    add_tracks(args.model_dir, result.track_ids, result.vectors,
               audio_paths=[by_id[t] for t in result.track_ids],
               tags=result.tags if result.tag_names else None)
    print(f"added {len(result.track_ids)} tracks to {args.model_dir} "
          f"({len(result.failures)} failed)")
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    from musicrec.cli import print_json
    from musicrec.embedding.fingerprint import FingerprintIndex, find_duplicates
    from musicrec.recommender.model_dir import read_manifest

    read_manifest(args.model_dir)
    path = args.model_dir / "fingerprints"
    if not path.exists():
        raise ParameterError(f"{args.model_dir}: the model has no fingerprint index; rebuild "
                             "it from audio without --no-fingerprints")
    groups = find_duplicates(FingerprintIndex.load(path), show_progress=True)
    if args.json:
        print_json([{"track_ids": list(g.track_ids), "offsets_s": list(g.offsets_s),
                     "scores": list(g.scores)} for g in groups])
        return 0
    if not groups:
        print("no duplicate recordings found")
    for k, group in enumerate(groups, 1):
        print(f"group {k}:")
        for track_id, offset, score in zip(group.track_ids, group.offsets_s, group.scores,
                                           strict=True):
            print(f"  {track_id}  offset {offset:+.2f} s  votes {score}")
    return 0


def register(sub: Any) -> None:
    from musicrec.cli import add_cf_options, add_log_options, positive_int
    from musicrec.embedding.registry import DEFAULT_MODEL
    from musicrec.recommender.index import HNSW_FROM

    p = sub.add_parser("build", help="build a hybrid model directory (embed, CF, blend, index)")
    add_log_options(p)
    for action in p._actions:
        if action.dest == "interactions":
            action.required = False
    p.add_argument("--catalog", type=Path,
                   help="a folder of audio, or a catalogue table with track_id, audio_path")
    p.add_argument("--content-vectors", type=Path,
                   help="precomputed content vectors (table: track_id + vector or numbers)")
    p.add_argument("--embedder", default=DEFAULT_MODEL,
                   help=f"audio model (see `embed`; default {DEFAULT_MODEL})")
    p.add_argument("--cache-dir", type=Path, help="embedding cache (default ~/.cache/musicrec)")
    p.add_argument("--out", required=True, type=Path)
    add_cf_options(p)
    p.add_argument("--shrinkage", type=float, default=10.0,
                   help="listeners at which own CF and content prediction weigh the same")
    p.add_argument("--content-weight", type=float, default=0.5,
                   help="weight of the user's content profile in user scores")
    p.add_argument("--index", choices=["annoy", "hnsw", "auto"], default="auto",
                   help="nearest-neighbour index: Annoy, HNSW, or auto (HNSW from "
                        f"{HNSW_FROM:,} tracks on; see the README's index benchmark)")
    p.add_argument("--n-trees", type=positive_int, help="Annoy trees")
    p.add_argument("--no-fingerprints", action="store_true",
                   help="skip the landmark fingerprint index (identification of clips)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cf", choices=["auto", "hybrid"], default="auto",
                   help="auto: rank known users by the model (ALS, item-kNN, RP3beta, EASE, "
                        "the hybrid, or a blend of two) that wins on a validation split of "
                        "the logs; hybrid: by ALS/BPR blended with content")
    from musicrec.commands.engine import add_engine_options

    add_engine_options(p)
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("add-tracks", help="add audio tracks to a model without retraining")
    p.add_argument("model_dir", type=Path)
    p.add_argument("audio", nargs="+", type=Path)
    p.add_argument("--cache-dir", type=Path)
    p.set_defaults(handler=cmd_add_tracks)

    p = sub.add_parser("duplicates",
                       help="list groups of tracks that are the same recording (fingerprints)")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_duplicates)
