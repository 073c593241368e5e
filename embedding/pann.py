"""Pretrained audio neural networks (PANNs): CNN14 from a user's checkpoint, and aisfx's Cnn9.

Both networks are stacks of the same two-convolution block (3x3 convolutions without bias,
batch norm, ReLU, then pooling) over a log-mel spectrogram ``[time, mel]``, pooled over
frequency by a mean and over time by a max (CNN14 adds the mean over time and a 2048-unit
ReLU layer).

``pann:<checkpoint>`` -- CNN14 of Kong et al. (2020), "PANNs: Large-Scale Pretrained Audio
Neural Networks for Audio Pattern Recognition": 32 kHz, a 1024-point STFT every 320
samples, 64 mel bands from 50 Hz to 14 kHz, ``10 log10`` power; the embedding is the
2048-d ``fc1`` output. The checkpoint is the user's (the official ``Cnn14_mAP=0.431.pth``
is on Zenodo): a state dict, or a dict holding one under ``"model"``, read with
``torch.load(weights_only=True)``, never unpickled. The front end is computed, so a
checkpoint's ``spectrogram_extractor.*``/``logmel_extractor.*`` constants are not used.

``aisfx`` -- the ``EmbeddingNet`` (Cnn9, 512-d) of Ma and Lerch (ISMIR 2022), trained on
sound-effect libraries, whose weights ship inside the ``aisfx==0.1.2`` wheel
(``aisfx/models/checkpoint.pth``; licence file CC BY 4.0, package metadata MIT). Its code is
not imported (it pins numpy 1.23 and librosa 0.9); the network and the preprocessing of its
``spectrogram_librosa`` are ported here: 44.1 kHz, peak-normalised waveform, 2048-point
frames every 1024 samples, 96 HTK mel bands with unit-area filters, ``log10(1 + 1e4 x)``
divided by 9.4578 (the maximum of the paper's training spectrograms), blocks of 100 frames
(2.3 s) every 50 frames, each block's 512-d output averaged over the window.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrec.embedding.base import AudioEmbedder, equal_length_batches
from musicrec.errors import ModelFormatError, ParameterError
from musicrec.storage import file_sha256

log = logging.getLogger(__name__)

#: Keys of a CNN14 checkpoint holding front-end constants that are computed instead.
FRONT_END_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")

#: numpy globals the aisfx checkpoint's pickle names (its ``ds_dict`` holds np.int64 values).
AISFX_NUMPY_GLOBALS: list[Any] = [
    (np._core.multiarray.scalar,  # type: ignore[attr-defined]  # numpy 2's home of np.core
     "numpy.core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Int64DType,
]

AISFX_INSTALL = "pip install --no-deps aisfx==0.1.2"
AISFX_SPEC_MAX = 9.457798957824707
AISFX_BLOCK = 100
AISFX_BLOCK_HOP = 50


class ConvBlock(nn.Module):
    """Two 3x3 convolutions (no bias), each followed by batch norm and ReLU, then pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, *, pool_size: tuple[int, int], pool_type: str
                ) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if pool_type == "max":
            return F.max_pool2d(x, kernel_size=pool_size)
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """CNN14 (Kong et al. 2020) from the log-mel spectrogram on: ``[b, time, 64]`` -> 2048-d.

    Parameter names match the official checkpoints (``bn0``, ``conv_block1..6``, ``fc1``,
    ``fc_audioset``).
    """

    def __init__(self, *, mel_bins: int = 64, classes_num: int = 527) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(mel_bins)
        widths = [1, 64, 128, 256, 512, 1024, 2048]
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, classes_num)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = logmel.unsqueeze(1).transpose(1, 3)  # [b, mel, time, 1]: bn0 normalises per band
        x = self.bn0(x).transpose(1, 3)  # [b, 1, time, mel]
        for i in range(1, 7):
            block: ConvBlock = getattr(self, f"conv_block{i}")
            x = block(x, pool_size=(2, 2) if i < 6 else (1, 1), pool_type="avg")
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(x))


class Cnn9(nn.Module):
    """aisfx's ``EmbeddingNet('max', 3, 1, 64)``: ``[b, time, 96]`` -> 512-d.

    Parameter names match ``embedding_net.*`` of ``aisfx/models/checkpoint.pth``.
    """

    def __init__(self) -> None:
        super().__init__()
        widths = [1, 64, 128, 256, 512]
        for i in range(4):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = spec.unsqueeze(1)
        for i in range(1, 5):
            block: ConvBlock = getattr(self, f"conv_block{i}")
            x = block(x, pool_size=(2, 2) if i < 4 else (1, 1), pool_type="max")
        return x.mean(dim=3).amax(dim=2)


