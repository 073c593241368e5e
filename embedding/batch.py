"""Batch extraction over a folder or a catalogue file, with a content-addressed cache.

Files are decoded in parallel threads while the model embeds the previous batch:
libsndfile, soxr, numpy's FFT and scipy's filters release the GIL, so the threads use
every core they get (py-spy found the decoding threads, fingerprinting included, holding
the GIL in 2 % of their samples; the README's *Full-length catalogues* section).
Each vector is cached under
``<cache>/embeddings/<hash of embedder id>/<sha256 of the file>.npz``, so a re-run embeds
only new or changed files. An entry carries the sha256 of its vector: one that was
damaged (flipped bytes, other values, NaN) is deleted, its file embedded again, and a
warning names both. A file that fails never stops the batch: it is returned (and
written) as a :class:`Failure` with its reason.

Decode once: asked for fingerprints too (``fingerprint_params``, as ``build`` does), each
track is decoded whole, once, at its own rate; the embedder's windows and the
fingerprint's signal are both cut and resampled from that one decode
(:func:`~musicrec.embedding.audio.rewindow`), in the decoding threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.audio import (
    AUDIO_EXTENSIONS,
    AudioDecodeError,
    DecodedAudio,
    load_audio,
    resample_mono,
    rewindow,
)
from musicrec.embedding.base import AudioEmbedder, resolve_cache_dir
from musicrec.errors import DataFormatError, ParameterError
from musicrec.storage import file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """A file that produced no vector: its id, path, failure kind and reason."""

    track_id: str
    path: str
    kind: str
    reason: str


@dataclass
class EmbeddingResult:
    """The outcome of a batch.

    Attributes
    ----------
    track_ids : list of str
        Ids of the embedded tracks, in input order.
    vectors : np.ndarray [shape=(len(track_ids), dim), dtype=float32]
        Their L2-normalised vectors.
    failures : list of Failure
        Every input that produced no vector.
    silent : list of str
        Ids of embedded tracks flagged as silent.
    n_cached : int
        Vectors taken from the cache.
    n_embedded : int
        Vectors computed in this run.
    n_damaged : int
        Damaged cache entries found, deleted and embedded again.
    embedder_id : str
        :attr:`AudioEmbedder.id` of the embedder.
    tags : np.ndarray [shape=(len(track_ids), len(tag_names)), dtype=float32]
        Tag probabilities of the embedded tracks (no columns for a model without tags).
    tag_names : list of str
        The embedder's :attr:`~AudioEmbedder.tag_names`.
    fingerprints : dict of str to Fingerprint
        With ``fingerprint_params``: the landmark fingerprint of each embedded track, made
        from the same decode as its vector.
    """

    track_ids: list[str]
    vectors: np.ndarray
    failures: list[Failure] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    n_cached: int = 0
    n_embedded: int = 0
    n_damaged: int = 0
    embedder_id: str = ""
    tags: np.ndarray | None = None
    tag_names: list[str] = field(default_factory=list)
    fingerprints: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: counts of embedded, cached, silent and failed files."""
        damaged = f", {self.n_damaged} damaged cache entries redone" if self.n_damaged else ""
        return (f"{len(self.track_ids)} embedded ({self.n_embedded} computed, {self.n_cached} "
                f"from cache{damaged}), {len(self.silent)} silent, {len(self.failures)} failed")


