"""``--engine local|ray`` and ``--address`` for ``musicrec embed`` and ``musicrec build``.

This module adds no command of its own. The two commands hook it in with two lines each::

    add_engine_options(p)                                   # in register()
    if args.engine == "ray": return run_embed_engine(args)  # first line of cmd_embed
                                                            # (run_build_engine in cmd_build)
"""

from __future__ import annotations

import argparse
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


def run_embed_engine(args: argparse.Namespace) -> int:
    """``musicrec embed --engine ray``: the same outputs and exit codes as the local path."""
    from musicrec.commands.embed import embedder_options, write_and_report
    from musicrec.embedding.distributed import embed_with_ray, import_ray

    if getattr(args, "engine", "local") != "ray":
        raise ParameterError(f"engine={args.engine!r}: run_embed_engine is for --engine ray")
    import_ray()
    result = embed_with_ray(args.source, embedder_spec=args.model,
                            embedder_options=embedder_options(args), cache_dir=args.cache_dir,
                            use_cache=not args.no_cache, address=args.address,
                            batch_size=args.batch_size, n_workers=args.workers,
                            show_progress=True)
    return write_and_report(result, args.out)


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
    from functools import partial

    from musicrec.commands.build import build_from_args
    from musicrec.embedding.distributed import embed_with_ray
    from musicrec.recommender.distributed import build_with_ray

    def embed(source: Any, args: argparse.Namespace) -> Any:
        from musicrec.embedding.fingerprint import FingerprintParams

        # decode once, as the local build: each actor fingerprints the tracks it embeds
        params = None if args.no_fingerprints else FingerprintParams()
        return embed_with_ray(source, embedder_spec=args.embedder, cache_dir=args.cache_dir,
                              address=args.address, show_progress=True,
                              fingerprint_params=params)

    return build_from_args(args, embed=embed, build=partial(build_with_ray,
                                                            address=args.address))
