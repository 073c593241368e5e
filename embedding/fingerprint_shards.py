"""A fingerprint index split by hash value into shards, looked up as one index.

At a million full-length tracks the postings of :class:`~.fingerprint.FingerprintIndex`
take about 129 GB, and a 10-s clip reads about 32 M of them. ``docs/scaling.md`` plans
the postings sharded by hash value: each shard holds the posting lists of the hashes it
owns (any machine or process can serve it, mmap'd), a query sends each of its hashes to
the shard that owns it, each shard gathers its hits, and one vote decides.
:class:`ShardedFingerprintIndex` is that plan in one process: its lookup gathers the
shards' hits (on ``workers`` threads; numpy's searches and gathers release the GIL) and
votes exactly as the whole index would, so :meth:`identify`, :meth:`query` and
:meth:`calibrate` are the whole index's, answer for answer.

The shard of a hash is a multiplicative hash of its ``(f2 - f1, Δt)``: a pitch shift moves
``f1`` and ``f2`` together, so a landmark and its pitch-shifted copies share a shard.

Layout on disk (``save``)::

    fingerprint.json          the whole index's meta, plus "shards": n
    track_ids.npy, n_hashes.npy, durations.npy, peaks.npy, peak_starts.npy
    shard-000/keys.npy, starts.npy, postings.npy
    ...
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.fingerprint import (
    _META_FILE,
    Fingerprint,
    FingerprintIndex,
    FingerprintParams,
    PathLike,
    concat_ranges,
    load_array,
    split_hashes,
    write_directory,
)
from musicrec.errors import ModelFormatError, ParameterError

__all__ = ["ShardedFingerprintIndex", "shard_of"]

_MIX = np.uint64(0x9E3779B1)  # Knuth's multiplicative constant (2**32 / golden ratio)
_POSTINGS = ("keys", "starts", "postings")
#: Per-track arrays, held once by the sharded index (the constellations of the
#: verification stage among them; see ``FingerprintIndex._verify``).
_TRACKS = ("track_ids", "n_hashes", "durations", "peaks", "peak_starts")


def shard_of(hashes: np.ndarray, params: FingerprintParams, n_shards: int) -> np.ndarray:
    """The shard owning each hash (``int64``, ``0 .. n_shards - 1``): a multiplicative hash
    of ``(f2 - f1, Δt)``, so pitch-shifted copies of a landmark share its shard."""
    fb, db = params.freq_bits, params.dt_bits
    f1, f2, dt = split_hashes(hashes, params)
    key = ((f2 - f1 + 2**fb) << db | dt).astype(np.uint64)
    mixed = (key * _MIX) & np.uint64(0xFFFFFFFF)
    # the high bits of the product are the mixed ones: scale the 32-bit value to 0..n-1
    return ((mixed * np.uint64(n_shards)) >> np.uint64(32)).astype(np.int64)


class ShardedFingerprintIndex(FingerprintIndex):
    """A :class:`FingerprintIndex` whose postings live in ``n_shards`` shards by hash value.

    Made from a built index by :meth:`split`, or read by :meth:`load`; it cannot stage
    tracks itself (build or extend the whole index, then split it again).

    Parameters
    ----------
    workers : int
        Threads that gather the shards' hits of one lookup (1: one after another).

    Attributes
    ----------
    shards_ : list of FingerprintIndex
        Shard ``s`` holds the posting lists of the hashes whose :func:`shard_of` is ``s``
        (its ``keys_``, ``starts_``, ``postings_``); the tracks are this index's.
    """

    def __init__(self, *, workers: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError(f"workers={workers!r} must be a positive integer")
        self.workers = workers
        self.shards_: list[FingerprintIndex] = []

    @classmethod
    def split(cls, index: FingerprintIndex, n_shards: int, *,
              workers: int = 1) -> ShardedFingerprintIndex:
        """``index`` split into ``n_shards`` shards (its thresholds and stop list kept).

        Raises
        ------
        ParameterError
            ``n_shards`` below 1, or ``index`` with staged tracks.
        """
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise ParameterError(f"n_shards={n_shards!r} must be a positive integer")
        if index._pending:
            raise ParameterError("the index has staged tracks: call build() before split()")
        sharded = cls(workers=workers, **index.settings())
        sharded._set_tracks(*(getattr(index, f"{name}_") for name in _TRACKS))
        keys = np.asarray(index.keys_)
        starts = np.asarray(index.starts_).astype(np.int64)
        owner = shard_of(keys, index.params, n_shards)
        for s in range(n_shards):
            mine = np.flatnonzero(owner == s)
            counts = starts[mine + 1] - starts[mine]
            total = int(counts.sum())
            shard = sharded._shard()
            shard.keys_ = keys[mine]
            shard.starts_ = np.zeros(mine.size + 1,
                                     dtype=np.uint32 if total < 2**32 else np.uint64)
            np.cumsum(counts, out=shard.starts_[1:])
            # each kept list, copied whole
            shard.postings_ = np.asarray(index.postings_)[concat_ranges(starts[mine], counts)]
            sharded.shards_.append(shard)
        return sharded

    def _shard(self) -> FingerprintIndex:
        """An empty shard sharing this index's tracks."""
        shard = FingerprintIndex(params=self.params)
        shard.track_ids_, shard.n_hashes_ = self.track_ids_, self.n_hashes_
        shard.durations_ = self.durations_
        return shard

    def _set_tracks(self, track_ids: np.ndarray, n_hashes: np.ndarray,
                    durations: np.ndarray, peaks: np.ndarray, peak_starts: np.ndarray) -> None:
        self.track_ids_, self.n_hashes_, self.durations_ = track_ids, n_hashes, durations
        self.peaks_, self.peak_starts_ = peaks, peak_starts
        self._id_to_idx = {str(t): i for i, t in enumerate(track_ids)}

    # -- what differs from one index ----------------------------------------------------
    @property
    def n_postings(self) -> int:
        return sum(shard.n_postings for shard in self.shards_)

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, f"{name}_").nbytes for name in _TRACKS)
                   + sum(getattr(shard, f"{name}_").nbytes
                         for shard in self.shards_ for name in _POSTINGS))

    def unpacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting as plain arrays, shard after shard (each sorted by hash)."""
        parts = [shard.unpacked() for shard in self.shards_]
        return tuple(np.concatenate([p[k] for p in parts])  # type: ignore[return-value]
                     for k in range(3))

    def add(self, track_id: str, audio_or_hashes: PathLike | np.ndarray | Fingerprint, *,
            sr: int | None = None) -> Fingerprint:
        raise ParameterError("a sharded fingerprint index cannot add tracks: add them to "
                             "the whole index, build() it and split() it again")

    def _hits(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each shard gathers the hits of the hashes it owns; positions are the query's."""
        hashes = np.asarray(hashes)
        n = len(self.shards_)
        route = shard_of(hashes, self.params, n)
        order = np.argsort(route, kind="stable")
        bounds = np.searchsorted(route[order], np.arange(n + 1))
        parts = [order[bounds[s]:bounds[s + 1]] for s in range(n)]
        busy = [s for s in range(n) if parts[s].size]

        def gather(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            shard = self.shards_[s]
            shard.max_postings = self.max_postings
            q, track, db_time = shard._hits(hashes[parts[s]])
            return parts[s][q], track, db_time

        if self.workers > 1 and len(busy) > 1:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(busy))) as pool:
                found = list(pool.map(gather, busy))
        else:
            found = [gather(s) for s in busy]
        if not found:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return tuple(np.concatenate([f[k] for f in found])  # type: ignore[return-value]
                     for k in range(3))

    # -- persistence ------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "shards": len(self.shards_)}

    def save(self, path: PathLike) -> Path:
        """Write the index to the directory ``path`` (replaced atomically): the tracks
        once, each shard's postings in ``shard-NNN/`` (see the module docstring)."""

        def write(tmp: Path) -> None:
            for name in _TRACKS:
                np.save(tmp / f"{name}.npy", np.asarray(getattr(self, f"{name}_")),
                        allow_pickle=False)
            for s, shard in enumerate(self.shards_):
                (tmp / f"shard-{s:03d}").mkdir()
                for name in _POSTINGS:
                    np.save(tmp / f"shard-{s:03d}" / f"{name}.npy",
                            np.asarray(getattr(shard, f"{name}_")), allow_pickle=False)
            (tmp / _META_FILE).write_text(json.dumps(self._meta(), indent=2) + "\n")

        return write_directory(path, write)

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = True,
             params: FingerprintParams | None = None,
             workers: int = 1) -> ShardedFingerprintIndex:
        """Load an index written by :meth:`save` (its arrays mmap'd by default).

        Raises
        ------
        ModelFormatError
            A missing or corrupt file, another format version, other parameters, or
            shards that disagree with ``fingerprint.json``.
        """
        path = Path(path)
        meta = FingerprintIndex.read_meta(path, params=params)
        n_shards = meta.get("shards")
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise ModelFormatError(f"{path / _META_FILE}: not a sharded fingerprint index "
                                   f"(shards={n_shards!r}); load it with FingerprintIndex")
        index = cls(workers=workers, **FingerprintIndex.settings_from_meta(path, meta))
        tracks = [load_array(path / f"{name}.npy", mmap=mmap) for name in _TRACKS]
        peaks, peak_starts = tracks[3], tracks[4]
        if (len({t.shape for t in tracks[:3]}) != 1
                or tracks[0].shape != (meta.get("n_tracks"),)
                or peak_starts.shape != (len(tracks[0]) + 1,)
                or int(peak_starts[-1]) != peaks.shape[0]):
            raise ModelFormatError(f"{path}: track arrays disagree with {_META_FILE}")
        index._set_tracks(*tracks)
        for s in range(n_shards):
            keys, starts, postings = (load_array(path / f"shard-{s:03d}" / f"{name}.npy",
                                                 mmap=mmap) for name in _POSTINGS)
            if (keys.ndim != 1 or starts.shape != (keys.size + 1,) or postings.ndim != 2
                    or postings.shape[1:] != (3,) or postings.dtype != np.uint16
                    or int(starts[-1]) != postings.shape[0]):
                raise ModelFormatError(f"{path / f'shard-{s:03d}'}: arrays disagree")
            shard = index._shard()
            shard.keys_, shard.starts_, shard.postings_ = keys, starts, postings
            index.shards_.append(shard)
        if index.n_postings != meta.get("n_postings"):
            raise ModelFormatError(f"{path}: the shards hold {index.n_postings} postings, "
                                   f"{_META_FILE} says {meta.get('n_postings')}")
        return index
