"""ShardedFingerprintIndex: the postings split by hash value answer as the whole index."""

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
)
from musicrec.embedding.fingerprint_shards import ShardedFingerprintIndex, shard_of
from musicrec.errors import ModelFormatError, ParameterError

SR = 22050
# in the catalogue, and one left out (its clips must find nothing, sharded or not)
MUSIC = ("Kevin_MacLeod_-_Vibe_Ace", "147793__setuniman__sweet-waltz-0i-22mi",
         "admiralbob77_-_Choice_-_Drum-bass", "Karissa_Hobbs_-_Lets_Go_Fishin")
OUTSIDE = "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)"


@pytest.fixture(scope="module")
def whole(librosa_audio_dir: Path) -> FingerprintIndex:
    index = FingerprintIndex()
    for stem in MUSIC:
        index.add(stem, librosa_audio_dir / f"{stem}.ogg")
    return index.build()


def clips(librosa_audio_dir: Path, rng: np.random.Generator) -> list[np.ndarray]:
    """A noisy 6-s clip of each catalogue recording and two of the one left out."""
    out = []
    for stem in (*MUSIC, OUTSIDE, OUTSIDE):
        y = load_audio(librosa_audio_dir / f"{stem}.hq.ogg", sr=SR)
        start = int(rng.integers(0, y.size - 6 * SR))
        clip = y[start:start + 6 * SR]
        out.append(clip + rng.standard_normal(clip.size).astype(np.float32)
                   * np.sqrt(np.mean(clip**2) / 10))  # 10 dB SNR
    return out


def test_shard_of_keeps_pitch_shifted_landmarks_together_and_spreads_the_rest() -> None:
    params = FingerprintParams()
    fb, db = params.freq_bits, params.dt_bits
    f1, f2, dt = np.array([10, 200, 40]), np.array([30, 150, 41]), np.array([5, 63, 1])
    shards = shard_of(f1 << (fb + db) | f2 << db | dt, params, 16)
    for shift in (1, 7, 100):  # f1 and f2 moved together: the same shard
        moved = (f1 + shift) << (fb + db) | (f2 + shift) << db | dt
        np.testing.assert_array_equal(shard_of(moved, params, 16), shards)
    rng = np.random.default_rng(3)
    many = rng.integers(0, 2**(2 * fb + db), 200_000)
    share = np.bincount(shard_of(many, params, 8), minlength=8) / many.size
    assert share.min() > 0.10 and share.max() < 0.15, share  # 1/8 each, give or take
    assert shard_of(many, params, 1).max() == 0


@pytest.mark.parametrize("n_shards, workers", [(1, 1), (5, 1), (5, 3)])
def test_sharded_index_answers_as_the_whole(
    whole: FingerprintIndex, librosa_audio_dir: Path, rng: np.random.Generator,
    n_shards: int, workers: int,
) -> None:
    sharded = ShardedFingerprintIndex.split(whole, n_shards, workers=workers)
    assert len(sharded.shards_) == n_shards and len(sharded) == len(whole)
    assert sharded.n_postings == whole.n_postings
    # every posting is in exactly one shard: the same multiset as the whole index
    for got, want in zip(sharded.unpacked(), whole.unpacked(), strict=True):
        np.testing.assert_array_equal(np.sort(got), np.sort(want))
    mine, want = sharded.track_fingerprint(MUSIC[1]), whole.track_fingerprint(MUSIC[1])
    assert sorted(zip(mine.times.tolist(), mine.hashes.tolist(), strict=True)) == \
        sorted(zip(want.times.tolist(), want.hashes.tolist(), strict=True))
    found = 0
    for clip in clips(librosa_audio_dir, rng):
        fp = fingerprint(clip, sr=SR, query=True)
        assert sharded.query(fp, n=5) == whole.query(fp, n=5)
        assert sharded.identify(fp) == whole.identify(fp)
        found += whole.identify(fp) is not None
    assert found >= 3  # the comparison is not between two Nones


