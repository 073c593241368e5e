"""Similar tracks from the chosen model against the factor cosine, on held-out plays.

The item-to-item protocol: a per-user random holdout (``fraction`` of each user's tracks,
users with at least ``min_history``, as ``musicrec evaluate --protocol random-holdout``).
A model directory is built from the training part as ``musicrec build --cf auto`` builds
it (ALS with seed ``--seed``, the model chosen on validation of the training part only,
and content vectors when given). For each test user the seed is their most played
training track (ties: the lowest track index); ``similar(seed, n=10, alpha)`` excludes the
user's other training tracks, and its hits are the user's held-out tracks. Per user:
hit rate@10, NDCG@10 (binary relevance, IDCG over min(10, |held out|)) and recall@10
(hits / |held out|); means with 95 % percentile-bootstrap CIs over users, and the paired
difference of the chosen model's similarity (``Recommender(similarity="served")``) minus
the factor cosine (``similarity="factors"``, what similar tracks served before) on the
same users and the same model directory. Each call's CPU time (``time.process_time``, so
other load on the machine hardly moves it) is reported as a median.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_similar.py \\
        --interactions demo/data/plays.csv --content demo/model --alphas 0,0.5
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_similar.py \\
        --hetrec ../shared/datasets/hetrec2011-lastfm-2k [--tags] --alphas 0

``--sessions plays.csv --content DIR`` instead runs the session-continuation protocol
(``musicrec evaluate --protocol sessions``) twice on the same held-out sessions: built
without a chosen model (the factor cosine) and with one (``build --cf auto``), for the
radio and the top 10 similar to the last seed, with paired bootstrap CIs of the
differences.

``--cost DIR`` instead times ``similar(n=10)`` on an existing model directory (``make
demo``'s, say) for random seed tracks, both similarities in alternating passes: CPU
microseconds per call (median and 99th percentile).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from musicrec.data.logs import ListeningLog, read_log
from musicrec.data.splits import random_holdout
from musicrec.recommender import metrics as M
from musicrec.recommender.cf import CFModel
from musicrec.recommender.evaluation.stats import (
    bootstrap_ci,
    bootstrap_indices,
    paired_comparison,
)
from musicrec.recommender.facade import Recommender
from musicrec.recommender.pipeline import build_model_dir
from musicrec.recommender.served import ServedModel

K = 10
METRICS = ("hit_rate", "ndcg", "recall")


def load(args: argparse.Namespace) -> tuple[ListeningLog, list[str] | None, np.ndarray | None,
                                            str]:
    if args.hetrec:
        from musicrec.data.hetrec import read_hetrec

        return read_hetrec(args.hetrec).log, None, None, "HetRec 2K"
    log = read_log(args.interactions)
    if args.content is None:
        return log, None, None, str(args.interactions)
    from musicrec.commands.evaluate import read_content

    ids = np.asarray(log.tracks.ids, dtype=str)
    return log, list(ids), read_content(args.content, ids), str(args.interactions)


def cost(model: Path, alphas: list[float], calls: int, seed: int) -> None:
    """CPU per ``similar(n=10)`` call on ``model``, each similarity, alternating passes."""
    recs = {"factors": Recommender(model, similarity="factors"), "served": Recommender(model)}
    if recs["served"].chosen_similarity is None:
        raise SystemExit(f"{model} has no chosen model (served/): nothing to compare")
    tracks = recs["served"].tracks
    seeds = tracks.ids[np.random.default_rng(seed).integers(len(tracks), size=calls)]
    print(f"{model}: {len(tracks)} tracks; chosen: "
          f"{json.dumps(recs['served'].manifest['served']['choice'])}")
    times: dict[tuple[str, float], list[float]] = {}
    for round_ in range(3):
        for kind, rec in list(recs.items())[:: 1 if round_ % 2 == 0 else -1]:
            for alpha in alphas:
                for track in seeds:
                    t0 = time.process_time()
                    rec.similar(str(track), n=K, alpha=alpha)
                    times.setdefault((kind, alpha), []).append(time.process_time() - t0)
    print("| similarity | α | CPU µs / call, median | p99 |\n| --- | --- | --- | --- |")
    for (kind, alpha), values in times.items():
        micros = 1e6 * np.asarray(values)
        print(f"| {kind} | {alpha:g} | {np.median(micros):.0f} | "
              f"{np.percentile(micros, 99):.0f} |")


def sessions(plays: Path, content_dir: Path, seed: int, n_bootstrap: int) -> None:
    """The session protocol without and with the chosen model, paired by session."""
    from musicrec.commands.evaluate import read_content
    from musicrec.data.catalog import TrackCatalog
    from musicrec.data.logs import read_play_events
    from musicrec.recommender.evaluation.sessions import METRICS as SESSION_METRICS
    from musicrec.recommender.evaluation.sessions import evaluate_sessions

    events = read_play_events(plays)
    catalog = TrackCatalog.load(content_dir / "catalog.parquet")
    ids = list(dict.fromkeys([*events.frame["track"].tolist(), *catalog.track_ids]))
    content = read_content(content_dir, np.asarray(ids))
    methods = ["radio", "similar-last"]
    results = {kind: evaluate_sessions(events, content_ids=ids, content=content,
                                       catalog=catalog, methods=methods, seed=seed,
                                       n_bootstrap=n_bootstrap,
                                       served=ServedModel(random_state=seed)
                                       if kind == "served" else None)
               for kind in ("factors", "served")}
    n = len(results["served"].per_session["radio"]["hit_rate"])
    print(f"{plays}: {n} held-out sessions\n")
    print("| method | similarity | " + " | ".join(f"{m}@10" for m in SESSION_METRICS) + " |")
    print("|" + " --- |" * (len(SESSION_METRICS) + 2))
    for method in methods:
        for kind, result in results.items():
            cells = [f"{result.mean(method, m):.3f} [{result.intervals[method][m][0]:.3f}, "
                     f"{result.intervals[method][m][1]:.3f}]" for m in SESSION_METRICS]
            print(f"| {method} | {kind} | " + " | ".join(cells) + " |")
    indices = bootstrap_indices(n, n_resamples=n_bootstrap, seed=seed)
    print("\nchosen − factor cosine, 95 % paired bootstrap CI (Wilcoxon p):")
    for method in methods:
        for metric in SESSION_METRICS:
            c = paired_comparison(results["served"].per_session[method][metric],
                                  results["factors"].per_session[method][metric],
                                  indices=indices, seed=seed)
            print(f"  {method} {metric}@10: {c.mean_diff:+.3f} [{c.ci_low:+.3f}, "
                  f"{c.ci_high:+.3f}] (p={c.p_wilcoxon:.1e})")


def _unscaled(row: np.ndarray, seed: int) -> np.ndarray | None:
    """``similarity._scaled`` without the scaling (the ``--unscaled`` ablation): the
    member's own values, the seed given the best of them; None without a positive one."""
    others = np.delete(row, seed)
    top = float(others.max()) if len(others) else 0.0
    if not top > 0:
        return None
    out = row.copy()
    out[seed] = top
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sessions", type=Path, metavar="PLAYS",
                        help="the session protocol on this timestamped log (with --content)")
    source.add_argument("--cost", type=Path, metavar="DIR",
                        help="only time similar() on this model directory")
    source.add_argument("--interactions", type=Path, help="a listening log (plays.csv)")
    source.add_argument("--hetrec", type=Path, help="the HetRec 2011 Last.fm 2K folder")
    parser.add_argument("--content", type=Path, help="content vectors (a model directory, "
                        "an embedding file) for --interactions")
    parser.add_argument("--tags", action="store_true", help="HetRec: tag vectors as content "
                        "(built without the held-out pairs' tags)")
    parser.add_argument("--alphas", default="0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the per-method results here")
    parser.add_argument("--calls", type=int, default=2000, help="--cost: seeds per pass")
    parser.add_argument("--unscaled", action="store_true", help="ablation: the chosen "
                        "model's raw similarity values, without scaling each seed's best "
                        "neighbour to 1")
    parser.add_argument("--each", action="store_true", help="also serve each candidate of "
                        "the default grid alone (its best grid point on validation), to "
                        "compare every kind of similarity with the factor cosine")
    args = parser.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    if args.unscaled:
        from musicrec.recommender import similarity

        similarity._scaled = _unscaled  # type: ignore[assignment]
    if args.cost:
        cost(args.cost, alphas, args.calls, args.seed)
        return
    if args.sessions:
        if args.content is None:
            parser.error("--sessions needs --content (a model directory: vectors, artists)")
        sessions(args.sessions, args.content, args.seed, args.bootstrap)
        return

    log, content_ids, content, name = load(args)
    split = random_holdout(log, fraction=0.2, min_history=5, seed=args.seed)
    if args.hetrec and args.tags:
        from musicrec.data.hetrec import read_hetrec_tags
        from musicrec.data.tags import tag_vectors

        held_out = pd.DataFrame({"user": log.users.ids[split.test.user_idx],
                                 "track": log.tracks.ids[split.test.track_idx]})
        content, _ = tag_vectors(read_hetrec_tags(args.hetrec), log.tracks, dim=64,
                                 exclude_pairs=held_out, seed=args.seed)
        content_ids = list(log.tracks.ids)
    train = split.train.to_csr()
    users = np.unique(split.test.user_idx)
    with tempfile.TemporaryDirectory(prefix="bench-similar-") as tmp:
        started = time.perf_counter()
        out = build_model_dir(Path(tmp) / "m", log=split.train, content_ids=content_ids,
                              content=content, cf_model=CFModel(random_state=args.seed),
                              served=ServedModel(random_state=args.seed))
        build_s = time.perf_counter() - started
        recs = {"factors": Recommender(out, similarity="factors"),
                "served": Recommender(out)}
        choice = recs["served"].manifest["served"]["choice"]
        if args.each:
            from musicrec.recommender.served import DEFAULT_GRIDS

            for candidate, grid in DEFAULT_GRIDS.items():
                forced = ServedModel(grids={candidate: grid}, blend_weights=[],
                                     random_state=args.seed)
                recs[candidate] = Recommender(build_model_dir(
                    Path(tmp) / candidate, log=split.train, content_ids=content_ids,
                    content=content, cf_model=CFModel(random_state=args.seed),
                    served=forced))
        tracks = recs["served"].tracks
        order = np.argsort(split.test.user_idx, kind="stable")
        bounds = np.searchsorted(split.test.user_idx[order], np.append(users, log.n_users))
        per: dict[str, dict[str, list[float]]] = {}
        seconds: dict[str, list[float]] = {}
        for i, u in enumerate(users):
            lo, hi = train.indptr[u], train.indptr[u + 1]
            played, plays = train.indices[lo:hi], train.data[lo:hi]
            seed = int(played[np.lexsort((played, -plays))[0]])
            seed_id = str(log.tracks.ids[seed])
            others = [str(t) for t in log.tracks.ids[played] if t != seed_id]
            held = log.tracks.ids[split.test.track_idx[order[bounds[i]:bounds[i + 1]]]]
            truth = set(tracks.to_idx_many([str(t) for t in held]).tolist())
            for alpha in alphas:
                for kind, rec in recs.items():
                    t0 = time.process_time()
                    found = rec.similar(seed_id, n=K, alpha=alpha, exclude=others)
                    seconds.setdefault(f"{kind} α={alpha:g}", []).append(
                        time.process_time() - t0)
                    ranked = tracks.to_idx_many([r.track_id for r in found])
                    values = per.setdefault(f"{kind} α={alpha:g}", {m: [] for m in METRICS})
                    values["hit_rate"].append(M.hit_rate_at_k(ranked, truth, K))
                    values["ndcg"].append(M.ndcg_at_k(ranked, truth, K))
                    values["recall"].append(M.recall_at_k(ranked, truth, K))
    indices = bootstrap_indices(len(users), n_resamples=args.bootstrap, seed=args.seed)
    print(f"{name}: {len(users)} test users, {len(tracks)} tracks; build {build_s:.1f} s; "
          f"chosen: {json.dumps(choice)}\n")
    print(f"| similarity | α | hit rate@{K} | NDCG@{K} | recall@{K} | CPU µs / call, median |")
    print("| --- | --- | --- | --- | --- | --- |")
    results: dict[str, dict[str, object]] = {}
    for label, values in per.items():
        cells = []
        results[label] = {}
        for metric in METRICS:
            array = np.asarray(values[metric])
            low, high = bootstrap_ci(array, indices=indices)
            cells.append(f"{array.mean():.4f} [{low:.4f}, {high:.4f}]")
            results[label][metric] = {"mean": float(array.mean()), "ci": [low, high]}
        kind, alpha = label.split(" α=")
        micros = 1e6 * float(np.median(seconds[label]))
        results[label]["median_us"] = micros
        print(f"| {kind} | {alpha} | " + " | ".join(cells) + f" | {micros:.0f} |")
    print("\nchosen − factor cosine, 95 % paired bootstrap CI (Wilcoxon p):")
    for kind in [k for k in recs if k != "factors"]:
        for alpha in alphas:
            for metric in METRICS:
                a = np.asarray(per[f"{kind} α={alpha:g}"][metric])
                b = np.asarray(per[f"factors α={alpha:g}"][metric])
                c = paired_comparison(a, b, indices=indices, seed=args.seed)
                print(f"  {kind} α={alpha:g} {metric}@{K}: {c.mean_diff:+.4f} "
                      f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}] (p={c.p_wilcoxon:.1e})")
                results[f"{kind} α={alpha:g}"][f"{metric}_diff"] = c.to_dict()
    if args.json:
        args.json.write_text(json.dumps({"data": name, "users": int(len(users)),
                                         "choice": choice, "results": results}, indent=1))


if __name__ == "__main__":
    main()
