"""Batch embedding on Ray: the local pipeline of :mod:`musicrec.embedding.batch`, spread
over a cluster (or a local Ray runtime) as a Ray Data pipeline.

The stages are:

1. **list** the files (:func:`~musicrec.embedding.batch.scan_folder` or a catalogue, exactly
   as :func:`~musicrec.embedding.batch.embed_catalog` does);
2. **look up** each file in the cache (stateless CPU tasks): its sha256 is the same cache
   key as the local path, so vectors already embedded, locally or on Ray, are reused;
3. **decode and embed** the rest in an actor pool, one model per actor, each actor taking
   a GPU when the cluster has one; the actor runs
   :func:`~musicrec.embedding.batch.embed_paths` on its batch, so decoding, the
   one-by-one retry of a failing batch and every :class:`Failure` kind and reason are the
   local code's; new vectors are written to the cache. Asked for fingerprints
   (``fingerprint_params``, as ``build --engine ray`` does), the actor decodes each track
   once for its vector and its fingerprint, as the local path does
   (:func:`~musicrec.embedding.batch.decode_once`); a track whose vector is cached is
   decoded for its fingerprint alone;
4. **write** Parquet shards, which the driver merges into one :class:`EmbeddingResult`
   (fingerprints travel in the shards as three columns: hashes, anchor times, duration).

Ray is an optional extra (``pip install 'musicrec[ray]'``); without it every entry point
raises :class:`RayNotInstalledError`. The cache folder and the audio files must be
readable (and the cache writable) by every node: on a cluster, a shared file system.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import resolve_cache_dir
from musicrec.embedding.batch import (
    EmbeddingCache,
    EmbeddingResult,
    Failure,
    decode_once,
    embed_paths,
    read_catalog_paths,
    scan_folder,
)
from musicrec.embedding.registry import get_embedder
from musicrec.errors import MusicrecError, ParameterError
from musicrec.storage import file_sha256

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'musicrec[ray]'"

#: Columns of every shard (and of every batch between the stages).
_SHARD_COLUMNS = ("idx", "track_id", "path", "sha", "status", "embedding", "silent", "kind",
                  "reason", "fp_hashes", "fp_times", "fp_duration")
#: The fingerprint's columns: list<uint32> hashes and anchor times, float64 duration (NaN
#: and empty lists: no fingerprint).
_FP_COLUMNS = ("fp_hashes", "fp_times", "fp_duration")


class RayNotInstalledError(MusicrecError, ImportError):
    """``--engine ray`` was asked for, but Ray (``ray[data]``) is not installed."""


def import_ray() -> Any:
    """``ray`` with ``ray.data`` imported, or :class:`RayNotInstalledError`."""
    try:
        with warnings.catch_warnings():
            # ray.data's DataContext sets a deprecated field of its own on creation
            warnings.simplefilter("ignore", DeprecationWarning)
            import ray
            import ray.data

            ray.data.DataContext.get_current()
    except ImportError as exc:
        raise RayNotInstalledError(
            f"the Ray engine needs Ray, which is not installed ({exc}); install it with "
            f"{INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_runtime(*, address: str | None = None, num_cpus: int | None = 2,
                quiet: bool = True) -> Iterator[Any]:
    """Yield ``ray``, connected: to ``address`` (a cluster) or to a new local runtime.

    A runtime that is already connected is used as is and left running; one started here
    is shut down on exit. The local runtime has ``num_cpus`` CPUs and no dashboard.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not quiet,
                                   "logging_level": logging.WARNING if quiet else logging.INFO}
        if address is None:
            options["num_cpus"] = num_cpus
        else:
            options["address"] = address
        try:
            ray.init(**options)
        except ConnectionError as exc:
            raise ParameterError(f"address={address!r}: cannot join the Ray cluster ({exc})"
                                 ) from None
        started = True
    if quiet:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def cluster_gpus(ray: Any) -> float:
    """GPUs in the connected cluster."""
    return float(ray.cluster_resources().get("GPU", 0.0))


