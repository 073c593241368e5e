"""Fingerprint lookup at 1M full-length tracks, measured without holding the catalogue.

A packed index of 1M four-minute tracks holds about 21 G hashes, about 128 GB: more than
this machine's disk and far more than a benchmark's 6 GB of memory. Two facts make its
lookup measurable anyway:

* **A lookup reads only the posting lists of the query's hashes.** For a set of queries,
  an index holding *every* posting of *every* hash those queries use (and none of the
  others) reads exactly the postings the full index would read and gives exactly the same
  votes, so lookup time and identification are those of the full 1M-track index. The
  benchmark generates the whole catalogue's hash streams and keeps those postings (the
  "query-restricted index"); its key directory is dense (every possible hash value), the
  full index's size.
* **The scaling plan shards the postings by hash value** (``docs/scaling.md``): a query
  sends each of its hashes to the shard that owns it and each shard gathers its hits
  (``FingerprintIndex._hits``). The query-restricted index is split the same way into
  ``--shards`` shards, so each query's per-shard gather times are measured. The vote is
  measured two ways: one merger joins every shard's hits and votes
  (``FingerprintIndex._votes(..., hits=...)``, checked equal to the unsharded votes), or
  each shard orders its hits by track for ``--shards`` vote partitions (two rounds: each
  partition sends its 64 tracks with the most hits, a coordinator keeps the best 64, the
  unsharded vote's candidates; each partition then votes over those tracks' hits; the
  coordinator takes the best two, checked against the unsharded decision). One real
  shard is also built whole (every posting of the catalogue whose hash it owns) for its
  size in bytes and its posting-list lengths, and its gather is checked to read exactly
  the postings of the restricted index's shard.
* **Stop lists** (``--max-list``): the same lookups looking up only the query hashes
  whose posting list holds at most so many postings; the shard built whole says what
  share of the index such a stop list removes.

The shard of a hash is a multiplicative hash of its ``(f2 - f1, Δt)``: a pitch shift
moves ``f1`` and ``f2`` together, so the shifted copies below land in their source's shard
and one shard is generated from ``1/shards`` of the landmarks. The load this puts on each
shard is measured (the largest shard against the mean).

Synthetic catalogue: the generator of ``bench_fingerprint.py`` (``synthetic_stream``,
imported: windows of real landmarks shifted in pitch by ±2..40 bins and stretched in time
by 0.8..1.25) draws ``--track-s``-second windows from *medleys* (random sequences of
``--sources`` real-music recordings, ``--real-music``, built by
``benchmarks/real_music/build_set.py``, long enough for a full-length window); each such
prototype gives ``--shifts`` tracks, shifted again by ``-shifts//2 .. shifts//2``
frequency bins (hashes pushed out of range are dropped, as in ``synthetic_stream``). The
catalogue also holds librosa's music recordings (``.ogg``) as real tracks, never used as
sources (a copy shifted back to its own pitch would duplicate a queried track); queries
are 10-s clips of their other encoding (``.hq.ogg``) at 10 dB SNR, as in
``bench_fingerprint.py --sections scale``. Lookup is timed from the query's fingerprint
(its hashing excluded); identification (top-1: the right track and an offset within 0.1
s) is the full :meth:`~musicrec.embedding.fingerprint.FingerprintIndex.identify`.

Nothing is written to disk; the indexes are held in memory (as a hot mmap'd index would
be). Every timing is one process on one core, measured one query at a time; "parallel"
figures add the slowest shard's time as if each shard ran on its own core, network
excluded. Run by hand (with the defaults: 12 minutes on the shared 2-core machine, 5.5
CPU-minutes, and a peak of 5.2 GB of memory; the README's *Fingerprints* section has the
numbers)::

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_fingerprint_scale.py \
        --tracks 1000000 --track-s 240 --shards 128 --queries 20
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np
from bench_fingerprint import (  # benchmarks/ is the script's folder, so on sys.path
    SR_QUERY,
    add_noise,
    query_fingerprint,
    recordings,
    synthetic_stream,
)

from musicrec.embedding.fingerprint import (
    TIME_BITS,
    Fingerprint,
    FingerprintIndex,
    FingerprintParams,
    fingerprint,
    load_audio,
    split_hashes,
    tolerant_hashes,
)
from musicrec.embedding.fingerprint_shards import ShardedFingerprintIndex, shard_of
from musicrec.errors import ParameterError

log = logging.getLogger("bench_fingerprint_scale")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def medleys(fps: list[Fingerprint], *, n: int, seconds: float, params: FingerprintParams,
            rng: np.random.Generator) -> list[Fingerprint]:
    """``n`` fingerprints of random sequences of the real recordings, each at least
    ``seconds`` long (the landmarks of each recording, its times moved after the last)."""
    out = []
    gap = params.max_dt + 1  # no landmark spans two recordings
    for _ in range(n):
        hashes, times, t0 = [], [], 0
        while t0 * params.frame_s < seconds:
            fp = fps[int(rng.integers(len(fps)))]
            hashes.append(fp.hashes)
            times.append(fp.times.astype(np.int64) + t0)
            t0 += int(round(fp.duration_s / params.frame_s)) + gap
        out.append(Fingerprint(hashes=np.concatenate(hashes),
                               times=np.concatenate(times).astype(np.uint32),
                               duration_s=t0 * params.frame_s))
    return out


def shifted_copies(rows: np.ndarray, lo: np.ndarray, room: np.ndarray, shifts: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(row, shift index)`` of every shifted copy of the hashes ``rows`` that stays in
    range (``-lo <= shift <= room``)."""
    ok = (lo[rows, None] + shifts[None, :] >= 0) & (shifts[None, :] <= room[rows, None])
    r, c = np.nonzero(ok)
    return rows[r], c


