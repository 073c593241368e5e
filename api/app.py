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
``ANSWER_CACHE``
    Known users' recommendations kept in memory per process, counted in results (default
    0: none, every answer is computed live); see
    :class:`~musicrec.recommender.facade.AnswerCache`. A kept answer is the live one
    (the same model and arguments); a reloaded model starts with an empty cache.
``RELOAD_HOOK``
    A callable run after ``POST /v1/admin/reload`` validated the model directory, instead
    of swapping the model in this process (``musicrec serve`` uses it to send SIGHUP to
    the gunicorn master, so that every worker reloads).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from musicrec.api.errors import register_error_handlers
from musicrec.api.explore import explore
from musicrec.api.site import site
from musicrec.api.state import LoadedModel, ModelState, model_state
from musicrec.api.v1 import v1

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
    "ANSWER_CACHE": 0,
}


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
    app = Flask(__name__, static_folder=None)
    app.config.update(DEFAULTS)
    app.config.update(dict(config or {}))
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_BYTES"])
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = ModelState(audio_root=app.config["AUDIO_ROOT"],
                       watch_interval=float(app.config["WATCH_INTERVAL"]),
                       answer_cache=int(app.config["ANSWER_CACHE"]))
    app.extensions["musicrec"] = state
    if app.config["MODEL_DIR"] is not None:
        state.load(app.config["MODEL_DIR"])
    register_error_handlers(app)
    app.register_blueprint(v1)
    app.register_blueprint(explore)
    app.register_blueprint(site)
    if app.config["SUBSONIC_USERS"] is not None:
        from musicrec.api.subsonic import register_subsonic

        register_subsonic(app)
    return app


__all__ = ["DEFAULTS", "LoadedModel", "ModelState", "create_app", "model_state"]
