"""``musicrec search``: tracks that fit a description ("calm piano"), through their tags."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_search(args: argparse.Namespace) -> int:
    from musicrec.cli import print_json, print_recommendations
    from musicrec.recommender.facade import Recommender

    rec = Recommender(args.model)
    found = rec.search_text(args.query, n=args.n, text_encoder=args.text_encoder, tau=args.tau,
                            max_per_artist=args.max_per_artist)
    if args.json:
        print_json({**found.to_dict(), "results": [
            {**r.to_dict(), "title": rec.catalog.title(r.track_id),
             "tags": rec.track_tags(r.track_id)} for r in found.results]})
        return 0
    if found.parsed is None:
        print("Matched by CLAP: text-to-audio cosines")
    elif found.parsed.weak:
        best = max(found.parsed.parts, key=lambda p: p.cosine)
        print(f"Weak match: no word of {args.query!r} is close to a tag of this model "
              f"(closest: {best.best_tag!r}, cosine {best.cosine:.2f}); the ranking is a guess.")
    else:
        print("Matched tags: " + "; ".join(
            f"{p.text!r} -> {', '.join(p.to_dict(found.tag_names)['tags'])}"
            for p in found.parsed.parts if p.matched))
    print_recommendations(found.results, rec.catalog, False,
                          f"Top {len(found.results)} for {args.query!r}:")
    return 0


def register(sub: Any) -> None:
    from musicrec.cli import positive_int
    from musicrec.embedding.text import DEFAULT_TEXT_ENCODER, TEXT_ENCODERS
    from musicrec.recommender.tags import DEFAULT_TAU

    p = sub.add_parser("search", help="tracks that fit a description, e.g. \"calm piano\"",
                       description="Search by words, zero-shot: the query and the model's tag "
                       "names are embedded by a text model, and tracks are ranked by their "
                       "tag probabilities (needs a model built with a musicnn embedder: the "
                       "default musicnn, musicnn-mtt or musicnn-msd).")
    p.add_argument("query", help="words describing the music")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("-n", type=positive_int, default=10)
    p.add_argument("--text-encoder", choices=sorted(TEXT_ENCODERS), default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--tau", type=float, default=DEFAULT_TAU,
                   help="softmax temperature over query-to-tag cosines")
    p.add_argument("--max-per-artist", type=positive_int, help="at most k tracks per artist")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_search)
