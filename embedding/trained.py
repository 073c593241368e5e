"""An embedder trained on the user's own catalogue, without labels (``trained:<folder>``).

Over log-mel frames (16 kHz, 1024-point frames every 512 samples, 64 mel bands,
``log(mel + 1e-5)`` standardised per band with the training set's statistics), one of:

- ``gru``: a bidirectional GRU (two layers by default) whose outputs are pooled by
  attention (a learnt score per frame, softmax over time);
- ``cnn``: 3x3 convolution blocks (ReLU, 2x2 max pooling; four by default, widening from 32
  channels to ``hidden``), a layer spanning the remaining frequency bands, then the maximum
  and the mean over time.

Either way the embedding has ``2 * hidden`` dimensions.

Training is contrastive, as COLA (Saeed et al. 2021): a batch takes two different windows
of each of ``batch_size`` tracks; a head (dense, layer norm, tanh) and a bilinear
similarity score every anchor against every positive of the batch, and cross-entropy asks
each anchor to pick its own track's window among the others (the other tracks' windows are
the negatives). No labels are used. Optionally, where listening logs exist, a linear head
also predicts each track's CF item vector from the anchor's embedding (van den Oord et al.
2013, "Deep content-based music recommendation"), mean squared error on the vectors scaled
to unit root mean square, weighted by ``cf_weight``; tracks without a CF vector add no
error.

The folder holds ``model.safetensors`` (every tensor: encoder, head, feature statistics;
no pickle) and ``manifest.json`` (format, architecture, feature settings, the training run:
catalogue fingerprint, tracks, failures, seed, losses, package versions), written
atomically like a model directory. With the same seed, data and thread count, training on
the CPU gives the same bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicrec.embedding.pann import (
    BatchedTorchEmbedder,
    load_into,
    mel_filters,
    power_spectrogram,
)
from musicrec.errors import ModelFormatError, ParameterError
from musicrec.storage import (
    created_now,
    file_sha256,
    package_versions,
    read_format_json,
    write_dir,
)

log = logging.getLogger(__name__)

FORMAT = "musicrec-embedder"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
ARCHS = ("gru", "cnn")
#: Layers by architecture when none are given: GRU layers, or CNN blocks.
DEFAULT_LAYERS = {"gru": 2, "cnn": 4}
SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 512
N_MELS = 64


class LogMelFrames:
    """``[b, samples]`` waveforms -> ``[b, frames, 64]`` ``log(mel + 1e-5)``."""

    def __init__(self) -> None:
        self.filters = mel_filters(sample_rate=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS,
                                    fmin=0.0, fmax=SAMPLE_RATE / 2, htk=False, norm="slaney")

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        power = power_spectrogram(waves, n_fft=N_FFT, hop=HOP)
        return torch.log(power @ self.filters.T + 1e-5)


class GRUEncoder(nn.Module):
    """Standardised log-mel frames -> bidirectional GRU -> attention pooling (``2 * hidden``)."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, *, n_mels: int = N_MELS, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_mels))
        self.register_buffer("feature_std", torch.ones(n_mels))
        self.gru = nn.GRU(n_mels, hidden, num_layers=layers, batch_first=True,
                          bidirectional=True)
        self.attention = nn.Linear(2 * hidden, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames - self.feature_mean) / self.feature_std
        out, _ = self.gru(x)
        weights = torch.softmax(self.attention(out), dim=1)
        return (weights * out).sum(dim=1)