def list_source(source: str | Path) -> tuple[list[str], list[Path], list[Failure]]:
    """(track ids, audio paths, ``not_audio`` failures) of a folder or catalogue, exactly as
    :func:`~musicrec.embedding.batch.embed_catalog` lists them."""
    source = Path(source)
    if source.is_dir():
        ids, paths, skipped = scan_folder(source)
        extra = [Failure(p.relative_to(source).as_posix(), str(p), "not_audio",
                         f"suffix {p.suffix!r} is not an audio format") for p in skipped]
        return ids, paths, extra
    if source.is_file():
        ids, paths = read_catalog_paths(source)
        return ids, paths, []
    raise ParameterError(f"{source} is neither a folder nor a catalogue file")


def _uint32_lists(arrays: list[np.ndarray]) -> Any:
    import pyarrow as pa

    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = (np.concatenate(arrays).astype(np.uint32, copy=False) if arrays
              else np.zeros(0, np.uint32))
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint32()))


def _fingerprint_columns(prints: list[Any]) -> dict[str, Any]:
    """The shard columns of ``prints`` (a :class:`Fingerprint` or None per row)."""
    import pyarrow as pa

    empty = np.zeros(0, np.uint32)
    return {
        "fp_hashes": _uint32_lists([empty if p is None else p.hashes for p in prints]),
        "fp_times": _uint32_lists([empty if p is None else p.times for p in prints]),
        "fp_duration": pa.array([np.nan if p is None else float(p.duration_s)
                                 for p in prints], type=pa.float64()),
    }


def _fingerprints_of(table: Any) -> list[Any]:
    """The :class:`Fingerprint` (or None) of each row of a shard table."""
    from musicrec.embedding.fingerprint import Fingerprint

    duration = table.column("fp_duration").to_numpy()
    out: list[Any] = [None] * len(duration)
    present = np.flatnonzero(~np.isnan(duration))
    if not len(present):
        return out
    (ho, hv), (to, tv) = [
        (lists.offsets.to_numpy(), lists.values.to_numpy())
        for lists in (table.column(name).combine_chunks() for name in ("fp_hashes", "fp_times"))]
    for k in present:
        out[k] = Fingerprint(hashes=hv[ho[k]:ho[k + 1]].copy(),
                             times=tv[to[k]:to[k + 1]].copy(), duration_s=float(duration[k]))
    return out


def _table(rows: dict[str, Any], dim: int) -> Any:
    """A shard table: fixed-size float32 list embeddings, as :func:`write_embeddings`, and
    each row's fingerprint (``rows["fingerprint"]``: a Fingerprint or None per row)."""
    import pyarrow as pa

    vectors = np.asarray(rows["embedding"], dtype=np.float32).reshape(-1, dim)
    prints = rows.get("fingerprint") or [None] * len(rows["idx"])
    return pa.table({
        "idx": pa.array(rows["idx"], type=pa.int64()),
        "track_id": pa.array(rows["track_id"], type=pa.string()),
        "path": pa.array(rows["path"], type=pa.string()),
        "sha": pa.array(rows["sha"], type=pa.string()),
        "status": pa.array(rows["status"], type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1), type=pa.float32()), dim),
        "silent": pa.array(rows["silent"], type=pa.bool_()),
        "kind": pa.array(rows["kind"], type=pa.string()),
        "reason": pa.array(rows["reason"], type=pa.string()),
        **_fingerprint_columns(prints),
    })


def _lookup(batch: Any, *, cache: EmbeddingCache | None, dim: int) -> Any:
    """Stage 2: hash each file and take its vector from the cache when it is there."""
    n = batch.num_rows
    rows: dict[str, Any] = {
        "idx": batch.column("idx").to_pylist(), "track_id": batch.column("track_id").to_pylist(),
        "path": batch.column("path").to_pylist(), "sha": [""] * n, "status": ["todo"] * n,
        "embedding": np.zeros((n, dim), np.float32), "silent": [False] * n,
        "kind": [""] * n, "reason": [""] * n}
    if cache is not None:
        for k, path in enumerate(rows["path"]):
            try:
                sha = file_sha256(Path(path))
            except OSError:
                continue  # the embedding stage reports it exactly as locally
            rows["sha"][k] = sha
            hit = cache.get(sha, source=path)
            if hit is not None:
                rows["embedding"][k], rows["silent"][k] = hit
                rows["status"][k] = "cached"
    return _table(rows, dim)


