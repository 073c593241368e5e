"""``--engine local|ray`` and ``--address`` for ``musicrec embed`` and ``musicrec build``.

This module adds no command of its own. The two commands hook it in with two lines each::

    add_engine_options(p)                                   # in register()
    if args.engine == "ray": return run_embed_engine(args)  # first line of cmd_embed
                                                            # (run_build_engine in cmd_build)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from musicrec.errors import ParameterError


def register(sub: Any) -> None:
    """No command: the options are added to ``embed`` and ``build`` by their modules."""


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine local|ray`` and ``--address ADDR`` to ``parser``."""
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="run here (local, default) or on Ray (pip install 'musicrec[ray]')")
    group.add_argument("--address",
                       help="Ray cluster to join (e.g. auto, ray://head:10001); default: start "
                       "a local Ray runtime")


def _embedder_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {k: v for k, v in {
        "layer": getattr(args, "layer", None), "window_seconds": getattr(args, "window_seconds",
                                                                         None),
        "n_windows": getattr(args, "n_windows", None), "pooling": getattr(args, "pooling", None),
        "num_threads": getattr(args, "threads", None),
    }.items() if v is not None}
    if getattr(args, "cache_dir", None) is not None:
        options["cache_dir"] = args.cache_dir
    if getattr(args, "trust_remote_code", False):
        options["trust_remote_code"] = True
    if getattr(args, "quantize", False):
        options["quantize"] = True
    return options


def run_embed_engine(args: argparse.Namespace) -> int:
    """``musicrec embed --engine ray``: the same outputs and exit codes as the local path."""
    from musicrec.cli import print_table
    from musicrec.embedding.batch import write_embeddings
    from musicrec.embedding.distributed import embed_with_ray, import_ray

    if getattr(args, "engine", "local") != "ray":
        raise ParameterError(f"engine={args.engine!r}: run_embed_engine is for --engine ray")
    import_ray()
    result = embed_with_ray(args.source, embedder_spec=args.model,
                            embedder_options=_embedder_options(args), cache_dir=args.cache_dir,
                            use_cache=not args.no_cache, address=args.address,
                            batch_size=args.batch_size, n_workers=args.workers,
                            show_progress=True)
    written = write_embeddings(result, args.out)
    print(f"{result.summary()}; {result.vectors.shape[1]}-d vectors from {result.embedder_id}")
    print("wrote " + ", ".join(str(p) for p in written))
    if result.failures:
        print(f"\n{len(result.failures)} file(s) failed:", file=sys.stderr)
        sys.stdout.flush()
        print_table([(f.track_id, f.kind, f.reason) for f in result.failures],
                    ("track", "kind", "reason"))
        return 1
    return 0


def run_build_engine(args: argparse.Namespace) -> int:
    """``musicrec build --engine ray``: embedding (from ``--catalog``), CF, mapping and
    indexes on Ray; the same model directory as the local path."""
    from musicrec.embedding.distributed import import_ray, ray_runtime

    if getattr(args, "engine", "local") != "ray":
        raise ParameterError(f"engine={args.engine!r}: run_build_engine is for --engine ray")
    import_ray()
    if args.catalog is None and args.content_vectors is None and args.interactions is None:
        raise ParameterError("give --interactions, --catalog, --content-vectors, or several")
    with ray_runtime(address=args.address):  # one runtime for the embedding and the build
        return _build(args)


def _build(args: argparse.Namespace) -> int:
    from musicrec.cli import load_interactions
    from musicrec.commands.build import _audio_sources
    from musicrec.embedding.base import get_embedder
    from musicrec.embedding.distributed import embed_with_ray
    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.distributed import build_with_ray
    from musicrec.recommender.hybrid import HybridModel
    from musicrec.recommender.model_dir import read_manifest
    from musicrec.recommender.pipeline import load_catalog_or_folder, read_content_vectors

    log_, catalog = (None, None)
    if args.interactions is not None:
        log_, catalog = load_interactions(args)
        print(log_.report.summary(), file=sys.stderr)
    content_ids = content = embedder = source = None
    fingerprint_sources = None
    if args.content_vectors is not None:
        content_ids, content = read_content_vectors(args.content_vectors)
        source = {"vectors": str(args.content_vectors)}
    elif args.catalog is not None:
        result = embed_with_ray(args.catalog, embedder_spec=args.embedder,
                                cache_dir=args.cache_dir, address=args.address,
                                show_progress=True)
        print(f"embedded {args.catalog}: {result.summary()}", file=sys.stderr)
        for failure in result.failures:
            print(f"  failed: {failure.path}: {failure.kind}: {failure.reason}",
                  file=sys.stderr)
        if len(result.track_ids) == 0:
            raise ParameterError(f"{args.catalog}: no audio file could be embedded")
        emb = get_embedder(args.embedder)
        embedder = {"spec": args.embedder, "id": emb.id, "name": emb.name,
                    "revision": emb.revision, "dim": emb.dim, "options": {}}
        content_ids, content = result.track_ids, result.vectors
        source = {"audio": str(args.catalog), "embedded": len(result.track_ids),
                  "failed": len(result.failures)}
        if not args.no_fingerprints:
            embedded = set(result.track_ids)
            fingerprint_sources = [(t, p) for t, p in _audio_sources(args.catalog)
                                   if t in embedded]
    if args.catalog is not None and catalog is None:
        catalog = load_catalog_or_folder(args.catalog)
    cf = CFModel(factors=args.factors, regularization=args.regularization,
                 iterations=args.iterations, alpha=args.alpha, confidence=args.confidence,
                 random_state=args.seed)
    hybrid = HybridModel(shrinkage=args.shrinkage, content_weight=args.content_weight)
    out = build_with_ray(args.out, log=log_, catalog=catalog, content_ids=content_ids,
                         content=content, cf_model=cf, hybrid=hybrid, embedder=embedder,
                         content_source=source, n_trees=args.n_trees,
                         fingerprint_sources=fingerprint_sources, address=args.address,
                         show_progress=True)
    manifest = read_manifest(out)
    print(f"built a {manifest['kind']} model of {manifest['counts']['tracks']} tracks "
          f"in {out}")
    return 0
