"""musicnn's music-tagging CNNs (Pons & Serra, 2019) in torch, from the checkpoints of its wheel.

``musicnn==0.1.0`` (ISC licence, Music Technology Group, Universitat Pompeu Fabra) ships
four TensorFlow 1 checkpoints: ``MTT_musicnn`` and ``MSD_musicnn`` (a musically
motivated front end of timbral and temporal filters, a dense mid end, a 200-unit
penultimate layer) and ``MTT_vgg`` and ``MSD_vgg`` (five 3x3 conv layers), trained on
MagnaTagATune and the Million Song Dataset, 50 tags each. TensorFlow is not needed:
:func:`read_tf_checkpoint` reads the checkpoint files in plain Python and the networks
below are the same computation in torch (checked against TensorFlow 2.15 running the
original code: ``tests/data/musicnn_reference.json``).

TF V2 checkpoint (``tensorflow/core/util/tensor_bundle``), loaded by its path prefix
(the wheel's ``checkpoint`` pointer file names its author's machine, so it is ignored)::

    <prefix>.index                 an SSTable (LevelDB table format), keys sorted:
        blocks of entries          varint shared, varint unshared, varint value length,
                                   key suffix, value; then uint32 restarts[], uint32 count;
                                   each block is followed by 1 byte compression (0 = none)
                                   and a 4-byte CRC
        footer (last 48 bytes)     varint (offset, size) of the metaindex and the index
                                   block, zero padding, uint64 magic 0xdb4775248b80fb57
        key ""                     BundleHeaderProto (shard count, endianness, version)
        key <tensor name>          BundleEntryProto: 1 dtype, 2 shape {2 dim {1 size}},
                                   3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32)
    <prefix>.data-00000-of-00001   the tensors' raw little-endian bytes at those offsets

Preprocessing is musicnn's: 16 kHz mono, a 96-band mel power spectrogram (512-point FFT,
hop 256), quantised to float16 as the models were trained, then ``log10(10000 x + 1)`` in
float32 (the original multiplies the float16 array by 10000, which numpy 1 promoted to
float32 and numpy 2 keeps in float16, where it overflows), cut into 3-s patches of 187
frames. A window shorter than one patch is repeated to fill it, as in training.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import AudioEmbedder
from musicrec.errors import ModelFormatError, ParameterError
from musicrec.storage import file_sha256

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
#: Frames of one 3-s patch: ``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``.
PATCH_FRAMES = 187
#: TensorFlow's ``batch_normalization`` default.
BN_EPS = 1e-3
#: Above every value of :func:`log_mel`: float16's largest power, 65504, gives
#: ``log10(10000 * 65504 + 1) = 8.8163``.
LOG_MEL_MAX = 8.82
#: A front-end filter of :class:`MusicnnNet` is skipped when its output after batch norm can
#: move by at most this much for any spectrogram (see :class:`_FrontConv`).
DEAD_FILTER_BOUND = 1e-6

MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera",
    "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute",
    "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic",
    "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp",
    "cello", "no voice", "weird", "country", "metal", "female voice", "choral")
MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy")


@dataclass(frozen=True)
class MusicnnModel:
    """One tagger of the wheel: its folder, architecture, labels and pinned sha256s."""

    folder: str
    arch: str  # "musicnn" or "vgg"
    labels: tuple[str, ...]
    sha256: tuple[str, str]  # (.index, .data-00000-of-00001)

    @property
    def revision(self) -> str:
        return f"tf-{self.sha256[1][:12]}"


MODELS = {
    "musicnn-mtt": MusicnnModel(
        "MTT_musicnn", "musicnn", MTT_LABELS,
        ("da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
         "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab")),
    "musicnn-msd": MusicnnModel(
        "MSD_musicnn", "musicnn", MSD_LABELS,
        ("87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
         "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6")),
    "musicnn-mtt-vgg": MusicnnModel(
        "MTT_vgg", "vgg", MTT_LABELS,
        ("4b0d3d2d02bbe0919c063c1fb74bfa9018ac3517e362d681b07444d4207a5f5f",
         "458f5c8bcecc086a3bba3dce83809df6da6e0a3560a59ddd84711bf3d5fd8303")),
    "musicnn-msd-vgg": MusicnnModel(
        "MSD_vgg", "vgg", MSD_LABELS,
        ("50e499238457558bba9f34f8b84d4afb8279afd43520cdf0a4fdf805a49c9ca3",
         "9683d756b8311146534f333502ebf4a2a78a3e320c54ab0411dff6186d8375fc")),
}

#: Embedders that run two taggers on the same patches: the first gives the vector, and both
#: give tags (a tag name both predict gets the mean of their two probabilities).
COMBINED = {"musicnn": ("musicnn-msd", "musicnn-mtt")}
#: Windows of 3 s per track by default: 10 for one tagger; 4 for a combined embedder, which
#: runs two networks on every patch (on the real-music benchmark, MSD's vectors from 4
#: windows scored as well as from 6, at a cost close to whisper-tiny's).
DEFAULT_WINDOWS = {"single": 10, "combined": 4}

INSTALL = "pip install --no-deps musicnn==0.1.0"


def combined_labels(models: tuple[str, ...]) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """The tag names of several taggers, in order, each name once, and for each tagger the
    positions of its tags among them.

    Examples
    --------
    >>> names, where = combined_labels(("musicnn-msd", "musicnn-mtt"))
    >>> len(names), names[0], names[50], int(where[1][0]) == names.index("guitar")
    (92, 'rock', 'classical', True)
    """
    names: list[str] = []
    where = []
    for model in models:
        rows = []
        for label in MODELS[model].labels:
            if label not in names:
                names.append(label)
            rows.append(names.index(label))
        where.append(np.asarray(rows, dtype=np.int64))
    return tuple(names), where

_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}
_MAGIC = 0xDB4775248B80FB57


# -- the TF V2 checkpoint ---------------------------------------------------------------------
def _varint(buf: bytes, pos: int, path: Path) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ModelFormatError(f"{path}: truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos
        if shift > 63:
            raise ModelFormatError(f"{path}: malformed varint at byte {pos}")


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one SSTable block."""
    if offset + size + 5 > len(data) or size < 4:
        raise ModelFormatError(f"{path}: block at {offset} (+{size}) lies outside the file")
    if data[offset + size] != 0:
        raise ModelFormatError(f"{path}: block at {offset} is compressed "
                               f"(type {data[offset + size]}); only uncompressed is supported")
    block = data[offset:offset + size]
    (n_restarts,) = struct.unpack_from("<I", block, size - 4)
    end = size - 4 - 4 * n_restarts
    if end < 0:
        raise ModelFormatError(f"{path}: block at {offset} has a bad restart count")
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, path)
        unshared, pos = _varint(block, pos, path)
        length, pos = _varint(block, pos, path)
        if shared > len(key) or pos + unshared + length > end:
            raise ModelFormatError(f"{path}: malformed entry in block at {offset}")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + length]))
        pos += length
    return entries


