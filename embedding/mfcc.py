"""The classic baseline: MFCC and delta statistics (librosa); needs no weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import AudioEmbedder
from musicrec.errors import ParameterError


class MFCCEmbedder(AudioEmbedder):
    """Mean and standard deviation of MFCCs and their deltas: ``4 * n_mfcc`` dimensions.

    Parameters
    ----------
    n_mfcc : int
        MFCC coefficients (the 0th, loudness, is dropped and replaced by one more).
    window_seconds : float or None
        Window length; ``None`` uses the whole track.
    n_windows : int
        Windows per track.

    Examples
    --------
    >>> emb = MFCCEmbedder()
    >>> emb.embed([np.random.default_rng(0).normal(size=22050)]).shape
    (1, 80)
    """

    name = "mfcc"
    revision = "1"
    sample_rate = 22050

    def __init__(self, *, n_mfcc: int = 20, window_seconds: float | None = 30.0,
                 n_windows: int = 1, batch_size: int | None = None,
                 cache_dir: str | Path | None = None, num_threads: int | None = None) -> None:
        """``batch_size``, ``cache_dir`` and ``num_threads`` are accepted and unused (mfcc
        has no model), so the options common to every embedder can be passed."""
        if n_mfcc < 2:
            raise ParameterError(f"n_mfcc={n_mfcc} must be at least 2")
        if window_seconds is not None and window_seconds <= 0:
            raise ParameterError(f"window_seconds={window_seconds} must be positive")
        if n_windows < 1:
            raise ParameterError(f"n_windows={n_windows} must be at least 1")
        self.n_mfcc = n_mfcc
        self.window_seconds = window_seconds
        self.n_windows = n_windows
        self.dim = 4 * n_mfcc

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "n_mfcc": self.n_mfcc}

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        import librosa

        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        for i, wave in enumerate(windows):
            if len(wave) < 2048:
                wave = np.pad(wave, (0, 2048 - len(wave)))
            mfcc = librosa.feature.mfcc(y=wave, sr=self.sample_rate, n_mfcc=self.n_mfcc + 1)[1:]
            delta = librosa.feature.delta(mfcc, mode="nearest")
            feats = np.concatenate([mfcc, delta])
            out[i] = np.concatenate([feats.mean(axis=1), feats.std(axis=1)])
        return out
