"""The model directory: one folder holding everything a model needs, with a manifest.

This module owns the layout: :func:`write_hybrid_model_dir` writes it and
:func:`load_model_dir` reads it back as fitted models (:class:`ModelFiles`)::

    manifest.json        format, versions, embedder, dimensions, blend, counts, fingerprints
    catalog.parquet      track metadata
    tracks.npy           raw track ids, in index order
    content.npy          unit content vectors [n_tracks, d_content] (zero rows: no content)
    has_content.npy      which tracks have content
    items.npy            blended CF-space track vectors [n_tracks, d_cf]
    similar_cf.npy       unit CF-space vectors for track-to-track similarity
    evidence.npy         listeners per track; blend_weight.npy: w_i of the blend
    mapping.npy          the content -> CF ridge matrix (when learned)
    tags.npy             tag probabilities [n_tracks, n_tags] from a tagging embedder
                         (zero rows: no audio); the names are the manifest's "tags"
    cf/                  the CF model (RecommenderBase.save): user vectors, plays, id maps
    served/              the model chosen on validation (``build --cf auto``;
                         RecommenderBase.save), its choice in the manifest's "served"
    fingerprints/        the landmark fingerprint index (query by example identifies)
    layout.npz           the web page's catalogue map, per space (recommender/layout.py;
                         absent from older models)
    index/content.*      Annoy or HNSW (cosine) over content vectors
    index/cf.*           Annoy or HNSW (cosine) over unit blended vectors
    index/user.*         Annoy or HNSW (dot) over blended vectors, for user recommendations

Arrays are loaded with ``mmap_mode="r"`` and Annoy files are mmap'd, so several server
processes share one copy in memory; HNSW indexes are read into memory by the gunicorn
master before it forks, and shared copy-on-write.

A directory is written into a temporary sibling and renamed into place, so a crash never
leaves a half-written model where a server would load it; siblings left by a build that
was killed are removed by the next build. ``manifest.json`` is written last and records
the format version, package versions, counts, data fingerprints, and the size and sha256
of every file.

Checks, from cheap to thorough:

* :func:`read_manifest` (every load) compares each file's size with the manifest: a
  truncated array is refused before it is mmap'd;
* :class:`FileWatch` (a server, at most once a second) notices a file changed on disk
  since it was loaded, so the server answers 503 instead of crashing on it;
* :func:`verify_model_dir` (``musicrec verify``, server start and reload) compares every
  sha256 and refuses arrays that hold NaN or infinite values.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.data.catalog import TrackCatalog
from musicrec.data.idmap import IdMap
from musicrec.errors import ModelFormatError, ParameterError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.hybrid import HybridModel
from musicrec.recommender.index import Backend, Metric, VectorIndex, served_recall
from musicrec.recommender.layout import LAYOUT_FILE, write_hybrid_layouts
from musicrec.recommender.served import ServedModel
from musicrec.recommender.tags import TrackTags
from musicrec.storage import (
    MANIFEST,
    check_finite,
    created_now,
    file_sha256,
    package_versions,
    read_format_json,
    write_dir,
)

log = logging.getLogger(__name__)

FORMAT = "musicrec-model"
#: 2: the manifest records every file's size and sha256 (``checksums``).
#: 3: the CF model is a folder, ``cf/``, written by ``RecommenderBase.save``.
FORMAT_VERSION = 3

#: Candidates fetched from each index per request at least (the manifest's recall is
#: measured with this many).
MIN_CANDIDATES = 100
#: Below this many tracks, scoring every track exactly is faster than an Annoy search
#: (benchmarks/bench_index.py: 0.15 ms exact vs 0.14-1.7 ms Annoy at 10k 64-d vectors),
#: so the indexes are used only for larger catalogues.
EXACT_BELOW = 10_000
#: Sampled queries per index for the recall stored in the manifest at build time.
RECALL_SAMPLE = 200
#: The indexes, by name: their vectors' dimension is the manifest's dims of this part.
INDEXES = {"content": "content", "cf": "cf", "user": "cf"}


def write_model_dir(
    out: str | Path, write: Callable[[Path], dict[str, Any]], *, force: bool = True
) -> Path:
    """Create the model directory ``out`` atomically (:func:`musicrec.storage.write_dir`).

    ``write(tmp_dir)`` fills a temporary sibling folder and returns the manifest's
    content; the format, package versions, creation time and every file's checksum are
    added. An existing musicrec model at ``out`` is replaced; any other existing
    non-empty folder is refused.
    """
    return write_dir(out, write, force=force, base={
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": created_now(), "versions": package_versions()})


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The validated manifest of a model directory."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFormatError(f"{model_dir}: model directory not found")
    path = model_dir / MANIFEST
    manifest = read_format_json(path, fmt=FORMAT, version=FORMAT_VERSION,
                                what="a musicrec model")
    for name in manifest.get("files", []):
        if not (model_dir / name).exists():
            raise ModelFormatError(f"{model_dir}: manifest lists {name}, which is missing")
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or not checksums:
        raise ModelFormatError(f"{path}: records no file checksums; rebuild the model")
    for name, recorded in checksums.items():
        file = model_dir / name
        try:
            size = file.stat().st_size
        except OSError:
            raise ModelFormatError(f"{model_dir}: {name} is missing") from None
        if size != recorded.get("bytes"):
            raise ModelFormatError(f"{model_dir}: {name} has {size} bytes, the manifest "
                                   f"records {recorded.get('bytes')}: the file was changed "
                                   "after the build; rebuild the model")
    return manifest


def verify_model_dir(model_dir: str | Path) -> dict[str, Any]:
    """Check every file of a model directory against its manifest, thoroughly.

    Sizes and sha256 must match the manifest and ``.npy`` arrays of floats must be finite.
    This reads every byte: seconds per GB.

    Returns
    -------
    dict
        ``{"files": n, "bytes": total}`` of what was checked.

    Raises
    ------
    ModelFormatError
        Naming every file that fails, and why.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    problems = []
    total = 0
    for name, recorded in manifest["checksums"].items():
        total += int(recorded["bytes"])
        if file_sha256(model_dir / name) != recorded.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest's")
            continue
        try:
            check_finite(model_dir, name)
        except ModelFormatError as exc:
            problems.append(str(exc).removeprefix(f"{model_dir}: "))
    if problems:
        raise ModelFormatError(f"{model_dir}: {len(problems)} damaged file(s): "
                               + "; ".join(problems) + "; rebuild the model")
    return {"files": len(manifest["checksums"]), "bytes": total}