class Postings:
    """Postings gathered in chunks as ``hash << 40 | track << 20 | anchor time`` (uint64)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.size = 0

    def add(self, packed: np.ndarray) -> None:
        if packed.size:
            self.chunks.append(packed)
            self.size += packed.size

    def sorted(self) -> np.ndarray:
        """Every posting, sorted (by hash, then track, then time); the chunks are freed."""
        out = np.empty(self.size, dtype=np.uint64)
        at = 0
        for i, chunk in enumerate(self.chunks):
            out[at:at + chunk.size] = chunk
            at += chunk.size
            self.chunks[i] = None  # type: ignore[call-overload]
        self.chunks, self.size = [], 0
        out.sort()
        return out


def packed_index(packed: np.ndarray, *, params: FingerprintParams, track_ids: np.ndarray,
                 n_hashes: np.ndarray, durations: np.ndarray,
                 keys: np.ndarray | None = None) -> FingerprintIndex:
    """A :class:`FingerprintIndex` in format 2 from sorted ``hash << 40 | posting`` values
    (``packed`` is overwritten: pass the only reference).

    ``keys``: the directory's hashes (default: the distinct hashes present); a hash of
    ``keys`` without postings gets an empty list.
    """
    hash_bits = 2 * params.freq_bits + params.dt_bits
    counts = np.zeros(2**hash_bits, dtype=np.int64)
    for at in range(0, packed.size, 1 << 24):
        counts += np.bincount((packed[at:at + (1 << 24)] >> np.uint64(40)).astype(np.int64),
                              minlength=2**hash_bits)
    if keys is None:
        keys = np.flatnonzero(counts).astype(np.uint32)
    starts = np.zeros(keys.size + 1, dtype=np.uint64)
    np.cumsum(counts[keys], out=starts[1:])
    # hash streams only, no constellations: identify() without the verification stage
    index = FingerprintIndex(params=params, min_peaks=None)
    index.keys_ = keys.astype(np.uint32)
    # the 1M-track index holds ~23 G postings, so its starts are uint64 (save()'s rule)
    index.starts_ = starts
    # the low six bytes of each little-endian uint64: track << TIME_BITS | anchor time
    packed &= np.uint64((1 << 40) - 1)
    index.postings_ = np.ascontiguousarray(packed.view("<u2").reshape(-1, 4)[:, :3])
    index.track_ids_, index.n_hashes_, index.durations_ = track_ids, n_hashes, durations
    return index


def stats(ms: list[float]) -> dict[str, float]:
    return {"median": float(np.median(ms)), "p95": float(np.quantile(ms, 0.95))}


def best_two(tracks: np.ndarray, scores: np.ndarray) -> tuple[int, int, int]:
    """The best track, its score and the best score of any other track (identify()'s
    decision reads these), from ``_votes``' rows."""
    if scores.size == 0:
        return -1, 0, 0
    best = int(np.argmax(scores))
    other = tracks != tracks[best]
    return int(tracks[best]), int(scores[best]), int(scores[other].max(initial=0))


