"""Any ``transformers`` audio encoder as an embedder: ``hf:<hub id or folder>``.

Supported: AST, CLAP (its audio tower and projection), Wav2Vec2, HuBERT, WavLM,
Data2Vec-audio and Whisper (routed to :class:`~musicrec.embedding.whisper.WhisperEmbedder`);
MERT and other remote-code models only with ``trust_remote_code=True``. Feature
extractors are built from their plain constructors with the model's sample rate, so a
local folder needs no preprocessor file. Hub ids download on first use (needs network).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import (
    AudioEmbedder,
    check_options,
    equal_length_batches,
    model_revision,
    quiet_transformers,
)
from musicrec.errors import ParameterError

log = logging.getLogger(__name__)

_WAVEFORM_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech-sat")
SUPPORTED = ("audio-spectrogram-transformer", "clap", "whisper", *_WAVEFORM_TYPES)


class HFEmbedder(AudioEmbedder):
    """Mean-pooled hidden states of a ``transformers`` audio encoder.

    Parameters
    ----------
    model : str
        Hub id or local folder.
    layer : int or None
        Hidden state to pool (0 = embeddings, ``None`` = the last). CLAP always uses its
        projected audio embedding.
    window_seconds : float
        Length of each window.
    n_windows : int
        Windows per track.
    batch_size : int
        Windows per forward pass.
    trust_remote_code : bool
        Allow the model's own code (MERT); off by default.
    """

    def __init__(self, *, model: str, layer: int | None = None, window_seconds: float = 10.0,
                 n_windows: int = 1, batch_size: int = 8, trust_remote_code: bool = False,
                 num_threads: int | None = None, cache_dir: str | Path | None = None) -> None:
        import torch
        from transformers import AutoConfig

        self.model_name = model
        if window_seconds <= 0 or n_windows < 1 or batch_size < 1:
            raise ParameterError(f"window_seconds={window_seconds}, n_windows={n_windows} and "
                                 f"batch_size={batch_size} must be positive")
        try:
            config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        except ValueError as exc:
            if "trust_remote_code" in str(exc):
                raise ParameterError(f"model {model!r} runs its own code; pass "
                                     "trust_remote_code=True to allow it") from None
            raise ParameterError(f"model {model!r}: {exc}") from None
        except OSError as exc:
            raise ParameterError(f"model {model!r} cannot be found or loaded: {exc}") from None
        mtype = config.model_type
        self.model_type = mtype
        self.name = f"hf:{model}"
        self.revision = model_revision(model, config)
        self.window_seconds = float(window_seconds)
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.layer = layer
        self._fe: Any
        self._model: Any
        if mtype == "audio-spectrogram-transformer":
            from transformers import ASTFeatureExtractor, ASTModel

            self.sample_rate = 16000
            self._fe = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins,
                                           max_length=config.max_length)
            with quiet_transformers():
                self._model = ASTModel.from_pretrained(model)
            self.dim = config.hidden_size
        elif mtype == "clap":
            from transformers import ClapFeatureExtractor, ClapModel

            if window_seconds > 10:
                raise ParameterError(f"window_seconds={window_seconds}: CLAP takes at most 10 s "
                                     "(longer input would be cropped at random)")
            self.sample_rate = 48000
            self._fe = ClapFeatureExtractor(
                feature_size=config.audio_config.num_mel_bins, sampling_rate=48000,
                max_length_s=10, truncation="rand_trunc")
            with quiet_transformers():
                self._model = ClapModel.from_pretrained(model)
            self.dim = config.projection_dim
        elif mtype in _WAVEFORM_TYPES or trust_remote_code:
            from transformers import AutoModel, Wav2Vec2FeatureExtractor

            self.sample_rate = int(getattr(config, "sample_rate", 0)
                                   or getattr(config, "sampling_rate", 0) or
                                   (24000 if "mert" in mtype.lower() else 16000))
            self._fe = Wav2Vec2FeatureExtractor(
                sampling_rate=self.sample_rate, return_attention_mask=True,
                do_normalize=getattr(config, "feat_extract_norm", "group") == "layer")
            with quiet_transformers():
                self._model = AutoModel.from_pretrained(model,
                                                        trust_remote_code=trust_remote_code)
            self.dim = config.hidden_size
        else:
            raise ParameterError(f"model {model!r} has model_type {mtype!r}; supported: "
                                 f"{list(SUPPORTED)} (others need trust_remote_code=True)")
        self._model.eval()
        n_hidden = getattr(config, "num_hidden_layers", None)
        if layer is not None and mtype != "clap" and n_hidden is not None and not (
                0 <= layer <= n_hidden):
            raise ParameterError(f"layer={layer} must be between 0 and {n_hidden}")
        self._torch = torch

    @classmethod
    def create(cls, model: str, **options: Any) -> AudioEmbedder:
        """An embedder for ``model``; Whisper models go to ``WhisperEmbedder``."""
        from transformers import AutoConfig

        try:
            mtype = AutoConfig.from_pretrained(
                model, trust_remote_code=bool(options.get("trust_remote_code"))).model_type
        except Exception:  # noqa: BLE001 - the constructor reports it properly
            mtype = None
        if mtype == "whisper":
            from musicrec.embedding.whisper import WhisperEmbedder

            options.pop("trust_remote_code", None)
            check_options(f"hf:{model}", WhisperEmbedder, options)
            return WhisperEmbedder(source=model, **options)
        check_options(f"hf:{model} ({mtype or 'unknown type'})", cls, options)
        return cls(model=model, **options)

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "layer": self.layer}

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        # Windows of equal length share a batch: padding would change the statistics of
        # group-normed feature encoders (Wav2Vec2 base).
        with torch.inference_mode():
            for idx in equal_length_batches(windows, self.batch_size):
                chunk = [np.asarray(windows[i], dtype=np.float32) for i in idx]
                out[idx] = self._embed_chunk(chunk)
        return out

    def _hidden(self, outputs: Any) -> Any:
        if self.layer is None:
            return outputs.last_hidden_state
        return outputs.hidden_states[self.layer]

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """CLAP only: unit text embeddings ``[len(texts), dim]`` in the space of the audio
        vectors (its text tower and projection), for search by words. The model's folder
        or hub id must hold CLAP's tokenizer."""
        from musicrec.embedding.base import l2_normalize

        if self.model_type != "clap":
            raise ParameterError(f"{self.name} ({self.model_type}) has no text tower; only "
                                 "CLAP models answer text queries")
        torch = self._torch
        if getattr(self, "_tokenizer", None) is None:
            from transformers import AutoTokenizer

            folder = Path(self.model_name)
            if folder.is_dir() and not any((folder / f).is_file() for f in (
                    "tokenizer.json", "tokenizer_config.json", "vocab.json")):
                raise ParameterError(f"{self.name} has no tokenizer for text queries (no "
                                     f"tokenizer.json, tokenizer_config.json or vocab.json "
                                     f"in {folder})")
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.model_name)
            except (OSError, ValueError) as exc:
                raise ParameterError(f"{self.name} has no tokenizer for text queries "
                                     f"({exc})") from None
        batch = self._tokenizer(list(texts), padding=True, truncation=True, max_length=77,
                                return_tensors="pt")
        with torch.inference_mode():
            emb = self._model.get_text_features(input_ids=batch["input_ids"],
                                                attention_mask=batch["attention_mask"])
        emb = getattr(emb, "pooler_output", emb)
        return l2_normalize(emb.float().numpy())

    def _embed_chunk(self, chunk: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        want_hidden = self.layer is not None
        if self.model_type == "clap":
            feats = self._fe(chunk, sampling_rate=self.sample_rate, return_tensors="pt",
                             padding="repeatpad")
            emb = self._model.get_audio_features(input_features=feats["input_features"],
                                                 is_longer=feats.get("is_longer"))
            emb = getattr(emb, "pooler_output", emb)
            return emb.float().numpy()
        if self.model_type == "audio-spectrogram-transformer":
            feats = self._fe(chunk, sampling_rate=self.sample_rate, return_tensors="pt")
            outputs = self._model(**feats, output_hidden_states=want_hidden)
            return self._hidden(outputs).mean(dim=1).float().numpy()
        feats = self._fe(chunk, sampling_rate=self.sample_rate, return_tensors="pt",
                         padding=True, return_attention_mask=True)
        outputs = self._model(input_values=feats["input_values"],
                              attention_mask=feats["attention_mask"],
                              output_hidden_states=want_hidden)
        hidden = self._hidden(outputs)
        lengths = torch.tensor([len(w) for w in chunk])
        frames = self._model._get_feat_extract_output_lengths(lengths)
        mask = (torch.arange(hidden.shape[1])[None, :] < frames[:, None]).unsqueeze(-1)
        mask = mask.to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return pooled.float().numpy()