class FileWatch:
    """Notices when the files of a loaded model directory change on disk.

    A server mmaps the arrays: a file truncated under it crashes the process that reads
    it (SIGBUS), and one rewritten in place changes its answers. The watch holds each
    file open and :meth:`problem` compares its size and modification time with those at
    load, at most once per ``interval`` seconds. A directory replaced by a new build (a
    rename) is not a change: the loaded files stay intact until a reload.
    """

    def __init__(self, model_dir: str | Path, manifest: dict[str, Any], *,
                 interval: float = 1.0) -> None:
        self.model_dir = Path(model_dir)
        self.names = sorted(manifest["checksums"])
        self.interval = interval
        self._fds: list[int] = []
        try:
            for name in self.names:
                self._fds.append(os.open(self.model_dir / name, os.O_RDONLY))
        except OSError as exc:
            self.close()
            raise ModelFormatError(f"{self.model_dir}: cannot open {name} ({exc})") from None
        self._seen = self._stats()
        self._checked = time.monotonic()
        self._problem: str | None = None

    def _stats(self) -> list[tuple[int, int]]:
        return [(st.st_size, st.st_mtime_ns) for st in map(os.fstat, self._fds)]

    def problem(self) -> str | None:
        """None while the files are as loaded, else what changed (it stays changed)."""
        if self._problem is None and time.monotonic() - self._checked >= self.interval:
            self._checked = time.monotonic()
            for name, seen, now in zip(self.names, self._seen, self._stats(), strict=True):
                if seen != now:
                    self._problem = (f"{name} changed on disk after the model was loaded; "
                                     "rebuild or restore it, then reload")
                    log.error("model directory %s: %s", self.model_dir, self._problem)
                    break
        return self._problem

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __del__(self) -> None:
        self.close()


