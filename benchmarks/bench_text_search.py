"""Search by words through musicnn's tags: precision on the demo and on real recordings.

Two sets, each with queries whose relevant tracks are known without listening:

* the demo (``musicrec demo-data``): queries of instrument and style words, relevant
  tracks read from the catalogue's metadata (``midi_programs``: the General MIDI
  instruments of each track's parts; ``style``; ``tempo``). P@10 per query; "chance" is
  the share of relevant tracks, the expected P@10 of a random order.
* librosa's 14 recordings (``../shared/datasets/librosa-audio``: 8 music, 3 speech, 3
  animals), with a hand-labelled query list from each recording's description. With 1-3
  relevant recordings per query, P@10 says little, so R-precision (precision at the
  number of relevant recordings) and hit@1 are reported.

Tags come from :func:`~musicrec.embedding.batch.embed_paths` (the build's cache is
reused) and queries are scored by :class:`~musicrec.recommender.tags.TagSearch`, the code
``musicrec search`` runs::

    python benchmarks/bench_text_search.py --demo /tmp/mn_demo \\
        --librosa ../shared/datasets/librosa-audio --cache-dir /tmp/mn/cache
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

PIANO, VIOLIN, VIOLA, CELLO, STRINGS, CHOIR, VOICE = 0, 40, 41, 42, 48, 52, 53


def _programs(text: str) -> set[int]:
    return {int(p) for p in str(text).split("|") if p != ""}


#: Demo queries and the catalogue rows that are relevant to each.
DEMO_QUERIES: dict[str, Callable[[pd.Series], bool]] = {
    "piano": lambda r: _programs(r.midi_programs) == {PIANO},
    "solo piano": lambda r: _programs(r.midi_programs) == {PIANO},
    "strings": lambda r: bool(_programs(r.midi_programs) & {VIOLIN, VIOLA, CELLO, STRINGS}),
    "violin": lambda r: VIOLIN in _programs(r.midi_programs),
    "cello": lambda r: CELLO in _programs(r.midi_programs),
    "orchestral strings": lambda r: STRINGS in _programs(r.midi_programs),
    "string quartet": lambda r: r["style"] == "classical string quartet",
    "choir": lambda r: bool(_programs(r.midi_programs) & {CHOIR, VOICE}),
    "singing voices": lambda r: bool(_programs(r.midi_programs) & {CHOIR, VOICE}),
    "classical": lambda r: r["style"] in ("classical string quartet", "romantic"),
    "fast": lambda r: float(r.tempo) >= 160,
    "slow": lambda r: float(r.tempo) <= 80,
}

#: librosa recordings (file stems) relevant to each query, from their descriptions.
HUNGARIAN = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)"
RAGTIME = "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime"
SUGARPLUM = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy"
VIBE = "Kevin_MacLeod_-_Vibe_Ace"
CHOICE = "admiralbob77_-_Choice_-_Drum-bass"
TRUMPET = "sorohanro_-_solo-trumpet-06"
KARISSA = "Karissa_Hobbs_-_Lets_Go_Fishin"
HEATHER, ANDERS, GARTH = "198-209-0000", "3436-172162-0000", "5703-47212-0000"
LIBROSA_QUERIES: dict[str, set[str]] = {
    "piano": {RAGTIME},
    "ragtime piano": {RAGTIME},
    "orchestral strings": {HUNGARIAN},
    "violin": {HUNGARIAN},
    "classical music": {HUNGARIAN, SUGARPLUM},
    "drums": {CHOICE, VIBE},
    "drum and bass": {CHOICE},
    "jazz": {VIBE, TRUMPET},
    "trumpet solo": {TRUMPET},
    "female voice": {HEATHER, KARISSA},
    "male voice": {ANDERS, GARTH},
    "female singer": {KARISSA},
}


def tags_of(paths: list[Path], ids: list[str], embedder: str, cache_dir: str | None
            ) -> tuple[list[str], np.ndarray, list[str]]:
    from musicrec.embedding.batch import embed_paths
    from musicrec.embedding.registry import get_embedder

    result = embed_paths(paths, embedder=get_embedder(embedder), track_ids=ids,
                         cache_dir=cache_dir, show_progress=True)
    assert result.tags is not None
    return result.track_ids, result.tags, result.tag_names


def rank(search: object, query: str, probs: np.ndarray) -> tuple[np.ndarray, bool]:
    parsed = search.parse(query)  # type: ignore[attr-defined]
    scores = search.score(parsed, probs)  # type: ignore[attr-defined]
    return np.lexsort((np.arange(len(scores)), -scores)), parsed.weak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, help="a demo-data folder")
    parser.add_argument("--librosa", type=Path, help="../shared/datasets/librosa-audio")
    parser.add_argument("--embedders", nargs="+", default=["musicnn-mtt", "musicnn-msd"])
    parser.add_argument("--encoders", nargs="+", default=["minilm", "wordllama"])
    parser.add_argument("--tau", type=float, default=0.05)
    parser.add_argument("--cache-dir")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    from musicrec.embedding.text import get_text_encoder
    from musicrec.recommender.tags import TagSearch

    out: dict[str, dict] = {}
    for embedder in args.embedders:
        sets: dict[str, tuple[list[str], np.ndarray, list[str]]] = {}
        if args.demo is not None:
            catalog = pd.read_csv(args.demo / "catalog.csv", keep_default_na=False)
            sets["demo"] = tags_of([args.demo / p for p in catalog.audio_path],
                                   list(catalog.track_id), embedder, args.cache_dir)
        if args.librosa is not None:
            files = sorted(p for p in args.librosa.glob("*.ogg") if ".hq." not in p.name)
            sets["librosa"] = tags_of(files, [p.stem for p in files], embedder, args.cache_dir)
        for encoder in args.encoders:
            key = f"{embedder} + {encoder}"
            out[key] = {}
            for name, (ids, probs, names) in sets.items():
                search = TagSearch(names, get_text_encoder(encoder), tau=args.tau)
                rows = {}
                if name == "demo":
                    by_id = catalog.set_index("track_id")
                    for query, rule in DEMO_QUERIES.items():
                        relevant = np.array([bool(rule(by_id.loc[t])) for t in ids])
                        order, weak = rank(search, query, probs)
                        rows[query] = {"p@10": float(relevant[order[:10]].mean()),
                                       "chance": float(relevant.mean()), "weak": weak,
                                       "relevant": int(relevant.sum())}
                    summary = {m: float(np.mean([r[m] for r in rows.values()]))
                               for m in ("p@10", "chance")}
                else:
                    for query, relevant_ids in LIBROSA_QUERIES.items():
                        relevant = np.array([t in relevant_ids for t in ids])
                        order, weak = rank(search, query, probs)
                        k = int(relevant.sum())
                        rows[query] = {"r-precision": float(relevant[order[:k]].mean()),
                                       "hit@1": float(relevant[order[0]]),
                                       "chance": float(relevant.mean()), "weak": weak,
                                       "top": ids[int(order[0])]}
                    summary = {m: float(np.mean([r[m] for r in rows.values()]))
                               for m in ("r-precision", "hit@1", "chance")}
                summary["weak_queries"] = [q for q, r in rows.items() if r["weak"]]
                out[key][name] = {"summary": summary, "queries": rows}
                print(f"{key} on {name}: " + ", ".join(
                    f"{m} {v:.3f}" if isinstance(v, float) else f"{m} {v}"
                    for m, v in summary.items()))
                for query, r in rows.items():
                    print(f"    {query:20s} " + ", ".join(
                        f"{m} {v:.2f}" if isinstance(v, float) else f"{m} {v}"
                        for m, v in r.items()))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
