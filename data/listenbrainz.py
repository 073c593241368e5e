"""Reader for ListenBrainz listens: a user's export or the full dumps (JSON lines).

Each line is one listen::

    {"user_name": "alice", "listened_at": 1700000000,
     "track_metadata": {"artist_name": "Radiohead", "track_name": "Creep",
                        "additional_info": {"recording_mbid": "..."}}}

The track is its recording MBID (``additional_info.recording_mbid``, else
``mbid_mapping.recording_mbid``) when the listen has a valid one, else the normalised artist
and title (:mod:`musicrec.data.trackid`). Every listen is one play; the latest
``listened_at`` of a (user, track) pair is kept. The user is ``user_name``, or with
``user_from="filename"`` the file's name (or its first folder) under the folder given.

Files are read as a stream in chunks of lines (``.gz``, ``.bz2`` and ``.xz`` are
decompressed on the fly), so memory grows with the distinct users, tracks and pairs, not
with the listens. A folder is read recursively (``*.jsonl``, ``*.json``, ``*.listens``,
``*.ndjson``) except the files of an export that are not listens (``feedback``,
``pinned_recording``, ``user``, ``index``, ``playlists``). Blank lines are ignored. Every
other fault is an error naming the file, the line and the field: invalid JSON, a missing
or non-integer ``listened_at``, a missing or empty artist or track name, a missing
``user_name``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.data._stream import (
    base_name,
    check_user_from,
    line_chunks,
    list_files,
    progress,
    user_of_file,
)
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import LogAccumulator, NamedLog, ReadReport
from musicrec.data.trackid import TrackNamer
from musicrec.errors import DataFormatError

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".listens", ".ndjson")
#: Files of an export or a dump folder that are not listens (by name, without extension).
NOT_LISTENS = frozenset({"feedback", "pinned_recording", "user", "index", "playlists"})
_ARRAY = ("is a JSON array, not JSON lines (one listen per line); convert it with: "
          "jq -c '.[]'")
NO_MBID = "listens without a recording MBID identified by text"
BAD_MBID = "listens with a malformed recording MBID identified by text"


def read_listenbrainz(
    path: str | Path, *, user_from: str = "column", show_progress: bool = True
) -> NamedLog:
    """Read ListenBrainz JSON lines (one file, or a folder of them) into a named log.

    Parameters
    ----------
    path : str or Path
        A JSON lines file (plain or compressed), or a folder read recursively.
    user_from : {"column", "filename"}
        Take the user from each listen's ``user_name``, or from the file's name (for a
        folder of single-user exports, the first part of each file's path under it).
    show_progress : bool
        Show a progress bar over the bytes read.

    Returns
    -------
    NamedLog
        The log and a catalogue with each track's title and artist (first spelling seen).

    Examples
    --------
    >>> data = read_listenbrainz("listens.jsonl.gz")  # doctest: +SKIP
    >>> print(data.log.report.summary())  # doctest: +SKIP
    """
    path = Path(path)
    check_user_from(user_from)
    files = list_files(path, SUFFIXES, "ListenBrainz JSON lines")
    if path.is_dir():
        others = [f for f in files if base_name(f) in NOT_LISTENS]
        if others:
            log.info("not listens, not read: %s", ", ".join(map(str, others)))
        files = [f for f in files if f not in others]
        if not files:
            raise DataFormatError(path, "folder holds no listens (only "
                                        f"{', '.join(f.name for f in others)})")
    report = ReadReport(str(path))
    acc = LogAccumulator(report)
    reader = _ChunkReader(report)
    with progress(files, "reading listens", show_progress) as bar:
        for file in files:
            user = user_of_file(path, file) if user_from == "filename" else None
            for first, lines in line_chunks(file, bar):
                users, tracks, stamps = reader.parse(file, first, lines, user)
                acc.add(np.asarray(users, dtype=object), np.asarray(tracks, dtype=object),
                        np.ones(len(users)), np.asarray(stamps, dtype="datetime64[s]"))
    log_ = acc.finish(path)
    return NamedLog(log_, TrackCatalog.for_tracks(log_.tracks.ids, reader.namer.frame()))


class _ChunkReader:
    """Parses chunks of listens; the track ids and names come from one :class:`TrackNamer`."""

    def __init__(self, report: ReadReport) -> None:
        self.report = report
        self.namer = TrackNamer()

    def parse(
        self, file: Path, first: int, lines: list[str], user: str | None
    ) -> tuple[list[str], list[str], list[int]]:
        users: list[str] = []
        tracks: list[str] = []
        stamps: list[int] = []
        hows = [0, 0, 0]
        namer = self.namer
        for offset, line in enumerate(lines):
            if not line.strip():
                continue
            number = first + offset
            try:
                listen = json.loads(line)
            except ValueError as exc:
                if number == 1 and line.lstrip().startswith("["):
                    raise DataFormatError(file, _ARRAY, line=1) from None
                raise DataFormatError(file, f"not valid JSON ({exc})", line=number) from None
            if not isinstance(listen, dict):
                raise DataFormatError(
                    file, _ARRAY if number == 1 and isinstance(listen, list)
                    else "expected a JSON object (one listen per line)", line=number)
            stamp = listen.get("listened_at")
            if type(stamp) is not int:
                stamp = _seconds(stamp, file, number)
            meta = listen.get("track_metadata")
            if not isinstance(meta, dict):
                raise DataFormatError(file, "missing or not an object", line=number,
                                      column="track_metadata")
            artist = meta.get("artist_name")
            title = meta.get("track_name")
            if not isinstance(artist, str) or not artist.strip():
                raise DataFormatError(file, f"missing or empty artist name ({artist!r})",
                                      line=number, column="track_metadata.artist_name")
            if not isinstance(title, str) or not title.strip():
                raise DataFormatError(file, f"missing or empty track name ({title!r})",
                                      line=number, column="track_metadata.track_name")
            info = meta.get("additional_info")
            raw_mbid = info.get("recording_mbid") if isinstance(info, dict) else None
            if not raw_mbid:
                mapping = meta.get("mbid_mapping")
                raw_mbid = mapping.get("recording_mbid") if isinstance(mapping, dict) else None
            track, how = namer(artist, title, raw_mbid)
            hows[how] += 1
            if user is None:
                name = listen.get("user_name")
                if not isinstance(name, str) or not name.strip():
                    raise DataFormatError(
                        file, "no user_name; for a single user's export pass "
                              "--user-from filename (user_from='filename')",
                        line=number, column="user_name")
                users.append(name.strip())
            else:
                users.append(user)
            tracks.append(track)
            stamps.append(stamp)
        self.report.rows_read += len(users)
        self.report.note(NO_MBID, hows[TrackNamer.NO_MBID])
        self.report.note(BAD_MBID, hows[TrackNamer.BAD_MBID])
        return users, tracks, stamps


def _seconds(value: Any, file: Path, line: int) -> int:
    """``listened_at`` as integer unix seconds (an integral float is accepted)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        raise DataFormatError(file, "missing", line=line, column="listened_at")
    raise DataFormatError(file, f"{value!r} is not unix seconds (an integer)", line=line,
                          column="listened_at")