def test_stop_list_and_thresholds_are_the_whole_index() -> None:
    index = FingerprintIndex(max_postings=1, min_votes=12, min_ratio=1.5)
    index.add("a", Fingerprint(hashes=np.array([5, 7, 5], dtype=np.uint32),
                               times=np.array([1, 2, 3], dtype=np.uint32), duration_s=1.0))
    index.add("b", Fingerprint(hashes=np.array([7, 9], dtype=np.uint32),
                               times=np.array([9, 6], dtype=np.uint32), duration_s=1.0))
    index.build()
    sharded = ShardedFingerprintIndex.split(index, 3)
    assert (sharded.max_postings, sharded.min_votes, sharded.min_ratio) == (1, 12, 1.5)
    hashes = np.array([5, 7, 9], dtype=np.uint32)
    q, track, db_time = sharded._hits(hashes)
    # hashes 5 and 7 have two postings each, over the stop list: only hash 9's is read
    assert (q.tolist(), track.tolist(), db_time.tolist()) == ([2], [1], [6])
    sharded.max_postings = index.max_postings = None  # then every posting, as the whole

    def triples(hits: tuple[np.ndarray, ...]) -> list[tuple[int, ...]]:
        return sorted(zip(*(a.tolist() for a in hits), strict=True))

    assert triples(sharded._hits(hashes)) == triples(index._hits(hashes)) == [
        (0, 0, 1), (0, 0, 3), (1, 0, 2), (1, 1, 9), (2, 1, 6)]


def test_save_load_round_trip(whole: FingerprintIndex, tmp_path: Path,
                              librosa_audio_dir: Path, rng: np.random.Generator) -> None:
    sharded = ShardedFingerprintIndex.split(whole, 4)
    path = sharded.save(tmp_path / "fp")
    assert sorted(p.name for p in path.iterdir()) == [
        "durations.npy", "fingerprint.json", "n_hashes.npy", "peak_starts.npy", "peaks.npy",
        "shard-000", "shard-001", "shard-002", "shard-003", "track_ids.npy"]
    loaded = ShardedFingerprintIndex.load(path, workers=2)
    # the constellations (the verification stage's) are held once, as the whole index's
    np.testing.assert_array_equal(loaded.peaks_, whole.peaks_)
    np.testing.assert_array_equal(loaded.peak_starts_, whole.peak_starts_)
    assert isinstance(loaded.shards_[0].postings_, np.memmap)
    assert loaded.n_postings == whole.n_postings and loaded.nbytes == sharded.nbytes
    assert list(loaded.track_ids_) == list(whole.track_ids_) and MUSIC[0] in loaded
    for clip in clips(librosa_audio_dir, rng)[:3]:
        assert loaded.identify(clip, sr=SR) == whole.identify(clip, sr=SR)
    # each kind of directory is refused by the other kind's loader, saying which to use
    with pytest.raises(ModelFormatError, match="a sharded fingerprint index; load it with"):
        FingerprintIndex.load(path)
    with pytest.raises(ModelFormatError, match="not a sharded fingerprint index"):
        ShardedFingerprintIndex.load(whole.save(tmp_path / "whole"))
    # a damaged shard is named
    (path / "shard-002" / "postings.npy").write_bytes(b"not an array")
    with pytest.raises(ModelFormatError, match=r"shard-002/postings\.npy: unreadable"):
        ShardedFingerprintIndex.load(path)
    (path / "shard-002" / "postings.npy").unlink()
    np.save(path / "shard-002" / "postings.npy", np.zeros((1, 3), dtype=np.uint16))
    with pytest.raises(ModelFormatError, match="shard-002: arrays disagree"):
        ShardedFingerprintIndex.load(path)


def test_errors(whole: FingerprintIndex) -> None:
    with pytest.raises(ParameterError, match=r"n_shards=0 must be a positive integer"):
        ShardedFingerprintIndex.split(whole, 0)
    with pytest.raises(ParameterError, match=r"workers=0 must be a positive integer"):
        ShardedFingerprintIndex.split(whole, 2, workers=0)
    with pytest.raises(ParameterError, match="cannot add tracks"):
        ShardedFingerprintIndex.split(whole, 2).add("x", Fingerprint(
            hashes=np.array([1], dtype=np.uint32), times=np.array([0], dtype=np.uint32),
            duration_s=1.0))
    staged = FingerprintIndex()
    staged.add("x", Fingerprint(hashes=np.array([1], dtype=np.uint32),
                                times=np.array([0], dtype=np.uint32), duration_s=1.0))
    with pytest.raises(ParameterError, match="staged tracks"):
        ShardedFingerprintIndex.split(staged, 2)
