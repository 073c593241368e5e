"""Decode once: the embedder's windows and the fingerprint cut from one decode of a real
recording equal those decoded separately (issue 17, part 3)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from musicrec.cli import main
from musicrec.embedding.audio import load_audio, rewindow, to_mono
from musicrec.embedding.batch import decode_once, embed_paths, torch_threads_beside
from musicrec.embedding.fingerprint import FingerprintIndex, FingerprintParams, fingerprint
from musicrec.embedding.mfcc import MFCCEmbedder
from musicrec.embedding.registry import get_embedder
from musicrec.errors import ParameterError

#: Stereo Vorbis at 44.1 kHz (49 s: windows are resampled and mixed down) and mono Vorbis
#: at 16 kHz (14 s: shorter than two of the windows below).
WALTZ = "147793__setuniman__sweet-waltz-0i-22mi.hq.ogg"
SPEECH = "198-209-0000.hq.ogg"


@pytest.fixture(scope="module")
def recordings(librosa_audio_dir: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> list[Path]:
    folder = tmp_path_factory.mktemp("rec")
    out = []
    for name in (WALTZ, SPEECH):
        shutil.copy(librosa_audio_dir / name, folder / name)
        out.append(folder / name)
    return out


@pytest.mark.parametrize("windows", [(10.0, 3), (3.0, 6), (None, 1)])
def test_rewindow_equals_the_windowed_decode(recordings: list[Path],
                                             windows: tuple[float | None, int]) -> None:
    seconds, n = windows
    path = recordings[0]  # libsndfile seeks this stereo Vorbis file sample-exactly
    whole = load_audio(path, sample_rate=None)
    assert whole.sample_rate == 44100 and len(whole.windows) == 1
    apart = load_audio(path, sample_rate=22050, window_seconds=seconds, n_windows=n)
    once = rewindow(whole, sample_rate=22050, window_seconds=seconds, n_windows=n)
    assert [len(w) for w in once.windows] == [len(w) for w in apart.windows]
    for a, b in zip(apart.windows, once.windows, strict=True):
        np.testing.assert_array_equal(a, b)  # the same samples, bit for bit
    assert once.duration == pytest.approx(apart.duration)
    assert once.silent is apart.silent is False


def test_rewindow_cuts_the_whole_decode(recordings: list[Path]) -> None:
    """On the mono 16 kHz file, libsndfile's seek on a handle that has already read lands
    256 samples late for the last two of four 3-s windows, so the windowed decode differs
    there; the windows cut from one decode are the file's own samples at the right place,
    and the embedding agrees within the stated tolerance."""
    path = recordings[1]
    whole = load_audio(path, sample_rate=None)
    assert whole.sample_rate == 16000
    once = rewindow(whole, sample_rate=16000, window_seconds=3.0, n_windows=6)
    starts = [3820, 59460, 115101, 170741]  # window_starts of 222,561 frames, 48,000 each
    assert len(once.windows) == len(starts)
    for start, window in zip(starts, once.windows, strict=True):
        np.testing.assert_array_equal(window, whole.windows[0][start:start + 48000])
    embedder = get_embedder("mfcc", window_seconds=3.0, n_windows=6)
    apart = embedder.embed_decoded([embedder.load(path)])[0]
    together = embedder.embed_decoded([decode_once(embedder, path, FingerprintParams())[0]])[0]
    assert float(apart @ together) > 0.9999  # measured 0.999994


def test_decode_once_gives_the_same_embedding_and_fingerprint(recordings: list[Path]) -> None:
    embedder = get_embedder("mfcc", window_seconds=10.0, n_windows=3)
    params = FingerprintParams()
    for path in recordings:
        decoded, fp = decode_once(embedder, path, params)
        assert decoded is not None and fp is not None
        np.testing.assert_array_equal(embedder.embed_decoded([decoded]),
                                      embedder.embed_decoded([embedder.load(path)]))
        alone = fingerprint(path, params=params)
        assert len(fp) == len(alone) > 100
        np.testing.assert_array_equal(fp.hashes, alone.hashes)
        np.testing.assert_array_equal(fp.times, alone.times)
        assert fp.duration_s == pytest.approx(alone.duration_s)
    _, only = decode_once(None, recordings[0], params)
    np.testing.assert_array_equal(only.hashes, fingerprint(recordings[0]).hashes)


def test_rewindow_needs_a_whole_track(recordings: list[Path]) -> None:
    windowed = load_audio(recordings[0], sample_rate=None, window_seconds=5.0, n_windows=2)
    with pytest.raises(ParameterError, match="whole has 2 windows"):
        rewindow(windowed, sample_rate=22050, window_seconds=1.0)


def test_embed_paths_fingerprints_from_the_same_decode(recordings: list[Path],
                                                       tmp_path: Path) -> None:
    embedder = get_embedder("mfcc")
    bad = tmp_path / "bad.ogg"
    bad.write_text("not audio")
    paths = [*recordings, bad]
    plain = embed_paths(paths, embedder=embedder, use_cache=False, show_progress=False)
    assert plain.fingerprints == {}
    for cache in (tmp_path / "cache", tmp_path / "cache"):  # computed, then cached
        both = embed_paths(paths, embedder=embedder, cache_dir=cache, show_progress=False,
                           fingerprint_params=FingerprintParams())
        assert both.track_ids == plain.track_ids == [str(p) for p in recordings]
        np.testing.assert_array_equal(both.vectors, plain.vectors)
        assert [(f.path, f.kind) for f in both.failures] == [(str(bad), "not_audio")]
        assert sorted(both.fingerprints) == sorted(both.track_ids)
        for path in recordings:
            np.testing.assert_array_equal(both.fingerprints[str(path)].hashes,
                                          fingerprint(path).hashes)
    assert both.n_cached == 2 and both.n_embedded == 0


def test_build_indexes_the_fingerprints_made_with_the_vectors(recordings: list[Path],
                                                              tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert main(["build", "--catalog", str(recordings[0].parent), "--embedder", "mfcc",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    index = FingerprintIndex.load(out / "fingerprints")
    for path in recordings:
        track_id = path.name.removesuffix(".ogg")
        stored = index.track_fingerprint(track_id)
        alone = fingerprint(path)
        order = np.lexsort((alone.hashes, alone.times))
        got = np.lexsort((stored.hashes, stored.times))
        np.testing.assert_array_equal(stored.hashes[got], alone.hashes[order])
        np.testing.assert_array_equal(stored.times[got], alone.times[order])


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 7, 8, 12])
def test_to_mono_mixes_like_numpy_mean(channels: int) -> None:
    rng = np.random.default_rng(channels)
    wave = rng.standard_normal((5000, channels)).astype(np.float32)
    mixed = to_mono(wave, sample_rate=8000, target_rate=8000)
    assert mixed.dtype == np.float32 and mixed.flags.c_contiguous
    np.testing.assert_array_equal(mixed, wave.mean(axis=1))
    np.testing.assert_allclose(to_mono(np.full((10, channels), 0.5, np.float32),
                                       sample_rate=8000, target_rate=8000), 0.5)


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
def test_block_reads_give_the_samples_of_one_read(channels: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """load_audio reads block by block into one mono array: the same samples, bit for bit,
    as reading the whole window and mixing it with to_mono, across block boundaries."""
    import soundfile as sf

    from musicrec.embedding import audio

    monkeypatch.setattr(audio, "READ_BLOCK_FRAMES", 1000)
    rng = np.random.default_rng(channels)
    wave = (0.3 * rng.standard_normal((8123, channels))).astype(np.float32)
    path = tmp_path / f"{channels}.flac"
    sf.write(path, wave, 8000, subtype="PCM_24")
    with sf.SoundFile(path) as handle:
        whole = handle.read(dtype="float32", always_2d=True)
    for seconds, n in ((None, 1), (0.3, 4)):
        decoded = load_audio(path, sample_rate=None, window_seconds=seconds, n_windows=n)
        width = len(whole) if seconds is None else 2400
        starts = audio.window_starts(n_frames=len(whole), window_frames=width, n_windows=n)
        assert len(decoded.windows) == len(starts)
        for start, window in zip(starts, decoded.windows, strict=True):
            expected = to_mono(whole[start:start + width], sample_rate=8000, target_rate=8000)
            assert window.dtype == np.float32 and window.flags.c_contiguous
            np.testing.assert_array_equal(window, expected)


def test_parallel_decoding_equals_the_serial_path_and_survives_damaged_files(
        recordings: list[Path], tmp_path: Path) -> None:
    """Two decoding threads (the build's default) give the vectors, fingerprints and
    failures of one thread, in input order; a damaged file is a failure that names it,
    and the files after it are still embedded and fingerprinted."""
    import soundfile as sf

    data = recordings[0].read_bytes()
    header = tmp_path / "header.ogg"
    header.write_bytes(b"OggX" + data[4:])  # not an Ogg page: no decoder recognises it
    stub = tmp_path / "stub.ogg"
    stub.write_bytes(data[:200])  # an Ogg header, cut before the first audio page
    cut = tmp_path / "cut.wav"
    sf.write(cut, np.zeros((22050, 2), np.float32), 22050)
    cut.write_bytes(cut.read_bytes()[:30000])  # the header declares more than follows
    copy = tmp_path / "copy.ogg"
    copy.write_bytes(data)
    paths = [recordings[0], header, recordings[1], stub, cut, copy]
    embedder = get_embedder("mfcc")
    params = FingerprintParams()
    runs = [embed_paths(paths, embedder=embedder, use_cache=False, show_progress=False,
                        n_workers=n, batch_size=2, fingerprint_params=params)
            for n in (1, 2)]
    serial, parallel = runs
    assert parallel.track_ids == serial.track_ids == [str(p) for p in
                                                      (recordings[0], recordings[1], copy)]
    np.testing.assert_array_equal(parallel.vectors, serial.vectors)
    np.testing.assert_array_equal(parallel.vectors[0], parallel.vectors[2])
    assert parallel.failures == serial.failures
    assert [(f.path, f.kind) for f in parallel.failures] == [
        (str(header), "corrupt"), (str(stub), "corrupt"), (str(cut), "truncated")]
    for path in (recordings[0], recordings[1], copy):
        alone = decode_once(embedder, path, params)[1]
        for run in runs:
            np.testing.assert_array_equal(run.fingerprints[str(path)].hashes, alone.hashes)
            np.testing.assert_array_equal(run.fingerprints[str(path)].times, alone.times)


@pytest.mark.parametrize(("cores", "before", "workers", "expected"),
                         [(2, 2, 2, 1), (4, 3, 2, 2), (16, 4, 2, 4), (2, 1, 8, 1)])
def test_torch_runs_on_the_cores_the_decoders_leave(
        cores: int, before: int, workers: int, expected: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    try:
        torch.set_num_threads(before)
        with torch_threads_beside(workers) as inside:
            assert inside == torch.get_num_threads() == expected
        assert torch.get_num_threads() == before
        # without torch imported there is nothing to set
        monkeypatch.delitem(sys.modules, "torch")
        with torch_threads_beside(workers) as inside:
            assert inside is None
    finally:
        torch.set_num_threads(threads)


class ThreadCountingMFCC(MFCCEmbedder):
    """mfcc that records torch's threads at each model call."""

    seen: list[int]

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        import torch

        self.seen.append(torch.get_num_threads())
        return super()._embed_windows(windows)


def test_embed_paths_runs_torch_beside_the_decoders_only_with_fingerprints(
        recordings: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    embedder = ThreadCountingMFCC()
    try:
        torch.set_num_threads(2)
        for params, expected in ((None, 2), (FingerprintParams(), 1)):
            embedder.seen = []
            result = embed_paths(recordings, embedder=embedder, use_cache=False,
                                 n_workers=2, batch_size=1, show_progress=False,
                                 fingerprint_params=params)
            assert len(result.track_ids) == 2 and embedder.seen == [expected, expected]
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
