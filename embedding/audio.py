"""Audio decoding for the embedders: mono, resampled, cut into windows.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...) and falls
back to librosa/audioread for anything else it can read. Only the windows an embedder
needs are decoded, so a long track costs little more than a short one. Every failure is
an :class:`AudioDecodeError` whose ``kind`` says why: ``"missing"``, ``"zero_length"``,
``"not_audio"``, ``"unsupported_format"``, ``"corrupt"``, ``"truncated"`` or
``"too_large"``.

A file's header is checked against :class:`AudioLimits` before anything is decoded, so a
small file that declares hundreds of channels or a billion samples a second costs nothing.
Uploads are decoded from memory with :func:`read_clip`: they never touch the disk.
"""

from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.errors import DataFormatError, ParameterError

log = logging.getLogger(__name__)

#: Suffixes treated as audio when a folder is scanned.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au",
    ".m4a", ".mp4", ".aac", ".wma", ".webm", ".caf", ".w64", ".rf64",
})

#: Reasons a file may fail to decode (the ``kind`` of an :class:`AudioDecodeError`).
FAILURE_KINDS = ("missing", "zero_length", "not_audio", "unsupported_format", "corrupt",
                 "truncated", "too_large")

#: RMS below this (about -80 dBFS) marks a track as silent.
SILENCE_RMS = 1e-4

_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM", b".snd", b"caff",
                b"riff")
_CONTAINER_MAGIC = (b"ftyp",)  # MP4/M4A at offset 4: audio, but libsndfile cannot read it
_OTHER_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"%PDF", b"PK\x03\x04", b"GIF8", b"\x7fELF",
                b"\x1f\x8b")


class AudioDecodeError(DataFormatError):
    """An audio file cannot be decoded.

    Parameters
    ----------
    path : str or Path
        The file.
    kind : str
        One of :data:`FAILURE_KINDS`.
    message : str
        What went wrong, for a person.
    """

    def __init__(self, path: str | Path, kind: str, message: str) -> None:
        if kind not in FAILURE_KINDS:
            raise ParameterError(f"kind={kind!r} must be one of {FAILURE_KINDS}")
        self.kind = kind
        super().__init__(path, f"{kind.replace('_', ' ')}: {message}")


@dataclass(frozen=True)
class AudioLimits:
    """What a file may declare before it is decoded.

    Attributes
    ----------
    max_channels : int
        More channels are refused (``unsupported_format``).
    min_rate, max_rate : int
        Sample rates outside this range, Hz, are refused (``unsupported_format``).
    max_seconds : float or None
        Longer audio is refused (``too_large``); None: no limit.
    max_samples : int or None
        Most samples (frames times channels) decoded from one file (``too_large``);
        also enforced while decoding, whatever the header claims. None: no limit.
    """

    max_channels: int = 64
    min_rate: int = 1000
    max_rate: int = 768_000
    max_seconds: float | None = None
    max_samples: int | None = None

    @classmethod
    def for_clips(cls, max_seconds: float) -> AudioLimits:
        """Limits for an uploaded clip: 8 channels, 4-192 kHz, and at most as many samples
        as ``max_seconds`` of 48 kHz stereo."""
        return cls(max_channels=8, min_rate=4000, max_rate=192_000, max_seconds=max_seconds,
                   max_samples=int(max_seconds * 48_000 * 2))

    def check(self, name: str | Path, *, frames: int, channels: int, rate: int) -> None:
        """Raise :class:`AudioDecodeError` when a header declares more than these limits."""
        if not 1 <= channels <= self.max_channels:
            raise AudioDecodeError(name, "unsupported_format",
                                   f"{channels} channels; at most {self.max_channels} are "
                                   "supported")
        if not self.min_rate <= rate <= self.max_rate:
            raise AudioDecodeError(name, "unsupported_format",
                                   f"sample rate {rate} Hz is outside {self.min_rate}-"
                                   f"{self.max_rate} Hz")
        seconds = frames / rate
        if self.max_seconds is not None and seconds > self.max_seconds:
            raise AudioDecodeError(name, "too_large",
                                   f"the clip lasts {seconds:.1f} s; at most "
                                   f"{self.max_seconds:g} s are allowed")
        if self.max_samples is not None and frames * channels > self.max_samples:
            raise AudioDecodeError(name, "too_large",
                                   f"the clip decodes to {frames * channels} samples "
                                   f"({frames} frames x {channels} channels); at most "
                                   f"{self.max_samples} are allowed")