def load_weights(path: str | Path, *, allow_globals: list[Any] | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a failure names the file.

    ``allow_globals`` are passed to ``torch.serialization.safe_globals`` (types the file's
    pickle names beyond tensors and containers).
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(allow_globals or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, a forbidden global ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"{path}: not a torch checkpoint that loads with "
                               f"weights_only=True ({first})") from None


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: the object itself or its ``"model"`` entry."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise ModelFormatError(f"{path}: holds {type(obj).__name__}, not a state dict "
                               "(or a dict with one under 'model')")
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ModelFormatError(f"{path}: entries {bad[:5]} are not tensors")
    return dict(obj)


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``, strict, with missing/unexpected/misshapen keys named."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFormatError(f"{path}: not a {type(model).__name__} checkpoint: missing "
                               f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                               f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ModelFormatError(f"{path}: {key} has shape {tuple(state[key].shape)}, "
                                   f"{type(model).__name__} needs {tuple(value.shape)}")
    model.load_state_dict(state)
    model.eval()


def load_cnn14(path: str | Path) -> Cnn14:
    """CNN14 with the weights of a checkpoint (front-end constants dropped)."""
    path = Path(path)
    state = _state_dict(load_weights(path), path)
    state = {k: v for k, v in state.items() if not k.startswith(FRONT_END_PREFIXES)}
    head = state.get("fc_audioset.weight")
    model = Cnn14(classes_num=int(head.shape[0]) if head is not None and head.ndim == 2 else 527)
    load_into(model, state, path)
    return model


def aisfx_checkpoint() -> Path:
    """The installed ``aisfx/models/checkpoint.pth``; a missing package names its install."""
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError(f"the aisfx weights are not installed: {AISFX_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "checkpoint.pth"
    if not path.is_file():
        raise ModelFormatError(f"{path}: file missing from package 'aisfx'")
    return path


def load_cnn9(path: str | Path) -> Cnn9:
    """aisfx's Cnn9 from its checkpoint ``(state dict, datasets)``; the classifier heads
    (``fc.*``) are not needed for the embedding and are dropped."""
    path = Path(path)
    obj = load_weights(path, allow_globals=AISFX_NUMPY_GLOBALS)
    if isinstance(obj, (tuple, list)) and obj:
        obj = obj[0]
    state = _state_dict(obj, path)
    prefix = "embedding_net."
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model = Cnn9()
    load_into(model, state, path)
    return model


def mel_filters(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
                 htk: bool, norm: Any) -> torch.Tensor:
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
                                                fmin=fmin, fmax=fmax, htk=htk, norm=norm)
                            .astype(np.float32))


def power_spectrogram(waves: torch.Tensor, *, n_fft: int, hop: int) -> torch.Tensor:
    """``|STFT|^2`` ``[b, time, n_fft // 2 + 1]``: periodic Hann, centred, reflect-padded."""
    window = torch.hann_window(n_fft, periodic=True)
    stft = torch.stft(waves, n_fft, hop, window=window, center=True, pad_mode="reflect",
                      return_complex=True)
    return (stft.abs() ** 2).transpose(1, 2)


class BatchedTorchEmbedder(AudioEmbedder):
    """An embedder running a torch network on features of each window: windows of one
    length are batched; subclasses set ``_model`` and implement :meth:`_features`."""

    batch_size: int
    num_threads: int | None
    _model: nn.Module

    def _check(self, window_seconds: float, n_windows: int, batch_size: int) -> None:
        if not window_seconds > 0:
            raise ParameterError(f"window_seconds={window_seconds} must be positive")
        if n_windows < 1:
            raise ParameterError(f"n_windows={n_windows} must be at least 1")
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be at least 1")

    def _features(self, waves: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, features: torch.Tensor) -> torch.Tensor:
        return self._model(features)

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for chunk in equal_length_batches(windows, self.batch_size):
                waves = torch.from_numpy(np.stack([self._pad(windows[i]) for i in chunk]))
                out[chunk] = self._forward(self._features(waves)).numpy()
        return out

    def _pad(self, wave: np.ndarray) -> np.ndarray:
        """At least one STFT frame of samples (reflect padding needs more than n_fft / 2)."""
        need = self._min_samples
        wave = np.asarray(wave, dtype=np.float32)
        return wave if len(wave) >= need else np.pad(wave, (0, need - len(wave)))

    _min_samples = 2048


