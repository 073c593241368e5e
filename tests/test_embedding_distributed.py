"""Embedding on Ray: the local path's vectors, failures and cache, on a local 2-CPU runtime."""

from __future__ import annotations

import argparse
import builtins
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

pytest.importorskip("ray")

from musicrec.embedding.batch import embed_catalog, read_embeddings  # noqa: E402
from musicrec.embedding.distributed import (  # noqa: E402
    INSTALL_HINT,
    RayNotInstalledError,
    embed_with_ray,
    ray_runtime,
)
from musicrec.embedding.fingerprint import FingerprintParams  # noqa: E402
from musicrec.embedding.registry import get_embedder  # noqa: E402
from musicrec.errors import MusicrecError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

OPTIONS = {"window_seconds": 1.0}


def _tone(path: Path, freq: float, seconds: float = 1.5, sr: int = 22050) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr)
    return path


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    with ray_runtime(num_cpus=2) as ray:
        yield ray


@pytest.fixture
def music(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    for k, freq in enumerate([220, 330, 440, 550, 660]):
        _tone(root / f"t{k}.wav", freq)
    _tone(root / "sub" / "b.flac", 880)
    (root / "empty.mp3").write_bytes(b"")
    (root / "notes.txt").write_text("hello")
    full = _tone(root / "cut.wav", 990).read_bytes()
    (root / "cut.wav").write_bytes(full[: len(full) // 3])
    return root


@pytest.mark.slow
def test_ray_gives_the_local_vectors_and_failures(ray_local: Any, music: Path,
                                                  tmp_path: Path) -> None:
    local = embed_catalog(music, embedder=get_embedder("mfcc", **OPTIONS),
                          cache_dir=tmp_path / "local", show_progress=False)
    remote = embed_with_ray(music, embedder_spec="mfcc", embedder_options=OPTIONS,
                            cache_dir=tmp_path / "ray", batch_size=2, show_progress=False)
    assert remote.track_ids == local.track_ids == ["sub/b", "t0", "t1", "t2", "t3", "t4"]
    np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-6)
    assert remote.failures == local.failures
    assert [(f.track_id, f.kind) for f in remote.failures] == [
        ("cut", "truncated"), ("empty", "zero_length"), ("notes.txt", "not_audio")]
    assert remote.summary() == "6 embedded (6 computed, 0 from cache), 0 silent, 3 failed"
    assert remote.embedder_id == local.embedder_id


@pytest.mark.slow
def test_second_run_embeds_nothing_new_and_shares_the_local_cache(
        ray_local: Any, music: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = embed_with_ray(music, embedder_spec="mfcc", embedder_options=OPTIONS,
                           cache_dir=cache, show_progress=False)
    again = embed_with_ray(music, embedder_spec="mfcc", embedder_options=OPTIONS,
                           cache_dir=cache, show_progress=False)
    assert (first.n_embedded, first.n_cached) == (6, 0)
    assert (again.n_embedded, again.n_cached) == (0, 6)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    # the same cache keys as the local path, both ways
    local = embed_catalog(music, embedder=get_embedder("mfcc", **OPTIONS), cache_dir=cache,
                          show_progress=False)
    assert (local.n_embedded, local.n_cached) == (0, 6)
    _tone(music / "t0.wav", 1234)  # changed
    _tone(music / "new.wav", 777)  # new
    third = embed_with_ray(music, embedder_spec="mfcc", embedder_options=OPTIONS,
                           cache_dir=cache, show_progress=False)
    assert (third.n_embedded, third.n_cached) == (2, 5)


def test_catalogue_with_a_missing_file_completes_and_keeps_shards(
        ray_local: Any, music: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"track_id": ["x", "gone", "y"],
                  "audio_path": [str(music / "t1.wav"), "nowhere.wav",
                                 str(music / "t2.wav")]}).to_csv(catalog, index=False)
    local = embed_catalog(catalog, embedder=get_embedder("mfcc", **OPTIONS),
                          cache_dir=tmp_path / "local", show_progress=False)
    shards = tmp_path / "shards"
    remote = embed_with_ray(catalog, embedder_spec="mfcc", embedder_options=OPTIONS,
                            cache_dir=tmp_path / "ray", shard_dir=shards, show_progress=False)
    assert remote.track_ids == ["x", "y"]
    assert len(remote.failures) == 1 and remote.failures == local.failures
    assert remote.failures[0].track_id == "gone"
    assert remote.failures[0].path == str(tmp_path / "nowhere.wav")
    np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-6)
    tables = [pd.read_parquet(p) for p in sorted(shards.glob("*.parquet"))]
    rows = pd.concat(tables).sort_values("idx")
    assert rows["track_id"].tolist() == ["x", "gone", "y"]
    assert rows["status"].tolist() == ["embedded", "failed", "embedded"]


def test_cli_engine_ray_writes_the_same_file(ray_local: Any, music: Path,
                                             tmp_path: Path) -> None:
    from musicrec.cli import build_parser, main

    out = tmp_path / "vectors.parquet"
    argv = ["embed", str(music), "--out", str(out), "--model", "mfcc",
            "--window-seconds", "1", "--cache-dir", str(tmp_path / "c"), "--engine", "ray"]
    args = build_parser().parse_args(argv)
    assert args.engine == "ray" and args.address is None
    assert main(argv) == 1  # three files failed, as locally
    ids, vectors = read_embeddings(out)
    local = embed_catalog(music, embedder=get_embedder("mfcc", **OPTIONS),
                          cache_dir=tmp_path / "local", show_progress=False)
    assert ids == local.track_ids
    np.testing.assert_allclose(vectors, local.vectors, atol=1e-6)
    failed = pd.read_csv(tmp_path / "vectors.failures.csv")
    assert failed["kind"].tolist() == ["truncated", "zero_length", "not_audio"]


def test_without_ray_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                   music: Path, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RayNotInstalledError) as err:
        embed_with_ray(music, embedder_spec="mfcc", cache_dir=tmp_path)
    assert isinstance(err.value, MusicrecError)
    assert "pip install 'musicrec[ray]'" in str(err.value) and INSTALL_HINT in str(err.value)
    from musicrec.commands.engine import run_embed_engine

    args = argparse.Namespace(engine="ray", source=music, out=tmp_path / "v.parquet")
    with pytest.raises(RayNotInstalledError, match=r"pip install 'musicrec\[ray\]'"):
        run_embed_engine(args)


