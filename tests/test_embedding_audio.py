"""Decoding: windows, mono/resampling, silence, and every failure kind."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrec.embedding.audio import (
    AudioDecodeError,
    AudioLimits,
    decode_waveform,
    load_audio,
    read_clip,
    resample_mono,
    rewindow,
    spread_windows,
    to_mono,
    window_starts,
)
from musicrec.errors import DataFormatError, ParameterError


def _wav(path: Path, seconds: float, *, sr: int = 44100, channels: int = 2,
         amplitude: float = 0.3) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    tone = amplitude * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(path, data, sr)
    return path


def test_window_starts_hand_computed() -> None:
    assert window_starts(n_frames=100, window_frames=10, n_windows=2) == [20, 70]
    assert window_starts(n_frames=100, window_frames=10, n_windows=1) == [45]
    assert window_starts(n_frames=8, window_frames=10, n_windows=3) == [0]
    # only two windows fit without overlap: three are not asked of a 25-frame track
    assert window_starts(n_frames=25, window_frames=10, n_windows=3) == [1, 14]
    with pytest.raises(ParameterError, match="n_windows=0"):
        window_starts(n_frames=10, window_frames=5, n_windows=0)


def test_spread_windows_pads_nothing_and_keeps_short_tracks() -> None:
    wave = np.arange(50, dtype=np.float32)
    wins = spread_windows(wave, sample_rate=10, window_seconds=1.0, n_windows=2)
    assert [w[0] for w in wins] == [8, 32] and all(len(w) == 10 for w in wins)
    short = spread_windows(wave[:4], sample_rate=10, window_seconds=1.0, n_windows=2)
    assert len(short) == 1 and len(short[0]) == 4


def test_load_mixes_to_mono_resamples_and_decodes_only_windows(tmp_path: Path) -> None:
    path = _wav(tmp_path / "a.wav", 30.0)
    audio = load_audio(path, sample_rate=16000, window_seconds=5.0, n_windows=3)
    assert audio.sample_rate == 16000 and audio.duration == pytest.approx(30.0)
    assert [len(w) for w in audio.windows] == [80000, 80000, 80000]
    assert all(w.dtype == np.float32 for w in audio.windows)
    rms = float(np.sqrt(np.mean(audio.windows[0] ** 2)))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=1e-2)
    assert not audio.silent


def test_silence_is_flagged(tmp_path: Path) -> None:
    path = _wav(tmp_path / "quiet.flac", 2.0, amplitude=0.0, channels=1)
    assert load_audio(path, sample_rate=16000).silent
    assert decode_waveform(np.zeros(100), source_rate=16000, sample_rate=16000).silent


def _expect(path: Path, kind: str, text: str) -> None:
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, sample_rate=16000)
    assert info.value.kind == kind
    assert isinstance(info.value, DataFormatError)
    assert str(path) in str(info.value) and text in str(info.value)


def test_failures_are_classified(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.wav", "missing", "no such file")
    (tmp_path / "empty.mp3").write_bytes(b"")
    _expect(tmp_path / "empty.mp3", "zero_length", "zero length: the file is empty")
    # a git link stored as text, as in librosa's data repository
    (tmp_path / "link.ogg").write_text("Karissa_Hobbs_-_Lets_Go_Fishin.ogg")
    _expect(tmp_path / "link.ogg", "not_audio", "not audio: the file is a text file")
    (tmp_path / "pic.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    _expect(tmp_path / "pic.wav", "not_audio", "a non-audio file")
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    _expect(tmp_path / "bad.wav", "corrupt", "the audio header cannot be parsed")
    (tmp_path / "noise.flac").write_bytes(np.random.default_rng(0).bytes(4096))
    _expect(tmp_path / "noise.flac", "corrupt", "no audio header found")
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(500))
    _expect(tmp_path / "song.m4a", "unsupported_format", "no decoder for this container")


def test_truncated_and_headers_without_samples(tmp_path: Path) -> None:
    full = _wav(tmp_path / "full.wav", 1.0, sr=16000, channels=1).read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    _expect(tmp_path / "cut.wav", "truncated", f"declares {len(full) - 44} data bytes")
    sf.write(tmp_path / "none.wav", np.zeros(0), 16000)
    _expect(tmp_path / "none.wav", "zero_length", "holds no audio samples")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_a_corrupt_file(tmp_path: Path, bad: float) -> None:
    # a float WAV holding one NaN or infinite sample, found once (from the windows' energy)
    # whether the track is decoded at its own rate, resampled, or in windows
    wave = np.full(8000, 0.1, np.float32)
    wave[4000] = bad
    path = tmp_path / "bad-sample.wav"
    sf.write(path, wave, 8000, subtype="FLOAT")
    for kwargs in ({"sample_rate": None}, {"sample_rate": 16000},
                   {"sample_rate": 8000, "window_seconds": 0.25, "n_windows": 1}):
        with pytest.raises(AudioDecodeError, match="corrupt: decoded samples are not finite"
                           ) as info:
            load_audio(path, **kwargs)  # type: ignore[arg-type]
        assert info.value.kind == "corrupt" and str(path) in str(info.value)
    # windows that miss the bad sample decode (1 s in 2 windows of 0.1 s: 0.2-0.3 s and
    # 0.7-0.8 s), and their energy is the hand-computed one: RMS 0.1, not silent
    decoded = load_audio(path, sample_rate=8000, window_seconds=0.1, n_windows=2)
    assert [len(w) for w in decoded.windows] == [800, 800] and not decoded.silent


@pytest.mark.parametrize(("rate", "target"), [(44100, 16000), (44100, 11025), (8000, 8000)])
def test_resample_mono_is_to_mono_without_the_second_check(rate: int, target: int) -> None:
    wave = np.random.default_rng(7).standard_normal(rate).astype(np.float32)
    got = resample_mono(wave, sample_rate=rate, target_rate=target)
    np.testing.assert_array_equal(got, to_mono(wave, sample_rate=rate, target_rate=target))
    assert got.dtype == np.float32 and got.flags.c_contiguous and len(got) == target
    # rewindow resamples each window with it, as load_audio does
    whole = decode_waveform(wave, source_rate=rate, sample_rate=rate)
    cut = rewindow(whole, sample_rate=target, window_seconds=0.25, n_windows=2)
    start = window_starts(n_frames=rate, window_frames=rate // 4, n_windows=2)[1]
    np.testing.assert_array_equal(
        cut.windows[1], to_mono(wave[start:start + rate // 4], sample_rate=rate,
                                target_rate=target))


def test_many_channels_are_mixed_over_channels_not_time(tmp_path: Path) -> None:
    """A 10-channel file (more than the old code's 8-channel guess) mixes to one sample
    per frame: the mean of the channels."""
    frames, channels = 4000, 10
    levels = np.linspace(-0.5, 0.4, channels, dtype=np.float32)
    sf.write(tmp_path / "ten.wav", np.tile(levels, (frames, 1)), 8000, subtype="FLOAT")
    audio = load_audio(tmp_path / "ten.wav", sample_rate=8000)
    assert audio.windows[0].shape == (frames,)
    np.testing.assert_allclose(audio.windows[0], levels.mean(), atol=1e-6)
    wave = decode_waveform(np.tile(levels, (frames, 1)), source_rate=8000, sample_rate=8000)
    assert wave.windows[0].shape == (frames,)


def test_clips_are_read_from_memory_within_limits(tmp_path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.stack([np.full(16000, 0.2), np.full(16000, 0.4)], axis=1), 16000,
             format="FLAC")
    wave, rate = read_clip(buf.getvalue(), limits=AudioLimits.for_clips(10), name="clip")
    assert rate == 16000 and wave.shape == (16000,)
    np.testing.assert_allclose(wave, 0.3, atol=1e-4)
    with pytest.raises(AudioDecodeError, match="clip: too large: the clip lasts 1.0 s; at "
                                               "most 0.5 s are allowed") as info:
        read_clip(buf.getvalue(), limits=AudioLimits.for_clips(0.5), name="clip")
    assert info.value.kind == "too_large"
    with pytest.raises(AudioDecodeError, match="clip: not audio: the file is a text file"):
        read_clip(b"hello, this is not audio", limits=AudioLimits.for_clips(1), name="clip")
    with pytest.raises(AudioDecodeError, match="zero length"):
        read_clip(b"", limits=AudioLimits.for_clips(1), name="clip")
    # catalogue files get generous limits, but a header beyond them is refused too
    path = tmp_path / "wide.wav"
    sf.write(path, np.zeros((10, 65), dtype=np.float32), 8000)
    with pytest.raises(AudioDecodeError, match="65 channels; at most 64 are supported"):
        load_audio(path, sample_rate=16000)


def test_ogg_of_the_shared_recordings(librosa_audio_dir: Path) -> None:
    path = librosa_audio_dir / "sorohanro_-_solo-trumpet-06.hq.ogg"
    audio = load_audio(path, sample_rate=16000, window_seconds=10.0, n_windows=2)
    assert len(audio.windows) == 1 and len(audio.windows[0]) == pytest.approx(5.3 * 16000,
                                                                              rel=0.01)
    # every Ogg file of the shared folder decodes, however many there are
    oggs = sorted(librosa_audio_dir.glob("*.ogg"))
    assert oggs
    for path in oggs:
        assert load_audio(path, sample_rate=16000).duration > 0, path.name
