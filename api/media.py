"""Catalogue audio for every blueprint: which file a track has, and sending it.

Only catalogue paths are served (never a client-supplied one); relative paths resolve
against the model's audio root. Responses support HTTP range requests.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from flask import send_file

from musicrec.api.state import LoadedModel


def audio_file(loaded: LoadedModel, track_id: str) -> Path | None:
    """The audio file of a catalogue track, from the catalogue's ``audio_path`` column."""
    frame = loaded.recommender.catalog.frame
    if "audio_path" not in frame.columns:
        return None
    from musicrec.embedding.audio import AUDIO_EXTENSIONS

    row = loaded.recommender.catalog._row.get(track_id)
    if row is None:
        return None
    value = frame["audio_path"].iat[row]
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = loaded.audio_root / path
    if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file():
        return None
    return path


def audio_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def send_audio(path: Path) -> Any:
    """The file as a response with range support (206 for a ``Range`` request)."""
    return send_file(path, mimetype=audio_type(path), conditional=True, max_age=3600)