class EmbedActor:
    """Stage 3: one model per actor; decodes and embeds the files not in the cache.

    Parameters
    ----------
    embedder_spec, embedder_options
        What :func:`~musicrec.embedding.registry.get_embedder` builds.
    embedder_id : str
        The driver's :attr:`AudioEmbedder.id`: an actor whose model differs refuses to run.
    cache : EmbeddingCache or None
        Where new vectors are written.
    batch_size, n_workers
        :func:`~musicrec.embedding.batch.embed_paths` options.
    fingerprint_params : FingerprintParams or None
        Also fingerprint every track, from the decode that embeds it (a cached track is
        decoded for its fingerprint alone).
    """

    def __init__(self, *, embedder_spec: str, embedder_options: dict[str, Any],
                 embedder_id: str, cache: EmbeddingCache | None, batch_size: int,
                 n_workers: int, fingerprint_params: Any = None) -> None:
        self.embedder = get_embedder(embedder_spec, **embedder_options)
        if self.embedder.id != embedder_id:
            raise RuntimeError(f"the worker's model {self.embedder.id} is not the driver's "
                               f"{embedder_id}: install the same weights and versions on "
                               "every node")
        self.cache = cache
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.fp_params = fingerprint_params

    def _fingerprint_alone(self, path: str) -> Any:
        """The fingerprint of a track whose vector is cached, or None (logged): the build
        then fingerprints it from its file and reports why it failed."""
        try:
            return decode_once(None, Path(path), self.fp_params)[1]
        except Exception as exc:  # noqa: BLE001 - reported again by the build
            log.warning("fingerprint of %s failed: %s", path, exc)
            return None

    def __call__(self, batch: Any) -> Any:
        rows = {name: batch.column(name).to_pylist() for name in _SHARD_COLUMNS
                if name != "embedding" and name not in _FP_COLUMNS}
        prints: list[Any] = [None] * batch.num_rows
        dim = self.embedder.dim
        vectors = np.asarray(
            batch.column("embedding").combine_chunks().flatten().to_numpy(
                zero_copy_only=False), dtype=np.float32).reshape(-1, dim).copy()
        todo = [k for k, status in enumerate(rows["status"]) if status == "todo"]
        if todo:
            keys = [str(k) for k in todo]
            result = embed_paths([rows["path"][k] for k in todo], embedder=self.embedder,
                                 track_ids=keys, use_cache=False, batch_size=self.batch_size,
                                 n_workers=self.n_workers, show_progress=False,
                                 fingerprint_params=self.fp_params)
            silent = set(result.silent)
            for key, vector in zip(result.track_ids, result.vectors, strict=True):
                k = int(key)
                vectors[k], rows["silent"][k] = vector, key in silent
                rows["status"][k] = "embedded"
                prints[k] = result.fingerprints.get(key)
                if self.cache is not None and rows["sha"][k]:
                    self.cache.put(rows["sha"][k], vector, key in silent)
            for failure in result.failures:
                k = int(failure.track_id)
                rows["status"][k] = "failed"
                rows["kind"][k], rows["reason"][k] = failure.kind, failure.reason
                rows["path"][k] = failure.path
        cached = [k for k, status in enumerate(rows["status"]) if status == "cached"]
        if self.fp_params is not None and cached:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=self.n_workers) as pool:
                found = pool.map(self._fingerprint_alone, [rows["path"][k] for k in cached])
                for k, fp in zip(cached, found, strict=True):
                    prints[k] = fp
        rows["embedding"] = vectors
        rows["fingerprint"] = prints
        return _table(rows, dim)


def _auto_gpus(ray: Any, num_gpus_per_actor: float | str) -> float:
    if num_gpus_per_actor == "auto":
        return 1.0 if cluster_gpus(ray) >= 1 else 0.0
    value = float(num_gpus_per_actor)
    if not value >= 0:
        raise ParameterError(f"num_gpus_per_actor={num_gpus_per_actor!r} must be >= 0 or "
                             "'auto'")
    return value