def _proto_fields(buf: bytes, path: Path) -> list[tuple[int, Any]]:
    """(field number, value) of a protobuf message: varints as int, the rest as bytes."""
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, path)
        wire = tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos, path)
        elif wire == 2:
            n, pos = _varint(buf, pos, path)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ModelFormatError(f"{path}: unsupported protobuf wire type {wire}")
        out.append((tag >> 3, value))
    return out


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the data file (a ``BundleEntryProto``)."""

    dtype: Any
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def read_tf_index(path: str | Path) -> dict[str, TensorEntry]:
    """The tensor entries of a TF V2 checkpoint's ``.index`` file, by tensor name.

    Examples
    --------
    >>> entries = read_tf_index(checkpoint_prefix("musicnn-mtt") + ".index")  # doctest: +SKIP
    >>> entries["dense/kernel"].shape  # doctest: +SKIP
    (1506, 200)
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read the checkpoint index ({exc.strerror})"
                               ) from None
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise ModelFormatError(f"{path}: not a TensorFlow checkpoint index (no SSTable footer)")
    footer = data[-48:]
    _, pos = _varint(footer, 0, path)  # metaindex offset
    _, pos = _varint(footer, pos, path)  # metaindex size
    index_offset, pos = _varint(footer, pos, path)
    index_size, _ = _varint(footer, pos, path)
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block(data, index_offset, index_size, path):
        offset, pos = _varint(handle, 0, path)
        size, _ = _varint(handle, pos, path)
        for key, value in _block(data, offset, size, path):
            if not key:
                continue  # the BundleHeaderProto
            fields = _proto_fields(value, path)
            name = key.decode("utf-8")
            first = {f: v for f, v in reversed(fields)}
            if first.get(7) is not None:
                raise ModelFormatError(f"{path}: tensor {name!r} is sliced; not supported")
            dtype_id = int(first.get(1, 0))
            if dtype_id not in _TF_DTYPES:
                raise ModelFormatError(f"{path}: tensor {name!r} has unsupported dtype "
                                       f"{dtype_id}")
            shape: list[int] = []
            for f, dim in _proto_fields(first.get(2, b""), path):
                if f == 2:
                    shape.append(int(dict(_proto_fields(dim, path)).get(1, 0)))
            entries[name] = TensorEntry(np.dtype(_TF_DTYPES[dtype_id]), tuple(shape),
                                        int(first.get(3, 0)), int(first.get(4, 0)),
                                        int(first.get(5, 0)))
    return entries


