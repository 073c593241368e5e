"""A fingerprint index sharded by hash value: each shard gathers its hits, one vote.

``FingerprintIndex._hits`` and ``_votes(..., hits=...)`` are what
``benchmarks/bench_fingerprint_scale.py`` times at 1M tracks; these tests pin down that
a lookup split across shards votes exactly as the whole index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from musicrec.embedding.fingerprint import (
    Fingerprint,
    FingerprintIndex,
    FingerprintParams,
    fingerprint,
    load_audio,
    tolerant_hashes,
)
from musicrec.errors import ParameterError

SR = 22050
MUSIC = ("Kevin_MacLeod_-_Vibe_Ace", "147793__setuniman__sweet-waltz-0i-22mi",
         "admiralbob77_-_Choice_-_Drum-bass")
ROOM = FingerprintParams(query_dt_tolerance=1, query_df_tolerance=1)  # h17fp: no votes_per_anchor


def test_hits_are_every_posting_of_each_query_hash() -> None:
    index = FingerprintIndex()
    index.add("a", Fingerprint(hashes=np.array([5, 7, 5], dtype=np.uint32),
                               times=np.array([1, 2, 3], dtype=np.uint32), duration_s=1.0))
    index.add("b", Fingerprint(hashes=np.array([7], dtype=np.uint32),
                               times=np.array([9], dtype=np.uint32), duration_s=1.0))
    index.build()
    q, track, db_time = index._hits(np.array([7, 5, 8], dtype=np.uint32))
    assert q.tolist() == [0, 0, 1, 1]  # hash 7: a at 2 and b at 9; hash 5: a at 1 and 3
    assert track.tolist() == [0, 1, 0, 0]
    assert db_time.tolist() == [2, 9, 1, 3]
    for got in index._hits(np.array([8], dtype=np.uint32)):
        assert got.size == 0
    # votes from hits gathered elsewhere, in another order, equal the index's own
    hashes = np.array([7, 5], dtype=np.uint32)
    times = np.array([0, 1], dtype=np.uint32)
    q, track, db_time = index._hits(hashes)
    flipped = (q[::-1], track[::-1], db_time[::-1])
    for a, b in zip(index._votes(hashes, times, hits=flipped), index._votes(hashes, times),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # and only those hits vote: the two of hash 7 give the votes of hash 7 alone
    for a, b in zip(index._votes(hashes, times, hits=(q[:2], track[:2], db_time[:2])),
                    index._votes(hashes[:1], times[:1]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert index._votes(hashes, times, hits=(q[:2], track[:2], db_time[:2]))[3] == 2


@pytest.mark.parametrize("params", [FingerprintParams(), ROOM], ids=["defaults", "room"])
def test_sharded_lookup_votes_as_the_whole_index(
    librosa_audio_dir: Path, rng: np.random.Generator, params: FingerprintParams,
) -> None:
    n_shards = 4
    catalogue = {stem: fingerprint(librosa_audio_dir / f"{stem}.ogg", params=params)
                 for stem in MUSIC}
    whole = FingerprintIndex(params=params)
    shards = [FingerprintIndex(params=params) for _ in range(n_shards)]
    for stem, fp in catalogue.items():
        whole.add(stem, fp)
        for s, shard in enumerate(shards):  # every track in every shard, its own hashes
            mine = fp.hashes % n_shards == s
            shard.add(stem, Fingerprint(hashes=fp.hashes[mine], times=fp.times[mine],
                                        duration_s=fp.duration_s))
    whole.build()
    for shard in shards:
        shard.build()
    assert sum(shard.n_postings for shard in shards) == whole.n_postings
    for stem in MUSIC:
        y = load_audio(librosa_audio_dir / f"{stem}.hq.ogg", sr=SR)
        start = int(rng.integers(0, y.size - 6 * SR))
        clip = y[start:start + 6 * SR]
        clip = clip + rng.standard_normal(clip.size).astype(np.float32) * np.sqrt(
            np.mean(clip**2) / 10)  # 10 dB SNR
        fp = fingerprint(clip, sr=SR, params=params, query=True)
        hashes, times = tolerant_hashes(fp.hashes, fp.times, params=params)
        parts = []
        for s, shard in enumerate(shards):
            routed = np.flatnonzero(hashes % n_shards == s)
            q, track, db_time = shard._hits(hashes[routed])
            parts.append((routed[q], track, db_time))
        merged = tuple(np.concatenate([part[k] for part in parts]) for k in range(3))
        assert merged[0].size == whole._hits(hashes)[0].size > 0
        sharded = whole._votes(hashes, times, hits=merged)  # type: ignore[arg-type]
        expected = whole._votes(hashes, times)
        for a, b in zip(sharded[:3], expected[:3], strict=True):
            np.testing.assert_array_equal(a, b)
        assert sharded[3:] == expected[3:]
        # h17fp: the best candidate, not identify(): 6 s of drum and bass at 10 dB SNR
        # can fall under min_votes in the phone band; the votes above are the point here
        assert whole.query(fp, n=1)[0][0] == stem


def test_stop_list_skips_long_posting_lists_and_is_saved(tmp_path: Path) -> None:
    index = FingerprintIndex(max_postings=2)
    # hash 5 is in three postings (over the stop list's 2), hash 7 in two, hash 9 in one
    index.add("a", Fingerprint(hashes=np.array([5, 7, 5], dtype=np.uint32),
                               times=np.array([1, 2, 3], dtype=np.uint32), duration_s=1.0))
    index.add("b", Fingerprint(hashes=np.array([7, 5, 9], dtype=np.uint32),
                               times=np.array([9, 4, 6], dtype=np.uint32), duration_s=1.0))
    index.build()
    q, track, db_time = index._hits(np.array([5, 7, 9], dtype=np.uint32))
    assert q.tolist() == [1, 1, 2]  # hash 5's three postings are skipped
    assert track.tolist() == [0, 1, 1]
    assert db_time.tolist() == [2, 9, 6]
    loaded = FingerprintIndex.load(index.save(tmp_path / "fp"))
    assert loaded.max_postings == 2
    assert [a.tolist() for a in loaded._hits(np.array([5, 7], dtype=np.uint32))] == \
        [[1, 1], [0, 1], [2, 9]]
    with pytest.raises(ParameterError, match=r"max_postings=0 must be a positive integer"):
        FingerprintIndex(max_postings=0)
