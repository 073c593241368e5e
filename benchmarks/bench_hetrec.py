"""HetRec 2K, random 80/20 holdout: the CF baselines against the engine's hybrid.

The hybrid's content vectors are tag vectors (TF-IDF + SVD of the tags listeners gave each
artist) built *without* the tag assignments of held-out (user, artist) pairs, which would
leak the answer. ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hetrec.py``
(add ``--ease`` for EASE, which takes one to two minutes). ``--protocol cold-tracks`` holds
out all plays of 10 % of the tagged artists with ≥ 2 listeners instead; users rank the cold
artists only.

``--served``: what ``build --cf auto`` serves against tuned baselines, in one run. The
served model is fitted on the training part (its choice made on a validation split cut from
that part only); item-kNN and EASE are then evaluated at the grid points the same
validation chose for them (EASE's λ, item-kNN's K and shrinkage: the served report's best
trial of each), beside popularity, ALS and the hybrid, with the 95 % paired-bootstrap CI of
served minus each.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import pandas as pd

from musicrec.cli import print_table
from musicrec.data.hetrec import read_hetrec, read_hetrec_tags
from musicrec.data.splits import cold_tracks, random_holdout
from musicrec.data.tags import tag_vectors
from musicrec.recommender.evaluation.runner import EvaluationResult, evaluate
from musicrec.recommender.evaluation.stats import bootstrap_indices, paired_comparison


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/hetrec2011-lastfm-2k")
    parser.add_argument("--ease", action="store_true")
    parser.add_argument("--models", help="comma-separated models instead of the default set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", choices=["random-holdout", "cold-tracks"],
                        default="random-holdout")
    parser.add_argument("--served", action="store_true",
                        help="served against validation-tuned baselines (see above)")
    args = parser.parse_args()
    data = read_hetrec(args.data)
    log = data.log
    tags = read_hetrec_tags(args.data)
    if args.protocol == "cold-tracks":
        tagged = log.tracks.to_idx_many(sorted(set(tags["track"]) & set(log.tracks)))
        split = cold_tracks(log, fraction=0.1, min_listeners=2, seed=args.seed,
                            candidates=tagged)
    else:
        split = random_holdout(log, fraction=0.2, min_history=5, seed=args.seed)
    held_out = pd.DataFrame({"user": log.users.ids[split.test.user_idx],
                             "track": log.tracks.ids[split.test.track_idx]})
    content, _ = tag_vectors(tags, log.tracks, dim=64, exclude_pairs=held_out, seed=args.seed)
    models = ["random", "popularity", "als", "itemknn", "content", "hybrid"]
    if args.protocol == "cold-tracks":
        models = ["random", "popularity", "content", "hybrid"]
    elif args.ease:
        models.insert(4, "ease")
    if args.models:
        models = args.models.split(",")
    if args.served:
        served_against_tuned(log, split, content, args.seed)
        return
    result = evaluate(log, split=split, protocol=args.protocol, models=models,
                      ks=(10, 50) if args.protocol == "cold-tracks" else (10, 20),
                      content=content,
                      seed=args.seed, show_progress=True)
    for k in result.ks:
        rows, header = result.table(k=k)
        print_table([r[:4] for r in rows], header[:4])
    print("\n95 % bootstrap CIs:")
    for name, intervals in result.intervals.items():
        cells = [f"{key} [{lo:.3f}, {hi:.3f}]" for key, (lo, hi) in intervals.items()
                 if key.split("@")[0] in ("ndcg", "recall")]
        print(f"  {name}: " + ", ".join(cells))
    print("\nndcg@10 against the best model, with a 95 % paired-bootstrap CI:")
    for c in result.comparisons:
        if c["metric"] == "ndcg@10":
            print(f"  {c['model']:<10} {c['mean_diff']:+.4f} [{c['ci_low']:+.4f}, "
                  f"{c['ci_high']:+.4f}]  p_wilcoxon={c['p_wilcoxon']:.1e}  vs {c['reference']}")


def best_params(report: dict[str, Any], model: str) -> dict[str, Any]:
    """The grid point of ``model`` with the best validation score in a served report."""
    trials = [t for t in report["trials"] if t["model"] == model]
    return dict(max(trials, key=lambda t: t["ndcg"])["params"])


def served_against_tuned(log: Any, split: Any, content: Any, seed: int) -> None:
    first = evaluate(log, split=split, models=["served"], ks=(10, 20), content=content,
                     seed=seed, show_progress=True)
    report = first.model("served").choice
    assert report is not None
    print("served's choice (validation ndcg@10):", json.dumps(report["choice"]))
    for t in report["trials"]:
        print(f"  {t['model']:<10} {json.dumps(t['params'])}  {t['ndcg']:.4f}")
    tuned = {"itemknn": best_params(report, "itemknn"), "ease": best_params(report, "ease")}
    print("tuned on served's validation split:", json.dumps(tuned))
    second = evaluate(log, split=split,
                      models=["popularity", "itemknn", "ease", "als", "hybrid"],
                      model_params=tuned, ks=(10, 20), content=content, seed=seed,
                      show_progress=True)
    results: list[EvaluationResult] = [second, first]
    rows = []
    for result in results:
        table, header = result.table(k=10)
        rows += [r[:4] for r in table]
    print_table(rows, header[:4])
    served = first.model("served")
    indices = bootstrap_indices(len(first.test_users), n_resamples=1000, seed=seed)
    print("\nndcg@10 of served minus each, 95 % paired-bootstrap CI:")
    for m in second.evaluated:
        c = paired_comparison(served.per_user["ndcg@10"], m.per_user["ndcg@10"],
                              indices=indices, seed=seed)
        lo, hi = second.intervals[m.name]["ndcg@10"]
        print(f"  {m.name:<10} {m.mean('ndcg@10'):.4f} [{lo:.3f}, {hi:.3f}]  served - it "
              f"{c.mean_diff:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}]  "
              f"p_wilcoxon={c.p_wilcoxon:.1e}  (fit {m.fit_seconds:.0f} s)")
    lo, hi = first.intervals["served"]["ndcg@10"]
    print(f"  served     {served.mean('ndcg@10'):.4f} [{lo:.3f}, {hi:.3f}]  "
          f"(fit and choice {served.fit_seconds:.0f} s)")


if __name__ == "__main__":
    main()