class CNNEncoder(nn.Module):
    """Standardised log-mel frames -> 3x3 conv blocks -> a layer spanning the remaining
    frequency bands (so where in the spectrum a pattern lies still counts) -> max and mean
    over time (``2 * hidden``)."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, *, n_mels: int = N_MELS, hidden: int = 128, layers: int = 4) -> None:
        super().__init__()
        if 2 ** layers > n_mels:
            raise ParameterError(f"layers={layers}: {n_mels} mel bands allow at most "
                                 f"{int(np.log2(n_mels))} CNN blocks")
        self.register_buffer("feature_mean", torch.zeros(n_mels))
        self.register_buffer("feature_std", torch.ones(n_mels))
        widths = [min(hidden, 32 * 2 ** i) for i in range(layers - 1)] + [hidden]
        blocks: list[nn.Module] = []
        for c_in, c_out in zip([1, *widths[:-1]], widths, strict=True):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.blocks = nn.Sequential(*blocks)
        self.bands = nn.Conv2d(hidden, hidden, (1, n_mels // 2 ** layers))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = ((frames - self.feature_mean) / self.feature_std).unsqueeze(1)  # [b, 1, t, mels]
        h = torch.relu(self.bands(self.blocks(x))).squeeze(3)  # [b, hidden, t']
        return torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1)


ENCODERS: dict[str, type[GRUEncoder] | type[CNNEncoder]] = {"gru": GRUEncoder,
                                                            "cnn": CNNEncoder}


class ContrastiveModel(nn.Module):
    """The encoder, COLA's head (dense, layer norm, tanh) and its bilinear similarity, and
    optionally a linear head predicting CF item vectors of ``cf_dim`` dimensions."""

    def __init__(self, *, arch: str = "gru", hidden: int, layers: int, head_dim: int = 128,
                 cf_dim: int = 0) -> None:
        super().__init__()
        self.encoder = ENCODERS[arch](hidden=hidden, layers=layers)
        self.head = nn.Sequential(nn.Linear(2 * hidden, head_dim), nn.LayerNorm(head_dim),
                                  nn.Tanh())
        self.bilinear = nn.Parameter(torch.eye(head_dim))
        self.cf_head = nn.Linear(2 * hidden, cf_dim) if cf_dim else None

    def losses(self, anchors: torch.Tensor, positives: torch.Tensor,
               targets: torch.Tensor | None = None, known: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(contrastive loss, CF loss): the CF loss is the mean squared error of the
        predicted CF vectors over the rows where ``known`` (zero without a CF head)."""
        embedded = self.encoder(anchors)
        a = self.head(embedded)
        p = self.head(self.encoder(positives))
        logits = a @ self.bilinear @ p.T
        contrastive = F.cross_entropy(logits, torch.arange(len(a)))
        if self.cf_head is None or targets is None or known is None or not bool(known.any()):
            return contrastive, torch.zeros(())
        error = (self.cf_head(embedded[known]) - targets[known]) ** 2
        return contrastive, error.mean()

    def loss(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        return self.losses(anchors, positives)[0]


def _window_frames(paths: Sequence[Path], ids: Sequence[str], *, window_seconds: float,
                   n_windows: int, show_progress: bool
                   ) -> tuple[list[str], list[torch.Tensor], list[dict[str, str]]]:
    """Log-mel frames of ``n_windows`` windows per track (tracks with fewer than two
    windows of full length, or that fail to decode, are reported, not used)."""
    from tqdm.auto import tqdm

    from musicrec.embedding.audio import AudioDecodeError, load_audio

    mel = LogMelFrames()
    width = int(round(window_seconds * SAMPLE_RATE))
    kept, frames, failures = [], [], []
    for tid, path in tqdm(list(zip(ids, paths, strict=True)), desc="decode",
                          disable=not show_progress):
        try:
            audio = load_audio(path, sample_rate=SAMPLE_RATE, window_seconds=window_seconds,
                               n_windows=n_windows)
        except AudioDecodeError as exc:
            failures.append({"track_id": tid, "reason": str(exc)})
            continue
        full = [w for w in audio.windows if len(w) == width]
        if len(full) < 2:
            failures.append({"track_id": tid, "reason": f"shorter than two {window_seconds:g}-s "
                                                        "windows"})
            continue
        with torch.inference_mode():
            frames.append(mel(torch.from_numpy(np.stack(full))))
        kept.append(tid)
    return kept, frames, failures


def _cf_targets(cf_vectors: tuple[Sequence[str], np.ndarray] | None, kept: list[str]
                ) -> tuple[torch.Tensor | None, torch.Tensor | None, dict[str, Any] | None]:
    """The CF vector of each kept track (scaled to unit RMS; zero rows where unknown), the
    mask of known rows, and what the manifest records about them."""
    if cf_vectors is None:
        return None, None, None
    ids, vectors = cf_vectors
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(ids) or vectors.shape[1] < 1:
        raise ParameterError(f"cf_vectors: {len(ids)} track ids and vectors of shape "
                             f"{vectors.shape}; one row per id expected")
    if not np.isfinite(vectors).all():
        raise ParameterError("cf_vectors hold NaN or infinite values")
    row = {str(t): i for i, t in enumerate(ids)}
    known = np.array([t in row for t in kept])
    if not known.any():
        raise ParameterError(f"cf_vectors: none of their {len(ids)} track ids is a usable "
                             f"track of the catalogue")
    picked = vectors[[row[t] for t in np.asarray(kept)[known]]]
    scale = float(np.sqrt(np.mean(picked ** 2))) or 1.0
    targets = np.zeros((len(kept), vectors.shape[1]), dtype=np.float32)
    targets[known] = picked / scale
    return (torch.from_numpy(targets), torch.from_numpy(known),
            {"tracks": int(known.sum()), "dim": int(vectors.shape[1]),
             "rms": round(scale, 6)})


def train_embedder(
    catalog: str | Path,
    out: str | Path,
    *,
    arch: str = "gru",
    hidden: int = 128,
    layers: int | None = None,
    window_seconds: float = 3.0,
    train_windows: int = 8,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    cf_vectors: tuple[Sequence[str], np.ndarray] | None = None,
    cf_weight: float = 1.0,
    show_progress: bool = True,
) -> Path:
    """Train an embedder on a catalogue's audio without labels and write its folder.

    Parameters
    ----------
    catalog : str or Path
        A CSV/TSV/Parquet catalogue with ``track_id`` and ``audio_path`` columns.
    out : str or Path
        The folder to write (replaced if it holds an embedder or a musicrec model).
    arch : {"gru", "cnn"}
        The architecture.
    hidden, layers : int
        Width (GRU units; the CNN's last channels) and depth (GRU layers, default 2; CNN
        blocks, default 4); the embedding has ``2 * hidden`` dimensions.
    window_seconds : float
        Length of a training window (and the default embedding window).
    train_windows : int
        Windows decoded per track; each step pairs two of them.
    epochs, batch_size, learning_rate, seed
        The run: Adam, ``batch_size`` tracks a step (at least 2: the others are negatives).
    cf_vectors : (track ids, np.ndarray [shape=(n, factors)]) or None
        CF item vectors (a musicrec model's, from its listening logs) to predict as a
        second target; catalogue tracks without one are trained on the contrastive loss
        alone. The vectors are scaled to unit root mean square.
    cf_weight : float
        Weight of the CF error in the loss.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> train_embedder("catalog.csv", "emb", epochs=1)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from musicrec.embedding.batch import read_catalog_paths

    if arch not in ARCHS:
        raise ParameterError(f"arch={arch!r} must be one of {list(ARCHS)}")
    layers = DEFAULT_LAYERS[arch] if layers is None else layers
    for name, value, low in (("hidden", hidden, 1), ("layers", layers, 1),
                             ("train_windows", train_windows, 2), ("epochs", epochs, 1),
                             ("batch_size", batch_size, 2)):
        if value < low:
            raise ParameterError(f"{name}={value} must be at least {low}")
    if not window_seconds > 0:
        raise ParameterError(f"window_seconds={window_seconds} must be positive")
    if not learning_rate > 0:
        raise ParameterError(f"learning_rate={learning_rate} must be positive")
    if not cf_weight >= 0:
        raise ParameterError(f"cf_weight={cf_weight} must be at least 0")
    began = time.perf_counter()
    ids, paths = read_catalog_paths(catalog)
    kept, frames, failures = _window_frames(paths, ids, window_seconds=window_seconds,
                                            n_windows=train_windows,
                                            show_progress=show_progress)
    if len(kept) < 2:
        raise ParameterError(f"{catalog}: {len(kept)} usable track(s); contrastive training "
                             f"needs at least 2 ({len(failures)} failed)")
    targets, known, cf_summary = _cf_targets(cf_vectors, kept)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ContrastiveModel(arch=arch, hidden=hidden, layers=layers,
                             cf_dim=0 if targets is None else targets.shape[1])
    stacked = torch.cat(frames)
    model.encoder.feature_mean.copy_(stacked.mean(dim=(0, 1)))
    model.encoder.feature_std.copy_(stacked.std(dim=(0, 1)).clamp(min=1e-3))
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    batch = min(batch_size, len(kept))
    losses, cf_losses = [], []
    bar = tqdm(range(epochs), desc="train", disable=not show_progress)
    for _ in bar:
        order = rng.permutation(len(kept))
        total, cf_total, steps = 0.0, 0.0, 0
        for start in range(0, len(order) - batch + 1, batch):
            rows = order[start:start + batch]
            pairs = [rng.choice(len(frames[r]), size=2, replace=False) for r in rows]
            anchors = torch.stack([frames[r][i] for r, (i, _) in zip(rows, pairs, strict=True)])
            positives = torch.stack([frames[r][j] for r, (_, j) in zip(rows, pairs,
                                                                       strict=True)])
            optimiser.zero_grad()
            index = torch.from_numpy(rows)
            contrastive, cf_loss = model.losses(
                anchors, positives, None if targets is None else targets[index],
                None if known is None else known[index])
            (contrastive + cf_weight * cf_loss).backward()
            optimiser.step()
            total += float(contrastive.detach())
            cf_total += float(cf_loss.detach())
            steps += 1
        losses.append(round(total / steps, 5))
        if targets is not None:
            cf_losses.append(round(cf_total / steps, 5))
        bar.set_postfix({"loss": losses[-1], **({"cf": cf_losses[-1]} if cf_losses else {})})

    def write(tmp: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        # one metadata key: safetensors writes a map's keys in no fixed order
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "files": [WEIGHTS],
            "arch": arch, "config": {"hidden": hidden, "layers": layers},
            "cf_target": cf_summary and {**cf_summary, "weight": cf_weight,
                                         "loss": cf_losses},
            "dim": 2 * hidden,
            "features": {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP,
                         "n_mels": N_MELS, "log_offset": 1e-5},
            "window_seconds": window_seconds,
            "training": {
                "catalog": str(catalog), "catalog_sha256": file_sha256(catalog),
                "tracks": len(kept), "failures": failures, "train_windows": train_windows,
                "epochs": epochs, "batch_size": batch, "learning_rate": learning_rate,
                "seed": seed, "torch_threads": torch.get_num_threads(), "loss": losses,
                "seconds": round(time.perf_counter() - began, 1)},
        }

    return write_dir(out, write, base={"created": created_now(),
                                       "versions": package_versions()})


def read_embedder_manifest(folder: str | Path) -> dict[str, Any]:
    """The validated manifest of a trained-embedder folder."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ParameterError(f"{folder} is not a trained embedder (no {MANIFEST}); train one "
                             "with `musicrec train-embedder`")
    manifest = read_format_json(path, fmt=FORMAT, version=FORMAT_VERSION,
                                what="a musicrec embedder manifest")
    if manifest.get("arch") not in ARCHS:
        raise ModelFormatError(f"{path}: arch {manifest.get('arch')!r} is not one of "
                               f"{list(ARCHS)}")
    return manifest


