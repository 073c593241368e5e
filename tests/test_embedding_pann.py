"""PANN embedders: CNN14 from a user's checkpoint (tested on random weights) and aisfx's Cnn9
from the weights in its wheel, checked against aisfx's own network and librosa."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from musicrec.embedding.pann import AisfxEmbedder, Cnn14, PANNEmbedder, aisfx_checkpoint
from musicrec.embedding.registry import get_embedder
from musicrec.errors import ModelFormatError, ParameterError

needs_aisfx = pytest.mark.skipif(importlib.util.find_spec("aisfx") is None,
                                 reason="aisfx is not installed (pip install --no-deps "
                                 "aisfx==0.1.2)")


def test_cnn14_loads_and_embeds_with_the_paper_shapes(pann_checkpoint: Path) -> None:
    emb = get_embedder(f"pann:{pann_checkpoint}", window_seconds=2.0, n_windows=2)
    assert isinstance(emb, PANNEmbedder)
    assert (emb.dim, emb.sample_rate, emb.name) == (2048, 32000, "pann:cnn14.pth")
    assert emb.revision.startswith("sha256-") and len(emb.revision) == 19
    wave = np.random.default_rng(0).normal(scale=0.1, size=32000 * 5).astype(np.float32)
    feats = emb._features(torch.from_numpy(wave[None, : 32000 * 2]))
    assert tuple(feats.shape) == (1, 201, 64)  # 2 s / 320-sample hop + 1 centred frame
    out = emb.embed([wave])
    assert out.shape == (1, 2048) and np.isclose(np.linalg.norm(out), 1.0, atol=1e-5)
    assert (out >= 0).all()  # the embedding is fc1's ReLU output


def test_cnn14_log_mel_matches_librosa(pann_checkpoint: Path) -> None:
    import librosa

    emb = PANNEmbedder(checkpoint=pann_checkpoint)
    wave = np.random.default_rng(1).normal(scale=0.1, size=16000).astype(np.float32)
    power = librosa.feature.melspectrogram(y=wave, sr=32000, n_fft=1024, hop_length=320,
                                           n_mels=64, fmin=50, fmax=14000, pad_mode="reflect")
    ref = 10 * np.log10(np.maximum(power, 1e-10)).T
    mine = emb._features(torch.from_numpy(wave[None]))[0].numpy()
    np.testing.assert_allclose(mine, ref, atol=1e-3)


def test_cnn14_checkpoint_round_trip(pann_checkpoint: Path, tmp_path: Path) -> None:
    """The loaded network equals the saved weights; saving it again (a bare state dict
    this time) and reloading gives the same vectors and a different revision."""
    first = PANNEmbedder(checkpoint=pann_checkpoint, window_seconds=1.0, n_windows=1)
    saved = torch.load(pann_checkpoint, weights_only=True)["model"]
    for key, value in first._model.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    again = tmp_path / "again.pt"
    torch.save(first._model.state_dict(), again)
    second = PANNEmbedder(checkpoint=again, window_seconds=1.0, n_windows=1)
    wave = np.random.default_rng(2).normal(scale=0.1, size=40000).astype(np.float32)
    np.testing.assert_array_equal(first.embed([wave]), second.embed([wave]))
    assert first.revision != second.revision and first.dim == second.dim


def test_cnn14_other_weights_give_other_vectors(pann_checkpoint: Path, tmp_path: Path,
                                                cnn14_state: Callable[..., dict]) -> None:
    other = tmp_path / "other.pth"
    torch.save(cnn14_state(seed=1), other)
    wave = np.random.default_rng(3).normal(scale=0.1, size=32000).astype(np.float32)
    a = PANNEmbedder(checkpoint=pann_checkpoint, window_seconds=1.0).embed([wave])
    b = PANNEmbedder(checkpoint=other, window_seconds=1.0).embed([wave])
    assert float(a[0] @ b[0]) < 0.999


def test_cnn14_bad_checkpoints_are_named(pann_checkpoint: Path, tmp_path: Path,
                                         cnn14_state: Callable[..., dict]) -> None:
    with pytest.raises(ParameterError, match=r"checkpoint .*missing\.pth does not exist"):
        get_embedder(f"pann:{tmp_path / 'missing.pth'}")
    with pytest.raises(ParameterError, match="names no checkpoint after 'pann:'"):
        get_embedder("pann:")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pann_checkpoint.read_bytes()[: pann_checkpoint.stat().st_size // 2])
    with pytest.raises(ModelFormatError, match=r"truncated\.pth: not a torch checkpoint that "
                       r"loads with weights_only=True"):
        PANNEmbedder(checkpoint=truncated)
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(ModelFormatError, match=r"notes\.pth: not a torch checkpoint"):
        PANNEmbedder(checkpoint=text)
    wrong = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), wrong)
    with pytest.raises(ModelFormatError, match=r"wrong\.pth: not a Cnn14 checkpoint: missing "
                       r"\['bn0.bias'.*unexpected \['bias', 'weight'\]"):
        PANNEmbedder(checkpoint=wrong)
    state = cnn14_state()
    state["fc1.weight"] = state["fc1.weight"][:, :100]
    narrow = tmp_path / "narrow.pth"
    torch.save(state, narrow)
    with pytest.raises(ModelFormatError, match=r"fc1.weight has shape \(2048, 100\), Cnn14 "
                       r"needs \(2048, 2048\)"):
        PANNEmbedder(checkpoint=narrow)
    listing = tmp_path / "list.pth"
    torch.save([1, 2], listing)
    with pytest.raises(ModelFormatError, match=r"list\.pth: holds list, not a state dict"):
        PANNEmbedder(checkpoint=listing)


def test_cnn14_refuses_a_pickled_object(tmp_path: Path) -> None:
    """A checkpoint that needs arbitrary unpickling (a whole module) is refused, not run."""
    whole = tmp_path / "module.pth"
    torch.save(Cnn14(), whole)
    with pytest.raises(ModelFormatError, match=r"module\.pth: not a torch checkpoint that "
                       r"loads with weights_only=True"):
        PANNEmbedder(checkpoint=whole)


def test_pann_options_are_checked(pann_checkpoint: Path) -> None:
    with pytest.raises(ParameterError, match=r"does not take option\(s\) \['layer'\]"):
        get_embedder(f"pann:{pann_checkpoint}", layer=2)
    with pytest.raises(ParameterError, match="window_seconds=0.0 must be positive"):
        PANNEmbedder(checkpoint=pann_checkpoint, window_seconds=0.0)
    with pytest.raises(ParameterError, match="n_windows=0 must be at least 1"):
        PANNEmbedder(checkpoint=pann_checkpoint, n_windows=0)
    a = PANNEmbedder(checkpoint=pann_checkpoint, n_windows=2)
    b = PANNEmbedder(checkpoint=pann_checkpoint, n_windows=3)
    assert a.id != b.id


@needs_aisfx
def test_aisfx_matches_its_own_network_and_librosa() -> None:
    """The port equals aisfx's ``EmbeddingNet`` on the shipped weights (its torch-only module
    is imported here, in the test, for reference) and its preprocessing equals the librosa
    recipe of ``aisfx/spectrogram/spectrogram_librosa.py``."""
    import librosa

    spec = importlib.util.spec_from_file_location(
        "aisfx_cnn2d", aisfx_checkpoint().parent / "cnn2d.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.EmbeddingNet("max", 3, 1, 64)
    weights = torch.load(aisfx_checkpoint(), weights_only=False)[0]  # a test-only oracle
    reference.load_state_dict({k[len("embedding_net."):]: v for k, v in weights.items()
                               if k.startswith("embedding_net.")})
    reference.eval()
    emb = get_embedder("aisfx")
    assert isinstance(emb, AisfxEmbedder) and (emb.dim, emb.sample_rate) == (512, 44100)
    x = torch.rand(2, 100, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(emb._model(x), reference(x), rtol=0, atol=1e-6)
    wave = np.random.default_rng(4).normal(scale=0.1, size=44100 * 3).astype(np.float32)
    y = wave / np.abs(wave).max()
    power = librosa.feature.melspectrogram(y=y, sr=44100, n_mels=96, norm=1.0, fmin=0,
                                           fmax=22050, htk=True, power=2.0, hop_length=1024,
                                           win_length=2048, pad_mode="reflect")
    ref = np.log10(power * 1e4 + 1).T / 9.457798957824707
    mine = emb._features(torch.from_numpy(wave[None]))[0].numpy()
    assert mine.shape == (130, 96)
    np.testing.assert_allclose(mine, ref, atol=1e-5)


@needs_aisfx
def test_aisfx_blocks_are_averaged() -> None:
    """A 10-s window is 431 frames: blocks start every 50 frames while 100 fit (0..300,
    7 blocks); the window's vector is their mean."""
    emb = AisfxEmbedder()
    feats = torch.rand(1, 431, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = torch.stack([emb._model(feats[:, s:s + 100]) for s in range(0, 301, 50)])
        torch.testing.assert_close(emb._forward(feats), expected.mean(dim=0), rtol=0,
                                   atol=1e-5)
        short = feats[:, :60]
        padded = torch.nn.functional.pad(short, (0, 0, 0, 40))
        torch.testing.assert_close(emb._forward(short), emb._model(padded), rtol=0, atol=0)


@needs_aisfx
def test_aisfx_loads_with_weights_only_and_three_numpy_globals() -> None:
    """Without the allow-list the shipped checkpoint is refused by ``weights_only``."""
    with pytest.raises(Exception, match="numpy.core.multiarray.scalar"):
        torch.load(aisfx_checkpoint(), weights_only=True)
    assert AisfxEmbedder().revision == "sha256-499ea75909c9"
