"""Landmark audio fingerprinting: which catalogue recording is this clip?

This is the "Shazam" algorithm of Wang (2003), *An Industrial-Strength Audio Search
Algorithm* (ISMIR). It answers identification ("which track is this noisy phone
recording?"), which embeddings answer only partly; similarity ("what sounds like this?")
stays with the embeddings.

Pipeline
--------
1. **Decode and resample** to mono at ``sr`` (11,025 Hz): everything above 5.5 kHz is
   dropped, which costs nothing for identification and removes the band that lossy codecs
   and 8-kHz telephone paths damage most.
2. **STFT**: Hann window of ``n_fft`` samples (1,024 = 93 ms), hop ``hop_length`` (256
   samples = 23.2 ms, the time unit of every hash and offset), log power in dB
   (``scipy.fft`` in float32). A frequency is its bin ``1..2**freq_bits`` (the DC bin is
   dropped), so it fits ``freq_bits`` bits.
3. **Peaks** (the "constellation") are picked only in the **phone band**
   ``fmin_hz..fmax_hz`` (300–3400 Hz: bins 28–315), where a telephone or a phone's
   microphone passes them, so that a clip recorded that way still holds the catalogue's
   landmarks; only that band (and a margin of half a neighbourhood each side, so that a
   band edge on a slope is no peak) is computed. A bin is a peak when it equals the maximum of its
   ``peak_freq_size`` × ``peak_time_size`` neighbourhood (a 2-D max filter; 31 bins ×
   15 frames ≈ 334 Hz × 350 ms), rises at least ``peak_min_prominence_db`` (6 dB) above the
   mean of a wider ``2·peak_freq_size+1`` × ``2·peak_time_size+1`` neighbourhood (the
   adaptive threshold, which ignores gain and follows the local loudness), and lies within
   ``dynamic_range_db`` (70 dB) of the loudest bin of the whole signal. Frames whose level
   is under ``silence_db`` (−80 dBFS RMS, time domain) are never peaks: digital silence yields no
   hashes. At most ``max_peaks_per_s`` (20) peaks per second are kept, the most prominent
   first, counted in one-second blocks of frames.
4. **Landmarks** (pairs): each anchor peak ``(t1, f1)`` is paired with the first
   ``fan_out`` (5) later peaks of its target zone: ``1 <= t2 - t1 <= max_dt`` frames
   (63 frames = 1.46 s) and ``|f2 - f1| <= max_df`` bins (127 bins = 1.37 kHz).
5. **Hash**: ``(f1 - 1) << (freq_bits + dt_bits) | (f2 - 1) << dt_bits | (t2 - t1)``
   packed into a ``uint32`` (9 + 9 + 6 = 24 bits by default), stored with the anchor time
   ``t1`` in frames.

The hash uses only relative quantities (two frequencies and a time difference), so it is
unchanged by gain, by where the clip starts and, largely, by noise and codecs that leave
the strongest peaks in place.

6. **Query side**. A clip keeps more peaks per second (``query_peaks_per_s``, 40) and
   pairs each with more partners (``query_fan_out``, 10) than a catalogue track (20 and
   5), so the catalogue's pairs are still found among the extra peaks that noise and
   reverb create. As an option each query landmark also looks up its neighbours
   ``Δt ± query_dt_tolerance`` frames and ``f1, f2 ± query_df_tolerance`` bins
   (:func:`tolerant_hashes`; 27 variants at 1 and 1; off by default: it raised chance
   scores more than true ones). The stored index is unchanged by these: they cost query
   time, not index size.

Index and search
----------------
:class:`FingerprintIndex` holds every ``(hash, track_idx, anchor_time)`` posting grouped
by hash, packed: the distinct hashes (``keys``, ``uint32``), where each one's postings
start (``starts``) and the postings themselves in 6 bytes each (``track_idx << 20 |
anchor_time`` in 48 bits), so an index costs 6 bytes a hash plus a few bytes per distinct
hash (against 12 bytes a hash in format 1's plain arrays). Saved as ``.npy`` and loaded
with mmap, the pages are shared by every server process. A query fingerprints the clip,
finds each query hash's postings by binary search (``np.searchsorted`` on ``keys``), and
every hit votes for ``(track, t_db - t_query)``: the true recording piles its votes on one
offset, chance hits spread over many. Hits are first counted per track; offset histograms
are made only for the 64 tracks with the most hits (an aligned score never exceeds a
track's hits), which keeps a query fast at 100k tracks. A bin's ``score`` is the number of
**distinct query anchor times** with a landmark at that offset or a neighbouring one (±1
frame: a clip cut between two frames can move a peak by one frame): the many landmarks of
one anchor (its fan-out) count once, so one shared note or chord (the same instrument
sample in two rendered or tracker-music tracks) cannot outvote a whole clip that agrees.
Ties between neighbouring offsets go to the offset with the most anchors of its own. The
best ``(track, offset)`` bin gives ``score`` and ``offset_s`` (where the clip starts in
the track).

Calibrated decision
-------------------
A match is returned only when three tests pass:

1. **The vote**: ``score >= min_votes`` (7 distinct anchors);
2. **the ratio test**: ``score >= min_ratio * (second + 1)``, where ``second`` is the best
   score of any *other* track (as in Lowe's SIFT matching; ``min_ratio=1.0``: strictly
   more than the runner-up, so a tie names no track; a stricter ratio lost more of the
   demo's rendered tracks, whose runner-up is often another rendering with the same
   instrument samples, than it saved false matches);
3. **the verification**: at least ``min_peaks`` (16) of the clip's peaks coincide with
   the best track's stored peaks at the voted offset *beyond the number chance gives*.

Verification
------------
A landmark hash needs two peaks *and* the same pairing on both sides, so a true clip
through a phone in a room keeps only a small share of its landmarks, and a chance vote
of 7-9 anchors looks like a weak true one. The constellation itself survives better:
most of the track's strongest peaks are still among the clip's. The index therefore keeps
each track's peaks (:func:`constellation`: every landmark's anchor and target, 4 bytes a
peak, about 9 % of the index), and the best candidate is checked at its offset: a clip
peak ``(t, f)`` *coincides* when the track has a peak within ±1 frame and ±1 bin of ``(t +
offset, f)``. Chance is modelled per frequency: a clip peak at bin ``f`` meets one of the
track's ``n`` peaks in bins ``f-1..f+1`` with probability ``min(1, 3 n / frames)`` (the
track's length in frames), and the expected count is the sum over the clip's peaks. A
landmark that voted brings its two peaks, so a pure chance vote of 7 anchors brings about
14; most true 5-s clips bring 20-100. The decision takes ``peaks - chance >= min_peaks``.

The thresholds were chosen with ``benchmarks/bench_fingerprint.py`` on one draw of clips
(``--seed 0``) and confirmed on another (``--seed 1``): clips *not* in the catalogue
(half of the real-music set held out, speech, animals, white and pink noise, clean and
through a phone in a room; leave-one-out librosa music) and catalogue clips under the same
conditions. ``min_votes=7, min_peaks=16`` is the least ``min_peaks`` with no false match
on the first draw; the vote alone (8 anchors, strictly above the runner-up) gave 3 false
matches of 1,095 there and 5 on the second. :meth:`FingerprintIndex.calibrate` raises
``min_peaks`` on the caller's own negatives. ``min_peaks=None`` skips the verification
(an index made of hash streams alone, as ``benchmarks/bench_fingerprint_scale.py``'s).

``confidence`` is ``1 - p``, where ``p`` bounds the probability that chance alone makes
this many peaks coincide at some offset: ``p = min(1, bins · P[Poisson(chance) >=
peaks])``, with ``bins`` the vote's ``(track, offset)`` bins (a Bonferroni bound over the
offsets the vote chose from; each offset bin three frames wide). Peaks of one clip are not
independent, so it is near 1 for a clear match and lower for a weak one, but it is not a
calibrated probability. Without the verification it is the same bound on the vote's
score, with chance votes per bin Poisson of mean ``hits / bins``.

Parameters and thresholds are stored with a saved index; an index saved with other
parameters or another format version is refused on load with
:class:`~musicrec.errors.ModelFormatError`. Format 4 (the constellations, for the
verification) replaced format 3 (the same peaks and hashes without them), format 2
(whole-band peaks, the same packed layout) and format 1 (three ``uint32`` arrays): an
index of any of them says to rebuild.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.fft
from scipy import ndimage, signal, stats

from musicrec.errors import DataFormatError, ModelFormatError, ParameterError

log = logging.getLogger(__name__)

FORMAT_VERSION = 4
#: Fewest distinct anchor frequencies (peak bins) a clip needs to be identified: fewer is a
#: tone or a held interval, never identified. Real 5-s music clips had at least 4 (256
#: clips of librosa's recordings), a 5-s pure tone 1 and a held triad 2.
MIN_ANCHOR_FREQS = 3
_META_FILE = "fingerprint.json"
_ARRAYS = ("keys", "starts", "postings", "track_ids", "n_hashes", "durations", "peaks",
           "peak_starts")
#: A posting packs ``track_idx << TIME_BITS | anchor_time`` into 48 bits (three uint16):
#: up to 2**28 tracks of up to 2**20 frames (6.7 hours) each.
TIME_BITS = 20
TRACK_BITS = 28

PathLike = str | os.PathLike[str]


# -- parameters -------------------------------------------------------------------------
@dataclass(frozen=True)
class FingerprintParams:
    """Parameters of the landmark fingerprint; see the module docstring for each one.

    Two fingerprints are comparable only when they were made with equal parameters.
    """

    sr: int = 11025
    n_fft: int = 1024
    hop_length: int = 256
    freq_bits: int = 9
    dt_bits: int = 6
    peak_freq_size: int = 31
    peak_time_size: int = 15
    peak_min_prominence_db: float = 6.0
    dynamic_range_db: float = 70.0
    silence_db: float = -80.0
    max_peaks_per_s: int = 20
    fan_out: int = 5
    max_dt: int = 63
    max_df: int = 127
    query_peaks_per_s: int = 40
    query_fan_out: int = 10
    query_dt_tolerance: int = 0
    query_df_tolerance: int = 0
    fmin_hz: float = 300.0
    fmax_hz: float = 3400.0

    def __post_init__(self) -> None:
        for name in ("sr", "n_fft", "hop_length", "freq_bits", "dt_bits", "peak_freq_size",
                     "peak_time_size", "max_peaks_per_s", "fan_out", "max_dt", "max_df",
                     "query_peaks_per_s", "query_fan_out"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name}={value!r} must be a positive integer")
        for name in ("query_dt_tolerance", "query_df_tolerance"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 3:
                raise ParameterError(f"{name}={value!r} must be an integer in 0..3")
        if not 0 <= self.fmin_hz < self.fmax_hz <= self.sr / 2:
            raise ParameterError(
                f"fmin_hz={self.fmin_hz!r}, fmax_hz={self.fmax_hz!r}: need "
                f"0 <= fmin_hz < fmax_hz <= sr/2={self.sr / 2:g}")
        if 2 * self.freq_bits + self.dt_bits > 32:
            raise ParameterError(
                f"2*freq_bits+dt_bits={2 * self.freq_bits + self.dt_bits} must be <= 32")
        if self.max_dt >= 2**self.dt_bits:
            raise ParameterError(f"max_dt={self.max_dt} must be < 2**dt_bits={2**self.dt_bits}")
        if 2**self.freq_bits > self.n_fft // 2:
            raise ParameterError(
                f"freq_bits={self.freq_bits}: 2**freq_bits must be <= n_fft//2={self.n_fft // 2}")

    def for_query(self) -> FingerprintParams:
        """These parameters with the query side's peak density and fan-out (a clip may be
        hashed more densely than a catalogue track, so that the catalogue's landmarks are
        found among the extra peaks that noise and reverb create)."""
        return dataclasses.replace(self, max_peaks_per_s=self.query_peaks_per_s,
                                   fan_out=self.query_fan_out)

    @property
    def frame_s(self) -> float:
        """Seconds per STFT frame: the unit of anchor times and offsets."""
        return self.hop_length / self.sr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Fingerprint:
    """The landmarks of one recording.

    Attributes
    ----------
    hashes : np.ndarray [shape=(n,), dtype=uint32]
        Packed ``(f1, f2, dt)`` hashes.
    times : np.ndarray [shape=(n,), dtype=uint32]
        Anchor time of each hash, in frames of ``params.frame_s`` seconds.
    duration_s : float
        Duration of the decoded audio.
    """

    hashes: np.ndarray
    times: np.ndarray
    duration_s: float

    def __len__(self) -> int:
        return int(self.hashes.shape[0])


@dataclass(frozen=True)
class Match:
    """An identified catalogue recording.

    Attributes
    ----------
    track_id : str
        The catalogue track.
    offset_s : float
        Where in the track the clip starts, in seconds (negative when the clip starts
        before the indexed audio).
    score : int
        Hashes that agree on this track and offset (aligned votes).
    confidence : float
        ``1 - p`` with ``p`` a bound on the chance of so many coinciding peaks (without
        the verification stage: of such a score; module docstring).
    second_score : int
        Best score of any other track (0 when none).
    n_query_hashes : int
        Hashes in the query clip.
    peaks : int
        The verification stage: the clip's peaks that coincide with the track's stored
        peaks at ``offset_s`` (0 when the index does not verify).
    peaks_chance : float
        How many of them chance gives (the expected count; 0 when not verified).
    """

    track_id: str
    offset_s: float
    score: int
    confidence: float
    second_score: int
    n_query_hashes: int
    peaks: int = 0
    peaks_chance: float = 0.0


class _Ranked(NamedTuple):
    """A query's candidates: ``ranked`` ``(track_id, offset_s, score)`` best first, the
    query's fingerprint, all hits, the vote's bins, and the best track's index and
    offset in frames (-1 and 0 when none)."""

    ranked: list[tuple[str, float, int]]
    query: Fingerprint
    total: int
    n_bins: int
    track: int
    offset: int

    def passes_ratio(self, min_ratio: float) -> bool:
        """The ratio test: the best score is at least ``min_ratio * (second + 1)``, with
        ``second`` the best score of any other track (0 when none)."""
        return self.score >= min_ratio * (self.second + 1)

    @property
    def score(self) -> int:
        return self.ranked[0][2]

    @property
    def second(self) -> int:
        return self.ranked[1][2] if len(self.ranked) > 1 else 0


@dataclass(frozen=True)
class DuplicateGroup:
    """Tracks that are the same recording.

    Attributes
    ----------
    track_ids : tuple of str
        The tracks, the first one being the reference.
    offsets_s : tuple of float
        Where each track's audio lies relative to the first track: what the first track
        plays at time ``t`` track ``k`` plays at ``t + offsets_s[k]`` (0 for the first).
    scores : tuple of int
        Aligned votes that linked each track into the group (0 for the first).
    """

    track_ids: tuple[str, ...]
    offsets_s: tuple[float, ...]
    scores: tuple[int, ...]


# -- audio --------------------------------------------------------------------------------
def load_audio(path: PathLike, *, sr: int) -> np.ndarray:
    """Decode an audio file to mono ``float32`` at ``sr`` Hz.

    The one place this module decodes files: it uses the shared decoder
    :func:`musicrec.embedding.audio.load_audio` when present, else soundfile (libsndfile:
    WAV, FLAC, OGG, MP3, ...) with a ``librosa.load`` fallback.

    Parameters
    ----------
    path : str or path-like
        The audio file.
    sr : int
        Target sampling rate.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    DataFormatError
        The file is missing or cannot be decoded as audio; the message names the file.
    """
    path = Path(path)
    try:
        from musicrec.embedding.audio import load_audio as shared_load_audio
    except ImportError:  # pragma: no cover - the shared decoder is absent
        shared_load_audio = None  # type: ignore[assignment]
    if shared_load_audio is not None:
        decoded = shared_load_audio(path, sample_rate=sr)
        return np.asarray(np.concatenate(decoded.windows), dtype=np.float32)
    import soundfile as sf

    if not path.is_file():
        raise DataFormatError(path, "no such audio file")
    try:
        data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
        y = data.mean(axis=1)
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure becomes one error
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, native_sr = librosa.load(str(path), sr=None, mono=True)
        except Exception:  # noqa: BLE001
            raise DataFormatError(path, f"cannot decode as audio ({sf_error})") from None
    return resample(np.asarray(y, dtype=np.float32), orig_sr=int(native_sr), sr=sr)


def resample(y: np.ndarray, *, orig_sr: int, sr: int) -> np.ndarray:
    """Polyphase resampling of a mono signal from ``orig_sr`` to ``sr`` Hz."""
    if orig_sr <= 0:
        raise ParameterError(f"sr={orig_sr} must be a positive number")
    y = np.asarray(y, dtype=np.float32)
    if orig_sr == sr or y.size == 0:
        return y
    g = math.gcd(int(orig_sr), int(sr))
    return signal.resample_poly(y, sr // g, orig_sr // g).astype(np.float32)


def _as_signal(
    audio: PathLike | np.ndarray, *, sr: int | None, params: FingerprintParams
) -> tuple[np.ndarray, str]:
    """The audio as a mono signal at ``params.sr``, and a name for messages."""
    if isinstance(audio, np.ndarray):
        if sr is None:
            raise ParameterError("sr=None: the sampling rate of an audio array is required")
        y = np.asarray(audio, dtype=np.float32)
        if y.ndim == 2:  # (channels, n) as librosa, or (n, channels) as soundfile
            y = y.mean(axis=0 if y.shape[0] <= y.shape[1] else 1)
        if y.ndim != 1:
            raise ParameterError(f"audio.shape={audio.shape} must be (n,) or (channels, n)")
        if not np.all(np.isfinite(y)):
            raise ParameterError("audio contains NaN or infinite samples")
        return resample(y, orig_sr=sr, sr=params.sr), "audio array"
    if isinstance(audio, str | os.PathLike):
        return load_audio(audio, sr=params.sr), str(audio)
    raise ParameterError(f"audio={type(audio).__name__} must be a path or a numpy array")


# -- fingerprinting -----------------------------------------------------------------------
def _band_bins(params: FingerprintParams) -> tuple[int, int]:
    """The STFT bins ``lo..hi`` (inclusive, 1-based as in the hashes) where peaks are
    picked: ``fmin_hz..fmax_hz`` within ``1..2**freq_bits``."""
    hz_per_bin = params.sr / params.n_fft
    lo = max(1, math.ceil(params.fmin_hz / hz_per_bin))
    hi = min(2**params.freq_bits, math.floor(params.fmax_hz / hz_per_bin))
    return lo, hi


#: Frames transformed at a time by :func:`_spectrogram_db` (1 MB of windowed float32
#: frames: the chunk's copies stay in the cache).
STFT_CHUNK_FRAMES = 256


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    window = signal.get_window("hann", n_fft).astype(np.float32)
    window.flags.writeable = False
    return window


#: Samples squared and summed at a time by :func:`_frame_level`.
LEVEL_BLOCK_SAMPLES = 1 << 16


def _frame_level(y: np.ndarray, *, n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """The level of each frame in dBFS RMS ``[shape=(n_frames,)]``, from a running sum of
    squares in float64: the sum up to the frame's end less the sum up to its start (no
    second pass over the frames).

    The running sum is accumulated block by block in order (each block's cumulative sum
    starts from the previous block's total: the same additions, in the same order, as one
    ``cumsum`` of the whole signal) and only its values at frame edges are kept, instead
    of a float64 copy of the whole signal.
    """
    start = np.arange(n_frames) * hop
    edges = np.union1d(start, start + n_fft)  # sample counts whose running sums are needed
    sums = np.zeros(edges.size)  # sums[i] = sum(y[:edges[i]] ** 2); edges[0] = 0
    block = np.empty(min(y.size, LEVEL_BLOCK_SAMPLES), dtype=np.float64)
    total = 0.0
    for s in range(0, y.size, block.size):
        part = block[:min(block.size, y.size - s)]
        np.square(y[s:s + part.size], out=part, dtype=np.float64)
        part[0] += total
        np.cumsum(part, out=part)
        total = part[-1]
        lo, hi = np.searchsorted(edges, [s + 1, s + part.size + 1])
        sums[lo:hi] = part[edges[lo:hi] - s - 1]
    energy = sums[np.searchsorted(edges, start + n_fft)] - sums[np.searchsorted(edges, start)]
    return 10.0 * np.log10(energy / n_fft + 1e-20)


def _spectrogram_db(
    y: np.ndarray, params: FingerprintParams, *, first: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Log power STFT of bins ``first..last`` ``[shape=(last - first + 1, n_frames)]``,
    C-contiguous, and the level of each frame in dBFS RMS ``[shape=(n_frames,)]``.

    Frames are windowed and transformed ``STFT_CHUNK_FRAMES`` at a time, so each chunk's
    products stay in the cache; each frame's values are those of one ``rfft`` of all the
    frames (the same transform of the same samples).
    """
    n_fft, hop = params.n_fft, params.hop_length
    y = np.asarray(y, dtype=np.float32)
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    n_frames = frames.shape[0]
    level = _frame_level(y, n_fft=n_fft, hop=hop, n_frames=n_frames)
    window = _hann(n_fft)
    db = np.empty((last - first + 1, n_frames), dtype=np.float32)
    for s in range(0, n_frames, STFT_CHUNK_FRAMES):
        spec = scipy.fft.rfft(frames[s:s + STFT_CHUNK_FRAMES] * window, axis=1)
        band = spec[:, first:last + 1]  # complex64
        power = np.square(band.real)
        power += np.square(band.imag)
        power += np.float32(1e-20)
        np.log10(power, out=power)
        power *= np.float32(10.0)
        db[:, s:s + STFT_CHUNK_FRAMES] = power.T
    return db, level