def read_tf_checkpoint(prefix: str | Path, names: list[str] | None = None
                       ) -> dict[str, np.ndarray]:
    """Tensors of a single-shard TF V2 checkpoint, by name (all, or only ``names``).

    ``prefix`` is the path without ``.index``/``.data-00000-of-00001``; for a checkpoint
    saved into a folder with an empty base name it ends in ``/``.
    """
    prefix = str(prefix)
    index_path, data_path = Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001")
    entries = read_tf_index(index_path)
    wanted = sorted(entries) if names is None else names
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise ModelFormatError(f"{index_path}: no tensor named {missing[0]!r}")
    try:
        data = data_path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"{data_path}: cannot read the checkpoint data "
                               f"({exc.strerror})") from None
    out = {}
    for name in wanted:
        e = entries[name]
        if e.shard != 0:
            raise ModelFormatError(f"{index_path}: tensor {name!r} is in shard {e.shard}; "
                                   "only single-shard checkpoints are supported")
        count = int(np.prod(e.shape)) if e.shape else 1
        if e.size != count * e.dtype.itemsize:
            raise ModelFormatError(f"{index_path}: tensor {name!r} has {e.size} bytes, shape "
                                   f"{e.shape} needs {count * e.dtype.itemsize}")
        if e.offset + e.size > len(data):
            raise ModelFormatError(f"{data_path}: truncated: tensor {name!r} ends at byte "
                                   f"{e.offset + e.size}, the file has {len(data)}")
        array = np.frombuffer(data, dtype=e.dtype.newbyteorder("<"), count=count,
                              offset=e.offset)
        out[name] = array.reshape(e.shape).astype(e.dtype)
    return out


