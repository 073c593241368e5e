"""The fingerprint's fast peak picking equals its plain definition, bit for bit.

``find_peaks`` computes the STFT in chunks, the 2-D maximum with vectorised sliding maxima
chunk by chunk, the frame levels from a blockwise running sum, and the prominence and
level tests on the maximum's candidates only. :func:`reference_find_peaks` below is the
definition those replace (one ``rfft`` of all frames, ``ndimage.maximum_filter``, every
test on the whole spectrogram): the peaks, and so every hash of every index, must not
move.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.fft
from scipy import ndimage, signal

from musicrec.embedding import fingerprint as fp_module
from musicrec.embedding.fingerprint import (
    FingerprintParams,
    _band_bins,
    _frame_level,
    _peak_candidates,
    _sliding_max,
    _spectrogram_db,
    find_peaks,
    fingerprint,
    hash_peaks,
    load_audio,
)


def reference_spectrogram_db(y: np.ndarray, params: FingerprintParams, *, first: int,
                             last: int) -> tuple[np.ndarray, np.ndarray]:
    n_fft, hop = params.n_fft, params.hop_length
    y = np.asarray(y, dtype=np.float32)
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    energy = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
    start = np.arange(frames.shape[0]) * hop
    level = 10.0 * np.log10((energy[start + n_fft] - energy[start]) / n_fft + 1e-20)
    window = signal.get_window("hann", n_fft).astype(np.float32)
    spec = scipy.fft.rfft(frames * window, axis=1)[:, first : last + 1].T
    power = np.square(spec.real) + np.square(spec.imag)
    return 10.0 * np.log10(power + np.float32(1e-20)), level


def reference_find_peaks(y: np.ndarray, *, params: FingerprintParams
                         ) -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros(0, dtype=np.int64)
    if y.size == 0:
        return empty, empty
    lo, hi = _band_bins(params)
    first = max(1, lo - params.peak_freq_size // 2)
    last = min(2**params.freq_bits, hi + params.peak_freq_size // 2)
    db, frame_level = reference_spectrogram_db(y, params, first=first, last=last)
    size = (params.peak_freq_size, params.peak_time_size)
    local_max = ndimage.maximum_filter(db, size=size, mode="nearest")
    local_mean = ndimage.uniform_filter(
        db, size=(2 * size[0] + 1, 2 * size[1] + 1), mode="nearest")
    prominence = db - local_mean
    is_peak = (
        (db == local_max)
        & (prominence >= params.peak_min_prominence_db)
        & (db >= db.max() - params.dynamic_range_db)
        & (frame_level >= params.silence_db)[None, :]
    )
    is_peak[: lo - first] = False
    is_peak[hi - first + 1 :] = False
    freqs, times = np.nonzero(is_peak)
    if times.size == 0:
        return empty, empty
    block = np.maximum(1, round(1.0 / params.frame_s))
    block_of = times // block
    order = np.lexsort((-prominence[freqs, times], block_of))
    block_sorted = block_of[order]
    starts = np.searchsorted(block_sorted, block_sorted, side="left")
    rank = np.arange(order.size) - starts
    keep = order[rank < params.max_peaks_per_s]
    times, freqs = times[keep], freqs[keep]
    order = np.lexsort((freqs, times))
    return times[order].astype(np.int64), (freqs[order] + first).astype(np.int64)


def assert_same_peaks(y: np.ndarray, params: FingerprintParams) -> int:
    """Assert find_peaks equals the reference on ``y``; return the number of peaks."""
    times, freqs = find_peaks(y, params=params)
    ref_times, ref_freqs = reference_find_peaks(y, params=params)
    assert times.dtype == freqs.dtype == np.int64
    np.testing.assert_array_equal(times, ref_times)
    np.testing.assert_array_equal(freqs, ref_freqs)
    return int(times.size)


@pytest.fixture(scope="module")
def recordings(librosa_audio_dir: Path) -> dict[str, np.ndarray]:
    """Every librosa recording (music, speech, a robin, a whale, a dog) at 11,025 Hz."""
    sr = FingerprintParams().sr
    return {path.stem: load_audio(path, sr=sr)
            for path in sorted(librosa_audio_dir.glob("*.ogg")) if ".hq" not in path.suffixes}


def test_catalogue_peaks_and_hashes_equal_the_definition_on_real_recordings(
        recordings: dict[str, np.ndarray]) -> None:
    params = FingerprintParams()
    assert len(recordings) == 14
    total = 0
    for y in recordings.values():
        total += assert_same_peaks(y, params)
        hashes, anchors = hash_peaks(*reference_find_peaks(y, params=params), params=params)
        fp = fingerprint(y, sr=params.sr, params=params)
        np.testing.assert_array_equal(fp.hashes, hashes)
        np.testing.assert_array_equal(fp.times, anchors)
    assert total > 10_000  # real peaks were compared, not empty arrays


def test_query_peaks_equal_the_definition_on_noisy_excerpts(
        recordings: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    params = FingerprintParams().for_query()
    sr = params.sr
    for y in recordings.values():
        for _ in range(2):
            start = int(rng.integers(0, max(1, y.size - 5 * sr)))
            clip = y[start:start + 5 * sr].copy()
            clip += rng.normal(0.0, 0.05, clip.size).astype(np.float32)
            assert_same_peaks(clip, params)


@pytest.mark.parametrize("n", [0, 100, 1023, 1024, 1025, 1024 + 256 * 255, 1024 + 256 * 256,
                               1024 + 256 * 257, 3 * 11025])
def test_peaks_equal_the_definition_at_chunk_and_frame_edges(
        n: int, rng: np.random.Generator) -> None:
    # lengths around one frame and around STFT_CHUNK_FRAMES frames; white noise, a tone
    params = FingerprintParams()
    assert fp_module.STFT_CHUNK_FRAMES == 256
    assert_same_peaks(rng.standard_normal(n).astype(np.float32), params)
    tone = np.sin(0.3 * np.arange(n)).astype(np.float32)
    assert_same_peaks(tone, params)


def test_peaks_equal_the_definition_on_silence_steps_and_ties(
        rng: np.random.Generator) -> None:
    params = FingerprintParams()
    assert_same_peaks(np.zeros(50_000, np.float32), params)
    assert_same_peaks(np.ones(30_000, np.float32), params)  # DC: rounding noise in the band
    # few distinct sample values: many equal spectral values, so plateaus in the maximum
    coarse = np.round(rng.standard_normal(60_000) * 2).astype(np.float32) / 2
    assert assert_same_peaks(coarse, params) > 0
    # silence (below -80 dBFS), then noise: the level test cuts exactly at the step
    step = np.concatenate([np.full(20_000, 1e-6, np.float32),
                           rng.standard_normal(20_000).astype(np.float32)])
    assert assert_same_peaks(step, params) > 0


def test_spectrogram_is_the_definition_and_c_contiguous(rng: np.random.Generator) -> None:
    params = FingerprintParams()
    y = rng.standard_normal(11025 * 7).astype(np.float32)
    db, level = _spectrogram_db(y, params, first=13, last=330)
    ref_db, ref_level = reference_spectrogram_db(y, params, first=13, last=330)
    assert db.shape == ref_db.shape == (318, (y.size - 1024) // 256 + 1)
    assert db.dtype == np.float32 and db.flags.c_contiguous
    np.testing.assert_array_equal(db, ref_db)
    np.testing.assert_array_equal(level, ref_level)


def test_frame_level_by_blocks_is_one_running_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    # by hand: frames of 4 samples every 2; a frame of 0.5s has mean square 0.25 (-6.02 dB)
    y = np.array([0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    level = _frame_level(y, n_fft=4, hop=2, n_frames=3)
    np.testing.assert_allclose(level, [10 * np.log10(0.25), 10 * np.log10(0.125), -200.0])
    # blocks smaller than a frame, and not dividing the signal, give the one-block sums
    wave = np.random.default_rng(3).standard_normal(10_001).astype(np.float32)
    whole = _frame_level(wave, n_fft=1024, hop=256, n_frames=(10_001 - 1024) // 256 + 1)
    monkeypatch.setattr(fp_module, "LEVEL_BLOCK_SAMPLES", 777)
    np.testing.assert_array_equal(
        _frame_level(wave, n_fft=1024, hop=256, n_frames=(10_001 - 1024) // 256 + 1), whole)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 15, 16, 31, 33])
@pytest.mark.parametrize("axis", [0, 1])
def test_sliding_max_is_scipys_maximum_filter(size: int, axis: int,
                                              rng: np.random.Generator) -> None:
    # small integers: many ties; shapes shorter and longer than the window
    for shape in [(40, 57), (3, 2), (1, 1), (64, 7)]:
        x = rng.integers(-5, 5, size=shape).astype(np.float32)
        got = _sliding_max(x, size, axis=axis)
        want = ndimage.maximum_filter1d(x, size, axis=axis, mode="nearest")
        assert got.shape == x.shape
        np.testing.assert_array_equal(got, want)
    # by hand: window 3 over [1, 3, 2, 0, 0, 5], edges repeated
    np.testing.assert_array_equal(
        _sliding_max(np.array([[1, 3, 2, 0, 0, 5]], np.float32), 3, axis=1),
        [[3, 3, 3, 2, 5, 5]])


@pytest.mark.parametrize("chunk", [1, 5, 7, 256])
def test_peak_candidates_by_chunks_are_the_maximum_filters(
        chunk: int, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    # chunks of 1 frame, shorter than the neighbourhood, not dividing the frames; ties
    monkeypatch.setattr(fp_module, "PEAK_CHUNK_FRAMES", chunk)
    db = rng.integers(0, 6, size=(40, 61)).astype(np.float32)
    rows = slice(4, 33)
    for freq_size, time_size in [(7, 5), (31, 15), (4, 2), (1, 1)]:
        local = ndimage.maximum_filter(db, size=(freq_size, time_size), mode="nearest")
        want_f, want_t = np.nonzero(db[rows] == local[rows])
        freqs, times = _peak_candidates(db, freq_size=freq_size, time_size=time_size,
                                        rows=rows)
        np.testing.assert_array_equal(freqs, want_f + rows.start)
        np.testing.assert_array_equal(times, want_t)
    # by hand: one frame of 5 bins, neighbourhood 3 x 1: bin 1 (3 > 1, 2) and bin 3 (2
    # beside 2 and 0: a plateau's bins are maxima too); bin 2 (2 beside 3) is not
    one = np.array([[1], [3], [2], [2], [0]], np.float32)
    freqs, times = _peak_candidates(one, freq_size=3, time_size=1, rows=slice(0, 5))
    assert freqs.tolist() == [1, 3] and times.tolist() == [0, 0]