#: The limits of :func:`load_audio` unless told otherwise: any real recording passes.
FILE_LIMITS = AudioLimits()


@dataclass(frozen=True)
class DecodedAudio:
    """The decoded windows of one track.

    Attributes
    ----------
    windows : list of np.ndarray [shape=(n_samples,), dtype=float32]
        Mono windows at ``sample_rate``; each at most ``window_seconds`` long (shorter only
        when the whole track is shorter).
    sample_rate : int
        Their sample rate.
    duration : float
        The whole track's duration in seconds.
    silent : bool
        True when every decoded sample is below :data:`SILENCE_RMS` in RMS.
    """

    windows: list[np.ndarray]
    sample_rate: int
    duration: float
    silent: bool


def window_starts(*, n_frames: int, window_frames: int, n_windows: int) -> list[int]:
    """Start frames of ``n_windows`` windows spread evenly over a track.

    Windows are centred in ``n_windows`` equal segments; a track no longer than one
    window gives a single window at 0, and overlapping windows are merged away.

    Examples
    --------
    >>> window_starts(n_frames=100, window_frames=10, n_windows=2)
    [20, 70]
    >>> window_starts(n_frames=8, window_frames=10, n_windows=3)
    [0]
    """
    if n_windows < 1:
        raise ParameterError(f"n_windows={n_windows} must be at least 1")
    if n_frames <= window_frames:
        return [0]
    n_fit = min(n_windows, max(1, n_frames // window_frames))
    seg = n_frames / n_fit
    starts = [int(round(seg * (i + 0.5) - window_frames / 2)) for i in range(n_fit)]
    return [min(max(0, s), n_frames - window_frames) for s in starts]


def spread_windows(
    waveform: np.ndarray, *, sample_rate: int, window_seconds: float | None, n_windows: int
) -> list[np.ndarray]:
    """Cut a waveform into ``n_windows`` windows of ``window_seconds`` spread over it.

    ``window_seconds=None`` keeps the whole waveform as one window.
    """
    wave = np.asarray(waveform, dtype=np.float32)
    if window_seconds is None:
        return [wave]
    width = int(round(window_seconds * sample_rate))
    return [wave[s:s + width]
            for s in window_starts(n_frames=len(wave), window_frames=width, n_windows=n_windows)]


def to_mono(
    waveform: np.ndarray, *, sample_rate: int, target_rate: int
) -> np.ndarray:
    """Mix ``waveform`` (``[n]``, or ``[n, channels]``) to mono float32 at ``target_rate``."""
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim == 2 and 1 < wave.shape[1] < 8:
        # channel by channel: the same sums as mean(axis=1) (numpy adds fewer than 8
        # values in order), 2-5x less CPU than numpy's reduction along a short axis
        mixed = wave[:, 0].copy()
        for k in range(1, wave.shape[1]):
            mixed += wave[:, k]
        wave = mixed / np.float32(wave.shape[1])
    elif wave.ndim == 2:
        wave = wave.mean(axis=1)
    elif wave.ndim != 1:
        raise ParameterError(f"waveform has shape {wave.shape}; expected [n] or [n, channels]")
    if not np.all(np.isfinite(wave)):
        raise ParameterError("waveform holds NaN or infinite samples")
    return resample_mono(wave, sample_rate=sample_rate, target_rate=target_rate)


def resample_mono(wave: np.ndarray, *, sample_rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono float32 waveform from ``sample_rate`` to ``target_rate`` (soxr,
    ``HQ``): the one resampler of the decoder. Unlike :func:`to_mono` it does not look for
    NaN or infinite samples (:func:`_finish` does, once, from the windows' energy), so a
    track decoded whole is not checked again for each consumer."""
    if sample_rate != target_rate:
        import soxr

        wave = soxr.resample(wave, sample_rate, target_rate, quality="HQ").astype(
            np.float32, copy=False)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _sniff(path: Path | bytes) -> str:
    """Classify a file (or its bytes) from its first bytes: ``audio``, ``container``,
    ``other``, ``text`` or ``unknown``."""
    if isinstance(path, bytes):
        head = path[:64]
    else:
        with open(path, "rb") as f:
            head = f.read(64)
    if head.startswith(_AUDIO_MAGIC) or (len(head) > 1 and head[0] == 0xFF
                                         and head[1] & 0xE0 == 0xE0):
        return "audio"
    if head[4:8] in _CONTAINER_MAGIC or head.startswith(b"0&\xb2u"):  # MP4, ASF/WMA
        return "container"
    if head.startswith(_OTHER_MAGIC):
        return "other"
    text = head.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b"")
    if text and all(32 <= b < 127 for b in text):
        return "text"
    return "unknown"


def _classify_open_failure(path: Path, exc: Exception, data: bytes | None = None
                           ) -> AudioDecodeError:
    kind = _sniff(path if data is None else data)
    if kind in ("other", "text"):
        what = "a text file" if kind == "text" else "a non-audio file"
        return AudioDecodeError(path, "not_audio", f"the file is {what}")
    if kind == "container":
        return AudioDecodeError(path, "unsupported_format",
                                f"no decoder for this container ({exc})")
    if kind == "audio":
        return AudioDecodeError(path, "corrupt", f"the audio header cannot be parsed ({exc})")
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        return AudioDecodeError(path, "corrupt", f"no audio header found ({exc})")
    return AudioDecodeError(path, "not_audio", f"no audio header found ({exc})")


def _declared_wav_bytes(path: Path) -> tuple[int, int] | None:
    """(declared data bytes, available data bytes) of a RIFF/WAVE file, else None."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                start = f.tell()
                return size, os.path.getsize(path) - start
            f.seek(size + (size & 1), 1)


def load_audio(
    path: str | Path,
    *,
    sample_rate: int | None,
    window_seconds: float | None = None,
    n_windows: int = 1,
    limits: AudioLimits = FILE_LIMITS,
) -> DecodedAudio:
    """Decode the windows of one audio file, mono, at ``sample_rate``.

    Parameters
    ----------
    path : str or Path
        The audio file.
    sample_rate : int or None
        The rate to resample to (the embedder's); ``None`` keeps the file's own rate
        (decode once, then :func:`rewindow` for each consumer).
    window_seconds : float or None
        Length of each window; ``None`` decodes the whole track as one window.
    n_windows : int
        How many windows to spread over a long track.
    limits : AudioLimits
        What the header may declare; checked before decoding.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    AudioDecodeError
        With ``kind`` naming the failure.

    Examples
    --------
    >>> audio = load_audio("song.ogg", sample_rate=16000, window_seconds=10, n_windows=2)
    ... # doctest: +SKIP
    """
    path = Path(path)
    if sample_rate is not None and sample_rate < 1:
        raise ParameterError(f"sample_rate={sample_rate} must be a positive integer")
    if not path.is_file():
        raise AudioDecodeError(path, "missing", "no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "zero_length", "the file is empty")
    import soundfile as sf

    try:
        handle = sf.SoundFile(path)
    except Exception as exc:  # libsndfile cannot open it: try audioread, then classify
        if _sniff(path) == "container":  # MP4/AAC/WMA: audioread may have a decoder
            try:
                return _load_with_librosa(path, sample_rate, window_seconds, n_windows)
            except Exception:  # noqa: BLE001 - classified below
                log.debug("librosa fallback failed for %s", path, exc_info=True)
        raise _classify_open_failure(path, exc) from None
    with handle:
        n_frames, rate = handle.frames, handle.samplerate
        declared = _declared_wav_bytes(path) if handle.format == "WAV" else None
        if declared is not None and declared[1] < declared[0]:
            raise AudioDecodeError(
                path, "truncated",
                f"the header declares {declared[0]} data bytes but only {declared[1]} follow")
        if n_frames <= 0:
            raise AudioDecodeError(path, "zero_length", "the file holds no audio samples")
        limits.check(path, frames=n_frames, channels=handle.channels, rate=rate)
        target = rate if sample_rate is None else sample_rate
        width = n_frames if window_seconds is None else int(round(window_seconds * rate))
        windows = []
        for start in window_starts(n_frames=n_frames, window_frames=width,
                                   n_windows=n_windows):
            mono = _read_mono(handle, path, start=start, frames=min(width, n_frames - start))
            windows.append(resample_mono(mono, sample_rate=rate, target_rate=target))
    return _finish(path, windows, target, n_frames / rate)


#: Frames read from libsndfile at a time (:func:`_read_mono`): 512 kB of stereo float32.
READ_BLOCK_FRAMES = 65536


def _read_mono(handle: Any, path: Path, *, start: int, frames: int) -> np.ndarray:
    """``frames`` frames of an open ``soundfile.SoundFile`` from ``start``, mixed to mono
    block by block into one preallocated array.

    The same samples as ``to_mono(handle.read(frames, always_2d=True))`` bit for bit (the
    channels are added in order, then divided), without the interleaved whole-track
    array and its copies (for a whole stereo track, one mono array is held instead of the
    stereo read plus two mono ones): 14 % less CPU on a whole stereo Vorbis track in
    ``bench_full_length.py``.
    """
    channels = handle.channels
    out = np.empty(frames, dtype=np.float32)
    block = np.empty((min(frames, READ_BLOCK_FRAMES), channels), dtype=np.float32)
    done = 0
    try:
        handle.seek(start)
        while done < frames:
            want = min(len(block), frames - done)
            data = handle.read(want, dtype="float32", always_2d=True, out=block[:want])
            got = len(data)
            if got == 0:
                break
            mixed = out[done:done + got]
            if channels == 1:
                mixed[:] = data[:, 0]
            elif channels >= 8:  # as to_mono: numpy's mean (pairwise from 8 values on)
                mixed[:] = data.mean(axis=1)
            else:  # as to_mono: c0 + c1 + ... in order, then / channels
                np.add(data[:, 0], data[:, 1], out=mixed)
                for k in range(2, channels):
                    mixed += data[:, k]
                mixed /= np.float32(channels)
            done += got
    except Exception as exc:
        raise AudioDecodeError(path, "truncated",
                               f"decoding failed at frame {start + done} ({exc})") from None
    if done == 0:
        raise AudioDecodeError(path, "truncated",
                               f"no samples at frame {start} of {handle.frames}")
    return out[:done]


def read_clip(
    data: bytes, *, limits: AudioLimits, name: str = "the clip"
) -> tuple[np.ndarray, int]:
    """Decode an uploaded clip from memory to one mono waveform at its own rate.

    The header is checked against ``limits`` before decoding, and decoding stops as soon
    as more samples arrive than ``limits.max_samples`` allows, whatever the header said.
    Channels are mixed down block by block, so memory grows with the frames, not with
    frames times channels.

    Parameters
    ----------
    data : bytes
        The file's bytes (WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF: what libsndfile reads).
    limits : AudioLimits
        See :meth:`AudioLimits.for_clips`.
    name : str
        What error messages call the clip (never a server path).

    Returns
    -------
    waveform : np.ndarray [shape=(n,), dtype=float32]
    sample_rate : int

    Raises
    ------
    AudioDecodeError
        ``zero_length``, ``not_audio``, ``corrupt``, ``unsupported_format`` (channels,
        rate) or ``too_large`` (duration, samples).
    """
    import soundfile as sf

    if not data:
        raise AudioDecodeError(name, "zero_length", "the clip is empty")
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - classified from the bytes
        raise _classify_open_failure(Path(name), exc, data) from None
    with handle:
        rate, channels = int(handle.samplerate), int(handle.channels)
        if handle.frames <= 0:
            raise AudioDecodeError(name, "zero_length", "the clip holds no audio samples")
        limits.check(name, frames=handle.frames, channels=channels, rate=rate)
        budget = limits.max_samples
        blocks, decoded = [], 0
        try:
            for block in handle.blocks(blocksize=32768, dtype="float32", always_2d=True):
                decoded += block.size
                if budget is not None and decoded > budget:
                    raise AudioDecodeError(name, "too_large",
                                           f"the clip decodes to more than {budget} samples")
                blocks.append(block.mean(axis=1))
        except AudioDecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - libsndfile's error, for a person
            raise AudioDecodeError(name, "truncated", f"decoding failed ({exc})") from None
    wave = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    if len(wave) == 0:
        raise AudioDecodeError(name, "zero_length", "the clip holds no audio samples")
    if not np.all(np.isfinite(wave)):
        raise AudioDecodeError(name, "corrupt", "decoded samples are not finite")
    return wave, rate


def _load_with_librosa(
    path: Path, sample_rate: int | None, window_seconds: float | None, n_windows: int
) -> DecodedAudio:
    import warnings

    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wave, rate = librosa.load(path, sr=sample_rate, mono=True)
    if len(wave) == 0:
        raise AudioDecodeError(path, "zero_length", "the file holds no audio samples")
    windows = spread_windows(wave, sample_rate=int(rate), window_seconds=window_seconds,
                             n_windows=n_windows)
    return _finish(path, windows, int(rate), len(wave) / rate)


def _finish(path: Path, windows: list[np.ndarray], sample_rate: int,
            duration: float) -> DecodedAudio:
    # a window's energy is finite exactly when its samples are (the square of a finite
    # float32 is at most 1.2e77 in float64, and 2**31 of them still sum to a finite value):
    # one pass over the samples finds both
    energy, count = 0.0, 0
    for w in windows:
        window_energy = float(np.einsum("i,i->", w, w, dtype=np.float64))
        if not math.isfinite(window_energy):
            raise AudioDecodeError(path, "corrupt", "decoded samples are not finite")
        energy += window_energy
        count += len(w)
    silent = count == 0 or (energy / count) ** 0.5 < SILENCE_RMS
    return DecodedAudio(windows=windows, sample_rate=sample_rate, duration=duration,
                        silent=silent)


def decode_waveform(
    waveform: np.ndarray,
    *,
    source_rate: int,
    sample_rate: int,
    window_seconds: float | None = None,
    n_windows: int = 1,
) -> DecodedAudio:
    """The same as :func:`load_audio` for a waveform already in memory.

    ``waveform`` is ``[n]`` or ``[n, channels]`` at ``source_rate``.
    """
    wave = to_mono(waveform, sample_rate=source_rate, target_rate=sample_rate)
    if len(wave) == 0:
        raise ParameterError("waveform is empty")
    windows = spread_windows(wave, sample_rate=sample_rate, window_seconds=window_seconds,
                             n_windows=n_windows)
    return _finish(Path("<array>"), windows, sample_rate, len(wave) / sample_rate)


def rewindow(
    whole: DecodedAudio,
    *,
    sample_rate: int,
    window_seconds: float | None = None,
    n_windows: int = 1,
) -> DecodedAudio:
    """The windows :func:`load_audio` would decode, cut from a track decoded whole.

    ``whole`` is ``load_audio(path, sample_rate=None)``: the whole track at the file's own
    rate. Windows are placed and resampled exactly as :func:`load_audio` does (at the
    file's rate, then each one to ``sample_rate``), so one decode serves every consumer
    (the embedder's windows, the fingerprint's whole track) with the same samples; only a
    lossy decoder's seek (pre-roll) can make them differ, by decoder noise.
    """
    if len(whole.windows) != 1:
        raise ParameterError(f"whole has {len(whole.windows)} windows; decode it with "
                             "window_seconds=None")
    wave, rate = whole.windows[0], whole.sample_rate
    width = len(wave) if window_seconds is None else int(round(window_seconds * rate))
    windows = [resample_mono(wave[s:s + width], sample_rate=rate, target_rate=sample_rate)
               for s in window_starts(n_frames=len(wave), window_frames=width,
                                      n_windows=n_windows)]
    return _finish(Path("<decoded>"), windows, sample_rate, whole.duration)