def test_ray_decodes_once_for_the_local_vectors_and_fingerprints(
        ray_local: Any, librosa_audio_dir: Path, tmp_path: Path) -> None:
    """With fingerprint_params the actors fingerprint what they embed (and, on a second
    run, the tracks whose vectors are cached): the local path's vectors, fingerprints and
    failures."""
    folder = tmp_path / "rec"
    folder.mkdir()
    for name in ("147793__setuniman__sweet-waltz-0i-22mi.hq.ogg", "198-209-0000.hq.ogg"):
        shutil.copy(librosa_audio_dir / name, folder / name)
    (folder / "bad.ogg").write_text("not audio")
    params = FingerprintParams()
    local = embed_catalog(folder, embedder=get_embedder("mfcc"), use_cache=False,
                          show_progress=False, fingerprint_params=params)
    assert len(local.track_ids) == 2 and sorted(local.fingerprints) == sorted(local.track_ids)
    for run in ("computed", "cached"):
        remote = embed_with_ray(folder, embedder_spec="mfcc", cache_dir=tmp_path / "cache",
                                batch_size=2, show_progress=False, fingerprint_params=params)
        assert remote.track_ids == local.track_ids, run
        np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-6)
        assert remote.failures == local.failures
        assert [(f.track_id, f.kind) for f in remote.failures] == [("bad", "not_audio")]
        assert sorted(remote.fingerprints) == sorted(local.track_ids), run
        for track_id, mine in local.fingerprints.items():
            theirs = remote.fingerprints[track_id]
            assert len(theirs) == len(mine) > 100
            np.testing.assert_array_equal(theirs.hashes, mine.hashes)
            np.testing.assert_array_equal(theirs.times, mine.times)
            assert theirs.hashes.dtype == theirs.times.dtype == np.uint32
            assert theirs.duration_s == mine.duration_s
    assert (remote.n_embedded, remote.n_cached) == (0, 2)
    plain = embed_with_ray(folder, embedder_spec="mfcc", cache_dir=tmp_path / "cache",
                           show_progress=False)
    assert plain.fingerprints == {}