def checkpoint_prefix(name: str) -> str:
    """The checkpoint prefix of ``name`` (a key of :data:`MODELS`) in the installed wheel."""
    if name not in MODELS:
        raise ParameterError(f"name={name!r} must be one of {sorted(MODELS)}")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError(f"the musicnn weights are not installed: {INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / MODELS[name].folder
    if not (folder / ".index").is_file():
        raise ModelFormatError(f"{folder}: the checkpoint is missing from package 'musicnn'")
    return str(folder) + "/"


# -- the networks ------------------------------------------------------------------------------
def _torch() -> Any:
    import torch

    return torch


class _BN:
    """TensorFlow inference batch norm over the last axis, folded to ``x * scale + shift``."""

    def __init__(self, weights: dict[str, np.ndarray], name: str) -> None:
        torch = _torch()
        gamma, beta = weights[f"{name}/gamma"], weights[f"{name}/beta"]
        mean, var = weights[f"{name}/moving_mean"], weights[f"{name}/moving_variance"]
        scale = gamma / np.sqrt(var + BN_EPS)
        self.scale = torch.from_numpy(scale.astype(np.float32))
        self.shift = torch.from_numpy((beta - mean * scale).astype(np.float32))

    def __call__(self, x: Any, dim: int = -1) -> Any:
        shape = [1] * x.dim()
        shape[dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def bn_names(arch: str) -> list[str]:
    n = 11 if arch == "musicnn" else 6
    return ["batch_normalization" + ("" if i == 0 else f"_{i}") for i in range(n)]


def weight_names(arch: str) -> list[str]:
    """Every tensor a network reads (optimizer slots and counters are skipped)."""
    names = [f"{bn}/{p}" for bn in bn_names(arch)
             for p in ("gamma", "beta", "moving_mean", "moving_variance")]
    if arch == "musicnn":
        convs = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 8)]
        dense = ["dense", "dense_1"]
    else:
        convs = [f"{i}CNN" for i in range(1, 6)]
        dense = ["dense"]
    return names + [f"{layer}/{p}" for layer in convs + dense for p in ("kernel", "bias")]


class _FrontConv:
    """One front-end layer of musicnn: a conv over time and frequency, ReLU, batch norm and
    the maximum over frequency, computed as conv, maximum, ReLU, batch norm, on its live
    filters only.

    Batch norm is ``s * y + t`` per channel: monotone, so its maximum over frequency is
    ``s * relu(max y) + t`` where ``s >= 0`` and ``s * relu(min y) + t`` where ``s < 0``.
    The filters of channels with ``s < 0`` are negated (``min y = -max(-y)``, exact in
    floating point), so one maximum serves both, taken before the element-wise steps.

    A filter is dead when its output after batch norm can move by at most ``dead_below``
    for any input of magnitude ``x_max`` (``|s| * sum|w| * x_max``, Hoelder's bound); its
    channel is then the constant ``s * relu(b) + t``. ``offset`` is its first channel
    among the 561 of the front end.
    """

    def __init__(self, kernel: Any, bias: Any, bn: _BN, *, time_pad: tuple[int, int],
                 x_max: float, dead_below: float, offset: int) -> None:
        torch = _torch()
        bound = bn.scale.abs() * kernel.abs().flatten(1).sum(dim=1) * x_max
        live = torch.nonzero(bound > dead_below).flatten()
        sign = torch.where(bn.scale < 0, -1.0, 1.0)[live]
        self.time_pad = time_pad
        self.weight = (kernel[live] * sign.view(-1, 1, 1, 1)).contiguous()
        self.bias = bias[live] * sign
        self.sign = sign.view(-1, 1)
        self.scale, self.shift = bn.scale[live].view(-1, 1), bn.shift[live].view(-1, 1)
        self.channels = offset + live
        self.constant = bn.scale * torch.relu(bias) + bn.shift  # a dead channel's value
        self.n_out = len(bias)

    def __call__(self, x: Any) -> Any:
        """``[b, live filters, t]`` of the batch-normed input ``[b, 1, t, 96]``."""
        torch = _torch()
        F = torch.nn.functional
        y = F.conv2d(F.pad(x, (0, 0, *self.time_pad)), self.weight, self.bias).amax(dim=3)
        return self.scale * F.relu(self.sign * y) + self.shift


