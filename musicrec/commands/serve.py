"""``musicrec serve``: the API and web page under gunicorn (Flask's server only with --dev).

The model is loaded once in the gunicorn master before the workers fork (``preload_app``),
so workers share its pages, and the arrays and Annoy indexes are mmap'd besides.

Hot reload: ``kill -HUP <master pid>`` (or ``POST /v1/admin/reload`` with the admin
token, which validates the model and then sends that signal) makes the master load the
model directory again (point ``--model`` at a symlink, or rebuild it in place: builds
are renamed into place atomically) and replace the workers gracefully; requests in
flight finish on the old workers and the listening socket never closes. A model
directory that fails to load is refused, logged, and the old model keeps serving.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Environment variable holding the admin token (read once, here); unset = endpoint off.
ADMIN_TOKEN_ENV = "MUSICREC_ADMIN_TOKEN"
#: Results of known users' recommendations each worker keeps (``--answer-cache``).
ANSWER_CACHE = 100_000


def _gunicorn_app(app: Any, config: dict[str, Any], options: dict[str, Any]) -> Any:
    from gunicorn.app.base import BaseApplication

    from musicrec.api import create_app
    from musicrec.errors import MusicrecError

    class MusicrecGunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

        def reload(self) -> None:
            super().reload()
            try:
                fresh = create_app(config)
            except (MusicrecError, OSError) as exc:
                log.error("reload refused, the old model keeps serving: %s", exc)
                return
            self.callable = fresh
            log.warning("reloaded the model in %s", config["MODEL_DIR"])

    return MusicrecGunicorn()


def worker_class(*, header_timeout: float, body_timeout: float) -> type:
    """:class:`~musicrec.api.worker.BufferingWorker` with these deadlines."""
    from musicrec.api.worker import BufferingWorker

    return type("MusicrecWorker", (BufferingWorker,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})


def cmd_serve(args: argparse.Namespace) -> int:
    from musicrec.api import create_app
    from musicrec.errors import ParameterError

    if args.subsonic and args.subsonic_users is None:
        raise ParameterError("--subsonic needs --subsonic-users FILE (lines user:password)")
    token = os.environ.get(ADMIN_TOKEN_ENV) or None
    master = os.getpid()
    config: dict[str, Any] = {
        "MODEL_DIR": args.model,
        "ADMIN_TOKEN": token,
        "MAX_UPLOAD_BYTES": int(args.max_upload_mb * 1024 * 1024),
        "MAX_UPLOAD_SECONDS": args.max_upload_seconds,
        "AUDIO_ROOT": args.audio_root,
        "RELOAD_HOOK": None if args.dev else (lambda: os.kill(master, signal.SIGHUP)),
        "SUBSONIC_USERS": args.subsonic_users if args.subsonic else None,
        "ANSWER_CACHE": args.answer_cache,
    }
    app = create_app(config)  # a broken model stops here, before any socket is opened
    if args.dev:
        app.run(host=args.host, port=args.port, debug=False, use_reloader=False,
                threaded=True)
        return 0
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        # requests are read whole in the worker's event loop before a thread takes them,
        # so slow clients cost a socket, never a thread (musicrec.api.worker)
        "worker_class": worker_class(header_timeout=args.header_timeout,
                                     body_timeout=args.body_timeout),
        "worker_connections": args.max_connections,
        "preload_app": True,
        "timeout": args.timeout,
        "graceful_timeout": args.timeout,
        "keepalive": 5,
        "loglevel": "info" if logging.getLogger().level <= logging.INFO else "warning",
        "proc_name": "musicrec",
    }
    _gunicorn_app(app, config, options).run()
    return 0


def register(sub: Any) -> None:
    from musicrec.cli import non_negative_int, positive_float, positive_int

    p = sub.add_parser("serve", help="serve the API and the web page (gunicorn)",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--model", required=True, type=Path, help="model directory to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=positive_int, default=2, help="gunicorn workers")
    p.add_argument("--threads", type=positive_int, default=4, help="threads per worker")
    p.add_argument("--max-connections", type=positive_int, default=1000,
                   help="open connections per worker, slow ones included (default 1000)")
    p.add_argument("--header-timeout", type=positive_float, default=10.0,
                   help="seconds a client has to send the request line and headers")
    p.add_argument("--body-timeout", type=positive_float, default=30.0,
                   help="seconds a client has to send a body, plus 1 s per 32 KiB of it")
    p.add_argument("--timeout", type=positive_int, default=30, help="worker timeout, s")
    p.add_argument("--max-upload-mb", type=float, default=10.0,
                   help="largest upload for query by example, MiB")
    p.add_argument("--max-upload-seconds", type=float, default=60.0,
                   help="longest clip for query by example, seconds")
    p.add_argument("--audio-root", type=Path,
                   help="folder that relative catalogue audio_path values resolve against "
                        "(default: the folder of the catalogue the model was built from)")
    p.add_argument("--answer-cache", type=non_negative_int, default=ANSWER_CACHE,
                   metavar="RESULTS",
                   help="known users' recommendations kept per worker, counted in results "
                        f"(least recently used out; default {ANSWER_CACHE:,}, about 20 MB; "
                        "0: every answer live). A kept answer is the live one; a reload "
                        "empties it")
    p.add_argument("--subsonic", action="store_true",
                   help="also serve the (Open)Subsonic API under /rest/ for music apps")
    p.add_argument("--subsonic-users", type=Path, metavar="FILE",
                   help="users of the Subsonic API: one user:password per line")
    p.add_argument("--dev", action="store_true",
                   help="Flask's development server instead of gunicorn (never in production)")
    p.set_defaults(handler=cmd_serve)