def embed_with_ray(
    source: str | Path,
    *,
    embedder_spec: str,
    embedder_options: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    address: str | None = None,
    num_cpus: int = 2,
    num_actors: int | None = None,
    num_gpus_per_actor: float | str = "auto",
    batch_size: int = 32,
    n_workers: int = 2,
    shard_dir: str | Path | None = None,
    show_progress: bool = True,
    fingerprint_params: Any = None,
) -> EmbeddingResult:
    """Embed a folder or catalogue on Ray; the same result as
    :func:`~musicrec.embedding.batch.embed_catalog`.

    Parameters
    ----------
    source : str or Path
        A folder of audio files, or a catalogue (``track_id``, ``audio_path``).
    embedder_spec : str
        Spec of :func:`~musicrec.embedding.registry.get_embedder` (e.g. ``"whisper-tiny"``).
    embedder_options : dict or None
        Its keyword options.
    cache_dir : str, Path or None
        Cache root, shared with the local path (default ``$MUSICREC_CACHE`` or
        ``~/.cache/musicrec``). On a cluster, it must be on a shared file system.
    use_cache : bool
        Read and write cached vectors (without it nothing is resumable).
    address : str or None
        A Ray cluster to join (``"auto"``, ``"ray://head:10001"`` ...); ``None`` starts a
        local runtime of ``num_cpus`` CPUs, shut down at the end. A runtime already
        connected in this process is used as is.
    num_cpus : int
        CPUs of the local runtime.
    num_actors : int or None
        Actors (model copies). Default: one per GPU, else the cluster's CPUs minus one
        (at least one), leaving a CPU for the lookup tasks.
    num_gpus_per_actor : float or "auto"
        GPUs each actor reserves; ``"auto"``: 1 when the cluster has GPUs, else 0.
    batch_size : int
        Tracks per actor call (and per model call).
    n_workers : int
        Decoding threads in each actor.
    shard_dir : str, Path or None
        Where the Parquet shards go (kept). Default: a temporary folder in the cache root,
        removed after the merge.
    show_progress : bool
        Show Ray Data's progress bars.
    fingerprint_params : FingerprintParams or None
        Also fingerprint every embedded track from the same decode, on the actors
        (``EmbeddingResult.fingerprints``, as :func:`~musicrec.embedding.batch.embed_paths`
        gives them).

    Returns
    -------
    EmbeddingResult
        Vectors in input order; every file that produced none as a :class:`Failure` with
        the local path's kind and reason.

    Examples
    --------
    >>> result = embed_with_ray("music/", embedder_spec="mfcc")  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    '3 embedded (3 computed, 0 from cache), 0 silent, 0 failed'
    """
    ray = import_ray()
    if batch_size < 1 or n_workers < 1 or num_cpus < 1:
        raise ParameterError(f"batch_size={batch_size}, n_workers={n_workers} and "
                             f"num_cpus={num_cpus} must be >= 1")
    if num_actors is not None and num_actors < 1:
        raise ParameterError(f"num_actors={num_actors} must be >= 1")
    options = dict(embedder_options or {})
    embedder = get_embedder(embedder_spec, **options)
    options.update(embedder.pinned_options)  # e.g. the precision "auto" chose here
    ids, paths, extra = list_source(source)
    seen: set[str] = set()
    for t in ids:
        if t in seen:
            raise ParameterError(f"track id {t!r} appears more than once")
        seen.add(t)
    root = resolve_cache_dir(cache_dir)
    cache = EmbeddingCache(root, embedder) if use_cache else None
    dim = embedder.dim
    vectors = np.zeros((len(ids), dim), dtype=np.float32)
    status = np.full(len(ids), "", dtype=object)
    silent = np.zeros(len(ids), dtype=bool)
    failures: dict[int, Failure] = {}
    prints: dict[int, Any] = {}
    if ids:
        with ray_runtime(address=address, num_cpus=num_cpus) as ray:
            gpus = _auto_gpus(ray, num_gpus_per_actor)
            if num_actors is None:
                cpus = int(ray.cluster_resources().get("CPU", 1))
                num_actors = int(cluster_gpus(ray) // gpus) if gpus > 0 else max(1, cpus - 1)
                num_actors = max(1, num_actors)
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = show_progress
            ctx.print_on_execution_start = False
            own_shards = shard_dir is None
            root.mkdir(parents=True, exist_ok=True)
            out = Path(tempfile.mkdtemp(dir=root, prefix="ray-shards-")) if own_shards \
                else Path(shard_dir)  # type: ignore[arg-type]
            if not own_shards and out.exists() and any(out.iterdir()):
                raise ParameterError(f"shard_dir={str(out)!r} is not empty")
            try:
                log.info("embedding %d files on Ray: %d actor(s), %g GPU each, %s",
                         len(ids), num_actors, gpus, embedder.id)
                n_blocks = max(1, min(len(ids), -(-len(ids) // batch_size)))
                ds = ray.data.from_items(
                    [{"idx": i, "track_id": t, "path": str(p)}
                     for i, (t, p) in enumerate(zip(ids, paths, strict=True))],
                    override_num_blocks=n_blocks)
                ds = ds.map_batches(_lookup, batch_format="pyarrow", batch_size=batch_size,
                                    fn_kwargs={"cache": cache, "dim": dim})
                ds = ds.map_batches(
                    EmbedActor, batch_format="pyarrow", batch_size=batch_size,
                    compute=ray.data.ActorPoolStrategy(size=num_actors), num_gpus=gpus,
                    fn_constructor_kwargs={
                        "embedder_spec": embedder_spec, "embedder_options": options,
                        "embedder_id": embedder.id, "cache": cache,
                        "batch_size": batch_size, "n_workers": n_workers,
                        "fingerprint_params": fingerprint_params})
                ds.write_parquet(str(out))
                _merge_shards(out, ids, vectors, status, silent, failures, prints)
            finally:
                if own_shards:
                    shutil.rmtree(out, ignore_errors=True)
    order = [i for i in range(len(ids)) if status[i] in ("cached", "embedded")]
    if len(order) + len(failures) != len(ids):
        raise RuntimeError("internal error: a file was neither embedded nor failed")
    result = EmbeddingResult(
        track_ids=[ids[i] for i in order],
        vectors=vectors[order] if order else np.zeros((0, dim), np.float32),
        failures=[failures[i] for i in sorted(failures)] + extra,
        silent=[ids[i] for i in order if silent[i]],
        n_cached=int((status == "cached").sum()),
        n_embedded=int((status == "embedded").sum()),
        embedder_id=embedder.id,
        fingerprints={ids[i]: prints[i] for i in order if i in prints})
    for f in result.failures[:len(failures)]:
        log.warning("could not embed %s: %s (%s)", f.path, f.kind, f.reason)
    if result.silent:
        log.warning("%d track(s) are silent: %s", len(result.silent), result.silent[:5])
    return result


def _merge_shards(folder: Path, ids: list[str], vectors: np.ndarray, status: np.ndarray,
                  silent: np.ndarray, failures: dict[int, Failure],
                  prints: dict[int, Any]) -> None:
    """Fill the driver's arrays (and ``prints``: row to fingerprint) from the Parquet
    shards, one shard at a time."""
    import pyarrow.parquet as pq

    for shard in sorted(folder.glob("*.parquet")):
        table = pq.read_table(shard)
        idx = np.asarray(table.column("idx").to_numpy(), dtype=np.int64)
        if not len(idx):
            continue
        emb = table.column("embedding").combine_chunks()
        vectors[idx] = np.asarray(emb.flatten().to_numpy(zero_copy_only=False),
                                  dtype=np.float32).reshape(len(idx), -1)
        status[idx] = table.column("status").to_pylist()
        silent[idx] = table.column("silent").to_numpy(zero_copy_only=False)
        for i, fp in zip(idx, _fingerprints_of(table), strict=True):
            if fp is not None:
                prints[int(i)] = fp
        for k, i in enumerate(idx):
            if status[i] == "failed":
                failures[int(i)] = Failure(ids[i], table.column("path")[k].as_py(),
                                           table.column("kind")[k].as_py(),
                                           table.column("reason")[k].as_py())