def write_hybrid_model_dir(
    out: str | Path,
    *,
    hybrid: HybridModel,
    catalog: TrackCatalog | None = None,
    manifest: dict[str, Any] | None = None,
    n_trees: int | None = None,
    search_k_factor: int | None = None,
    extra_files: dict[str, Any] | None = None,
    index: str = "auto",
    index_params: dict[str, int] | None = None,
    threads: int | None = None,
    tags: TrackTags | None = None,
    layout: bool = True,
    served: ServedModel | None = None,
) -> Path:
    """Write a fitted :class:`HybridModel` (with its indexes) as a model directory;
    ``tags``, when given, are stored as ``tags.npy`` in the model's track order;
    ``layout`` stores the web page's catalogue map (:mod:`musicrec.recommender.layout`);
    ``served``, the model chosen on validation, is saved in ``served/`` and its report
    (every trial and the choice) in the manifest's ``served``.

    ``index`` is ``annoy``, ``hnsw`` or ``auto`` (:meth:`Backend.choose` by catalogue
    size); ``index_params`` are the backend's own parameters (``n_trees`` and
    ``search_k_factor`` are Annoy's, kept as keywords), ``threads`` the build threads
    (``-1``: every core; default: one for Annoy, whose build is then reproducible byte for
    byte, every core for HNSW, whose parallel build is not). The manifest's ``index``
    records the backend, its parameters and each index's recall@10 against exact search,
    measured here as the engine serves it (candidates re-scored exactly;
    ``served_recall_at_10`` is 1 where the catalogue is small enough to be searched
    exactly).
    """
    tracks = hybrid.tracks_
    if catalog is None:
        catalog = TrackCatalog.from_ids(tracks.ids)
    missing = [t for t in tracks if t not in catalog]
    if missing:
        extra = TrackCatalog.from_ids(missing).frame
        import pandas as pd

        catalog = TrackCatalog(pd.concat([catalog.frame, extra], ignore_index=True))
    backend = Backend.choose(index, len(tracks))
    params = dict(index_params or {})
    if n_trees:
        params["n_trees"] = n_trees
    if search_k_factor:
        params["search_k_factor"] = search_k_factor
    index_opts: dict[str, Any] = {"backend": backend, **params}
    probe = VectorIndex(1, **index_opts)  # validates the parameters before any work
    if threads is None:
        threads = 1 if backend is Backend.ANNOY else -1
    recall: dict[str, float] = {}

    def build_index(name: str, vectors: np.ndarray, ids: np.ndarray, tmp: Path, *,
                    metric: Metric = Metric.COSINE, queries: np.ndarray | None = None) -> None:
        built = VectorIndex(vectors.shape[1], metric=metric, threads=threads,
                            **index_opts).add_items(vectors, ids)
        built.save(tmp / "index" / name)
        recall[name] = round(served_recall(built, vectors, queries=queries,
                                           candidates=MIN_CANDIDATES,
                                           sample=RECALL_SAMPLE), 4)

    def write(tmp: Path) -> dict[str, Any]:
        files = ["catalog.parquet", "tracks.npy", "content.npy", "has_content.npy",
                 "items.npy", "similar_cf.npy", "evidence.npy", "blend_weight.npy"]
        unit_cf = hybrid.unit_cf()
        catalog.save(tmp / "catalog.parquet")
        np.save(tmp / "tracks.npy", tracks.to_array(), allow_pickle=False)
        np.save(tmp / "content.npy", hybrid.content_, allow_pickle=False)
        np.save(tmp / "has_content.npy", hybrid.has_content_, allow_pickle=False)
        np.save(tmp / "items.npy", hybrid.item_vectors_, allow_pickle=False)
        np.save(tmp / "similar_cf.npy", unit_cf, allow_pickle=False)
        np.save(tmp / "evidence.npy", hybrid.evidence_, allow_pickle=False)
        np.save(tmp / "blend_weight.npy", hybrid.blend_weight_, allow_pickle=False)
        if hybrid.mapping_ is not None:
            np.save(tmp / "mapping.npy", hybrid.mapping_, allow_pickle=False)
            files.append("mapping.npy")
        if hybrid.cf_ is not None:
            hybrid.cf_.save(tmp / "cf")
            files.append("cf")
        (tmp / "index").mkdir()
        ids = tracks.ids
        suffix = ".ann" if backend is Backend.ANNOY else ".hnsw"
        if hybrid.has_content:
            rows = np.flatnonzero(hybrid.has_content_)
            build_index("content", np.asarray(hybrid.content_[rows]), ids[rows], tmp)
            files.append(f"index/content{suffix}")
        if hybrid.has_cf:
            assert hybrid.cf_ is not None
            build_index("cf", unit_cf, ids, tmp)
            build_index("user", np.asarray(hybrid.item_vectors_), ids, tmp, metric=Metric.DOT,
                        queries=np.asarray(hybrid.cf_.user_factors_))
            files += [f"index/cf{suffix}", f"index/user{suffix}"]
        if served is not None:
            served.save(tmp / "served")
            files.append("served")
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
            files.append(name)
        tag_info = None
        if tags is not None:
            aligned = tags.aligned(tracks)
            np.save(tmp / "tags.npy", aligned, allow_pickle=False)
            files.append("tags.npy")
            tag_info = {"names": list(tags.names), "source": tags.source,
                        "tracks": int((aligned.sum(axis=1) > 0).sum())}
        # the catalogue map of the web page (h18: recommender/layout.py; optional on load)
        maps = write_hybrid_layouts(tmp, hybrid, unit_cf) if layout else {}
        files += [LAYOUT_FILE] if maps else []
        kind = "hybrid" if hybrid.has_cf and hybrid.has_content else (
            "cf" if hybrid.has_cf else "content")
        counts: dict[str, Any] = {"tracks": len(tracks),
                                  "tracks_with_content": int(hybrid.has_content_.sum()),
                                  "tracks_with_plays": int((hybrid.evidence_ > 0).sum())}
        if hybrid.cf_ is not None:
            counts["users"] = len(hybrid.cf_.users_)
            counts["interactions"] = int(hybrid.cf_.user_items_.nnz)
        return {
            **(manifest or {}),
            "kind": kind,
            "files": files,
            "counts": {**counts, **(manifest or {}).get("counts", {})},
            "dims": {"content": int(hybrid.content_.shape[1]),
                     "cf": int(hybrid.item_vectors_.shape[1])},
            "blend": hybrid.get_params(),
            "cf": None if hybrid.cf_ is None else {**hybrid.cf_.get_params(),
                                                   "seed": hybrid.cf_.seed_,
                                                   "model": hybrid.cf_.name},
            "index": {"backend": backend.value, **probe.params, "exact_below": EXACT_BELOW,
                      "recall_sample": RECALL_SAMPLE, "candidates": MIN_CANDIDATES,
                      "index_recall_at_10": recall,
                      "served_recall_at_10": {k: 1.0 if len(tracks) < EXACT_BELOW else v
                                              for k, v in recall.items()}},
            **({} if tag_info is None else {"tags": tag_info}),
            **({"layout": maps} if maps else {}),
            **({} if served is None else {"served": served.report}),
        }

    return write_model_dir(out, write)