class PANNEmbedder(BatchedTorchEmbedder):
    """CNN14's 2048-d embedding from a checkpoint the user supplies (``pann:<file>``).

    Parameters
    ----------
    checkpoint : str or Path
        A CNN14 checkpoint (``torch.save`` of a state dict, or of ``{"model": state}``).
    window_seconds : float
        Length of each window (CNN14 was trained on 10-s clips). Default 10.
    n_windows : int
        Windows spread over each track. Default 3.
    batch_size : int
        Windows per forward pass.
    num_threads : int or None
        ``torch.set_num_threads`` before embedding (``None`` leaves torch's setting).
    cache_dir : str, Path or None
        Accepted and unused (nothing is converted), like every embedder's common options.

    Examples
    --------
    >>> emb = PANNEmbedder(checkpoint="Cnn14_mAP=0.431.pth")  # doctest: +SKIP
    >>> emb.dim  # doctest: +SKIP
    2048
    """

    sample_rate = 32000
    dim = 2048
    _min_samples = 1024

    def __init__(self, *, checkpoint: str | Path, window_seconds: float = 10.0,
                 n_windows: int = 3, batch_size: int = 8, num_threads: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self._check(window_seconds, n_windows, batch_size)
        path = Path(checkpoint)
        self._model = load_cnn14(path)
        self.checkpoint = path
        self.name = f"pann:{path.name}"
        self.revision = f"sha256-{file_sha256(path)[:12]}"
        self.window_seconds = float(window_seconds)
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._mel = mel_filters(sample_rate=32000, n_fft=1024, n_mels=64, fmin=50.0,
                                 fmax=14000.0, htk=False, norm="slaney")

    def _features(self, waves: torch.Tensor) -> torch.Tensor:
        power = power_spectrogram(waves, n_fft=1024, hop=320)
        return 10.0 * torch.log10(torch.clamp(power @ self._mel.T, min=1e-10))


class AisfxEmbedder(BatchedTorchEmbedder):
    """aisfx's Cnn9 (512-d), trained on sound-effect libraries, from the weights in its wheel.

    Parameters
    ----------
    window_seconds : float
        Length of each window; each is cut into 2.3-s blocks every 1.16 s whose
        embeddings are averaged. Default 10.
    n_windows : int
        Windows spread over each track. Default 3.
    batch_size : int
        Windows per forward pass.
    num_threads : int or None
        ``torch.set_num_threads`` before embedding (``None`` leaves torch's setting).
    cache_dir : str, Path or None
        Accepted and unused.

    Examples
    --------
    >>> emb = AisfxEmbedder()  # doctest: +SKIP
    >>> emb.dim  # doctest: +SKIP
    512
    """

    name = "aisfx"
    sample_rate = 44100
    dim = 512

    def __init__(self, *, window_seconds: float = 10.0, n_windows: int = 3,
                 batch_size: int = 8, num_threads: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self._check(window_seconds, n_windows, batch_size)
        path = aisfx_checkpoint()
        self._model = load_cnn9(path)
        self.revision = f"sha256-{file_sha256(path)[:12]}"
        self.window_seconds = float(window_seconds)
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._mel = mel_filters(sample_rate=44100, n_fft=2048, n_mels=96, fmin=0.0,
                                 fmax=22050.0, htk=True, norm=1.0)

    def _features(self, waves: torch.Tensor) -> torch.Tensor:
        peak = waves.abs().amax(dim=1, keepdim=True)
        waves = waves / torch.where(peak > 0, peak, torch.ones_like(peak))
        power = power_spectrogram(waves, n_fft=2048, hop=1024)
        return torch.log10(power @ self._mel.T * 1e4 + 1.0) / AISFX_SPEC_MAX

    def _forward(self, features: torch.Tensor) -> torch.Tensor:
        """Mean of the block embeddings: blocks of 100 frames every 50, a partial last block
        dropped, a window shorter than one block zero-padded (aisfx's ``blocking`` with its
        default ``drop_partial_block=True``)."""
        b, t, m = features.shape
        n_blocks = max(1, (t - AISFX_BLOCK) // AISFX_BLOCK_HOP + 1)
        padded = F.pad(features, (0, 0, 0, max(0, AISFX_BLOCK - t)))
        blocks = padded.unfold(1, AISFX_BLOCK, AISFX_BLOCK_HOP)  # [b, n_blocks, m, block]
        flat = blocks.permute(0, 1, 3, 2).reshape(b * n_blocks, AISFX_BLOCK, m)
        return self._model(flat).reshape(b, n_blocks, -1).mean(dim=1)
