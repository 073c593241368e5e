"""Nearest-neighbour libraries and the engine's index against exact numpy search.

Three tables, each with exact search as the reference in the same run; vectors are
clustered Gaussians, unit length (like embeddings: ``n / 200`` centres), and the queries
are catalogue tracks, as in "similar tracks".

``libraries``: Annoy, hnswlib, Voyager and FAISS HNSW side by side, called directly:
build time (``--threads`` threads), recall@10 against exact search, queries per second of
one thread (one query per call, as a request asks), the process memory the index adds,
its file size, and whether worker processes share it:

* *preload*: the index is loaded once in a parent that then forks two workers (gunicorn
  ``preload_app``); each worker runs queries and reports its private memory
  (``/proc/self/smaps_rollup``). Small private memory means the pages stay shared.
* *mmap*: each worker loads the file itself (no preload); the file is memory-mapped when
  the loaded index is mostly shared file pages.

``engine``: :class:`~musicrec.recommender.index.VectorIndex` per backend, as the model
directory stores it. ``facade``: a content-only model directory of ``n`` tracks answered by
:meth:`Recommender.similar` (candidates from the index plus exact re-scoring), recall@10
against exact search and queries per second of one thread, beside the rate of its index
search alone (``VectorIndex.query_candidates``, as the facade calls it); ``--profile TOP``
adds a cProfile of ``similar()`` (its TOP functions by own time)::

    nice -n 10 .venv/bin/python benchmarks/bench_index.py libraries --sizes 100000 --dim 64
    nice -n 10 .venv/bin/python benchmarks/bench_index.py engine --sizes 100000 --dim 384
    nice -n 10 .venv/bin/python benchmarks/bench_index.py facade --sizes 1000000 --dim 64

At most ``--max-gb`` of vectors plus index is allowed: larger runs are refused with the
estimate (10M 64-d vectors do not fit the 6 GB a benchmark may use here).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.recommender.index import exact_top_k, normalize_rows

K = 10


def vectors(n: int, dim: int, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors around ``n / 200`` random centres (float32, made in chunks)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 200, 8), dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        out[start:stop] = normalize_rows(
            centres[rng.integers(len(centres), size=stop - start)]
            + 0.6 * rng.standard_normal((stop - start, dim), dtype=np.float32))
    return out


def exact_truth(data: np.ndarray, queries: np.ndarray, k: int = K) -> list[set[int]]:
    """Exact top-k positions of each query (batched matrix products)."""
    truth: list[set[int]] = []
    for start in range(0, len(queries), 32):
        scores = data @ queries[start : start + 32].T
        for col in range(scores.shape[1]):
            s = scores[:, col]
            part = np.argpartition(-s, k - 1)[:k]
            truth.append(set(part.tolist()))
    return truth


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def smaps() -> dict[str, int]:
    """This process's memory by kind, in bytes (Rss, Pss, Shared_*, Private_*)."""
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


# -- the libraries, called directly --------------------------------------------------------
class Library:
    """One library: build, query one vector, save, load; ``settings`` are its search knobs."""

    name = ""

    def __init__(self, dim: int, threads: int, m: int, ef_construction: int) -> None:
        self.dim, self.threads, self.m, self.efc = dim, threads, m, ef_construction
        self.index: Any = None

    def build(self, data: np.ndarray) -> None:
        raise NotImplementedError

    def settings(self) -> list[Any]:
        raise NotImplementedError

    def set(self, setting: Any) -> None:
        self.setting = setting

    def query(self, q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: str) -> None:
        raise NotImplementedError

    def load(self, path: str) -> None:
        raise NotImplementedError

    def label(self) -> str:
        raise NotImplementedError


