"""The app factory and the hot-swappable model it serves.

Settings are passed to :func:`create_app` (the CLI reads the environment once, in
``musicrec serve``); nothing here reads the environment or builds an app at import time.

Configuration keys (upper case, as Flask config):

``MODEL_DIR``
    The model directory to serve. ``None`` starts the app not ready (503 on model routes).
``MAX_UPLOAD_BYTES``
    Largest request body, bytes (default 10 MiB); larger bodies get 413.
``MAX_UPLOAD_SECONDS``
    Longest audio clip for query by example, seconds (default 60); longer clips get 413.
``MAX_N``
    Largest ``n`` a client may ask for (default 100).
``ADMIN_TOKEN``
    Bearer token of ``POST /v1/admin/reload``; ``None`` turns the endpoint off (404).
``AUDIO_ROOT``
    Folder that relative ``audio_path`` values of the catalogue are resolved against
    (default: the folder of the catalogue file the model was built from, as recorded in
    its manifest, else the model directory).
``WATCH_INTERVAL``
    Seconds between checks that the served model's files are unchanged on disk (default
    1); a changed file makes ``/readyz`` and the model routes answer 503.
``SUBSONIC_USERS``
    A users file (``user:password`` lines): mounts the Subsonic API under ``/rest/``
    (:mod:`musicrec.api.subsonic`); ``None`` (the default) leaves it off.
``RELOAD_HOOK``
    A callable run after ``POST /v1/admin/reload`` validated the model directory, instead
    of swapping the model in this process (``musicrec serve`` uses it to send SIGHUP to
    the gunicorn master, so that every worker reloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from musicrec.recommender.facade import Recommender
from musicrec.recommender.model_dir import FileWatch, verify_model_dir

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": None,
    "MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "MAX_UPLOAD_SECONDS": 60.0,
    "MAX_N": 100,
    "ADMIN_TOKEN": None,
    "AUDIO_ROOT": None,
    "RELOAD_HOOK": None,
    "WATCH_INTERVAL": 1.0,
    "SUBSONIC_USERS": None,
    "JSON_SORT_KEYS": False,
}


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
                 watch_interval: float = 1.0) -> None:
        self._lock = threading.Lock()
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
        rec = Recommender(model_dir)
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


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app serving one model directory.

    Parameters
    ----------
    config : mapping or None
        Settings (see the module docstring); unknown keys go to ``app.config`` as well.

    Returns
    -------
    Flask
        The app, with blueprint ``v1`` under ``/v1``, ``/healthz``, ``/readyz``,
        ``/openapi.json``, ``/docs`` and the web page at ``/``.

    Raises
    ------
    musicrec.errors.ModelFormatError
        When ``MODEL_DIR`` is not a loadable model directory: a server never starts on a
        broken model.

    Examples
    --------
    >>> app = create_app({"MODEL_DIR": None})
    >>> app.test_client().get("/readyz").status_code
    503
    """
    from musicrec.api.errors import register_error_handlers
    from musicrec.api.site import site
    from musicrec.api.v1 import v1

    app = Flask(__name__, static_folder=None)
    app.config.update(DEFAULTS)
    app.config.update(dict(config or {}))
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_BYTES"])
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = ModelState(audio_root=app.config["AUDIO_ROOT"],
                       watch_interval=float(app.config["WATCH_INTERVAL"]))
    app.extensions["musicrec"] = state
    if app.config["MODEL_DIR"] is not None:
        state.load(app.config["MODEL_DIR"])
    register_error_handlers(app)
    app.register_blueprint(v1)
    app.register_blueprint(site)
    if app.config["SUBSONIC_USERS"] is not None:
        from musicrec.api.subsonic import register_subsonic

        register_subsonic(app)
    return app


def model_state(app: Flask) -> ModelState:
    state: ModelState = app.extensions["musicrec"]
    return state
