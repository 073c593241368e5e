"""``musicrec radio``: an endless, varied playlist from seed tracks, an artist or a user."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_radio(args: argparse.Namespace) -> int:
    from musicrec.cli import print_json, print_recommendations
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.radio import describe_state

    rec = Recommender(args.model)
    page = rec.radio(args.seed or (), n=args.n, cursor=args.cursor, user=args.user,
                     artist=args.artist, alpha=args.alpha, variety=args.variety,
                     artist_window=args.artist_window, reach=args.reach,
                     seed=args.random_seed, popularity=args.popularity)
    if args.json:
        print_json({"radio": describe_state(page.state), "exhausted": page.exhausted,
                    "cursor": page.cursor,
                    "results": [{**r.labelled(rec.catalog.title),
                                 "title": rec.catalog.title(r.track_id),
                                 "artist": rec.catalog.artists([r.track_id])[0]}
                                for r in page.items]})
        return 0
    seeds = ", ".join(rec.catalog.label(t) for t in page.state.seeds)
    print_recommendations(page.items, rec.catalog, False,
                          f"Radio from {page.state.source}: {seeds}")
    if page.exhausted:
        print("the radio has no more tracks within its reach (raise --reach)")
    return 0


def register(sub: Any) -> None:
    from musicrec.cli import positive_int
    from musicrec.recommender.radio import RadioParams

    defaults = RadioParams()

    p = sub.add_parser("radio", help="an endless, varied playlist from seeds, an artist or a "
                                     "user", description=__doc__)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--seed", action="append", metavar="ID", help="a seed track (repeatable)")
    p.add_argument("--artist", help="seed with this artist's most listened tracks")
    p.add_argument("--user", help="seed with this user's most played tracks")
    p.add_argument("-n", type=positive_int, default=50, help="tracks to play (default 50)")
    p.add_argument("--cursor", help="continue a radio from the cursor of its --json output")
    p.add_argument("--alpha", type=float,
                   help="1 = sounds like, 0 = listeners also played (default 0.5 on a hybrid)")
    p.add_argument("--variety", type=float,
                   help="0 = always the closest next track; up to 1 = spread out (MMR; "
                        f"default {defaults.variety:g})")
    p.add_argument("--artist-window", type=positive_int,
                   help="no artist twice within this many consecutive tracks (default "
                        f"{defaults.artist_window})")
    p.add_argument("--reach", type=positive_int,
                   help="play only among the tracks this close to the seeds (default "
                        f"{defaults.reach})")
    p.add_argument("--popularity", type=float,
                   help="weight of the prior for tracks many listeners played (0 = none; "
                        f"default {defaults.popularity:g})")
    p.add_argument("--random-seed", type=int,
                   help="the same number always gives the same radio (default "
                        f"{defaults.seed})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_radio)