def partitioned_vote(mergers: list[FingerprintIndex], h: np.ndarray, t: np.ndarray,
                     hits: tuple[np.ndarray, np.ndarray, np.ndarray],
                     ) -> tuple[tuple[int, int, int], float]:
    """The vote split by track: merger ``m`` holds the hits of tracks ``m, m + M, ...``.

    Round 1: each merger sends its 64 tracks with the most hits; the coordinator keeps the
    64 best of those, the unsharded vote's candidates (``_votes``' ``max_candidates``).
    Round 2: each merger votes over its candidates' hits and sends its rows; the
    coordinator takes the best two. Returns the decision (best track, score, second
    score) and the time in ms: the slowest merger of each round and the coordinator's
    steps. The shuffle (each shard sends each merger its tracks' hits) is done here
    untimed: each shard's share of it, ordering its hits by merger, is timed in
    :func:`lookup`; the transfer is not measured.
    """
    n = len(mergers)
    q, track, db_time = hits
    t0 = time.perf_counter()
    part = track % n
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n + 1))
    ms = 0.0
    slowest, local = 0.0, []
    for m, merger in enumerate(mergers):
        t0 = time.perf_counter()
        counts = np.bincount(track[order[bounds[m]:bounds[m + 1]]] // n,
                             minlength=len(merger))
        k = min(64, int(np.count_nonzero(counts)))
        top = np.argpartition(-counts, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        local.append((top * n + m, counts[top]))
        slowest = max(slowest, (time.perf_counter() - t0) * 1000)
    ms += slowest
    t0 = time.perf_counter()
    cand = np.concatenate([x[0] for x in local])
    cand_hits = np.concatenate([x[1] for x in local])
    if cand.size > 64:
        cand = cand[np.argpartition(-cand_hits, 63)[:64]]
    chosen = np.zeros(len(mergers[0]) * n, dtype=bool)
    chosen[cand] = True
    ms += (time.perf_counter() - t0) * 1000
    slowest, rows = 0.0, []
    for m, merger in enumerate(mergers):
        t0 = time.perf_counter()
        mine = order[bounds[m]:bounds[m + 1]]
        mine = mine[chosen[track[mine]]]
        tracks, _, scores, _, _ = merger._votes(h, t, hits=(q[mine], track[mine] // n,
                                                             db_time[mine]))
        rows.append((tracks * n + m, scores))
        slowest = max(slowest, (time.perf_counter() - t0) * 1000)
    ms += slowest
    t0 = time.perf_counter()
    decision = best_two(np.concatenate([r[0] for r in rows]),
                        np.concatenate([r[1] for r in rows]))
    ms += (time.perf_counter() - t0) * 1000
    return decision, ms


def lookup(full: FingerprintIndex, shards: list[FingerprintIndex], shard_of_key: np.ndarray,
           queries: list[tuple[str, float, Fingerprint]], *, max_list: int | None,
           ) -> dict[str, object]:
    """Time the lookups of ``queries``, unsharded and sharded, looking up only the hashes
    whose posting list holds at most ``max_list`` postings (all when ``None``)."""
    params = full.params
    full_starts = np.asarray(full.starts_)
    rows: dict[str, list[float]] = {k: [] for k in (
        "kept", "read", "gather", "votes", "identify", "shard", "slowest", "sum", "merge",
        "two_stage")}
    right = same = same_decision = 0
    n_shards = len(shards)
    # the second stage: n_shards vote partitions by track, each knowing its tracks only
    mergers = []
    for m in range(n_shards):
        merger = FingerprintIndex(params=params)
        merger.track_ids_ = full.track_ids_[m::n_shards][: len(full) // n_shards + 1]
        if merger.track_ids_.size < len(full) // n_shards + 1:  # every merger alike
            merger.track_ids_ = np.append(merger.track_ids_, "")
        merger.postings_ = full.postings_[:1]  # not read: the hits come ready
        mergers.append(merger)
    for stem, offset, qfp in queries:
        at = np.searchsorted(full.keys_, qfp.hashes)  # the dense directory: at == hash
        length = (full_starts[at + 1] - full_starts[at]).astype(np.int64)
        keep = np.ones(len(qfp), dtype=bool) if max_list is None else length <= max_list
        fp = Fingerprint(hashes=qfp.hashes[keep], times=qfp.times[keep],
                         duration_s=qfp.duration_s)
        h, t = tolerant_hashes(fp.hashes, fp.times, params=params)
        t0 = time.perf_counter()
        hits = full._hits(h)
        t1 = time.perf_counter()
        expect = full._votes(h, t, hits=hits)
        t2 = time.perf_counter()
        match = full.identify(fp)
        t3 = time.perf_counter()
        rows["kept"].append(keep.mean())
        rows["read"].append(hits[0].size)
        rows["gather"].append((t1 - t0) * 1000)
        rows["votes"].append((t2 - t1) * 1000)
        rows["identify"].append((t3 - t2) * 1000)
        right += bool(match and match.track_id == stem and abs(match.offset_s - offset) < 0.1)
        # sharded: route each hash to its shard, gather there, vote once
        t0 = time.perf_counter()
        route = shard_of_key[h]
        order = np.argsort(route, kind="stable")
        bounds = np.searchsorted(route[order], np.arange(n_shards + 1))
        route_s = time.perf_counter() - t0
        parts, shard_ms, shard_route_ms = [], [], []
        for s, shard in enumerate(shards):
            mine = order[bounds[s]:bounds[s + 1]]
            t0 = time.perf_counter()
            q, track, db_time = shard._hits(h[mine])
            t1 = time.perf_counter()
            np.argsort(track % n_shards, kind="stable")  # its hits, in order of merger
            shard_ms.append((t1 - t0) * 1000)
            shard_route_ms.append((time.perf_counter() - t0) * 1000)
            parts.append((mine[q], track, db_time))
        t0 = time.perf_counter()
        merged = tuple(np.concatenate([part[k] for part in parts]) for k in range(3))
        votes = full._votes(h, t, hits=merged)  # type: ignore[arg-type]
        rows["merge"].append((time.perf_counter() - t0 + route_s) * 1000)
        rows["shard"].extend(shard_ms)
        rows["slowest"].append(max(shard_ms))
        rows["sum"].append(sum(shard_ms))
        same += all(np.array_equal(a, b) for a, b in zip(votes[:3], expect[:3], strict=True))
        decision, vote_ms = partitioned_vote(mergers, h, t, merged)  # type: ignore[arg-type]
        track_want, score_want, second_want = best_two(expect[0], expect[2])
        same_decision += decision[1:] == (score_want, second_want) and (
            decision[0] == track_want or score_want == second_want)
        rows["two_stage"].append(route_s * 1000 + max(shard_route_ms) + vote_ms)
    par = [a + b for a, b in zip(rows["slowest"], rows["merge"], strict=True)]
    ser = [a + b for a, b in zip(rows["sum"], rows["merge"], strict=True)]
    return {"max_list": max_list, "hashes_kept": float(np.mean(rows["kept"])),
            "postings_read_median": float(np.median(rows["read"])),
            **{f"{k}_ms": stats(rows[k]) for k in ("gather", "votes", "identify", "shard",
                                                   "slowest", "sum", "merge")},
            "parallel_total_ms": stats(par), "serial_total_ms": stats(ser),
            "two_stage_ms": stats(rows["two_stage"]),
            "top1": right / len(queries), "same_votes_sharded": same / len(queries),
            "same_decision_two_stage": same_decision / len(queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/librosa-audio"))
    parser.add_argument("--real-music", type=Path, default=Path.home() / ".cache" / "musicrec"
                        / "real_music", help="the real-music set (its catalog.csv)")
    parser.add_argument("--sources", type=int, default=32,
                        help="real-music tracks used as sources of the synthetic streams")
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--track-s", type=float, default=240.0,
                        help="seconds of audio per synthetic track")
    parser.add_argument("--shifts", type=int, default=17,
                        help="tracks made from each prototype by shifting it in frequency")
    parser.add_argument("--shards", type=int, default=128)
    parser.add_argument("--shard", type=int, default=0, help="the shard built whole")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--max-list", type=int, nargs="*", default=[20000, 10000, 5000, 2500],
                        help="stop lists to measure: look up only hashes whose posting list "
                        "holds at most this many postings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", help="FingerprintParams overrides as JSON")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    params = FingerprintParams(**(json.loads(args.params) if args.params else {}))
    fb, db = params.freq_bits, params.dt_bits
    hash_bits = 2 * fb + db
    if args.tracks > 2**20 or hash_bits + 20 + TIME_BITS > 64:
        raise ParameterError(f"tracks={args.tracks} must be <= 2**20 and the hash "
                             f"({hash_bits} bits) <= 24 bits for the 64-bit sort keys")
    if not 0 <= args.shard < args.shards:
        raise ParameterError(f"shard={args.shard} must be in 0..shards-1={args.shards - 1}")

    # -- real recordings: catalogue tracks, queries and sources -----------------------------
    t_start = time.perf_counter()
    music, _ = recordings(args.data)
    real = {stem: fingerprint(args.data / f"{stem}.ogg", params=params) for stem in music}
    # the queried recordings are never sources: a synthetic copy of one, shifted back to
    # its own pitch, would be a true duplicate of the track the query must find
    catalog = args.real_music / "catalog.csv"
    if not catalog.is_file():
        raise ParameterError(f"real_music={args.real_music}: no catalog.csv (build the set "
                             "with benchmarks/real_music/build_set.py)")
    with catalog.open() as f:
        rows = sorted((r for r in csv.DictReader(f) if r["label"] != "librosa"),
                      key=lambda r: r["track_id"])
    step = max(1, len(rows) // args.sources)
    sources = [fingerprint(args.real_music / r["audio_path"], params=params)
               for r in rows[::step][: args.sources]]
    src_s = sum(fp.duration_s for fp in sources)
    src_rate = sum(len(fp) for fp in sources) / src_s
    print(f"sources: {len(sources)} real-music recordings, {src_s / 3600:.2f} h, "
          f"{src_rate:.1f} hashes/s ({time.perf_counter() - t_start:.0f} s to fingerprint)")

    queries = []
    for _ in range(args.queries):
        stem = music[int(rng.integers(len(music)))]
        y = load_audio(args.data / f"{stem}.hq.ogg", sr=SR_QUERY)
        n = min(10 * SR_QUERY, y.size)
        start = int(rng.integers(0, y.size - n + 1))
        qfp = query_fingerprint(add_noise(y[start:start + n], 10, rng), params)
        h, t = tolerant_hashes(qfp.hashes, qfp.times, params=params)
        queries.append((stem, start / SR_QUERY, qfp, h, t))
    in_query = np.zeros(2**hash_bits, dtype=bool)
    for *_, h, _t in queries:
        in_query[h] = True
    shifts = np.arange(-(args.shifts // 2), args.shifts - args.shifts // 2, dtype=np.int64)
    # a source hash can land on a query hash only from one of these values
    step_k = (1 << (fb + db)) + (1 << db)
    query_keys = np.flatnonzero(in_query).astype(np.int64)
    could = np.zeros(2**hash_bits, dtype=bool)
    for s in shifts:
        pre = query_keys - s * step_k
        could[pre[(pre >= 0) & (pre < 2**hash_bits)]] = True
    print(f"queries: {len(queries)} clips of 10 s at 10 dB SNR, "
          f"{query_keys.size} distinct hashes")

    # -- the catalogue: real tracks, then prototypes x shifts ------------------------------
    n_real = len(real)
    track_ids = np.array(list(real) + [f"synthetic-{i}" for i in range(args.tracks - n_real)])
    n_hashes = np.zeros(args.tracks, dtype=np.int64)
    durations = np.full(args.tracks, float(args.track_s))
    restricted, shard_whole = Postings(), Postings()
    time_mask = np.uint64((1 << TIME_BITS) - 1)

    load = np.zeros(args.shards)  # postings per shard, over the whole catalogue

    def pack(hashes: np.ndarray, tracks: np.ndarray, times: np.ndarray) -> np.ndarray:
        return ((hashes.astype(np.uint64) << np.uint64(40))
                | (tracks.astype(np.uint64) << np.uint64(TIME_BITS))
                | (times.astype(np.uint64) & time_mask))

    for i, fp in enumerate(real.values()):
        h = fp.hashes.astype(np.int64)
        packed = pack(h, np.full(len(fp), i), fp.times)
        owner = shard_of(h, params, args.shards)
        restricted.add(packed[in_query[h]])
        shard_whole.add(packed[owner == args.shard])
        load += np.bincount(owner, minlength=args.shards)
        n_hashes[i] = len(fp)
        durations[i] = fp.duration_s
    owner_of = shard_of(np.arange(2**hash_bits), params, args.shards).astype(np.int16)
    mixes = medleys(sources, n=64, seconds=args.track_s / 0.8 + 30, params=params, rng=rng)
    t0 = time.perf_counter()
    track, n_protos = n_real, 0
    while track < args.tracks:
        proto = synthetic_stream(mixes[int(rng.integers(len(mixes)))], seconds=args.track_s,
                                 params=params, rng=rng)
        h = proto.hashes.astype(np.int64)
        t = proto.times
        f1, f2, _ = split_hashes(h, params)
        # shift s keeps a hash in range iff -lo <= s <= room (f1 + s, f2 + s in 0..2**fb-1)
        lo, room = np.minimum(f1, f2), 2**fb - 1 - np.maximum(f1, f2)
        use = shifts[: args.tracks - track]
        first, last = np.maximum(-lo, use[0]), np.minimum(room, use[-1])
        per_hash = np.maximum(0, last - first + 1)
        # hashes kept by shift s: lo >= -s when s <= 0, room >= s when s > 0
        k = int(np.abs(use).max())
        lo_at_least = np.bincount(np.minimum(lo, k), minlength=k + 1)[::-1].cumsum()[::-1]
        room_at_least = np.bincount(np.minimum(room, k), minlength=k + 1)[::-1].cumsum()[::-1]
        n_hashes[track:track + use.size] = np.where(
            use <= 0, lo_at_least[np.maximum(-use, 0)], room_at_least[np.maximum(use, 0)])
        # a shift keeps f2 - f1 and dt, so every shifted copy stays in its source's shard
        owner = owner_of[h]
        load += np.bincount(owner, weights=per_hash, minlength=args.shards)

        # the shard built whole: its postings of every shifted copy
        rows, cols = shifted_copies(np.flatnonzero(owner == args.shard), lo, room, use)
        shard_whole.add(pack(h[rows] + use[cols] * step_k, track + cols, t[rows]))
        # the query-restricted index: the shifted copies that land on a query hash
        rows, cols = shifted_copies(np.flatnonzero(could[h]), lo, room, use)
        shifted = h[rows] + use[cols] * step_k
        hit = in_query[shifted]
        restricted.add(pack(shifted[hit], track + cols[hit], t[rows[hit]]))
        track += use.size
        n_protos += 1
        if n_protos % 5000 == 0:
            done = (track - n_real) / (args.tracks - n_real)
            print(f"  {track:>9d} tracks, {time.perf_counter() - t0:.0f} s, "
                  f"{restricted.size / 1e6:.0f} M + {shard_whole.size / 1e6:.0f} M postings "
                  f"kept, {done:.0%}", flush=True)
    gen_s = time.perf_counter() - t0
    total = int(n_hashes.sum())
    n_synth = args.tracks - n_real
    synth_rate = n_hashes[n_real:].sum() / (n_synth * args.track_s)
    print(f"catalogue: {args.tracks} tracks ({n_synth} synthetic of {args.track_s:.0f} s), "
          f"{total / 1e9:.2f} G hashes ({synth_rate:.1f}/s of audio), "
          f"~{total * 6 / 1e9:.0f} GB of 6-byte postings; generated in {gen_s:.0f} s; "
          f"peak RSS {peak_rss_gb():.2f} GB")
    results: dict[str, object] = {
        "tracks": args.tracks, "track_s": args.track_s, "hashes": total,
        "hashes_per_s": float(synth_rate), "sources": len(sources), "shards": args.shards,
        "queries": len(queries), "params": params.to_dict()}

    # -- one shard built whole ----------------------------------------------------------------
    whole = packed_index(shard_whole.sorted(), params=params, track_ids=track_ids,
                         n_hashes=n_hashes, durations=durations)
    own = np.asarray(whole.postings_).nbytes + whole.keys_.nbytes + whole.starts_.nbytes
    share = whole.n_postings / total
    lengths = np.diff(np.asarray(whole.starts_).astype(np.int64))
    mean_list = float(lengths.mean())
    print(f"load of the {args.shards} shards (postings, whole catalogue): largest "
          f"{load.max() / load.mean():.2f}x the mean, smallest {load.min() / load.mean():.2f}x")
    print(f"shard {args.shard} of {args.shards}, built whole: {whole.n_postings / 1e6:.1f} M "
          f"postings ({share:.2%} of the catalogue; 1/{args.shards} = {1 / args.shards:.2%}), "
          f"{whole.keys_.size} distinct hashes, {own / 1e9:.2f} GB "
          f"({own / whole.n_postings:.3f} bytes/hash) plus the catalogue's track ids; "
          f"posting lists: mean {mean_list:.0f}, median {np.median(lengths):.0f}, "
          f"max {lengths.max()}; peak RSS {peak_rss_gb():.2f} GB")
    dropped = {}
    for cap in args.max_list:
        over = lengths > cap
        dropped[int(cap)] = {"hashes": float(over.mean()),
                             "postings": float(lengths[over].sum() / lengths.sum())}
        print(f"  a stop list of lists > {cap}: {over.mean():.2%} of its distinct hashes, "
              f"{lengths[over].sum() / lengths.sum():.1%} of its postings")
    whole_ms, reference = [], []  # what the shard reads for each query
    shard_of_key = owner_of.astype(np.int64)
    for *_, h, _t in queries:
        mine = np.flatnonzero(shard_of_key[h] == args.shard)
        t0 = time.perf_counter()
        q, track, db_time = whole._hits(h[mine])
        whole_ms.append((time.perf_counter() - t0) * 1000)
        reference.append(np.sort(mine[q] << 40 | track << TIME_BITS | db_time))
    results["load_max_over_mean"] = float(load.max() / load.mean())
    results["shard_whole"] = {
        "shard": args.shard, "postings": whole.n_postings, "share": share,
        "distinct_hashes": int(whole.keys_.size), "bytes": int(own),
        "bytes_per_hash": own / whole.n_postings, "gather_ms": stats(whole_ms),
        "list_mean": mean_list, "list_median": float(np.median(lengths)),
        "list_max": int(lengths.max()), "stop_list": dropped}
    print(f"  its gather per query (all hashes): median {stats(whole_ms)['median']:.2f} ms "
          f"(p95 {stats(whole_ms)['p95']:.2f})")
    del whole
    # -- the query-restricted index: lookup and identification, unsharded and sharded ---------
    full = packed_index(restricted.sorted(), params=params, track_ids=track_ids,
                        n_hashes=n_hashes, durations=durations,
                        keys=np.arange(2**hash_bits, dtype=np.uint32))
    shards = ShardedFingerprintIndex.split(full, args.shards).shards_
    print(f"query-restricted index: {full.n_postings / 1e6:.1f} M postings of "
          f"{query_keys.size} hashes (the lists the queries read), split in {args.shards} "
          f"shards; peak RSS {peak_rss_gb():.2f} GB")
    caps: list[int | None] = [None] + [int(c) for c in args.max_list]
    rows = []
    print(f"{'lookup':>14s} {'hashes':>6s} {'postings':>9s} {'gather':>7s} {'votes':>7s} "
          f"{'identify':>8s} {'shard':>6s} {'slowest':>7s} {'merge':>7s} {'parallel':>13s} "
          f"{'serial':>13s} {'2-stage':>13s} {'top-1':>6s} {'same':>5s}")
    for cap in caps:
        row = lookup(full, shards, shard_of_key, [q[:3] for q in queries], max_list=cap)
        rows.append(row)

        def cell(name: str, row: dict = row) -> str:
            return f"{row[name]['median']:.2f}" if name == "shard_ms" else \
                f"{row[name]['median']:.1f}"

        label = "all hashes" if cap is None else f"lists <= {cap}"
        print(f"{label:>14s} {row['hashes_kept']:6.1%} "
              f"{row['postings_read_median'] / 1e6:8.2f}M {cell('gather_ms'):>7s} "
              f"{cell('votes_ms'):>7s} {cell('identify_ms'):>8s} {cell('shard_ms'):>6s} "
              f"{cell('slowest_ms'):>7s} "
              f"{cell('merge_ms'):>7s} "
              f"{cell('parallel_total_ms'):>6s} ({row['parallel_total_ms']['p95']:5.1f}) "
              f"{cell('serial_total_ms'):>6s} ({row['serial_total_ms']['p95']:5.1f}) "
              f"{cell('two_stage_ms'):>6s} ({row['two_stage_ms']['p95']:5.1f}) "
              f"{row['top1']:6.3f} {row['same_votes_sharded']:4.0%}"
              f"/{row['same_decision_two_stage']:.0%}", flush=True)
    print("  (ms, medians; p95 in brackets. gather: one process reads every hit; votes: "
          "the vote over them; identify: the whole identify(); shard: one shard's gather "
          "(median over queries and shards); slowest: the slowest shard's gather; merge: "
          f"routing, joining the {args.shards} shards' hits and "
          "voting; parallel = slowest + merge; serial = every shard one after another + "
          "merge; 2-stage: routing + the slowest shard (gather, then its hits in order of "
          f"vote partition) + two rounds of {args.shards} vote partitions by track (the "
          "slowest of each) and their coordinator; same: sharded votes equal to "
          "the unsharded / 2-stage decision (best, its score, second score) equal)")
    results["lookup"] = rows
    equal = 0  # the shard built whole read the very postings of the restricted shard
    for (*_, h, _t), expect in zip(queries, reference, strict=True):
        mine = np.flatnonzero(shard_of_key[h] == args.shard)
        q, track, db_time = shards[args.shard]._hits(h[mine])
        equal += np.array_equal(np.sort(mine[q] << 40 | track << TIME_BITS | db_time), expect)
    results["shard_whole_same_hits"] = equal / len(queries)
    print(f"the shard built whole read the very postings of the restricted index's shard "
          f"{args.shard} for {equal}/{len(queries)} queries")
    del shards, full


    print(f"total {time.perf_counter() - t_start:.0f} s, peak RSS {peak_rss_gb():.2f} GB, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