def _window_max(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Maximum of every ``size`` consecutive values along ``axis`` (``n - size + 1`` of
    them: no padding), in ``log2(size) + 1`` vectorised passes: the maxima of 2, 4, 8, ...
    neighbours, then of two overlapping ones (a maximum rounds nothing: exact)."""

    def cut(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
        index = [slice(None)] * a.ndim
        index[axis] = slice(lo, hi)
        return a[tuple(index)]

    m, n, width = x, x.shape[axis], 1
    while 2 * width <= size:  # m[i] = max(x[i : i + width])
        n -= width
        m = np.maximum(cut(m, 0, n), cut(m, width, n + width))
        width *= 2
    if width == size:
        return m
    out_n = m.shape[axis] - (size - width)
    return np.maximum(cut(m, 0, out_n), cut(m, size - width, size - width + out_n))


def _sliding_max(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Maximum of each ``size`` neighbourhood along ``axis``, the edge values repeated
    beyond the ends: ``ndimage.maximum_filter1d(x, size, axis, mode="nearest")`` exactly
    (the neighbourhood of ``i`` starts at ``i - size // 2``, as scipy's)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (size // 2, size - 1 - size // 2)
    return _window_max(np.pad(x, pad, mode="edge"), size, axis)


#: Frames searched at a time by :func:`_peak_candidates` (the chunk's maxima stay in the
#: cache).
PEAK_CHUNK_FRAMES = 256


def _peak_candidates(db: np.ndarray, *, freq_size: int, time_size: int, rows: slice
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, frames) of the bins of ``db[rows]`` that equal the maximum of their
    ``freq_size`` x ``time_size`` neighbourhood, edges repeated (``ndimage.maximum_filter``,
    ``mode="nearest"``), in the order of ``np.nonzero``.

    The maximum is taken ``PEAK_CHUNK_FRAMES`` frames at a time, each chunk with the
    frames its neighbourhoods reach (over time, then over frequency: the same maximum),
    so that its passes run in the cache instead of over the whole spectrogram.
    """
    n_frames = db.shape[1]
    before, after = time_size // 2, time_size - 1 - time_size // 2
    found_rows, found_frames = [], []
    for s in range(0, n_frames, PEAK_CHUNK_FRAMES):
        e = min(s + PEAK_CHUNK_FRAMES, n_frames)
        lo, hi = max(0, s - before), min(n_frames, e + after)
        block = db[:, lo:hi]
        if lo - s + before or e + after - hi:  # at an end of the track: repeat its frame
            block = np.pad(block, ((0, 0), (lo - s + before, e + after - hi)), mode="edge")
        local = _sliding_max(_window_max(block, time_size, axis=1), freq_size, axis=0)
        # flatnonzero: a 2-D nonzero costs 5x as much
        r, f = np.divmod(np.flatnonzero(db[rows, s:e] == local[rows]), e - s)
        found_rows.append(r)
        found_frames.append(f + s)
    freqs = np.concatenate(found_rows) + rows.start
    times = np.concatenate(found_frames)
    order = np.lexsort((times, freqs))  # by row, then frame: as np.nonzero of the whole
    return freqs[order], times[order]


def find_peaks(y: np.ndarray, *, params: FingerprintParams) -> tuple[np.ndarray, np.ndarray]:
    """Spectral peaks of a signal at ``params.sr``.

    Returns
    -------
    times : np.ndarray [shape=(n,), dtype=int64]
        Frame of each peak, sorted by time then frequency.
    freqs : np.ndarray [shape=(n,), dtype=int64]
        Frequency bin of each peak, within ``fmin_hz..fmax_hz`` (``1..2**freq_bits``).
    """
    empty = np.zeros(0, dtype=np.int64)
    if y.size == 0:
        return empty, empty
    # the band and a margin of half a neighbourhood each side, so that a bin at the band's
    # edge is a peak only when it is one in the whole spectrum (not the top of a slope)
    lo, hi = _band_bins(params)
    first = max(1, lo - params.peak_freq_size // 2)
    last = min(2**params.freq_bits, hi + params.peak_freq_size // 2)
    db, frame_level = _spectrogram_db(y, params, first=first, last=last)
    n_frames = db.shape[1]
    band = slice(lo - first, hi - first + 1)
    # candidates: the band's bins that equal their neighbourhood's maximum (a few in a
    # hundred); the other tests are made on these alone, with the same float32 arithmetic
    freqs, times = _peak_candidates(db, freq_size=params.peak_freq_size,
                                    time_size=params.peak_time_size, rows=band)
    local_mean = ndimage.uniform_filter(
        db, size=(2 * params.peak_freq_size + 1, 2 * params.peak_time_size + 1),
        mode="nearest")
    level = db[freqs, times]
    prominence = level - local_mean[freqs, times]
    keep = ((prominence >= params.peak_min_prominence_db)
            & (level >= db.max() - params.dynamic_range_db)
            & (frame_level[times] >= params.silence_db))
    freqs, times, prominence = freqs[keep], times[keep], prominence[keep]
    if times.size == 0:
        return empty, empty
    # density cap: the most prominent max_peaks_per_s peaks of each one-second block
    block = np.maximum(1, round(1.0 / params.frame_s))
    block_of = times // block
    order = np.lexsort((-prominence, block_of))
    block_sorted = block_of[order]
    starts = np.searchsorted(block_sorted, block_sorted, side="left")
    rank = np.arange(order.size) - starts
    keep = order[rank < params.max_peaks_per_s]
    times, freqs = times[keep], freqs[keep]
    order = np.lexsort((freqs, times))
    log.debug("%d peaks in %d frames", order.size, n_frames)
    return times[order].astype(np.int64), (freqs[order] + first).astype(np.int64)


def split_hashes(hashes: np.ndarray, params: FingerprintParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fields of landmark hashes: ``(f1 - 1, f2 - 1, Δt)`` as int64 arrays (the
    layout of :func:`hash_peaks`; :func:`join_hashes` is the inverse)."""
    fb, db = params.freq_bits, params.dt_bits
    h = np.asarray(hashes).astype(np.int64)
    return h >> (fb + db), (h >> db) & (2**fb - 1), h & (2**db - 1)


def join_hashes(f1: np.ndarray, f2: np.ndarray, dt: np.ndarray, params: FingerprintParams
                ) -> np.ndarray:
    """Landmark hashes (``uint32``) from their fields ``(f1 - 1, f2 - 1, Δt)``, each in
    range (:func:`split_hashes` is the inverse)."""
    fb, db = params.freq_bits, params.dt_bits
    return ((np.asarray(f1, dtype=np.int64) << (fb + db)) | (np.asarray(f2, dtype=np.int64) << db)
            | np.asarray(dt, dtype=np.int64)).astype(np.uint32)


def hash_peaks(
    times: np.ndarray, freqs: np.ndarray, *, params: FingerprintParams
) -> tuple[np.ndarray, np.ndarray]:
    """Pair peaks into landmarks and pack each into a ``uint32`` hash.

    Parameters
    ----------
    times, freqs : np.ndarray [shape=(n,)]
        Peaks sorted by time, as returned by :func:`find_peaks`.

    Returns
    -------
    hashes : np.ndarray [shape=(m,), dtype=uint32]
    anchor_times : np.ndarray [shape=(m,), dtype=uint32]
    """
    n = times.size
    pairs_i: list[np.ndarray] = []
    pairs_j: list[np.ndarray] = []
    taken = np.zeros(n, dtype=np.int64)
    # look far enough ahead to find fan_out partners among dense peaks in the target zone
    look_ahead = min(n - 1, 6 * params.fan_out) if n else 0
    for k in range(1, look_ahead + 1):
        i = np.arange(n - k)
        j = i + k
        dt = times[j] - times[i]
        ok = (dt >= 1) & (dt <= params.max_dt) & (np.abs(freqs[j] - freqs[i]) <= params.max_df)
        ok &= taken[i] < params.fan_out
        taken[i[ok]] += 1
        pairs_i.append(i[ok])
        pairs_j.append(j[ok])
    if not pairs_i:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.uint32)
    a = np.concatenate(pairs_i)
    b = np.concatenate(pairs_j)
    hashes = join_hashes(freqs[a] - 1, freqs[b] - 1, times[b] - times[a], params)
    anchor = times[a].astype(np.uint32)
    order = np.argsort(anchor, kind="stable")
    return hashes[order], anchor[order]


def tolerant_hashes(
    hashes: np.ndarray, times: np.ndarray, *, params: FingerprintParams
) -> tuple[np.ndarray, np.ndarray]:
    """A query's hashes with their neighbours in ``Δt`` and frequency.

    Reverb smears a peak over a frame or two and a phone's filters move it by a bin, so a
    query landmark also looks up every hash whose ``Δt`` differs by at most
    ``query_dt_tolerance`` frames and whose ``f1`` and ``f2`` differ by at most
    ``query_df_tolerance`` bins (the stored index is unchanged). With both tolerances 0
    the hashes are returned as they are.

    Returns
    -------
    hashes, times : np.ndarray [shape=(m,), dtype=uint32]
        Each variant with the anchor time of the landmark it came from.
    """
    kt, kf = params.query_dt_tolerance, params.query_df_tolerance
    if (kt == 0 and kf == 0) or hashes.size == 0:
        return hashes, times
    fb = params.freq_bits
    f1, f2, dt = split_hashes(hashes, params)
    steps_t = np.arange(-kt, kt + 1)
    steps_f = np.arange(-kf, kf + 1)
    d1, d2, d3 = (a.ravel() for a in np.meshgrid(steps_f, steps_f, steps_t, indexing="ij"))
    v1, v2, v3 = f1[:, None] + d1, f2[:, None] + d2, dt[:, None] + d3
    ok = ((v1 >= 0) & (v1 < 2**fb) & (v2 >= 0) & (v2 < 2**fb) & (v3 >= 1)
          & (v3 <= params.max_dt))
    variants = join_hashes(v1[ok], v2[ok], v3[ok], params)
    anchors = np.broadcast_to(times[:, None], ok.shape)[ok]
    return variants, np.ascontiguousarray(anchors, dtype=np.uint32)


def fingerprint(
    audio: PathLike | np.ndarray,
    *,
    sr: int | None = None,
    params: FingerprintParams | None = None,
    query: bool = False,
) -> Fingerprint:
    """Landmark hashes of an audio file or signal.

    Parameters
    ----------
    audio : str, path-like or np.ndarray [shape=(n,) or (channels, n)]
        An audio file, or samples (float, full scale ±1).
    sr : int or None
        Sampling rate of ``audio`` when it is an array; ignored for a file.
    params : FingerprintParams or None
        Fingerprint parameters (default ``FingerprintParams()``).
    query : bool
        Hash as a query clip (``params.for_query()``: the query side's peak density and
        fan-out) rather than as a catalogue track.

    Returns
    -------
    Fingerprint

    Raises
    ------
    DataFormatError
        A file that cannot be decoded.
    ParameterError
        An array without ``sr``, of the wrong shape or with non-finite samples.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(3 * 11025) / 11025
    >>> y = np.sin(2 * np.pi * 440 * t * (1 + t)).astype(np.float32)
    >>> fp = fingerprint(y, sr=11025)
    >>> fp.hashes.dtype, len(fp) > 0
    (dtype('uint32'), True)
    """
    params = params or FingerprintParams()
    y, _ = _as_signal(audio, sr=sr, params=params)
    if query:
        params = params.for_query()
    times, freqs = find_peaks(y, params=params)
    hashes, anchors = hash_peaks(times, freqs, params=params)
    return Fingerprint(hashes=hashes, times=anchors, duration_s=y.size / params.sr)


def constellation(fp: Fingerprint, *, params: FingerprintParams) -> np.ndarray:
    """The peaks of a fingerprint's landmarks (every anchor and every target), packed as
    ``time << freq_bits | (freq - 1)``, sorted and distinct ``[dtype=int64]``.

    The verification stage of :meth:`FingerprintIndex.identify` compares a clip's
    constellation with a candidate track's at the voted offset.
    """
    fb = params.freq_bits
    t = fp.times.astype(np.int64)
    f1, f2, dt = split_hashes(fp.hashes, params)
    return np.unique(np.concatenate([(t << fb) | f1, ((t + dt) << fb) | f2]))


# -- index --------------------------------------------------------------------------------
def write_directory(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Write a directory atomically: ``write(tmp)`` fills a temporary sibling of ``path``,
    which then replaces ``path`` (an old one is removed only after the rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_array(file: Path, *, mmap: bool) -> np.ndarray:
    """One ``.npy`` array of an index directory, mmap'd read-only when ``mmap``.

    Raises
    ------
    ModelFormatError
        The file is missing or unreadable, naming it.
    """
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ModelFormatError(f"{file}: unreadable ({error})") from None


def concat_ranges(lo: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``lo[i], lo[i] + 1, ..., lo[i] + counts[i] - 1`` for every ``i``, concatenated
    (``int64``, without a Python loop): the positions of several posting lists."""
    counts = np.asarray(counts, dtype=np.int64)
    return (np.arange(int(counts.sum()))
            - np.repeat(np.cumsum(counts) - counts - np.asarray(lo, dtype=np.int64), counts))


def _unpack(postings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(track_idx, anchor_time)`` as int64 from packed postings ``[shape=(n, 3)]``."""
    p = np.asarray(postings).astype(np.int64)
    value = p[:, 0] | (p[:, 1] << 16) | (p[:, 2] << 32)
    return value >> TIME_BITS, value & ((1 << TIME_BITS) - 1)


class FingerprintIndex:
    """An inverted index from landmark hashes to ``(track, anchor time)`` postings.

    Parameters
    ----------
    params : FingerprintParams or None
        Fingerprint parameters (default ``FingerprintParams()``).
    min_votes : int
        Least score (distinct aligned query anchors) for a match (default 7).
    min_ratio : float
        Least ratio of the best score to ``second best + 1`` (default 1.0: strictly more
        than the runner-up).
    min_peaks : float or None
        The verification stage: least number of the clip's peaks that coincide with the
        best track's stored peaks at the voted offset, *beyond* the number chance gives
        (default 16; module docstring, *Verification*). None skips the verification (an
        index built from hash streams alone, without constellations).
    min_clip_s : float
        Shortest clip :meth:`identify` accepts, in seconds.
    max_postings : int or None
        A stop list: a query hash whose posting list is longer than this is not looked up
        (None: every hash is). At 1M full-length tracks a 10-s clip's hashes read about 32 M
        postings, mostly of the commonest hashes; skipping lists over 10,000 reads 4.9 M and
        identified 19 of 20 clips against 17 of 20 with every list
        (``benchmarks/bench_fingerprint_scale.py``, README *Lookup at 1M full-length
        tracks*). On small catalogues no list is that long, so it changes nothing there.

    Attributes
    ----------
    keys_ : np.ndarray [shape=(n_keys,), dtype=uint32]
        The distinct hashes, sorted (after :meth:`build`).
    starts_ : np.ndarray [shape=(n_keys + 1,), dtype=uint32 or uint64]
        Postings of ``keys_[i]`` are ``postings_[starts_[i]:starts_[i + 1]]`` (uint64 only
        beyond 2**32 postings).
    postings_ : np.ndarray [shape=(n_postings, 3), dtype=uint16]
        Each posting, 6 bytes: ``track_idx << TIME_BITS | anchor_time`` in 48 bits, little
        end first. Use :meth:`unpacked` for plain ``(hashes, track_idx, times)``.
    track_ids_ : np.ndarray [shape=(n_tracks,), dtype=str]
    n_hashes_ : np.ndarray [shape=(n_tracks,), dtype=int64]
    durations_ : np.ndarray [shape=(n_tracks,), dtype=float64]
    peaks_ : np.ndarray [shape=(n_peaks,), dtype=uint32]
        Each track's constellation (:func:`constellation`: ``time << freq_bits | (freq -
        1)``), sorted within the track, 4 bytes a peak; track ``i``'s peaks are
        ``peaks_[peak_starts_[i]:peak_starts_[i + 1]]``.
    peak_starts_ : np.ndarray [shape=(n_tracks + 1,), dtype=int64]

    Examples
    --------
    >>> index = FingerprintIndex()                                    # doctest: +SKIP
    >>> index.add("t1", "song.ogg"); index.build()                    # doctest: +SKIP
    >>> index.identify("clip.wav")                                    # doctest: +SKIP
    Match(track_id='t1', offset_s=31.6, score=96, confidence=1.0, ...)
    >>> index.save(model_dir / "fingerprints")                        # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        params: FingerprintParams | None = None,
        min_votes: int = 7,
        min_ratio: float = 1.0,
        min_clip_s: float = 1.0,
        max_postings: int | None = None,
        min_peaks: float | None = 16.0,
    ) -> None:
        self.params = params or FingerprintParams()
        if max_postings is not None and (isinstance(max_postings, bool)
                                         or not isinstance(max_postings, int)
                                         or max_postings < 1):
            raise ParameterError(f"max_postings={max_postings!r} must be a positive integer "
                                 "or None")
        self.max_postings = max_postings
        if min_votes < 1:
            raise ParameterError(f"min_votes={min_votes} must be >= 1")
        if min_ratio < 0:
            raise ParameterError(f"min_ratio={min_ratio} must be >= 0")
        if min_peaks is not None and not min_peaks >= 0:
            raise ParameterError(f"min_peaks={min_peaks!r} must be >= 0 or None")
        self.min_votes = int(min_votes)
        self.min_ratio = float(min_ratio)
        self.min_peaks = None if min_peaks is None else float(min_peaks)
        self.min_clip_s = float(min_clip_s)
        self._pending: list[tuple[str, Fingerprint]] = []
        self._pending_ids: set[str] = set()
        self.keys_ = np.zeros(0, dtype=np.uint32)
        self.starts_ = np.zeros(1, dtype=np.uint32)
        self.postings_ = np.zeros((0, 3), dtype=np.uint16)
        self.track_ids_ = np.zeros(0, dtype="<U1")
        self.n_hashes_ = np.zeros(0, dtype=np.int64)
        self.durations_ = np.zeros(0, dtype=np.float64)
        self.peaks_ = np.zeros(0, dtype=np.uint32)
        self.peak_starts_ = np.zeros(1, dtype=np.int64)
        self._id_to_idx: dict[str, int] = {}

    # -- building ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.track_ids_.shape[0])

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._id_to_idx

    @property
    def n_postings(self) -> int:
        return int(self.postings_.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (as saved, less the small JSON)."""
        return int(sum(getattr(self, f"{name}_").nbytes for name in _ARRAYS))

    def unpacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting as plain arrays, in index order (sorted by hash).

        Returns
        -------
        hashes, track_idx, times : np.ndarray [shape=(n_postings,), dtype=uint32]
        """
        starts = np.asarray(self.starts_).astype(np.int64)
        counts: np.ndarray = starts[1:] - starts[:-1]
        hashes = np.repeat(np.asarray(self.keys_), counts).astype(np.uint32)
        track, times = _unpack(np.asarray(self.postings_))
        return hashes, track.astype(np.uint32), times.astype(np.uint32)

    def _pack(self, hashes: np.ndarray, tracks: np.ndarray, times: np.ndarray) -> None:
        """Store postings sorted by hash as keys, starts and 6-byte postings."""
        if hashes.size and int(times.max()) >= 1 << TIME_BITS:
            raise ParameterError(
                f"anchor time {int(times.max())} frames must be < 2**{TIME_BITS}: a track "
                f"longer than {(1 << TIME_BITS) * self.params.frame_s / 3600:.1f} h")
        if len(self) > 1 << TRACK_BITS:
            raise ParameterError(f"{len(self)} tracks: the index holds at most 2**{TRACK_BITS}")
        keys, starts = np.unique(hashes, return_index=True)
        n = hashes.size
        self.keys_ = keys.astype(np.uint32)
        self.starts_ = np.append(starts, n).astype(np.uint32 if n < 2**32 else np.uint64)
        packed = (tracks.astype("<u8") << np.uint64(TIME_BITS)) | times.astype("<u8")
        # the low six bytes of each little-endian uint64
        self.postings_ = np.ascontiguousarray(packed.view("<u2").reshape(-1, 4)[:, :3])

    def add(
        self,
        track_id: str,
        audio_or_hashes: PathLike | np.ndarray | Fingerprint,
        *,
        sr: int | None = None,
    ) -> Fingerprint:
        """Fingerprint one track and stage it; :meth:`build` makes it searchable.

        Parameters
        ----------
        track_id : str
            Raw id; must be new to the index.
        audio_or_hashes : path, np.ndarray or Fingerprint
            An audio file, samples (with ``sr``), or a ready :class:`Fingerprint`.
        sr : int or None
            Sampling rate of an array.

        Returns
        -------
        Fingerprint
            The track's landmarks (empty for silence, logged as a warning).
        """
        track_id = str(track_id)
        if track_id in self._id_to_idx or track_id in self._pending_ids:
            raise ParameterError(f"track_id={track_id!r} is already in the index")
        if isinstance(audio_or_hashes, Fingerprint):
            fp = audio_or_hashes
        else:
            fp = fingerprint(audio_or_hashes, sr=sr, params=self.params)
        if len(fp) == 0:
            log.warning("track %r has no landmarks (silent or too short); it cannot match",
                        track_id)
        self._pending.append((track_id, fp))
        self._pending_ids.add(track_id)
        return fp

    def build(self) -> FingerprintIndex:
        """Merge the staged tracks into the sorted arrays; returns ``self``."""
        if not self._pending:
            return self
        base = len(self)
        new_ids = [tid for tid, _ in self._pending]
        fps = [fp for _, fp in self._pending]
        sizes = np.array([len(fp) for fp in fps], dtype=np.int64)
        old_hashes, old_tracks, old_times = self.unpacked()
        hashes = np.concatenate([old_hashes, *[fp.hashes for fp in fps]]).astype(np.uint32)
        tracks = np.concatenate([
            old_tracks,
            np.repeat(np.arange(base, base + len(fps), dtype=np.uint32), sizes),
        ]).astype(np.uint32)
        times = np.concatenate([old_times, *[fp.times for fp in fps]]).astype(np.uint32)
        del old_hashes, old_tracks, old_times
        order = np.argsort(hashes, kind="stable")
        width = max([len(t) for t in new_ids] + [int(self.track_ids_.dtype.itemsize // 4), 1])
        self.track_ids_ = np.concatenate([
            np.asarray(self.track_ids_, dtype=f"<U{width}"),
            np.asarray(new_ids, dtype=f"<U{width}"),
        ])
        self.n_hashes_ = np.concatenate([np.asarray(self.n_hashes_), sizes])
        self.durations_ = np.concatenate([
            np.asarray(self.durations_), np.array([fp.duration_s for fp in fps], dtype=float)])
        peaks = [constellation(fp, params=self.params) for fp in fps]
        self.peaks_ = np.concatenate([np.asarray(self.peaks_), *peaks]).astype(np.uint32)
        self.peak_starts_ = np.concatenate([
            np.asarray(self.peak_starts_),
            int(self.peak_starts_[-1]) + np.cumsum([p.size for p in peaks], dtype=np.int64)])
        self._pack(hashes[order], tracks[order], times[order])
        self._id_to_idx = {str(t): i for i, t in enumerate(self.track_ids_)}
        self._pending, self._pending_ids = [], set()
        log.info("fingerprint index: %d tracks, %d postings", len(self), self.n_postings)
        return self

    def extend(
        self,
        items: Iterable[tuple[str, PathLike | np.ndarray | Fingerprint]],
        *,
        sr: int | None = None,
        show_progress: bool = False,
    ) -> FingerprintIndex:
        """Add tracks to a built (or loaded) index and rebuild the sorted arrays.

        Parameters
        ----------
        items : iterable of (track_id, audio_or_hashes)
        sr : int or None
            Sampling rate of array items.
        show_progress : bool
            Show a progress bar while fingerprinting.
        """
        from tqdm.auto import tqdm

        for track_id, source in tqdm(list(items), disable=not show_progress,
                                     desc="fingerprinting"):
            self.add(track_id, source, sr=sr)
        return self.build()

    def track_fingerprint(self, track_id: str) -> Fingerprint:
        """The stored landmarks of one indexed track (sorted by anchor time)."""
        from musicrec.errors import UnknownTrackError

        if track_id not in self._id_to_idx:
            raise UnknownTrackError(track_id)
        idx = self._id_to_idx[track_id]
        hashes, tracks, times = self.unpacked()
        where = np.flatnonzero(tracks == idx)
        order = np.argsort(times[where], kind="stable")
        where = where[order]
        return Fingerprint(hashes=hashes[where], times=times[where],
                           duration_s=float(self.durations_[idx]))

    # -- search -----------------------------------------------------------------------
    # h17lookup (issue 17, lookup at 1M tracks): the gather is split out of _votes as
    # _hits, and _votes takes ready hits, so that a lookup sharded by hash value gathers
    # each shard's hits apart and votes once (benchmarks/bench_fingerprint_scale.py).
    def _hits(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting of ``hashes``: for each hit, the position of its query hash, the
        track and the anchor time in that track (``int64 [shape=(n_hits,)]`` each)."""
        empty = np.zeros(0, dtype=np.int64)
        if hashes.size == 0 or self.n_postings == 0:
            return empty, empty, empty
        distinct = self.keys_
        at = np.minimum(np.searchsorted(distinct, hashes), distinct.size - 1)
        found = distinct[at] == hashes
        lo = np.where(found, self.starts_[at], 0).astype(np.int64)
        counts = np.where(found, self.starts_[at + 1], 0).astype(np.int64) - lo
        if self.max_postings is not None:  # the stop list
            counts[counts > self.max_postings] = 0
        total = int(counts.sum())
        if total == 0:
            return empty, empty, empty
        q = np.repeat(np.arange(hashes.size), counts)
        track, db_time = _unpack(self.postings_[concat_ranges(lo, counts)])
        return q, track, db_time

    def _votes(
        self, hashes: np.ndarray, times: np.ndarray, *, max_candidates: int = 64,
        distinct_anchors: bool = True,
        hits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """Aligned votes per ``(track, offset)``.

        With ``distinct_anchors`` (a query) the score of a ``(track, offset)`` bin is the
        number of distinct query anchor peaks with a landmark in that bin or a neighbour
        (offset ±1): the landmarks of one anchor (its fan-out and their tolerant variants)
        count once. Without it (track against track), every landmark is one vote. ``hits``
        are the :meth:`_hits` of ``hashes`` when they were gathered elsewhere (from the
        shards of a sharded index, in any order); by default they are gathered here.

        Two stages: every hit counts once for its track (``np.bincount``), then offset
        histograms are made only for the ``max_candidates`` tracks with the most hits (an
        aligned score never exceeds a track's hits, so the best track is always among them).

        Returns tracks, offsets, scores (one row per candidate ``(track, offset)`` bin),
        the total hits and the number of tracks hit.
        """
        empty = np.zeros(0, dtype=np.int64)
        q, track, db_time = self._hits(hashes) if hits is None else hits
        total = int(q.size)
        if total == 0:
            return empty, empty, empty, 0, 0
        per_track = np.bincount(track, minlength=len(self))
        n_tracks_hit = int(np.count_nonzero(per_track))
        if n_tracks_hit > max_candidates:
            top = np.argpartition(-per_track, max_candidates - 1)[:max_candidates]
            keep = np.zeros(len(self), dtype=bool)
            keep[top] = True
            chosen = keep[track]
            track, db_time, q = track[chosen], db_time[chosen], q[chosen]
        anchor = times[q].astype(np.int64)
        offset = db_time - anchor
        if distinct_anchors:
            # a vote is (track, offset, query anchor); each counts for its own offset bin and
            # both neighbours, and a bin's score is its number of *distinct* query anchors
            local, track = np.unique(track, return_inverse=True)
            off_lo = int(offset.min()) - 1
            anchor_bits = int(anchor.max(initial=0)).bit_length()
            span = 1 << (int(offset.max()) - off_lo + 2).bit_length()
            bins = track * span + (offset - off_lo)
            triple = np.concatenate([bins - 1, bins, bins + 1])
            pairs = np.unique((triple << anchor_bits) | np.tile(anchor, 3))
            uniq, score = np.unique(pairs >> anchor_bits, return_counts=True)
            # ties (a bin and its neighbours share their anchors) go to the bin with the
            # most anchors of its own: rows come sorted by that, and the ranking is stable
            own_bins, own = np.unique(np.unique((bins << anchor_bits) | anchor) >> anchor_bits,
                                      return_counts=True)
            at = np.minimum(np.searchsorted(own_bins, uniq), own_bins.size - 1)
            order = np.argsort(-np.where(own_bins[at] == uniq, own[at], 0), kind="stable")
            uniq, score = uniq[order], score[order]
            return (local[uniq // span], uniq % span + off_lo, score.astype(np.int64), total,
                    n_tracks_hit)
        span = 1 << 33
        keys = track * span + (offset + (1 << 32))
        uniq, n = np.unique(keys, return_counts=True)
        # add the votes of offsets ±1 (neighbouring keys of the same track)
        score = n.copy()
        for step in (-1, 1):
            where = np.searchsorted(uniq, uniq + step)
            where = np.minimum(where, uniq.size - 1)
            hit = uniq[where] == uniq + step
            score[hit] += n[where[hit]]
        return uniq // span, uniq % span - (1 << 32), score, total, n_tracks_hit

    def query(
        self,
        audio: PathLike | np.ndarray | Fingerprint,
        *,
        sr: int | None = None,
        n: int = 5,
    ) -> list[tuple[str, float, int]]:
        """The ``n`` best ``(track_id, offset_s, score)`` candidates, best first, unfiltered.

        Raises
        ------
        ParameterError
            A clip shorter than ``min_clip_s``.
        """
        return self._ranked(audio, sr=sr).ranked[:n]

    def _ranked(
        self, audio: PathLike | np.ndarray | Fingerprint, *, sr: int | None
    ) -> _Ranked:
        if self._pending:
            raise ParameterError("the index has staged tracks: call build() first")
        if isinstance(audio, Fingerprint):
            fp = audio
        else:
            y, name = _as_signal(audio, sr=sr, params=self.params)
            if y.size < self.min_clip_s * self.params.sr:
                raise ParameterError(
                    f"{name}: clip of {y.size / self.params.sr:.2f} s is shorter than "
                    f"min_clip_s={self.min_clip_s:g} s")
            query_params = self.params.for_query()
            times, freqs = find_peaks(y, params=query_params)
            h, t = hash_peaks(times, freqs, params=query_params)
            fp = Fingerprint(hashes=h, times=t, duration_s=y.size / self.params.sr)
        f1 = split_hashes(fp.hashes, self.params)[0]
        if np.unique(f1).size < MIN_ANCHOR_FREQS:
            # a tone or a held interval: its few landmarks repeat at every time step, so
            # they line up with any sustained note of the catalogue (a 5-s 440 Hz tone
            # scored 9 against a demo track); no identity to find
            return _Ranked([], fp, 0, 0, -1, 0)
        hashes, anchors = tolerant_hashes(fp.hashes, fp.times, params=self.params)
        tracks, offsets, scores, total, n_tracks_hit = self._votes(hashes, anchors)
        if scores.size == 0:
            return _Ranked([], fp, 0, 0, -1, 0)
        # best bin of each track, tracks ranked by it
        order = np.lexsort((-scores, tracks))
        first = np.ones(order.size, dtype=bool)
        first[1:] = tracks[order][1:] != tracks[order][:-1]
        best = order[first]
        best = best[np.argsort(-scores[best], kind="stable")]
        frame_s = self.params.frame_s
        ranked = [(str(self.track_ids_[tracks[i]]), float(offsets[i] * frame_s),
                   int(scores[i])) for i in best]
        n_bins = n_tracks_hit * int(max(1, np.ptp(offsets) + 1)) // 3 + 1
        return _Ranked(ranked, fp, total, max(n_bins, 1), int(tracks[best[0]]),
                       int(offsets[best[0]]))

    def _verify(self, query: Fingerprint, track: int, offset: int) -> tuple[int, float]:
        """The verification stage: how many of the clip's peaks coincide (within ±1 frame
        and ±1 bin) with a peak of ``track`` at ``offset`` frames, and how many chance
        gives (module docstring, *Verification*)."""
        fb = self.params.freq_bits
        if self.peak_starts_.shape != (len(self) + 1,):
            raise ParameterError(
                f"the index holds constellations of {self.peak_starts_.shape[0] - 1} tracks "
                f"for {len(self)} tracks: build it with add()/build(), or set "
                f"min_peaks=None to decide by the vote alone")
        lo, hi = int(self.peak_starts_[track]), int(self.peak_starts_[track + 1])
        stored = np.asarray(self.peaks_[lo:hi]).astype(np.int64)
        peaks = constellation(query, params=self.params)
        if stored.size == 0 or peaks.size == 0:
            return 0, 0.0
        near = np.array([(dt << fb) + df for dt in (-1, 0, 1) for df in (-1, 0, 1)])
        moved = (peaks + (offset << fb))[:, None] + near[None, :]
        at = np.minimum(np.searchsorted(stored, moved), stored.size - 1)
        matched = int(np.count_nonzero((stored[at] == moved).any(axis=1)))
        # chance: a clip peak at bin f meets one of the track's peaks in bins f-1..f+1
        # with probability 3 frames x their number / the track's frames
        per_bin = np.bincount(stored & (2**fb - 1), minlength=2**fb + 2).astype(float)
        window = per_bin + np.roll(per_bin, 1) + np.roll(per_bin, -1)
        frames = float((stored[-1] >> fb) + 1)
        expected = float(np.minimum(1.0, 3.0 * window[peaks & (2**fb - 1)] / frames).sum())
        return matched, expected

    def identify(
        self,
        audio: PathLike | np.ndarray | Fingerprint,
        *,
        sr: int | None = None,
        min_votes: int | None = None,
        min_ratio: float | None = None,
        min_peaks: float | None = None,
    ) -> Match | None:
        """The catalogue recording a clip comes from, or ``None`` ("no match").

        Parameters
        ----------
        audio : path, np.ndarray or Fingerprint
            The clip (a file, samples with ``sr``, or its fingerprint).
        sr : int or None
            Sampling rate of an array.
        min_votes, min_ratio, min_peaks : optional
            Override the calibrated thresholds for this call (None: the index's).

        Returns
        -------
        Match or None
            ``None`` when no track clears both thresholds (silence, noise, a recording
            not in the catalogue).

        Raises
        ------
        ParameterError
            A clip shorter than ``min_clip_s``, or an array without ``sr``.
        DataFormatError
            A file that cannot be decoded as audio.
        """
        min_votes = self.min_votes if min_votes is None else min_votes
        min_ratio = self.min_ratio if min_ratio is None else min_ratio
        min_peaks = self.min_peaks if min_peaks is None else min_peaks
        found = self._ranked(audio, sr=sr)
        if not found.ranked:
            log.debug("no candidate for a clip of %d hashes", len(found.query))
            return None
        track_id, offset_s, score = found.ranked[0]
        second = found.second
        if score < min_votes or not found.passes_ratio(min_ratio):
            log.debug("no match: best %s score %d, second %d", track_id, score, second)
            return None
        if min_peaks is None:  # no verification: the vote's own chance bound
            peaks, chance = 0, 0.0
            lam = 3.0 * found.total / found.n_bins
            p = min(1.0, found.n_bins * float(stats.poisson.sf(score - 1, lam)))
        else:
            peaks, chance = self._verify(found.query, found.track, found.offset)
            if peaks - chance < min_peaks:
                log.debug("no match: best %s score %d, %d peaks coincide (chance %.1f)",
                          track_id, score, peaks, chance)
                return None
            p = min(1.0, found.n_bins * float(stats.poisson.sf(peaks - 1, max(chance, 1e-9))))
        return Match(track_id=track_id, offset_s=round(offset_s, 3), score=score,
                     confidence=round(1.0 - p, 6), second_score=second,
                     n_query_hashes=len(found.query), peaks=peaks,
                     peaks_chance=round(chance, 2))

    def calibrate(
        self,
        negatives: Sequence[PathLike | np.ndarray | Fingerprint],
        *,
        sr: int | None = None,
        max_false_match: float = 0.01,
    ) -> dict[str, float | None]:
        """Raise the deciding threshold until non-catalogue clips give at most
        ``max_false_match``.

        ``min_votes`` and the ratio test stay as set. With the verification stage
        (``min_peaks`` not None) ``min_peaks`` becomes the smallest value (never below the
        current one) for which the share of ``negatives`` that would match is at most
        ``max_false_match``; without it, ``min_votes`` does.

        Parameters
        ----------
        negatives : sequence of clips
            Clips known *not* to be in the catalogue (other music, speech, noise).
        sr : int or None
            Sampling rate of array clips.
        max_false_match : float
            Target false-match rate.

        Returns
        -------
        dict
            ``min_votes``, ``min_peaks`` (None without verification), the measured
            ``false_match`` rate and ``n`` negatives.
        """
        if not 0 <= max_false_match < 1:
            raise ParameterError(f"max_false_match={max_false_match} must be in [0, 1)")
        n = len(negatives)
        if n == 0:
            raise ParameterError("negatives is empty: calibration needs non-catalogue clips")
        verify = self.min_peaks is not None
        passing: list[float] = []  # the deciding statistic of negatives that pass the rest
        for clip in negatives:
            found = self._ranked(clip, sr=sr)
            if not found.ranked:
                continue
            if not found.passes_ratio(self.min_ratio):
                continue
            best = found.score
            if verify:
                if best >= self.min_votes:
                    peaks, chance = self._verify(found.query, found.track, found.offset)
                    passing.append(peaks - chance)
            else:
                passing.append(best)
        allowed = int(math.floor(max_false_match * n))
        ordered = sorted(passing, reverse=True)
        if verify:
            assert self.min_peaks is not None
            if len(ordered) > allowed:
                # the least whole number of peaks above the allowed-th negative's excess
                self.min_peaks = max(self.min_peaks, float(math.floor(ordered[allowed]) + 1))
            false = sum(x >= self.min_peaks for x in passing)
        else:
            if len(ordered) > allowed:
                self.min_votes = max(self.min_votes, int(ordered[allowed]) + 1)
            false = sum(x >= self.min_votes for x in passing)
        return {"min_votes": float(self.min_votes), "min_peaks": self.min_peaks,
                "false_match": false / n, "n": float(n)}

    # -- persistence ------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": "musicrec-fingerprint",
            "format_version": FORMAT_VERSION,
            "params": self.params.to_dict(),
            "min_votes": self.min_votes,
            "min_ratio": self.min_ratio,
            "min_clip_s": self.min_clip_s,
            "max_postings": self.max_postings,
            "min_peaks": self.min_peaks,
            "n_tracks": len(self),
            "n_postings": self.n_postings,
        }

    def save(self, path: PathLike) -> Path:
        """Write the index to the directory ``path`` (replaced atomically).

        Files: ``keys.npy`` (``uint32``), ``starts.npy`` (``uint32``, or ``uint64`` beyond
        2**32 postings), ``postings.npy`` (``uint16 [n, 3]``: 6 bytes a posting),
        ``track_ids.npy`` (unicode), ``n_hashes.npy``, ``durations.npy`` and
        ``fingerprint.json`` (format version, parameters, thresholds). Loaded with
        ``mmap=True``, every gunicorn worker maps the same pages: one copy in memory.
        """
        if self._pending:
            raise ParameterError("the index has staged tracks: call build() before save()")

        def write(tmp: Path) -> None:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", np.asarray(getattr(self, f"{name}_")),
                        allow_pickle=False)
            (tmp / _META_FILE).write_text(json.dumps(self._meta(), indent=2) + "\n")

        return write_directory(path, write)

    @classmethod
    def load(
        cls,
        path: PathLike,
        *,
        mmap: bool = True,
        params: FingerprintParams | None = None,
    ) -> FingerprintIndex:
        """Load an index written by :meth:`save`.

        Parameters
        ----------
        path : path
            The index directory.
        mmap : bool
            Memory-map the arrays (read-only) instead of reading them.
        params : FingerprintParams or None
            When given, the saved parameters must equal these.

        Raises
        ------
        ModelFormatError
            A missing or corrupt file, another format version, or other parameters.
        """
        path = Path(path)
        meta = cls.read_meta(path, params=params)
        if "shards" in meta:
            raise ModelFormatError(f"{path / _META_FILE}: a sharded fingerprint index; load "
                                   "it with musicrec.embedding.fingerprint_shards."
                                   "ShardedFingerprintIndex")
        index = cls(**cls.settings_from_meta(path, meta))
        arrays = {name: load_array(path / f"{name}.npy", mmap=mmap) for name in _ARRAYS}
        n_tracks = {arrays[k].shape for k in ("track_ids", "n_hashes", "durations")}
        n_tracks.add((arrays["peak_starts"].shape[0] - 1,))
        n_postings = meta.get("n_postings")
        keys, starts, postings = arrays["keys"], arrays["starts"], arrays["postings"]
        ok = (keys.ndim == 1 and starts.shape == (keys.size + 1,)
              and postings.shape == (n_postings, 3) and postings.dtype == np.uint16
              and int(starts[-1]) == n_postings
              and int(arrays["peak_starts"][-1]) == arrays["peaks"].shape[0])
        if not ok or len(n_tracks) != 1 or n_tracks != {(meta.get("n_tracks"),)}:
            raise ModelFormatError(f"{path}: array lengths disagree with {_META_FILE}")
        for name in ("track_ids", "n_hashes", "durations", "peaks", "peak_starts"):
            setattr(index, f"{name}_", arrays[name])
        index.keys_, index.starts_, index.postings_ = keys, starts, postings
        index._id_to_idx = {str(t): i for i, t in enumerate(index.track_ids_)}
        return index

    @staticmethod
    def read_meta(path: Path, *, params: FingerprintParams | None = None) -> dict[str, Any]:
        """``fingerprint.json`` of the index directory ``path``, its format and parameters
        checked (against ``params`` when given).

        Raises
        ------
        ModelFormatError
            A missing or unreadable file, another format version, or other parameters.
        """
        meta_path = path / _META_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise ModelFormatError(f"{meta_path}: no fingerprint index here") from None
        except (OSError, ValueError) as error:
            raise ModelFormatError(f"{meta_path}: unreadable ({error})") from None
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version in (1, 2, 3):
            raise ModelFormatError(
                f"{meta_path}: fingerprint index of format {version}, made by an older "
                f"musicrec without the tracks' constellations (format 4 stores them for "
                f"the verification stage) or with other peaks; this musicrec "
                f"reads format {FORMAT_VERSION}: rebuild the fingerprints (`musicrec build`)")
        if version != FORMAT_VERSION:
            raise ModelFormatError(
                f"{meta_path}: format_version={version!r}, this musicrec reads "
                f"{FORMAT_VERSION}")
        try:
            saved = FingerprintParams(**meta["params"])
        except (TypeError, KeyError, ParameterError) as error:
            raise ModelFormatError(f"{meta_path}: bad params ({error})") from None
        if params is not None and saved != params:
            diff = {k: (v, getattr(params, k)) for k, v in saved.to_dict().items()
                    if getattr(params, k) != v}
            raise ModelFormatError(
                f"{meta_path}: saved with other fingerprint parameters "
                f"(saved, expected): {diff}")
        meta["params"] = saved
        return meta

    @staticmethod
    def settings_from_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments saved in ``meta`` (see :meth:`read_meta`).

        Raises
        ------
        ModelFormatError
            A threshold that is missing or out of range.
        """
        try:
            settings = {"params": meta["params"], "min_votes": int(meta["min_votes"]),
                        "min_ratio": float(meta["min_ratio"]),
                        "min_clip_s": float(meta["min_clip_s"]),
                        "max_postings": meta.get("max_postings"),
                        "min_peaks": meta["min_peaks"]}
            FingerprintIndex(**settings)  # the constructor's checks
        except (TypeError, KeyError, ValueError, ParameterError) as error:
            raise ModelFormatError(f"{path / _META_FILE}: bad thresholds ({error!r})") from None
        return settings

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments of this index (thresholds, stop list)."""
        return {"params": self.params, "min_votes": self.min_votes,
                "min_ratio": self.min_ratio, "min_clip_s": self.min_clip_s,
                "max_postings": self.max_postings, "min_peaks": self.min_peaks}


# -- duplicates ---------------------------------------------------------------------------
def find_duplicates(
    index: FingerprintIndex,
    *,
    min_votes: int | None = None,
    min_fraction: float = 0.05,
    show_progress: bool = False,
) -> list[DuplicateGroup]:
    """Groups of indexed tracks that are the same recording.

    Each track's stored landmarks are searched against the index; another track is a
    duplicate when their best aligned score reaches ``min_votes`` and ``min_fraction`` of
    the smaller track's hashes. Linked tracks form groups (connected components).

    Parameters
    ----------
    index : FingerprintIndex
        A built index.
    min_votes : int or None
        Least aligned votes (default: the index's ``min_votes``).
    min_fraction : float
        Least share of the shorter track's hashes that must align (5 %); excerpts of one
        recording pass, two different songs sharing a sample rarely do.
    show_progress : bool
        Show a progress bar.

    Returns
    -------
    list of DuplicateGroup
        Groups of two or more tracks, ordered by their first track's index.
    """
    from tqdm.auto import tqdm

    min_votes = index.min_votes if min_votes is None else int(min_votes)
    n = len(index)
    parent = list(range(n))
    links: dict[int, list[tuple[int, int, int]]] = {i: [] for i in range(n)}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes_all, tracks_all, times_all = index.unpacked()
    by_track = np.argsort(tracks_all, kind="stable")
    del tracks_all
    bounds = np.concatenate([[0], np.cumsum(np.asarray(index.n_hashes_))])
    hashes_all, times_all = hashes_all[by_track], times_all[by_track]
    for a in tqdm(range(n), disable=not show_progress, desc="duplicates"):
        h = hashes_all[bounds[a]:bounds[a + 1]]
        t = times_all[bounds[a]:bounds[a + 1]]
        tracks, offsets, scores, _, _ = index._votes(h, t, max_candidates=256,
                                                     distinct_anchors=False)
        mask = tracks > a  # each pair once, never the track itself
        if not mask.any():
            continue
        tracks, offsets, scores = tracks[mask], offsets[mask], scores[mask]
        order = np.lexsort((-scores, tracks))
        first = np.ones(order.size, dtype=bool)
        first[1:] = tracks[order][1:] != tracks[order][:-1]
        for i in order[first]:
            b, score = int(tracks[i]), int(scores[i])
            smaller = min(int(index.n_hashes_[a]), int(index.n_hashes_[b]))
            if score >= min_votes and score >= min_fraction * smaller:
                # a at time t plays what b plays at t + offset
                links[a].append((b, int(offsets[i]), score))
                links[b].append((a, -int(offsets[i]), score))
                parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    result = []
    frame_s = index.params.frame_s
    for members in sorted(groups.values(), key=min):
        if len(members) < 2:
            continue
        ref = min(members)
        offset: dict[int, int] = {ref: 0}
        link_score: dict[int, int] = {ref: 0}
        queue = [ref]
        while queue:  # breadth-first: offsets relative to the reference track
            a = queue.pop(0)
            for b, off, s in links[a]:
                if b not in offset:
                    offset[b] = offset[a] + off
                    link_score[b] = s
                    queue.append(b)
        ordered = sorted(members)
        result.append(DuplicateGroup(
            track_ids=tuple(str(index.track_ids_[i]) for i in ordered),
            offsets_s=tuple(round(offset[i] * frame_s, 3) for i in ordered),
            scores=tuple(link_score[i] for i in ordered),
        ))
    return result
