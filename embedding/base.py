"""The :class:`AudioEmbedder` interface and the registry that builds one from a spec.

An embedder turns each track's audio into one L2-normalised float32 vector. Tracks are
cut into ``n_windows`` windows of ``window_seconds`` spread over the track; each window
is embedded, and the window vectors are averaged and normalised again.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.audio import DecodedAudio, decode_waveform, load_audio
from musicrec.errors import ParameterError

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder (converted models, cached embeddings).
CACHE_ENV = "MUSICREC_CACHE"


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MUSICREC_CACHE``, else ``~/.cache/musicrec``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "musicrec"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide ``transformers``' own loading/saving progress bars for the duration."""
    from transformers.utils import logging as hf_logging

    was_disabled = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()


def model_revision(source: str, config: Any) -> str:
    """What identifies a ``transformers`` model's weights: for a local folder, a digest of
    its files' names, sizes and modification times; for a hub id, the commit ``config``
    was loaded from (``"hub"`` if unknown)."""
    path = Path(source)
    if path.is_dir():
        digest = hashlib.sha256()
        for name in sorted(p.name for p in path.iterdir() if p.is_file()):
            stat = (path / name).stat()
            digest.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
        return f"dir-{digest.hexdigest()[:12]}"
    return str(getattr(config, "_commit_hash", None) or "hub")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class AudioEmbedder(abc.ABC):
    """One audio embedding model.

    Subclasses set :attr:`name`, :attr:`revision`, :attr:`dim`, :attr:`sample_rate`,
    :attr:`window_seconds`, :attr:`n_windows` and implement :meth:`_embed_windows`.

    Attributes
    ----------
    name : str
        The model's name, e.g. ``"whisper-tiny"``.
    revision : str
        What identifies its weights (a checksum prefix or a hub revision).
    dim : int
        Length of each vector.
    sample_rate : int
        The rate waveforms must have.
    window_seconds : float or None
        Length of each window (``None``: the whole track).
    n_windows : int
        Windows per track.
    """

    name: str
    revision: str
    dim: int
    sample_rate: int
    window_seconds: float | None = 10.0
    n_windows: int = 1
    #: Tags the model predicts with each vector (auto-tagging); empty when it predicts none.
    tag_names: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        """The options that change the vectors (part of :attr:`id`)."""
        return {"window_seconds": self.window_seconds, "n_windows": self.n_windows}

    @property
    def pinned_options(self) -> dict[str, Any]:
        """Keywords that rebuild this embedder elsewhere with the choices made here.

        An option such as ``precision="auto"`` resolves per machine; passing these to
        :func:`get_embedder` on another machine (a Ray worker, the server answering query
        by example) gives the same :attr:`id` and vectors.
        """
        return {}

    @property
    def id(self) -> str:
        """A string naming the model, its weights and every option that changes a vector."""
        opts = json.dumps(self.options, sort_keys=True, separators=(",", ":"))
        return f"{self.name}@{self.revision}#{hashlib.sha256(opts.encode()).hexdigest()[:10]}"

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, {opts})"

    @abc.abstractmethod
    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """Vectors ``[len(windows), dim]`` (not yet normalised) of mono windows."""

    def _embed_windows_tagged(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and tag probabilities ``[len(windows), len(tag_names)]`` of mono windows;
        a model that tags overrides this (and its ``_embed_windows`` returns the first)."""
        return self._embed_windows(windows), np.zeros((len(windows), 0), dtype=np.float32)

    def embed(
        self, waveforms: Sequence[np.ndarray], *, sample_rate: int | None = None
    ) -> np.ndarray:
        """Embed whole tracks given as waveforms.

        Parameters
        ----------
        waveforms : sequence of np.ndarray [shape=(n_samples,) or (n_samples, channels)]
            One waveform per track.
        sample_rate : int or None
            Their rate; ``None`` means :attr:`sample_rate`.

        Returns
        -------
        np.ndarray [shape=(len(waveforms), dim), dtype=float32]
            L2-normalised; the same input always gives the same output.

        Examples
        --------
        >>> emb = get_embedder("mfcc")
        >>> emb.embed([np.zeros(22050, dtype=np.float32)]).shape
        (1, 80)
        """
        rate = self.sample_rate if sample_rate is None else sample_rate
        decoded = [decode_waveform(w, source_rate=rate, sample_rate=self.sample_rate,
                                   window_seconds=self.window_seconds, n_windows=self.n_windows)
                   for w in waveforms]
        return self.embed_decoded(decoded)

    def embed_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Embed audio files (see :mod:`musicrec.embedding.batch` for folders and caching)."""
        return self.embed_decoded([self.load(p) for p in paths])

    def load(self, path: str | Path) -> DecodedAudio:
        """Decode the windows of one file the way this embedder needs them."""
        return load_audio(path, sample_rate=self.sample_rate,
                          window_seconds=self.window_seconds, n_windows=self.n_windows)

    def embed_decoded(self, tracks: Sequence[DecodedAudio]) -> np.ndarray:
        """Embed decoded tracks: each window, then the mean of its windows, normalised."""
        return self.embed_decoded_tagged(tracks)[0]

    def embed_decoded_tagged(self, tracks: Sequence[DecodedAudio]
                             ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed_decoded` and each track's tag probabilities (the mean over its
        windows), ``[len(tracks), len(tag_names)]``: no columns for a model without tags."""
        n_tags = len(self.tag_names)
        if len(tracks) == 0:
            return (np.zeros((0, self.dim), dtype=np.float32),
                    np.zeros((0, n_tags), dtype=np.float32))
        flat: list[np.ndarray] = []
        owner: list[int] = []
        for i, track in enumerate(tracks):
            if track.sample_rate != self.sample_rate:
                raise ParameterError(f"decoded audio has sample_rate={track.sample_rate}; "
                                     f"{self.name} needs {self.sample_rate}")
            flat.extend(track.windows)
            owner.extend([i] * len(track.windows))
        raw, tags = self._embed_windows_tagged(flat)
        vectors = l2_normalize(raw)
        if vectors.shape != (len(flat), self.dim) or tags.shape != (len(flat), n_tags):
            raise RuntimeError(f"{self.name} returned shapes {vectors.shape} and {tags.shape}, "
                               f"expected {(len(flat), self.dim)} and {(len(flat), n_tags)}")
        rows = np.asarray(owner)
        out = np.zeros((len(tracks), self.dim), dtype=np.float64)
        np.add.at(out, rows, vectors)
        track_tags = np.zeros((len(tracks), n_tags), dtype=np.float64)
        np.add.at(track_tags, rows, tags)
        track_tags /= np.bincount(rows, minlength=len(tracks))[:, None]
        return l2_normalize(out), track_tags.astype(np.float32)


def check_options(name: str, cls: type, options: dict[str, Any]) -> None:
    """Refuse keywords that ``cls``'s constructor does not take, naming them and ``name``."""
    import inspect

    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ParameterError(f"{name} does not take option(s) {unknown}")


def equal_length_batches(windows: Sequence[np.ndarray], batch_size: int
                         ) -> Iterator[list[int]]:
    """Indices of ``windows`` in batches of at most ``batch_size`` windows of one length.

    A batch never pads: padding would change what a model computes (the statistics of
    group-normed encoders, the frames of a CNN's pooling).

    Examples
    --------
    >>> [b for b in equal_length_batches([np.zeros(3), np.zeros(5), np.zeros(3)], 8)]
    [[0, 2], [1]]
    """
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_length.setdefault(len(w), []).append(i)
    for rows in by_length.values():
        for start in range(0, len(rows), batch_size):
            yield rows[start:start + batch_size]