@dataclass
class ModelFiles:
    """A model directory as loaded by :func:`load_model_dir`: fitted models whose arrays
    are mmap'd from the directory's files."""

    path: Path
    manifest: dict[str, Any]
    catalog: TrackCatalog
    #: the blend of content and CF; its ``cf_`` is the CF model of ``cf/`` (or None)
    hybrid: HybridModel
    #: the mmap'd arrays by file stem (``content``, ``items``, ``similar_cf``: unit
    #: CF-space vectors for track-to-track similarity, ``evidence``, ``blend_weight``);
    #: ``hybrid`` holds plain ndarray views of the same pages
    arrays: dict[str, np.memmap]
    #: the model chosen on validation (``served/``), or None
    served: ServedModel | None
    #: name -> index (``index/content``, ``index/cf``, ``index/user``) where built
    indexes: dict[str, VectorIndex]
    #: tag probabilities ``[n_tracks, n_tags]`` and their names (``tags.npy``), or None
    tags: np.ndarray | None
    tag_names: list[str]
    #: the fingerprint index (``fingerprints/``), or None
    fingerprints: Any

    @property
    def tracks(self) -> IdMap:
        return self.hybrid.tracks_


def load_model_dir(model_dir: str | Path) -> ModelFiles:
    """Read a model directory written by :func:`write_hybrid_model_dir`.

    Raises
    ------
    ModelFormatError
        Naming the directory and what is missing, corrupt or of the wrong shape.
    """
    d = Path(model_dir)
    manifest = read_manifest(d)
    dims = manifest.get("dims", {})
    try:
        catalog = TrackCatalog.load(d / "catalog.parquet")
        tracks = IdMap.from_array(np.load(d / "tracks.npy", allow_pickle=False), kind="track")
        arrays = {name: np.load(d / f"{name}.npy", mmap_mode="r") for name in (
            "content", "items", "evidence", "blend_weight", "similar_cf")}
        has_content = np.load(d / "has_content.npy", allow_pickle=False)
        mapping = (np.load(d / "mapping.npy", allow_pickle=False)
                   if (d / "mapping.npy").exists() else None)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{d}: model directory is incomplete or corrupt ({exc})"
                               ) from None
    n = len(tracks)
    if arrays["content"].shape != (n, dims.get("content")) or \
            arrays["items"].shape != (n, dims.get("cf")) or \
            arrays["similar_cf"].shape != arrays["items"].shape:
        raise ModelFormatError(f"{d}: array shapes do not match the manifest's dims {dims}")
    cf = CFModel.load(d / "cf") if (d / "cf").exists() else None
    try:
        # plain ndarray views of the mmap'd arrays: the same pages, without np.memmap's
        # per-slice bookkeeping on the request path (a third of a small model's request)
        view = {k: v.view(np.ndarray) for k, v in arrays.items()}
        hybrid = HybridModel.assemble(
            manifest.get("blend", {}), tracks=tracks, cf=cf, content=view["content"],
            has_content=has_content, item_vectors=view["items"], evidence=view["evidence"],
            blend_weight=view["blend_weight"], mapping=mapping)
    except ParameterError as exc:
        raise ModelFormatError(f"{d}: {exc}") from None
    served = ServedModel.load(d / "served") if (d / "served").exists() else None
    indexes = {}
    for name, part in INDEXES.items():
        path = d / "index" / name
        if VectorIndex.file_of(path) is not None:
            indexes[name] = VectorIndex.load(path, dim=dims.get(part))
    tags = None
    tag_names = [str(t) for t in manifest.get("tags", {}).get("names", [])]
    if (d / "tags.npy").exists():
        tags = np.load(d / "tags.npy", mmap_mode="r")
        if tags.shape != (n, len(tag_names)):
            raise ModelFormatError(f"{d}: tags.npy has shape {tags.shape}; the manifest "
                                   f"names {len(tag_names)} tags of {n} tracks")
    fingerprints = None
    if (d / "fingerprints").exists():
        from musicrec.embedding.fingerprint import FingerprintIndex

        fingerprints = FingerprintIndex.load(d / "fingerprints", mmap=True)
    return ModelFiles(d, manifest, catalog, hybrid, arrays, served, indexes, tags, tag_names,
                      fingerprints)


def content_vectors(model_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw ids and unit content vectors of a model directory's tracks that have
    content (read without loading the rest)."""
    d = Path(model_dir)
    read_manifest(d)
    try:
        ids = np.load(d / "tracks.npy", allow_pickle=False).astype(str)
        vectors = np.asarray(np.load(d / "content.npy", allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{d}: model directory is incomplete or corrupt ({exc})"
                               ) from None
    keep = np.linalg.norm(vectors, axis=1) > 0
    return ids[keep], vectors[keep]
