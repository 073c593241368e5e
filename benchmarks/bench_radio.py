"""The radio's knobs chosen on validation sessions, and its speed.

``.venv/bin/python benchmarks/bench_radio.py --data demo/data --model demo/model``

Validation never sees the test sessions of ``musicrec evaluate --protocol sessions``:
every user's last session is dropped first, and the protocol then holds out each user's
last *remaining* session. The baselines are printed once, then the radio for each
setting of the grid (artist window x variety x seed weight x popularity prior). Speed:
the median time of one radio page (n=10 and n=50) from random seed tracks on the model.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from musicrec.commands.evaluate import read_content
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import PlayEvents, read_play_events
from musicrec.data.sessions import cut_sessions
from musicrec.recommender.evaluation.sessions import METHODS, METRICS, evaluate_sessions
from musicrec.recommender.facade import Recommender


def validation_events(events: PlayEvents) -> PlayEvents:
    """The plays without each user's last session (the test sessions' superset)."""
    frame = events.frame
    session = cut_sessions(frame["user"].to_numpy(), frame["timestamp"].to_numpy())
    last = pd.Series(session).groupby(frame["user"].to_numpy()).transform("max").to_numpy()
    return PlayEvents(frame.loc[session != last].reset_index(drop=True), events.report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="plays.csv's folder")
    parser.add_argument("--model", type=Path, required=True, help="its model directory")
    parser.add_argument("--windows", default="3,4")
    parser.add_argument("--varieties", default="0.1,0.3")
    parser.add_argument("--seed-weights", default="0.5,0.9")
    parser.add_argument("--popularity", default="0,0.5")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    events = validation_events(read_play_events(args.data / "plays.csv"))
    catalog = TrackCatalog.load(args.model / "catalog.parquet")
    ids = list(dict.fromkeys([*events.frame["track"].tolist(), *catalog.track_ids]))
    content = read_content(args.model, np.asarray(ids))

    def run(methods: list[str], options: dict[str, float]) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-radio-"))
        try:
            result = evaluate_sessions(events, content_ids=ids, content=content,
                                       catalog=catalog, methods=methods, n_bootstrap=200,
                                       radio_options=options, model_dir=tmp / "model")
        finally:
            shutil.rmtree(tmp)
        for method in methods:
            label = method if method != "radio" else "radio " + " ".join(
                f"{k}={v:g}" for k, v in options.items())
            print(f"| {label} | " + " | ".join(f"{result.mean(method, m):.3f}"
                                               for m in METRICS) + " |", flush=True)

    print(f"validation: {len(events.frame)} plays\n")
    print("| method | " + " | ".join(f"{m}@10" for m in METRICS) + " |")
    print("|" + " --- |" * (len(METRICS) + 1))
    run([m for m in METHODS if m != "radio"], {})
    floats = [[float(x) for x in text.split(",")] for text in
              (args.varieties, args.seed_weights, args.popularity)]
    for window, variety, seed_weight, popularity in itertools.product(
            [int(x) for x in args.windows.split(",")], *floats):
        run(["radio"], {"artist_window": window, "variety": variety,
                        "seed_weight": seed_weight, "popularity": popularity})

    rec = Recommender(args.model)
    rng = np.random.default_rng(0)
    for n in (10, 50):
        times = []
        for seed in rng.choice(len(rec.tracks), args.repeats, replace=False):
            started = time.perf_counter()
            rec.radio([rec.tracks.to_id(int(seed))], n=n)
            times.append(time.perf_counter() - started)
        print(f"radio page of {n} from one seed track ({len(rec.tracks)} tracks): median "
              f"{1000 * statistics.median(times):.1f} ms over {args.repeats} seeds")


if __name__ == "__main__":
    main()