class EmbeddingCache:
    """Vectors stored by (file sha256, embedder id) under ``root``, each with a checksum.

    A model that tags (:attr:`AudioEmbedder.tag_names`) also stores each file's tag
    probabilities, with their own checksum; an entry without them (as the Ray engine
    writes) serves the vector but not the tags.
    """

    def __init__(self, root: Path, embedder: AudioEmbedder) -> None:
        key = hashlib.sha256(embedder.id.encode()).hexdigest()[:16]
        self.dir = Path(root) / "embeddings" / key
        self.dim = embedder.dim
        self.n_tags = len(embedder.tag_names)
        self.n_damaged = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "embedder.json"
        if not info.exists():
            _atomic_write_bytes(info, json.dumps({"embedder_id": embedder.id}).encode())

    def _path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.npz"

    def get(self, sha: str, *, source: str | Path | None = None
            ) -> tuple[np.ndarray, bool] | None:
        """The cached (vector, silent) of a file, or None when absent or damaged.

        A damaged entry is deleted and counted in :attr:`n_damaged`; the warning names
        ``source`` (the audio file), which the caller then embeds again.
        """
        path = self._path(sha)
        if not path.is_file():
            return None
        problem = None
        try:
            with np.load(path, allow_pickle=False) as entry:
                row, checksum = entry["row"], str(entry["sha256"])
        except Exception as exc:  # noqa: BLE001 - zip, npy or key errors alike
            problem = f"unreadable ({type(exc).__name__})"
        else:
            if row.shape != (self.dim + 1,) or row.dtype != np.float32:
                problem = f"shape {row.shape} of {row.dtype} instead of ({self.dim + 1},)"
            elif hashlib.sha256(row.tobytes()).hexdigest() != checksum:
                problem = "its checksum does not match"
            elif not np.all(np.isfinite(row)):
                problem = "it holds NaN or infinite values"
        if problem is not None:
            self.n_damaged += 1
            log.warning("cache entry %s is damaged (%s); %s is embedded again", path, problem,
                        source or f"the file with sha256 {sha}")
            path.unlink(missing_ok=True)
            return None
        return row[:-1].copy(), bool(row[-1])

    def get_tags(self, sha: str) -> np.ndarray | None:
        """The cached tag probabilities of a file, or None when absent or not intact."""
        try:
            with np.load(self._path(sha), allow_pickle=False) as entry:
                if "tags" not in entry.files:
                    return None
                tags, checksum = entry["tags"], str(entry["tags_sha256"])
        except Exception:  # noqa: BLE001 - a missing or damaged entry: embed again
            return None
        intact = (tags.shape == (self.n_tags,) and tags.dtype == np.float32
                  and hashlib.sha256(tags.tobytes()).hexdigest() == checksum
                  and bool(np.all(np.isfinite(tags))))
        return tags.copy() if intact else None

    def put(self, sha: str, vector: np.ndarray, silent: bool,
            tags: np.ndarray | None = None) -> None:
        path = self._path(sha)
        path.parent.mkdir(exist_ok=True)
        row = np.append(vector.astype(np.float32), np.float32(silent))
        if not np.all(np.isfinite(row)):
            raise ParameterError(f"the vector of the file with sha256 {sha} is not finite")
        extra: dict[str, Any] = {}
        if tags is not None:
            tag_row = np.asarray(tags, dtype=np.float32)
            if tag_row.shape != (self.n_tags,) or not np.all(np.isfinite(tag_row)):
                raise ParameterError(f"the tags of the file with sha256 {sha} have shape "
                                     f"{tag_row.shape} or are not finite")
            extra = {"tags": tag_row,
                     "tags_sha256": np.array(hashlib.sha256(tag_row.tobytes()).hexdigest())}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, row=row, sha256=np.array(hashlib.sha256(row.tobytes()).hexdigest()),
                     **extra)
        os.replace(tmp, path)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def decode_once(embedder: AudioEmbedder | None, path: Path, params: Any
                ) -> tuple[DecodedAudio | None, Any]:
    """The embedder's windows and the landmark fingerprint (``params``:
    :class:`~musicrec.embedding.fingerprint.FingerprintParams`) of one file, from one
    decode of the whole track at its own rate. ``embedder=None``: the fingerprint alone
    (its vector came from the cache). A fingerprint that fails after a good decode is
    ``None`` (logged): the build then fingerprints that file on its own and reports it."""
    from musicrec.embedding.fingerprint import fingerprint
    from musicrec.errors import MusicrecError

    whole = load_audio(path, sample_rate=None)
    # the whole track is mono and its samples finite (load_audio checked them)
    signal = resample_mono(whole.windows[0], sample_rate=whole.sample_rate,
                           target_rate=params.sr)
    windows = None if embedder is None else rewindow(
        whole, sample_rate=embedder.sample_rate, window_seconds=embedder.window_seconds,
        n_windows=embedder.n_windows)
    del whole
    try:
        return windows, fingerprint(signal, sr=params.sr, params=params)
    except MusicrecError as exc:
        log.warning("fingerprint of %s failed: %s", path, exc)
        return windows, None