class MusicnnNet:
    """musicnn: timbral (7x38, 7x67) and temporal (128, 64, 32 x 1) front end, three dense
    1-D conv layers with residual sums, max and mean pooling over time, a 200-unit
    penultimate layer and 50 sigmoid outputs. Inputs ``[batch, frames, 96]``: spectrograms
    of :func:`log_mel`, whose values lie in ``[0, LOG_MEL_MAX]``.

    Most front-end filters of the trained models are dead: training left their weights
    near zero (1e-30 in most), so their channels are constants. They are skipped
    (:class:`_FrontConv`), which leaves 64 of MSD's 561 filters and 318 of MTT's, and the
    first mid-end layer reads the constant channels as a fixed term. Features and tags stay
    within float rounding of computing every filter, which a negative ``dead_below`` does.

    Attributes
    ----------
    live : tuple of int
        Filters computed in each front-end layer (timbral 7x38, 7x67, temporal 128, 64, 32).
    """

    def __init__(self, weights: dict[str, np.ndarray], *,
                 dead_below: float = DEAD_FILTER_BOUND) -> None:
        torch = _torch()

        def kernel2d(name: str) -> Any:  # TF [kh, kw, in, out] -> torch [out, in, kh, kw]
            return torch.from_numpy(np.ascontiguousarray(
                weights[f"{name}/kernel"].transpose(3, 2, 0, 1)))

        def kernel1d(name: str) -> Any:  # TF [k, features, 1, out] -> torch [out, features, k]
            return torch.from_numpy(np.ascontiguousarray(
                weights[f"{name}/kernel"][:, :, 0, :].transpose(2, 1, 0)))

        def bias(name: str) -> Any:
            return torch.from_numpy(weights[f"{name}/bias"].astype(np.float32))

        bns = [_BN(weights, n) for n in bn_names("musicnn")]
        self.bn_in = bns[0]
        scale, shift = float(self.bn_in.scale[0]), float(self.bn_in.shift[0])
        x_max = max(abs(shift), abs(scale * LOG_MEL_MAX + shift))  # |input| after batch norm
        self.front: list[_FrontConv] = []
        offset = 0
        for i, name in enumerate(["conv2d"] + [f"conv2d_{k}" for k in range(1, 5)], start=1):
            kernel = kernel2d(name)
            k = kernel.shape[2]
            # timbral: 3 frames each side; temporal: TF's "same", the extra frame after
            pad = (3, 3) if i <= 2 else ((k - 1) // 2, k // 2)
            self.front.append(_FrontConv(kernel, bias(name), bns[i], time_pad=pad,
                                         x_max=x_max, dead_below=dead_below, offset=offset))
            offset += self.front[-1].n_out
        self.live = tuple(len(f.channels) for f in self.front)
        self.constant = torch.cat([f.constant for f in self.front])  # [561]
        self.live_channels = torch.cat([f.channels for f in self.front])
        self.mid = [(kernel1d(c), bias(c), bns[i]) for i, c in
                    ((6, "conv2d_5"), (7, "conv2d_6"), (8, "conv2d_7"))]
        first = self.mid[0][0]  # [64, 561, 7]
        dead = torch.ones(len(self.constant), dtype=torch.bool)
        dead[self.live_channels] = False
        self._mid_live = first[:, self.live_channels].contiguous()
        # what the constant channels add to each output of the first mid-end layer, by tap
        self._mid_constant = (first[:, dead] * self.constant[dead].view(1, -1, 1)).sum(dim=1)
        self._edges: dict[int, Any] = {}
        # the front end's share of the pooled features, each channel's (max, mean) over
        # time: a constant channel's are its value
        self._pooled_front = torch.stack([self.constant, self.constant], dim=1).flatten()
        self._pooled_max = 2 * self.live_channels
        self.bn_pool, self.bn_dense = bns[9], bns[10]
        self.dense = (torch.from_numpy(weights["dense/kernel"].T.copy()), bias("dense"))
        self.out = (torch.from_numpy(weights["dense_1/kernel"].T.copy()), bias("dense_1"))
        self.dim = int(self.dense[0].shape[0])

    def _constant_term(self, frames: int) -> Any:
        """``[1, 64, frames]``: the constant channels through the first mid-end conv (its
        zero padding makes the first and last 3 frames differ)."""
        if frames not in self._edges:
            torch = _torch()
            ones = torch.nn.functional.pad(torch.ones(1, 1, frames), (3, 3))
            self._edges[frames] = torch.nn.functional.conv1d(
                ones, self._mid_constant.unsqueeze(1))
        return self._edges[frames]

    def __call__(self, x: Any) -> tuple[Any, Any]:
        """(penultimate ``[batch, 200]``, logits ``[batch, 50]``) of ``[batch, frames, 96]``."""
        torch = _torch()
        F = torch.nn.functional
        low, high = (float(v) for v in torch.aminmax(x))
        if low < 0 or high > LOG_MEL_MAX:
            raise ParameterError(f"musicnn takes log_mel() spectrograms, with values in "
                                 f"[0, {LOG_MEL_MAX}]; got values in [{low:g}, {high:g}]")
        x = self.bn_in(x.unsqueeze(1), dim=1)  # [b, 1, t, 96]
        live = torch.cat([conv(x) for conv in self.front], dim=1)  # [b, live, t]
        front = self._pooled_front.repeat(x.shape[0], 1)  # [b, 2 * 561]
        front[:, self._pooled_max] = live.amax(dim=2)
        front[:, self._pooled_max + 1] = live.mean(dim=2)
        # the first mid-end conv reads the 561 front-end channels, of which the live vary
        _, bias, bn = self.mid[0]
        y = F.conv1d(F.pad(live, (3, 3)), self._mid_live, bias)
        h = bn(F.relu(y + self._constant_term(x.shape[2])), dim=1)
        feats = [h]
        for w, bias, bn in self.mid[1:]:
            h = bn(F.relu(F.conv1d(F.pad(h, (3, 3)), w, bias)), dim=1) + h  # residual
            feats.append(h)
        m = torch.cat(feats, dim=1)  # [b, 192, t]
        mid = torch.stack([m.amax(dim=2), m.mean(dim=2)], dim=2).flatten(1)  # max, mean
        pooled = torch.cat([front, mid], dim=1)
        pooled = self.bn_pool(pooled)
        pen = self.bn_dense(F.relu(F.linear(pooled, *self.dense)))
        return pen, F.linear(pen, *self.out)


class VGGNet:
    """musicnn's VGG baseline: five 3x3 conv layers of 128 filters with batch norm and max
    pooling; the flattened last pooling (256 values for a 3-s patch) feeds 50 outputs."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        torch = _torch()
        bns = [_BN(weights, n) for n in bn_names("vgg")]
        self.bn_in = bns[0]
        self.convs = [(torch.from_numpy(np.ascontiguousarray(
            weights[f"{i}CNN/kernel"].transpose(3, 2, 0, 1))),
            torch.from_numpy(weights[f"{i}CNN/bias"].astype(np.float32)), bns[i])
            for i in range(1, 6)]
        self.pools = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)),
                      ((4, 4), (4, 4))]
        self.out = (torch.from_numpy(weights["dense/kernel"].T.copy()),
                    torch.from_numpy(weights["dense/bias"].astype(np.float32)))
        self.dim = int(self.out[0].shape[1])

    def __call__(self, x: Any) -> tuple[Any, Any]:
        torch = _torch()
        F = torch.nn.functional
        h = self.bn_in(x.unsqueeze(1), dim=1)
        for (w, b, bn), (size, stride) in zip(self.convs, self.pools, strict=True):
            h = bn(F.relu(F.conv2d(h, w, b, padding=1)), dim=1)
            h = F.max_pool2d(h, size, stride)
        flat = h.permute(0, 2, 3, 1).flatten(1)  # TF's NHWC order
        if flat.shape[1] != self.dim:
            raise ParameterError(f"the VGG taggers take {PATCH_FRAMES}-frame patches; got "
                                 f"{x.shape[1]} frames")
        return flat, F.linear(flat, *self.out)


def load_network(prefix: str | Path, arch: str) -> MusicnnNet | VGGNet:
    """A network of architecture ``arch`` (``"musicnn"`` or ``"vgg"``) from a checkpoint."""
    if arch not in ("musicnn", "vgg"):
        raise ParameterError(f"arch={arch!r} must be 'musicnn' or 'vgg'")
    weights = read_tf_checkpoint(prefix, weight_names(arch))
    try:
        return MusicnnNet(weights) if arch == "musicnn" else VGGNet(weights)
    except (ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{prefix}: the tensors do not fit the {arch} network ({exc})"
                               ) from None


_MEL_BASIS: dict[str, Any] = {}


def log_mel(wave: np.ndarray) -> np.ndarray:
    """musicnn's input ``[frames, 96]`` (float32) of a 16-kHz mono waveform.

    The same values as musicnn's ``librosa.feature.melspectrogram`` (centred frames, zero
    padding, periodic Hann window, power 2, Slaney mel bands), computed with torch's STFT.
    """
    torch = _torch()
    if "mel" not in _MEL_BASIS:
        import librosa

        _MEL_BASIS["mel"] = torch.from_numpy(librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32))
        _MEL_BASIS["window"] = torch.hann_window(N_FFT, periodic=True)
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if len(x) <= N_FFT // 2:  # torch cannot zero-pad a frame wider than the signal
        x = torch.nn.functional.pad(x, (0, N_FFT // 2 + 1 - len(x)))
    stft = torch.stft(x, N_FFT, HOP, window=_MEL_BASIS["window"], center=True,
                      pad_mode="constant", return_complex=True)
    mel = (_MEL_BASIS["mel"] @ (stft.real ** 2 + stft.imag ** 2)).T.numpy()
    quantised = np.minimum(mel, np.finfo(np.float16).max).astype(np.float16)
    return np.log10(10000 * quantised.astype(np.float32) + 1).astype(np.float32)


def patches(spec: np.ndarray) -> np.ndarray:
    """Non-overlapping 187-frame patches ``[n, 187, 96]`` of a spectrogram, as musicnn cuts
    them (a trailing part shorter than a patch is left out); a spectrogram shorter than
    one patch is repeated to fill it."""
    if len(spec) < PATCH_FRAMES:
        spec = np.tile(spec, (-(-PATCH_FRAMES // max(len(spec), 1)), 1))[:PATCH_FRAMES]
    n = len(spec) // PATCH_FRAMES
    return spec[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, N_MELS)


class MusicnnEmbedder(AudioEmbedder):
    """A musicnn tagger as an embedder: the penultimate layer is the vector, and the 50 tag
    probabilities come with it (:attr:`tag_names`).

    Each window is cut into 3-s patches; a window's vector is the mean of its patches'
    penultimate activations (200-d for musicnn, the 256-d flattened last pooling for vgg),
    and its tags the mean of their sigmoid outputs, i.e. the mean of musicnn's taggram.
    ``model="musicnn"`` (:data:`COMBINED`) runs the MSD and the MTT tagger on the same
    patches: the vector is MSD's, and the tags are both taggers' (92 names: the 8 that both
    predict, such as "guitar" and "rock", get the mean of the two probabilities), so that
    both genre words ("jazz", "chillout") and instrument words ("piano", "strings") match.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS` (``"musicnn-mtt"``, ``"musicnn-msd"``, ``"musicnn-mtt-vgg"``,
        ``"musicnn-msd-vgg"``) or of :data:`COMBINED` (``"musicnn"``).
    window_seconds : float
        Length of each window (default 3 s: one patch).
    n_windows : int or None
        Windows spread over each track (``None``: :data:`DEFAULT_WINDOWS`, 10 for one
        tagger, 4 for ``"musicnn"``).
    batch_size : int
        Patches per forward pass (default 4, one track's windows of ``"musicnn"``). With
        the pruned front end, on one thread, a track of 4 patches cost a median of 0.1194
        CPU-s one patch at a time, 0.1169 two, 0.1143 four and 0.1120 eight (5 alternating
        rounds on one recording); before the pruning 1, 2 and 4 cost the same and 16 cost
        more (0.050 CPU-s a patch against 0.030): the front end's activations of a few
        patches stay in cache. The vectors differ by float rounding only (2.6e-6).
    num_threads : int or None
        Torch threads while embedding (restored afterwards; ``None`` leaves torch's
        setting). Default 1: one patch is too small a job to share, and on the shared
        2-core machine two threads cost 3-9x the CPU time per patch (0.11-0.28 against
        0.035 s) while the batch's decoding threads use the other core.
    workers : int or None
        Threads that run forward passes side by side, each on its share of the patches
        (torch releases the GIL inside its operators, so each uses a core of its own);
        ``None``: one per CPU. The vectors do not depend on it.
    cache_dir : str, Path or None
        Accepted for symmetry with the other embedders; nothing is converted or cached.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, *, model: str = "musicnn-mtt", window_seconds: float = 3.0,
                 n_windows: int | None = None, batch_size: int = 4,
                 num_threads: int | None = 1, workers: int | None = None,
                 cache_dir: str | Path | None = None) -> None:
        if model not in MODELS and model not in COMBINED:
            raise ParameterError(f"model={model!r} must be one of "
                                 f"{sorted(MODELS) + sorted(COMBINED)}")
        if not 0 < window_seconds <= 600:
            raise ParameterError(f"window_seconds={window_seconds} must be in (0, 600]")
        if n_windows is None:
            n_windows = DEFAULT_WINDOWS["combined" if model in COMBINED else "single"]
        if n_windows < 1:
            raise ParameterError(f"n_windows={n_windows} must be at least 1")
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be at least 1")
        if workers is not None and workers < 1:
            raise ParameterError(f"workers={workers} must be at least 1")
        parts = COMBINED.get(model, (model,))
        nets = []
        for part in parts:
            spec = MODELS[part]
            prefix = checkpoint_prefix(part)
            found = (file_sha256(prefix + ".index"),
                     file_sha256(prefix + ".data-00000-of-00001"))
            if found != spec.sha256:
                raise ModelFormatError(f"{prefix}: the checkpoint differs from musicnn 0.1.0's "
                                       f"(sha256 {found[1][:12]}...); reinstall: {INSTALL}")
            nets.append(load_network(prefix, spec.arch))
        self.name = model
        self.revision = "+".join(MODELS[part].revision for part in parts)
        self.arch = MODELS[parts[0]].arch
        self.tag_names, self._tag_rows = combined_labels(parts)
        self.window_seconds = float(window_seconds)
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.workers = workers if workers is not None else max(1, os.cpu_count() or 1)
        self._nets = nets
        self._net = nets[0]  # the one whose penultimate layer is the vector
        self.dim = self._net.dim

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        return self._embed_windows_tagged(windows)[0]

    def _embed_windows_tagged(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = _torch()
        threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            return self._run(windows)
        finally:
            torch.set_num_threads(threads)

    def _run(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = _torch()
        cut = [patches(log_mel(w if len(w) else np.zeros(1, np.float32))) for w in windows]
        owner = np.repeat(np.arange(len(windows)), [len(c) for c in cut])
        batch = np.concatenate(cut) if cut else np.zeros((0, PATCH_FRAMES, N_MELS), np.float32)
        n_tags = len(self.tag_names)
        # how many taggers predict each name: their probabilities are averaged
        shared = np.bincount(np.concatenate(self._tag_rows), minlength=n_tags)

        def forward(start: int) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                x = torch.from_numpy(batch[start:start + self.batch_size])
                merged = np.zeros((len(x), n_tags), dtype=np.float32)
                pen = np.zeros((len(x), self.dim), dtype=np.float32)
                for k, (net, rows) in enumerate(zip(self._nets, self._tag_rows, strict=True)):
                    out, logits = net(x)
                    if k == 0:
                        pen = out.numpy()
                    merged[:, rows] += torch.sigmoid(logits).numpy()
            return pen, merged / shared

        starts = range(0, len(batch), self.batch_size)
        if self.workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(starts))) as pool:
                done = list(pool.map(forward, starts))
        else:
            done = [forward(start) for start in starts]
        pens = [pen for pen, _ in done]
        probs = [prob for _, prob in done]
        vectors = np.zeros((len(windows), self.dim), dtype=np.float64)
        tags = np.zeros((len(windows), n_tags), dtype=np.float64)
        if pens:
            counts = np.bincount(owner, minlength=len(windows))[:, None]
            np.add.at(vectors, owner, np.concatenate(pens))
            np.add.at(tags, owner, np.concatenate(probs))
            vectors /= counts
            tags /= counts
        return vectors.astype(np.float32), tags.astype(np.float32)