class AnnoyLib(Library):
    name = "annoy"

    def build(self, data: np.ndarray) -> None:
        from annoy import AnnoyIndex

        self.index = AnnoyIndex(self.dim, "angular")
        self.index.set_seed(0)
        for i, v in enumerate(data):
            self.index.add_item(i, v)
        self.index.build(20, self.threads)

    def settings(self) -> list[Any]:
        return [10, 100]  # search_k = factor * k * trees

    def query(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(self.index.get_nns_by_vector(q, K, self.setting * K * 20))

    def save(self, path: str) -> None:
        self.index.save(path)

    def load(self, path: str) -> None:
        from annoy import AnnoyIndex

        self.index = AnnoyIndex(self.dim, "angular")
        self.index.load(path)

    def label(self) -> str:
        return f"annoy trees=20 search_k={self.setting}·k·trees"


class HnswlibLib(Library):
    name = "hnswlib"

    def build(self, data: np.ndarray) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.init_index(max_elements=len(data), M=self.m, ef_construction=self.efc,
                              random_seed=0)
        self.index.add_items(data, np.arange(len(data)), num_threads=self.threads)

    def settings(self) -> list[Any]:
        return [32, 64, 128]

    def set(self, setting: Any) -> None:
        self.setting = setting
        self.index.set_ef(setting)

    def query(self, q: np.ndarray) -> np.ndarray:
        return self.index.knn_query(q, k=K, num_threads=1)[0][0]

    def save(self, path: str) -> None:
        self.index.save_index(path)

    def load(self, path: str) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.load_index(path)
        self.index.set_ef(64)

    def label(self) -> str:
        return f"hnswlib M={self.m} efC={self.efc} ef={self.setting}"


class VoyagerLib(Library):
    name = "voyager"

    def build(self, data: np.ndarray) -> None:
        import voyager

        self.index = voyager.Index(voyager.Space.InnerProduct, num_dimensions=self.dim,
                                   M=self.m, ef_construction=self.efc, random_seed=0,
                                   max_elements=len(data))
        self.index.add_items(data, np.arange(len(data)), num_threads=self.threads)

    def settings(self) -> list[Any]:
        return [32, 64, 128]

    def query(self, q: np.ndarray) -> np.ndarray:
        return self.index.query(q, k=K, query_ef=self.setting)[0]

    def save(self, path: str) -> None:
        self.index.save(path)

    def load(self, path: str) -> None:
        import voyager

        self.index = voyager.Index.load(path)

    def label(self) -> str:
        return f"voyager M={self.m} efC={self.efc} ef={self.setting}"


class FaissLib(Library):
    name = "faiss"

    def build(self, data: np.ndarray) -> None:
        import faiss

        faiss.omp_set_num_threads(self.threads)
        self.index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(data)
        faiss.omp_set_num_threads(1)

    def settings(self) -> list[Any]:
        return [32, 64, 128]

    def set(self, setting: Any) -> None:
        self.setting = setting
        self.index.hnsw.efSearch = setting

    def query(self, q: np.ndarray) -> np.ndarray:
        return self.index.search(q[None, :], K)[1][0]

    def save(self, path: str) -> None:
        import faiss

        faiss.write_index(self.index, path)

    def load(self, path: str) -> None:
        import faiss

        faiss.omp_set_num_threads(1)
        # IO_FLAG_MMAP_IFC maps the file in place (vectors and graph) instead of reading it.
        self.index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)

    def label(self) -> str:
        return f"faiss HNSWFlat M={self.m} efC={self.efc} ef={self.setting}"


LIBRARIES: dict[str, type[Library]] = {c.name: c for c in (AnnoyLib, HnswlibLib, VoyagerLib,
                                                            FaissLib)}


def per_thread_qps(query: Callable[[np.ndarray], Any], queries: np.ndarray,
                   seconds: float = 2.0) -> float:
    """Single-vector queries per CPU-second of this thread, over at least ``seconds``.

    CPU time, not wall time: the machine is shared, and other processes' load would
    otherwise count against the index (the rate is "queries/s per core").
    """
    done, start = 0, time.thread_time()
    while True:
        for q in queries:
            query(q)
        done += len(queries)
        elapsed = time.thread_time() - start
        if elapsed >= seconds:
            return done / elapsed


def recall(found: list[np.ndarray], truth: list[set[int]]) -> float:
    return float(np.mean([len(t & set(np.asarray(f).tolist())) / K
                          for f, t in zip(found, truth, strict=True)]))


def share_probe(lib: str, path: str, dim: int, preload: bool) -> dict[str, Any]:
    """Two forked workers query an index (loaded before the fork, or by each worker)."""
    library = LIBRARIES[lib](dim, 1, 16, 100)
    queries = vectors(2000, dim, seed=5)
    os.sync()  # a file just written is dirty in the page cache, and would count as private
    before = smaps()
    if preload:
        library.load(path)
        library.set(library.settings()[0])
    loaded = smaps()
    pipes = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            if not preload:
                library.load(path)
                library.set(library.settings()[0])
            for q in queries:
                library.query(q)
            info = smaps()
            os.write(write, json.dumps(info).encode())
            os._exit(0)
        os.close(write)
        pipes.append((pid, read))
    workers = []
    for pid, read in pipes:
        with os.fdopen(read) as f:
            workers.append(json.loads(f.read()))
        os.waitpid(pid, 0)
    private = max(w.get("Private_Dirty", 0) for w in workers)  # copied on write
    return {"loaded_in_parent_mb": (loaded["Rss"] - before["Rss"]) / 2**20,
            "worker_private_mb": private / 2**20,
            "worker_rss_mb": max(w["Rss"] for w in workers) / 2**20,
            # heap a worker holds beyond its parent's: ~0 when the index is mmap'd
            "worker_heap_mb": max(w["Anonymous"] - loaded["Anonymous"] for w in workers) / 2**20}


