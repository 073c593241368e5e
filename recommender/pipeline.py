"""Pipelines that turn logs, audio and content vectors into a model directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musicrec.data._tables import read_table
from musicrec.data.catalog import TrackCatalog, read_catalog
from musicrec.data.logs import ListeningLog
from musicrec.errors import DataFormatError, ModelSkipped, ParameterError
from musicrec.recommender.cf import CFModel
from musicrec.recommender.hybrid import HybridModel
from musicrec.recommender.index import INDEX_PARAMS
from musicrec.recommender.model_dir import write_hybrid_model_dir
from musicrec.recommender.served import ServedModel
from musicrec.recommender.tags import TrackTags

log = logging.getLogger(__name__)


def _log_manifest(log_: ListeningLog) -> dict[str, Any]:
    return {"source": log_.report.source, "sha256": log_.fingerprint(),
            "rows_read": log_.report.rows_read, "rows_skipped": log_.report.rows_skipped,
            "duplicates_merged": log_.report.duplicates_merged,
            "skipped_by_rule": dict(log_.report.skipped),
            "aliased_pairs": log_.report.aliased_pairs,
            "alias_merged": log_.report.alias_merged}


def train_cf_model_dir(
    log: ListeningLog,
    out: str | Path,
    *,
    catalog: TrackCatalog | None = None,
    model: CFModel | None = None,
) -> Path:
    """Fit a :class:`CFModel` on ``log`` and write a CF-only model directory to ``out``."""
    model = (model or CFModel()).fit(log)
    hybrid = HybridModel().blend(cf=model, content_ids=None, content=None)
    return write_hybrid_model_dir(
        out, hybrid=hybrid, catalog=catalog,
        manifest={"data": {"interactions": _log_manifest(log)},
                  "counts": {"plays": float(log.plays.sum())}})


def read_content_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Per-track content vectors from any source: the output of ``musicrec embed``
    (Parquet with an ``embedding`` column, or ``.npy`` + ``.ids.json``), or a table with
    ``track_id`` and either a list column ``vector`` or numeric columns (one per
    dimension)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        from musicrec.embedding.batch import read_embeddings

        ids_list, vectors = read_embeddings(path)
        return ids_list, vectors
    frame = read_table(path)
    if "embedding" in frame.columns and "vector" not in frame.columns:
        frame = frame.rename(columns={"embedding": "vector"})
        frame = frame.drop(columns=[c for c in frame.columns
                                    if c not in ("track_id", "vector")])
    if "track_id" not in frame.columns:
        raise DataFormatError(path, f"no track_id column; found {list(frame.columns)}")
    ids = frame["track_id"].astype(str).tolist()
    try:
        if "vector" in frame.columns:
            vectors = np.stack([np.asarray(v, dtype=np.float32) for v in frame["vector"]])
        else:
            numeric = frame.drop(columns=["track_id"])
            vectors = numeric.apply(pd.to_numeric, errors="raise").to_numpy(np.float32)
    except (ValueError, TypeError) as exc:
        raise DataFormatError(path, f"content vectors must be numbers ({exc})") from None
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise DataFormatError(path, "content vectors must have at least one dimension")
    if not np.isfinite(vectors).all():
        row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise DataFormatError(path, "content vector is not finite", line=row + 2)
    return ids, vectors


@dataclass
class BuildInputs:
    """Everything a build turns into a model directory, whichever engine runs it
    (:func:`build_model_dir` here, :func:`~musicrec.recommender.distributed.build_with_ray`
    on Ray).

    Without ``log`` the model is content-only: similar-by-sound and query by example
    work, user recommendations raise a clear error. ``fingerprint_sources`` (``(track_id,
    audio path or ready Fingerprint)`` pairs) add a landmark fingerprint index in
    ``fingerprints/`` so query by example also identifies catalogue recordings. ``tags``
    (from a tagging embedder) are stored for search by words. ``index`` picks the
    nearest-neighbour backend: ``annoy``, ``hnsw`` or ``auto`` (by catalogue size,
    :meth:`~musicrec.recommender.index.Backend.choose`). ``served`` (with logs): an
    unfitted :class:`~musicrec.recommender.served.ServedModel` that chooses, on a
    validation split of the logs, the model that ranks tracks for known users; it is
    stored in ``served/`` and its choice in the manifest.
    """

    log: ListeningLog | None = None
    catalog: TrackCatalog | None = None
    content_ids: list[str] | None = None
    content: np.ndarray | None = None
    cf_model: CFModel | None = None
    hybrid: HybridModel | None = None
    embedder: dict[str, Any] | None = None
    content_source: dict[str, Any] | None = None
    extra_files: dict[str, Any] | None = None
    fingerprint_sources: list[tuple[str, Any]] | None = None  # (id, path or Fingerprint)
    tags: TrackTags | None = None
    served: ServedModel | None = None
    n_trees: int | None = None
    search_k_factor: int | None = None
    index: str = "auto"
    show_progress: bool = False

    @classmethod
    def of(cls, inputs: BuildInputs | None, keywords: dict[str, Any]) -> BuildInputs:
        """``inputs``, or the inputs named by ``keywords`` (not both)."""
        if inputs is not None:
            if keywords:
                raise ParameterError(f"give BuildInputs or keywords, not both ({sorted(keywords)})")
            built = inputs
        else:
            unknown = sorted(set(keywords) - {f.name for f in fields(cls)})
            if unknown:
                raise ParameterError(f"unknown build input {unknown[0]!r}; the inputs: "
                                     f"{[f.name for f in fields(cls)]}")
            built = cls(**keywords)
        if built.log is None and built.content is None:
            raise ParameterError("build needs listening logs, content vectors, or both")
        return built

    def fit_served(self) -> ServedModel | None:
        """Fit ``served`` on the logs (with the content vectors of the logs' tracks);
        ``None`` when there is none, or when the logs are too small to validate on (then
        the blend ranks known users, and the build logs why)."""
        if self.served is None or self.log is None:
            return None
        content = None
        if self.content is not None and self.content_ids is not None:
            tracks = self.log.tracks
            content = np.zeros((len(tracks), self.content.shape[1]), dtype=np.float32)
            known = [i for i, t in enumerate(self.content_ids) if t in tracks]
            content[tracks.to_idx_many([self.content_ids[i] for i in known])] = \
                self.content[known]
        try:
            return self.served.fit(self.log, content=content)
        except ModelSkipped as exc:
            log.warning("%s; known users are ranked by the ALS + content blend", exc)
            return None

    def write_options(self, served: ServedModel | None = None) -> dict[str, Any]:
        """The keywords of :func:`write_hybrid_model_dir`: catalogue, index settings, extra
        files (fingerprints), tags, the chosen model ``served`` and the manifest's data
        section."""
        data: dict[str, Any] = {}
        if self.log is not None:
            data["interactions"] = _log_manifest(self.log)
        if self.content_source is not None:
            data["content"] = self.content_source
        extra = dict(self.extra_files or {})
        if self.fingerprint_sources:
            sources = list(self.fingerprint_sources)
            show = self.show_progress
            extra["fingerprints"] = lambda path: build_fingerprints(
                sources, path, show_progress=show)
        counts = {} if self.log is None else {"plays": float(self.log.plays.sum())}
        manifest: dict[str, Any] = {"data": data, "embedder": self.embedder, "counts": counts}
        return {"catalog": self.catalog, "n_trees": self.n_trees, "served": served,
                "search_k_factor": self.search_k_factor, "index": self.index,
                "extra_files": extra, "tags": self.tags, "manifest": manifest}


def build_model_dir(out: str | Path, inputs: BuildInputs | None = None, **keywords: Any
                    ) -> Path:
    """Train CF (when logs are given), learn the content → CF mapping, blend, index, write.

    ``inputs`` is a :class:`BuildInputs`; its fields may be given as keywords instead.

    Examples
    --------
    >>> build_model_dir("model/", log=log, content_ids=ids, content=vectors)  # doctest: +SKIP
    """
    job = BuildInputs.of(inputs, keywords)
    cf = (job.cf_model or CFModel()).fit(job.log) if job.log is not None else None
    model = (job.hybrid or HybridModel()).blend(cf=cf, content_ids=job.content_ids,
                                               content=job.content)
    return write_hybrid_model_dir(out, hybrid=model, **job.write_options(job.fit_served()))


def build_fingerprints(
    sources: list[tuple[str, Any]],
    path: Path,
    *,
    base: Any = None,
    show_progress: bool = False,
) -> list[tuple[str, str]]:
    """Fingerprint ``(track_id, audio path or ready Fingerprint)`` pairs into an index
    saved at ``path``.

    ``base`` is an existing index to extend. A file that cannot be fingerprinted is
    skipped and returned with its reason (logged); it never aborts the build.
    """
    from tqdm.auto import tqdm

    from musicrec.embedding.fingerprint import FingerprintIndex
    from musicrec.errors import MusicrecError

    index = base if base is not None else FingerprintIndex()
    failures = []
    for track_id, audio in tqdm(sources, desc="fingerprinting", disable=not show_progress):
        try:
            index.add(track_id, audio)
        except MusicrecError as exc:
            failures.append((track_id, str(exc)))
            log.warning("fingerprint of %s skipped: %s", track_id, exc)
    index.build()
    index.save(path)
    return failures


def load_catalog_or_folder(source: str | Path) -> TrackCatalog | None:
    """The catalogue of a table, or ``None`` for a folder (ids come from file names)."""
    source = Path(source)
    if source.is_dir():
        return None
    return read_catalog(source)


def add_tracks(
    model_dir: str | Path,
    track_ids: list[str],
    content: np.ndarray,
    *,
    catalog_rows: pd.DataFrame | None = None,
    audio_paths: list[Path] | None = None,
    tags: np.ndarray | None = None,
) -> Path:
    """Add tracks with content vectors to a model without retraining.

    Their CF vectors are predicted from content by the model's mapping, every index is
    rebuilt (the fingerprint index is extended with ``audio_paths`` when the model has
    one), and the new directory replaces the old one atomically. A model with tag
    probabilities keeps them; ``tags`` (``[len(track_ids), n_tags]``) gives the new
    tracks' (without them the new tracks have none and search by words skips them).
    """
    from musicrec.recommender.facade import Recommender

    rec = Recommender(model_dir)
    model = rec.hybrid.with_tracks(list(track_ids), content)
    rows = catalog_rows if catalog_rows is not None else pd.DataFrame({"track_id": track_ids})
    catalog = TrackCatalog(pd.concat([rec.catalog.frame, rows], ignore_index=True))
    manifest = {k: v for k, v in rec.manifest.items()
                if k not in ("format", "format_version", "created", "versions", "files",
                             "checksums", "kind", "counts", "dims", "blend", "cf", "index",
                             "served")}
    manifest["added_tracks"] = int(rec.manifest.get("added_tracks", 0)) + len(track_ids)
    index = rec.manifest.get("index", {})
    extra: dict[str, Any] = {}
    if (Path(model_dir) / "fingerprints").exists():
        from musicrec.embedding.fingerprint import FingerprintIndex

        old_fp = FingerprintIndex.load(Path(model_dir) / "fingerprints", mmap=False)
        sources = list(zip(track_ids, audio_paths or [], strict=False))
        extra["fingerprints"] = lambda path: build_fingerprints(sources, path, base=old_fp)
    track_tags = None
    if rec.tags is not None:
        new = (np.zeros((len(track_ids), len(rec.tag_names)), np.float32) if tags is None
               else np.asarray(tags, dtype=np.float32))
        track_tags = TrackTags(list(rec.tracks.ids) + list(track_ids),
                               np.vstack([np.asarray(rec.tags), new]), rec.tag_names,
                               rec.manifest["tags"].get("source", ""))
    manifest.pop("tags", None)
    return write_hybrid_model_dir(model_dir, hybrid=model, catalog=catalog, manifest=manifest,
                                  index=index.get("backend", "annoy"),
                                  index_params={k: index[k] for k in INDEX_PARAMS
                                                if k in index},
                                  extra_files=extra, tags=track_tags,
                                  served=rec.served)  # users are ranked as before