class TrainedEmbedder(BatchedTorchEmbedder):
    """The encoder of a folder written by :func:`train_embedder` (``trained:<folder>``).

    Parameters
    ----------
    folder : str or Path
        The folder.
    window_seconds : float or None
        Window length (default: the training window).
    n_windows : int
        Windows spread over each track. Default 6.
    batch_size, num_threads, cache_dir
        As every embedder (``cache_dir`` is unused).

    Examples
    --------
    >>> TrainedEmbedder(folder="emb").dim  # doctest: +SKIP
    256
    """

    sample_rate = SAMPLE_RATE
    _min_samples = N_FFT

    def __init__(self, *, folder: str | Path, window_seconds: float | None = None,
                 n_windows: int = 6, batch_size: int = 16, num_threads: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        manifest = read_embedder_manifest(folder)
        window = float(manifest["window_seconds"] if window_seconds is None else window_seconds)
        self._check(window, n_windows, batch_size)
        weights = folder / WEIGHTS
        if not weights.is_file():
            raise ModelFormatError(f"{folder}: manifest lists {WEIGHTS}, which is missing")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFormatError(f"{weights}: not a readable safetensors file ({exc})"
                                   ) from None
        prefix = "encoder."
        encoder = ENCODERS[manifest["arch"]](**manifest["config"])
        load_into(encoder, {k[len(prefix):]: v for k, v in state.items()
                            if k.startswith(prefix)}, weights)
        self._model = encoder
        self._mel = LogMelFrames()
        self.folder = folder
        self.name = f"trained:{folder.resolve().name}"
        self.revision = f"sha256-{file_sha256(weights)[:12]}"
        self.dim = int(manifest["dim"])
        self.window_seconds = window
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.num_threads = num_threads

    def _features(self, waves: torch.Tensor) -> torch.Tensor:
        return self._mel(waves)