def probe(lib: str, path: str, dim: int, preload: bool) -> dict[str, Any]:
    """Run :func:`share_probe` in a fresh interpreter (so the bench's own pages do not count)."""
    out = subprocess.run([sys.executable, __file__, "_probe", lib, path, str(dim),
                          "preload" if preload else "each"], capture_output=True, text=True,
                         check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def check_size(n: int, dim: int, copies: float, max_gb: float) -> None:
    need = n * dim * 4 * copies / 2**30
    if need > max_gb:
        sys.exit(f"{n:,} x {dim}-d needs about {need:.1f} GB (vectors and index), more than "
                 f"--max-gb {max_gb}")


def run_libraries(args: argparse.Namespace) -> None:
    print(f"| tracks | dim | library, setting | build ({args.threads} threads) | recall@10 | "
          "queries per CPU-second, 1 thread | index RAM | file | worker private after preload | "
          "loaded by each worker: heap per worker |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in args.sizes:
        check_size(n, args.dim, 2.3, args.max_gb)
        data = vectors(n, args.dim)
        queries = data[np.random.default_rng(1).choice(n, args.queries, replace=False)]
        start = time.thread_time()
        truth = exact_truth(data, queries)
        exact_qps = len(queries) / (time.thread_time() - start)
        single = per_thread_qps(lambda q, d=data: exact_top_k(d, q, K), queries[:50], 1.0)
        print(f"| {n:,} | {args.dim} | exact numpy (batched 32 / single) | – | 1.000 | "
              f"{exact_qps:,.0f} / {single:,.0f} | – | – | – | – |", flush=True)
        for name in args.libraries:
            library = LIBRARIES[name](args.dim, args.threads, args.m, args.ef_construction)
            gc.collect()
            rss = rss_bytes()
            start = time.perf_counter()
            library.build(data)
            build = time.perf_counter() - start
            ram = (rss_bytes() - rss) / 2**20
            with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                path = str(Path(tmp) / f"index.{name}")
                library.save(path)
                size = os.path.getsize(path) / 2**20
                shared = probe(name, path, args.dim, preload=True)
                each = probe(name, path, args.dim, preload=False)
            for setting in library.settings():
                library.set(setting)
                found = [library.query(q) for q in queries]
                qps = per_thread_qps(library.query, queries)
                print(f"| {n:,} | {args.dim} | {library.label()} | {build:.1f} s | "
                      f"{recall(found, truth):.3f} | {qps:,.0f} | {ram:,.0f} MB | "
                      f"{size:,.0f} MB | {shared['worker_private_mb']:.0f} MB of "
                      f"{shared['worker_rss_mb']:.0f} MB | "
                      f"{each['worker_heap_mb']:,.0f} MB |", flush=True)
            del library
            gc.collect()


# -- the engine: VectorIndex per backend, and the facade over a model directory -----------
def run_engine(args: argparse.Namespace) -> None:
    from musicrec.recommender.index import VectorIndex

    print(f"| tracks | dim | VectorIndex | build ({args.threads} threads) | recall@10 | "
          "recall@10, 100 candidates re-scored | queries per CPU-second (k=10 / k=100) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in args.sizes:
        check_size(n, args.dim, 2.3, args.max_gb)
        data = vectors(n, args.dim)
        ids = np.array([f"t{i}" for i in range(n)])
        rows = np.random.default_rng(1).choice(n, args.queries, replace=False)
        queries = data[rows]
        truth = exact_truth(data, queries)
        for backend in args.backends:
            start = time.perf_counter()
            index = VectorIndex(args.dim, backend=backend, threads=args.threads).add_items(
                data, ids)
            build = time.perf_counter() - start
            found = [index.query_positions(q, K)[0] for q in queries]
            rescored = []
            for q in queries:
                pos, _ = index.query_positions(q, 100)
                rescored.append(pos[np.argsort(-(data[pos] @ q), kind="stable")[:K]])
            qps = per_thread_qps(lambda q, i=index: i.query_positions(q, K), queries)
            qps100 = per_thread_qps(lambda q, i=index: i.query_positions(q, 100), queries)
            print(f"| {n:,} | {args.dim} | {backend} {index.params} | {build:.1f} s | "
                  f"{recall(found, truth):.3f} | {recall(rescored, truth):.3f} | "
                  f"{qps:,.0f} / {qps100:,.0f} |", flush=True)
            del index
            gc.collect()


def profile(work: Callable[[], Any], top: int) -> None:
    """cProfile of ``work()`` in CPU time: the ``top`` functions by their own time, as a table."""
    import cProfile
    import pstats

    prof = cProfile.Profile(time.thread_time)  # CPU time: the machine is shared
    prof.enable()
    work()
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    print("\n| function | calls | own time | share |\n| --- | --- | --- | --- |")
    for (file, line, name), (_, calls, own, _, _) in rows:
        where = name if file == "~" else f"{Path(file).name}:{line} {name}"
        print(f"| `{where}` | {calls:,} | {own:.3f} s | {own / total:.0%} |")
    print(flush=True)


def run_facade(args: argparse.Namespace) -> None:
    from musicrec.recommender.facade import Recommender
    from musicrec.recommender.hybrid import HybridModel
    from musicrec.recommender.model_dir import write_hybrid_model_dir

    print(f"| tracks | dim | backend | build ({args.threads} threads) | manifest recall@10 | "
          "similar(): recall@10 | similar(): queries per CPU-second | "
          "its index search alone, per CPU-second |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in args.sizes:
        check_size(n, args.dim, 3.5, args.max_gb)
        data = vectors(n, args.dim)
        ids = [f"t{i:07d}" for i in range(n)]
        hybrid = HybridModel().blend(cf=None, content_ids=ids, content=data)
        rows = np.random.default_rng(1).choice(n, args.queries, replace=False)
        # Exact truth of similar(alpha=1): the content cosine, the seed itself excluded.
        truth = [set(p.tolist()) - {int(r)} for p, r in
                 zip((exact_top_k(data, data[r], K + 1)[0] for r in rows), rows, strict=True)]
        for backend in args.backends:
            with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                model = (Path(args.keep) / f"facade-{n}-{args.dim}-{backend}" if args.keep
                         else Path(tmp) / "model")
                start = time.perf_counter()
                if not model.exists():
                    # ef_search as low as the fewest candidates: each run's ef is then its
                    # own candidate count (HNSW searches with ef = max(ef_search, candidates)).
                    write_hybrid_model_dir(model, hybrid=hybrid, index=backend,
                                           threads=args.threads, layout=False,
                                           index_params={"ef_search": min(args.candidates)}
                                           if backend == "hnsw" else None)
                build = time.perf_counter() - start
                for candidates in args.candidates:
                    rec = Recommender(model, candidates=candidates)
                    seeds = [ids[r] for r in rows]
                    found = [rec.tracks.to_idx_many([x.track_id for x in rec.similar(s, n=K)])
                             for s in seeds]
                    got = float(np.mean([len(t & set(f.tolist())) / len(t)
                                         for f, t in zip(found, truth, strict=True)]))
                    qps = per_thread_qps(lambda s, r=rec: r.similar(s, n=K), seeds, 3.0)
                    # The index alone, as the facade calls it, for the facade's own share.
                    index = rec.content_index
                    k = rec._k(K)
                    # (query_positions where the code predates query_candidates: "before")
                    search = getattr(index, "query_candidates", index.query_positions)
                    alone = per_thread_qps(lambda q, f=search, k=k: f(q, k), data[rows], 3.0)
                    stored = rec.manifest["index"]["index_recall_at_10"].get("content")
                    print(f"| {n:,} | {args.dim} | {rec.manifest['index']['backend']}, "
                          f"{candidates} candidates | {build:.1f} s | {stored} | {got:.3f} | "
                          f"{qps:,.0f} | {alone:,.0f} |", flush=True)
                    if args.profile:
                        profile(lambda r=rec, many=seeds * 10: [r.similar(s, n=K) for s in many],
                                args.profile)
                    rec = None  # type: ignore[assignment]
                    gc.collect()


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "_probe":
        print(json.dumps(share_probe(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                     sys.argv[5] == "preload")))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["libraries", "engine", "facade"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="build threads")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES),
                        choices=list(LIBRARIES))
    parser.add_argument("--backends", nargs="+", default=["annoy", "hnsw"])
    parser.add_argument("--candidates", type=int, nargs="+", default=[100],
                        help="facade: candidates per index query (100 is the default)")
    parser.add_argument("--m", type=int, default=16, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--max-gb", type=float, default=6.0)
    parser.add_argument("--tmp", default=None, help="folder for index files")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="facade: also print a cProfile of similar() (TOP functions)")
    parser.add_argument("--keep", default=None,
                        help="facade: keep each model directory in this folder and reuse it "
                             "when it is already there (its build time then shows as ~0)")
    args = parser.parse_args()
    {"libraries": run_libraries, "engine": run_engine, "facade": run_facade}[args.what](args)


if __name__ == "__main__":
    main()