@contextlib.contextmanager
def torch_threads_beside(n_workers: int) -> Iterator[int | None]:
    """Run a torch model on the cores that ``n_workers`` busy decoding threads leave (at
    least one, at most torch's setting), and restore torch's setting afterwards; yields
    the threads set, or None when torch is not imported (nothing to do).

    With fingerprints every track is decoded whole, so the decoding threads are busy for
    most of the run, and torch's intra-op threads, which spin while they wait for work,
    compete with them for the cores: ``whisper-tiny``'s ``build`` took 0.96-1.03 CPU-s a
    track end to end with 2 torch threads beside 2 decoders on 2 cores, against
    0.66-0.69 with one (the same vectors; the README's *Full-length catalogues*). An
    embedder that sets its own ``num_threads`` (``musicnn``) still sets them per call.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield None
        return
    before = torch.get_num_threads()
    threads = max(1, min(before, (os.cpu_count() or 1) - n_workers))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _decode(embedder: AudioEmbedder, path: Path, use_cache: bool, fp_params: Any = None
            ) -> tuple[str | None, DecodedAudio | None, Failure | None, Any]:
    """(sha256, decoded audio or None if ``use_cache`` may serve it, failure, fingerprint
    when ``fp_params`` asks for one)."""
    try:
        sha = file_sha256(path) if use_cache else None
    except OSError as exc:
        return None, None, Failure("", str(path), "missing", exc.strerror or str(exc)), None
    try:
        if fp_params is not None:
            decoded, fp = decode_once(embedder, path, fp_params)
            return sha, decoded, None, fp
        return sha, embedder.load(path), None, None
    except AudioDecodeError as exc:
        return sha, None, Failure("", str(path), exc.kind, exc.reason), None
    except Exception as exc:  # noqa: BLE001 - any decoder crash is this file's failure
        return (sha, None, Failure("", str(path), "corrupt", f"{type(exc).__name__}: {exc}"),
                None)


def embed_paths(
    paths: Sequence[str | Path],
    *,
    embedder: AudioEmbedder,
    track_ids: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    n_workers: int = 2,
    show_progress: bool = True,
    fingerprint_params: Any = None,
) -> EmbeddingResult:
    """Embed audio files, in parallel, through the cache.

    Parameters
    ----------
    paths : sequence of str or Path
        The audio files.
    embedder : AudioEmbedder
        The model (see :func:`~musicrec.embedding.registry.get_embedder`).
    track_ids : sequence of str or None
        One id per path (default: the paths as given).
    cache_dir : str, Path or None
        Cache root (default ``$MUSICREC_CACHE`` or ``~/.cache/musicrec``).
    use_cache : bool
        Read and write cached vectors.
    batch_size : int
        Tracks per model call.
    n_workers : int
        Decoding threads.
    show_progress : bool
        Show a tqdm progress bar.
    fingerprint_params : FingerprintParams or None
        Also fingerprint every embedded track, from the same decode
        (:func:`decode_once`; a track whose vector is cached is decoded for its fingerprint
        alone). A file that cannot be decoded is a failure as without fingerprints. The
        decoding threads are then busy, and a torch model runs on the cores they leave
        (:func:`torch_threads_beside`).

    Returns
    -------
    EmbeddingResult
        Vectors for every file that decoded, and a :class:`Failure` for every other.
    """
    from tqdm.auto import tqdm

    files = [Path(p) for p in paths]
    ids = [str(p) for p in files] if track_ids is None else [str(t) for t in track_ids]
    if len(ids) != len(files):
        raise ParameterError(f"{len(ids)} track ids for {len(files)} paths")
    if batch_size < 1 or n_workers < 1:
        raise ParameterError(f"batch_size={batch_size} and n_workers={n_workers} must be >= 1")
    seen: set[str] = set()
    for t in ids:
        if t in seen:
            raise ParameterError(f"track id {t!r} appears more than once")
        seen.add(t)
    cache = EmbeddingCache(resolve_cache_dir(cache_dir), embedder) if use_cache else None
    vectors: dict[int, np.ndarray] = {}
    silent: dict[int, bool] = {}
    tags: dict[int, np.ndarray] = {}
    tagging = len(embedder.tag_names) > 0
    failures: dict[int, Failure] = {}
    n_cached = n_embedded = 0
    pending: list[tuple[int, str | None, DecodedAudio]] = []
    prints: dict[int, Any] = {}
    fp_params = fingerprint_params

    def flush() -> None:
        nonlocal n_embedded
        if not pending:
            return
        try:
            out, out_tags = embedder.embed_decoded_tagged([d for _, _, d in pending])
        except Exception:
            if len(pending) == 1:
                raise
            out = None  # find the culprit one by one
        for k, (i, sha, decoded) in enumerate(pending):
            if out is not None:
                vec, vec_tags = out[k], out_tags[k]
            else:
                try:
                    one, one_tags = embedder.embed_decoded_tagged([decoded])
                    vec, vec_tags = one[0], one_tags[0]
                except Exception as exc:  # noqa: BLE001
                    failures[i] = Failure(ids[i], str(files[i]), "corrupt",
                                          f"the model failed on it: {exc}")
                    continue
            vectors[i], silent[i], tags[i] = vec, decoded.silent, vec_tags
            n_embedded += 1
            if cache is not None and sha is not None:
                cache.put(sha, vec, decoded.silent, vec_tags if tagging else None)
        pending.clear()

    def work(path: Path) -> tuple[str | None, DecodedAudio | None, Failure | None, Any]:
        if cache is not None:
            try:
                sha = file_sha256(path)
            except OSError:
                return _decode(embedder, path, False, fp_params)
            if cache.get(sha, source=path) is not None and (
                    not tagging or cache.get_tags(sha) is not None):
                if fp_params is None:
                    return sha, None, None, None
                try:  # the vector is cached: decode for the fingerprint alone
                    return sha, None, None, decode_once(None, path, fp_params)[1]
                except Exception:  # noqa: BLE001 - decode again below to classify it
                    return _decode(embedder, path, True, fp_params)
        return _decode(embedder, path, cache is not None, fp_params)

    with ThreadPoolExecutor(max_workers=n_workers) as pool, tqdm(
            total=len(files), desc=f"embedding ({embedder.name})", unit="track",
            disable=not show_progress) as bar, (
            torch_threads_beside(n_workers) if fp_params is not None
            else contextlib.nullcontext()):
        window = max(batch_size * 2, n_workers * 2)
        futures = {}
        nxt = 0
        for i in range(len(files)):
            while nxt < len(files) and nxt < i + window:
                futures[nxt] = pool.submit(work, files[nxt])
                nxt += 1
            sha, decoded, failure, fp = futures.pop(i).result()
            if fp is not None:
                prints[i] = fp
            if failure is not None:
                failures[i] = Failure(ids[i], failure.path, failure.kind, failure.reason)
            elif decoded is None:
                hit = (cache.get(sha, source=files[i]) if cache is not None and sha is not None
                       else None)
                hit_tags = (cache.get_tags(sha) if tagging and hit is not None
                            and cache is not None and sha is not None else None)
                if hit is None or (tagging and hit_tags is None):  # removed meanwhile: decode now
                    sha, decoded, failure, fp = _decode(embedder, files[i], True, fp_params)
                    if fp is not None:
                        prints[i] = fp
                    if failure is not None:
                        failures[i] = Failure(ids[i], failure.path, failure.kind,
                                              failure.reason)
                    elif decoded is not None:
                        pending.append((i, sha, decoded))
                else:
                    vectors[i], silent[i] = hit
                    tags[i] = hit_tags if hit_tags is not None else np.zeros(0, np.float32)
                    n_cached += 1
            else:
                pending.append((i, sha, decoded))
            if len(pending) >= batch_size:
                flush()
            bar.update(1)
        flush()
    order = sorted(vectors)
    result = EmbeddingResult(
        track_ids=[ids[i] for i in order],
        vectors=(np.stack([vectors[i] for i in order]).astype(np.float32) if order
                 else np.zeros((0, embedder.dim), dtype=np.float32)),
        failures=[failures[i] for i in sorted(failures)],
        silent=[ids[i] for i in order if silent[i]],
        n_cached=n_cached, n_embedded=n_embedded,
        n_damaged=0 if cache is None else cache.n_damaged, embedder_id=embedder.id,
        tags=(np.stack([tags[i] for i in order]).astype(np.float32) if order
              else np.zeros((0, len(embedder.tag_names)), dtype=np.float32)),
        tag_names=list(embedder.tag_names),
        fingerprints={ids[i]: prints[i] for i in order if i in prints})
    if len(result.track_ids) + len(result.failures) != len(files):
        raise RuntimeError("internal error: a file was neither embedded nor failed")
    for f in result.failures:
        log.warning("could not embed %s: %s (%s)", f.path, f.kind, f.reason)
    if result.silent:
        log.warning("%d track(s) are silent: %s", len(result.silent), result.silent[:5])
    return result


def scan_folder(folder: str | Path) -> tuple[list[str], list[Path], list[Path]]:
    """(track ids, audio paths, skipped non-audio paths) of a folder, recursively.

    A track id is the path relative to ``folder`` without its suffix; hidden files are
    ignored; a file with a suffix not in :data:`AUDIO_EXTENSIONS` is skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError(f"{folder} is not a folder")
    ids, paths, skipped = [], [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in AUDIO_EXTENSIONS:
            ids.append(rel.with_suffix("").as_posix())
            paths.append(path)
        else:
            skipped.append(path)
    # two files differing only by suffix (a.ogg, a.mp3) keep their suffix in the id
    counts: dict[str, int] = {}
    for t in ids:
        counts[t] = counts.get(t, 0) + 1
    ids = [t if counts[t] == 1 else p.relative_to(folder).as_posix()
           for t, p in zip(ids, paths, strict=True)]
    return ids, paths, skipped


def read_catalog_paths(path: str | Path) -> tuple[list[str], list[Path]]:
    """(track ids, audio paths) of a CSV/TSV/Parquet catalogue with ``track_id`` and
    ``audio_path`` columns; relative paths are resolved against the catalogue's folder."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str,
                                keep_default_na=False)
        else:
            raise DataFormatError(path, f"unsupported catalogue format {suffix!r} "
                                        "(use .csv, .tsv or .parquet)")
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(path, f"cannot read the catalogue: {exc}") from None
    for col in ("track_id", "audio_path"):
        if col not in frame.columns:
            raise DataFormatError(path, f"missing column; found {list(frame.columns)}",
                                  column=col)
    ids, paths = [], []
    for row, (tid, apath) in enumerate(zip(frame["track_id"], frame["audio_path"],
                                           strict=True)):
        if not str(tid) or not str(apath):
            raise DataFormatError(path, "empty track_id or audio_path", line=row + 2)
        ids.append(str(tid))
        p = Path(str(apath)).expanduser()
        paths.append(p if p.is_absolute() else path.parent / p)
    return ids, paths


def embed_catalog(source: str | Path, *, embedder: AudioEmbedder, **options: object
                  ) -> EmbeddingResult:
    """Embed a folder of audio files or a catalogue file (see :func:`embed_paths` options).

    Files of a folder whose suffix is not audio are reported as ``not_audio`` failures, so
    nothing is silently dropped.
    """
    source = Path(source)
    if source.is_dir():
        ids, paths, skipped = scan_folder(source)
        if skipped:
            log.info("skipping %d file(s) without an audio suffix", len(skipped))
        extra = [Failure(p.relative_to(source).as_posix(), str(p), "not_audio",
                         f"suffix {p.suffix!r} is not an audio format") for p in skipped]
    elif source.is_file():
        ids, paths = read_catalog_paths(source)
        extra = []
    else:
        raise ParameterError(f"{source} is neither a folder nor a catalogue file")
    result = embed_paths(paths, embedder=embedder, track_ids=ids, **options)  # type: ignore[arg-type]
    result.failures.extend(extra)
    return result


def write_embeddings(result: EmbeddingResult, out: str | Path) -> list[Path]:
    """Write vectors atomically; returns the files written.

    ``*.parquet``: columns ``track_id``, ``embedding`` (fixed-size list of float32) and
    ``silent``, with the embedder id in the schema metadata. ``*.npy``: the matrix, plus
    ``<stem>.ids.json`` (the track ids in row order). A model that tags adds a column
    ``tags`` (``tags`` and ``tag_names`` in the JSON), with the names in the metadata.
    Failures, if any, go to ``<stem>.failures.csv`` (columns ``track_id, path, kind,
    reason``).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".npy"):
        raise ParameterError(f"out={str(out)!r} must end in .parquet or .npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    silent = set(result.silent)
    dim = result.vectors.shape[1]
    tags = result.tags if result.tags is not None and result.tags.shape[1] else None
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if suffix == ".parquet":
            flat = pa.array(result.vectors.reshape(-1), type=pa.float32())
            columns = {
                "track_id": pa.array(result.track_ids, type=pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
                "silent": pa.array([t in silent for t in result.track_ids]),
            }
            meta = {"musicrec.embedder_id": result.embedder_id, "musicrec.dim": str(dim)}
            if tags is not None:
                columns["tags"] = pa.FixedSizeListArray.from_arrays(
                    pa.array(tags.reshape(-1), type=pa.float32()), tags.shape[1])
                meta["musicrec.tag_names"] = json.dumps(result.tag_names)
            table = pa.table(columns).replace_schema_metadata(meta)
            pq.write_table(table, tmp)
        else:
            with open(tmp, "wb") as f:
                np.save(f, result.vectors.astype(np.float32), allow_pickle=False)
            ids_path = out.with_name(out.stem + ".ids.json")
            extra = {} if tags is None else {"tag_names": result.tag_names,
                                             "tags": tags.round(6).tolist()}
            _atomic_write_bytes(ids_path, json.dumps(
                {"embedder_id": result.embedder_id, "track_ids": result.track_ids,
                 "silent": sorted(silent), **extra}).encode())
            written.append(ids_path)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    written.insert(0, out)
    fail_path = out.with_name(out.stem + ".failures.csv")
    if result.failures:
        frame = pd.DataFrame([f.__dict__ for f in result.failures],
                             columns=["track_id", "path", "kind", "reason"])
        _atomic_write_bytes(fail_path, frame.to_csv(index=False).encode())
        written.append(fail_path)
    elif fail_path.exists():
        fail_path.unlink()
    return written


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(track ids, vectors) from a file written by :func:`write_embeddings`."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "track_id" not in table.column_names or "embedding" not in table.column_names:
            raise DataFormatError(path, "needs columns 'track_id' and 'embedding'")
        ids = [str(t) for t in table.column("track_id").to_pylist()]
        emb = table.column("embedding").combine_chunks()
        vectors = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        return ids, vectors.reshape(len(ids), -1)
    vectors = np.load(path, allow_pickle=False, mmap_mode="r")
    meta = json.loads(path.with_name(path.stem + ".ids.json").read_text())
    return list(meta["track_ids"]), vectors
