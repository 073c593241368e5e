"""The model an app serves, shared by the app factory and every blueprint.

It sits below the views (:mod:`~musicrec.api.v1`, :mod:`~musicrec.api.site`,
:mod:`~musicrec.api.subsonic`) and the factory (:mod:`~musicrec.api.app`), so none of them
imports another to reach it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from musicrec.recommender.facade import Recommender
from musicrec.recommender.model_dir import FileWatch, verify_model_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model: the facade, where it came from and when it was loaded."""

    recommender: Recommender
    model_dir: Path
    loaded_at: float
    audio_root: Path
    #: track id -> (title, artist), read once from the catalogue (pandas lookups per
    #: result cost ~80 us each, most of a response's formatting time)
    labels: dict[str, tuple[str, str]]
    #: notices the model's files changing on disk after this load
    watch: FileWatch

    def title(self, track_id: str) -> str:
        label = self.labels.get(track_id)
        return track_id if label is None else label[0]


class ModelState:
    """The model an app serves; :meth:`reload` swaps a new one in atomically.

    A view takes :meth:`current` once and uses that object to the end of the request,
    so a swap never changes the model under a request in flight. A model directory that
    fails to load is refused and the old model keeps serving.
    """

    def __init__(self, *, audio_root: str | Path | None = None,
                 watch_interval: float = 1.0, answer_cache: int = 0) -> None:
        self._lock = threading.Lock()
        self._answer_cache = answer_cache
        self._watch_interval = watch_interval
        self._current: LoadedModel | None = None
        self._audio_root = None if audio_root is None else Path(audio_root)
        self.reloads = 0

    def current(self) -> LoadedModel | None:
        return self._current

    def open(self, model_dir: str | Path) -> LoadedModel:
        """Verify, load and warm a model directory without serving it.

        Every file's sha256 is compared with the manifest and arrays must be finite
        (:func:`~musicrec.recommender.model_dir.verify_model_dir`): a damaged model raises
        :class:`~musicrec.errors.ModelFormatError` and is never served.
        """
        model_dir = Path(model_dir)
        verify_model_dir(model_dir)
        rec = Recommender(model_dir, answer_cache=self._answer_cache)
        rec.catalog.search("")  # builds the search text once, before the first request
        frame = rec.catalog.frame
        labels = dict(zip(frame["track_id"].tolist(),
                          zip(frame["title"].tolist(), frame["artist"].tolist(), strict=True),
                          strict=True))
        return LoadedModel(rec, model_dir, time.time(), self._resolve_audio_root(rec), labels,
                           FileWatch(model_dir, rec.manifest, interval=self._watch_interval))

    def load(self, model_dir: str | Path) -> LoadedModel:
        """Load ``model_dir`` and serve it from now on."""
        return self.serve(self.open(model_dir))

    def serve(self, loaded: LoadedModel) -> LoadedModel:
        """Serve an opened model from now on (requests in flight keep the old one)."""
        with self._lock:
            if self._current is not None:
                self.reloads += 1
            self._current = loaded
        log.info("serving the %s model in %s (%d tracks)", loaded.recommender.kind,
                 loaded.model_dir, len(loaded.recommender.tracks))
        return loaded

    def _resolve_audio_root(self, rec: Recommender) -> Path:
        if self._audio_root is not None:
            return self._audio_root
        source = ((rec.manifest.get("data") or {}).get("content") or {}).get("audio")
        if source:
            path = Path(source)
            if not path.is_absolute():
                path = Path.cwd() / path
            return path if path.is_dir() else path.parent
        return rec.model_dir


def model_state(app: Flask) -> ModelState:
    state: ModelState = app.extensions["musicrec"]
    return state
