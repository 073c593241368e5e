"""The ``musicrec`` command line.

Each command is a thin wrapper over the public Python API. A user's mistake prints one
line, ``musicrec: error: ...``, and exits 2; nothing prints a traceback for it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from musicrec import __version__
from musicrec.errors import MusicrecError, ParameterError

log = logging.getLogger("musicrec")

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise SystemExit(f"musicrec: error: {message}")


# -- output helpers ---------------------------------------------------------------------
def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        # NaN: a metric undefined here (novelty under cold-tracks, where every ranked
        # track has no training plays), shown as the reports show it
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def print_recommendations(recs: list[Any], catalog: Any, as_json: bool, title: str) -> None:
    if as_json:
        print_json([{**r.labelled(catalog.title), "title": catalog.title(r.track_id),
                     "artist": catalog.artists([r.track_id])[0]} for r in recs])
        return
    print(title)
    print_table(
        [(i + 1, r.track_id, _clip(catalog.label(r.track_id)), r.score,
          _clip(r.describe(catalog.title), 60))
         for i, r in enumerate(recs)],
        ("#", "track", "title", "score", "reason"),
    )


def _clip(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- commands -----------------------------------------------------------------------------
def add_log_options(p: argparse.ArgumentParser) -> None:
    """The options that name a listening log and its format (for every command reading one)."""
    from musicrec.data.readers import FORMATS

    p.add_argument("--interactions", required=True, type=Path,
                   help="listening log: a CSV/TSV/Parquet table, ListenBrainz JSON lines, "
                        "Last.fm CSV exports, Taste Profile triplets, or a folder (HetRec, "
                        "Audioscrobbler, or exports)")
    p.add_argument("--format", choices=FORMATS,
                   help="input format (default: detected where unambiguous; lastfm never is)")
    p.add_argument("--aliases", type=Path,
                   help="alias file: 'alias<TAB>canonical' track ids (chains are followed)")
    p.add_argument("--user-from", choices=["column", "filename"],
                   help="listenbrainz/lastfm: the user from each row, or from each file's "
                        "name (a folder of single-user exports; lastfm's default)")
    p.add_argument("--user-col", help="column of user ids (default: user, user_id, ...)")
    p.add_argument("--track-col", help="column of track ids (default: track, track_id, ...)")
    p.add_argument("--weight-col", help="column of play counts (default: plays, count, ...)")
    p.add_argument("--timestamp-col", help="column of play times (default: timestamp, ...)")


def load_interactions(args: argparse.Namespace) -> tuple[Any, Any]:
    """The (ListeningLog, TrackCatalog or None) named by the ``--interactions`` options."""
    from musicrec.data.readers import read_interactions

    data = read_interactions(
        args.interactions, format=args.format, aliases=args.aliases, user_from=args.user_from,
        user_col=args.user_col, track_col=args.track_col, weight_col=args.weight_col,
        timestamp_col=args.timestamp_col)
    return data.log, data.catalog


def cmd_train(args: argparse.Namespace) -> int:
    from musicrec.recommender.cf import CFModel
    from musicrec.recommender.pipeline import train_cf_model_dir

    log_, catalog = load_interactions(args)
    print(log_.report.summary(), file=sys.stderr)
    model = CFModel(
        algorithm=args.algorithm, factors=args.factors, regularization=args.regularization,
        iterations=args.iterations, alpha=args.alpha, confidence=args.confidence,
        learning_rate=args.learning_rate, random_state=args.seed, show_progress=True,
    )
    out = train_cf_model_dir(log_, args.out, catalog=catalog, model=model)
    print(f"trained {args.algorithm.upper()} on {log_.n_users} users x {log_.n_tracks} tracks "
          f"({len(log_)} pairs); model written to {out}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from musicrec.recommender.facade import Recommender

    rec = Recommender(args.model)
    recs = rec.recommend(args.user, n=args.n, exclude_played=not args.include_played,
                         exclude=args.exclude or (), max_per_artist=args.max_per_artist)
    print_recommendations(recs, rec.catalog, args.json, f"Top {len(recs)} for user {args.user}:")
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from musicrec.recommender.facade import Recommender

    rec = Recommender(args.model)
    if (args.track is None) == (args.audio is None):
        raise ParameterError("give exactly one of --track ID and --audio CLIP")
    if args.audio is not None:
        result = rec.similar_to_audio(args.audio, n=args.n, max_per_artist=args.max_per_artist)
        if args.json:
            print_json({"match": result.match,
                        "neighbours": [{**r.to_dict(), "title": rec.catalog.title(r.track_id)}
                                       for r in result.neighbours]})
            return 0
        if result.match:
            m = result.match
            print(f"Identified: {rec.catalog.label(m['track_id'])} at {m['offset_s']:.1f} s "
                  f"(confidence {m['confidence']:.2f})")
        elif result.info.get("fingerprints"):
            print("Identified: no match in the catalogue")
        print_recommendations(result.neighbours, rec.catalog, False,
                              f"Tracks that sound like {args.audio}:")
        return 0
    recs = rec.similar(args.track, n=args.n, alpha=args.alpha,
                       max_per_artist=args.max_per_artist)
    print_recommendations(recs, rec.catalog, args.json,
                          f"Tracks similar to {rec.catalog.label(args.track)}:")
    return 0


def add_cf_options(p: argparse.ArgumentParser) -> None:
    """The CF hyper-parameter options, with the model's own defaults."""
    from musicrec.recommender.cf import DEFAULTS

    p.add_argument("--algorithm", choices=["als", "bpr"], default=DEFAULTS["algorithm"])
    p.add_argument("--factors", type=positive_int, default=DEFAULTS["factors"])
    p.add_argument("--regularization", type=float, default=DEFAULTS["regularization"])
    p.add_argument("--iterations", type=positive_int, default=DEFAULTS["iterations"])
    p.add_argument("--alpha", type=float, default=DEFAULTS["alpha"],
                   help="ALS confidence scale")
    p.add_argument("--confidence", choices=["none", "log1p", "bm25"],
                   default=DEFAULTS["confidence"])
    p.add_argument("--learning-rate", type=float, default=DEFAULTS["learning_rate"],
                   help="BPR learning rate")


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _int_at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return _int_at_least(text, 0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="musicrec", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"musicrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a collaborative-filtering model on listening logs")
    add_log_options(p)
    p.add_argument("--out", required=True, type=Path, help="model directory to write")
    add_cf_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("recommend", help="recommend tracks for a user")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--user", required=True)
    p.add_argument("-n", type=positive_int, default=10)
    p.add_argument("--include-played", action="store_true",
                   help="do not exclude tracks the user already played")
    p.add_argument("--exclude", nargs="*", metavar="TRACK", help="track ids never to return")
    p.add_argument("--max-per-artist", type=positive_int, help="at most k tracks per artist")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_recommend)

    p = sub.add_parser("similar", help="tracks similar to a seed track, or to an audio clip")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--track", help="seed track id")
    p.add_argument("--audio", type=Path, help="an audio clip (query by example)")
    p.add_argument("--alpha", type=float,
                   help="1 = sounds like, 0 = listeners also played (default 0.5 on a hybrid)")
    p.add_argument("--max-per-artist", type=positive_int, help="at most k tracks per artist")
    p.add_argument("-n", type=positive_int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_similar)

    import musicrec.commands

    for info in sorted(pkgutil.iter_modules(musicrec.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"musicrec.commands.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except MusicrecError as exc:
        print(f"musicrec: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"musicrec: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musicrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
