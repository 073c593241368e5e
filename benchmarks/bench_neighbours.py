"""Item-item neighbour models tuned on validation, then tested: item-kNN and RP3beta.

Protocol: HetRec 2K (or any log), per-user random 80/20 holdout (seed 0). The training
part is split again the same way (seed 1) into fit and validation; every grid point is
fitted on the fit part and scored on validation (NDCG@10). The best setting of each model
is then refitted on the whole training part and tested beside popularity, the previous
item-kNN setting (K=100, no shrinkage) and, with ``--ease``, EASE (λ=200). Test users and
test pairs are never seen while choosing.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_neighbours.py [--ease]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

from musicrec.cli import print_table
from musicrec.data.hetrec import read_hetrec
from musicrec.data.splits import random_holdout
from musicrec.recommender.evaluation.runner import evaluate

GRIDS = {
    "itemknn": {"k": [50, 100, 200, 400], "shrink": [0.0, 10.0, 50.0],
                "confidence": ["none", "log1p"]},
    "rp3beta": {"k": [100, 200, 400], "alpha": [0.5, 0.8, 1.0], "beta": [0.0, 0.2, 0.4]},
}


def ndcg10(result: object) -> float:
    rows, header = result.table(k=10)  # type: ignore[attr-defined]
    return float(rows[0][header.index("ndcg@10")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/hetrec2011-lastfm-2k")
    parser.add_argument("--ease", action="store_true")
    args = parser.parse_args()
    log = read_hetrec(args.data).log
    split = random_holdout(log, fraction=0.2, min_history=5, seed=0)
    inner = random_holdout(split.train, fraction=0.2, min_history=5, seed=1)
    chosen: dict[str, dict[str, object]] = {}
    for model, grid in GRIDS.items():
        best, best_score = None, -1.0
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            started = time.perf_counter()
            result = evaluate(split.train, split=inner, models=[model], ks=(10,),
                              model_params={model: params}, n_bootstrap=1)
            score = ndcg10(result)
            print(json.dumps({"model": model, **params, "validation_ndcg@10": round(score, 4),
                              "seconds": round(time.perf_counter() - started, 1)}),
                  flush=True)
            if score > best_score:
                best, best_score = params, score
        assert best is not None
        chosen[model] = best
    print("chosen on validation:", json.dumps(chosen), flush=True)
    models = ["popularity", "itemknn", "rp3beta"]
    params = dict(chosen)
    if args.ease:
        models.append("ease")
    result = evaluate(log, split=split, models=models, ks=(10, 20), model_params=params,
                      seed=0)
    rows, header = result.table(k=10)
    columns = [header.index(c) for c in ("model", "ndcg@10", "precision@10", "recall@10")]
    print_table([[r[c] for c in columns] for r in rows], [header[c] for c in columns])
    plain = evaluate(log, split=split, models=["itemknn"], ks=(10,),
                     model_params={"itemknn": {"k": 100, "shrink": 0.0}}, n_bootstrap=1)
    print("item-kNN K=100, no shrinkage, log1p (the previous setting):",
          round(ndcg10(plain), 4))
    for name, intervals in result.intervals.items():
        print(f"  {name}: ndcg@10 95 % CI {intervals['ndcg@10']}")


if __name__ == "__main__":
    main()
