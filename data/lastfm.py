"""Reader for Last.fm scrobble exports: CSV, one file per user, often without a header.

A headerless export has four fields per row: ``artist, album, track, time`` (the layout
of the common export tools; time like ``31 Jan 2021 12:34``, in UTC). A file whose first
row names its columns is read by name:

==========  ===========================================================
role        header names (case-insensitive)
==========  ===========================================================
artist      ``artist``, ``artist_name``
track       ``track``, ``track_name``, ``title``, ``name``, ``song``
time        ``uts``, ``timestamp``, ``utc_time``, ``date``, ``time``, ``datetime``
MBID        ``track_mbid``, ``recording_mbid``, ``mbid`` (optional)
user        ``user``, ``username``, ``user_name`` (optional)
==========  ===========================================================

Each row is one play of the track identified as in :mod:`musicrec.data.trackid` (by its
MBID when the export has a valid one). The user is the file's name (``alice.csv`` is
``alice``); a folder is read recursively, one user per file, or per first-level folder.

Rows without a time (a "now playing" row of some exports; the time field empty or
missing) are skipped by rule and counted. A row without an artist or a track, a field too
many, or a time that does not parse is an error naming the file, line and column.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from musicrec.data._stream import (
    check_user_from,
    delimited_chunks,
    drop_blank,
    list_files,
    open_text,
    progress,
    relocated,
    user_of_file,
)
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import LogAccumulator, NamedLog, ReadReport, parse_timestamps
from musicrec.data.trackid import TrackNamer
from musicrec.errors import DataFormatError, ParameterError

#: The fields of a headerless export, in order.
HEADERLESS = ("artist", "album", "track", "time")
HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "artist": ("artist", "artist_name"),
    "track": ("track", "track_name", "title", "name", "song"),
    "time": ("uts", "timestamp", "utc_time", "date", "time", "datetime"),
    "mbid": ("track_mbid", "recording_mbid", "mbid"),
    "user": ("user", "username", "user_name"),
}
NO_TIME = "scrobbles without a time"
NO_MBID = "scrobbles identified by text"
BAD_MBID = "scrobbles with a malformed track MBID identified by text"


def read_lastfm(
    path: str | Path, *, user_from: str = "filename", show_progress: bool = True
) -> NamedLog:
    """Read Last.fm scrobble exports: one CSV, or a folder of them (one user each).

    Parameters
    ----------
    path : str or Path
        A CSV file (plain or compressed) or a folder read recursively.
    user_from : {"filename", "column"}
        The user of each file: its name, or (for exports with a header that has one)
        the ``user`` column.
    show_progress : bool
        Show a progress bar over the bytes read.

    Examples
    --------
    >>> data = read_lastfm("exports/", user_from="filename")  # doctest: +SKIP
    """
    path = Path(path)
    check_user_from(user_from)
    files = list_files(path, (".csv",), "Last.fm CSV")
    report = ReadReport(str(path))
    acc = LogAccumulator(report)
    namer = TrackNamer()
    with progress(files, "reading scrobbles", show_progress) as bar:
        for file in files:
            user = user_of_file(path, file) if user_from == "filename" else None
            _read_file(file, user, acc, namer, bar)
    log_ = acc.finish(path)
    return NamedLog(log_, TrackCatalog.for_tracks(log_.tracks.ids, namer.frame()))


def _columns(file: Path) -> tuple[list[str], bool, dict[str, str]]:
    """The field names of a file, whether its first row is a header, and role -> field."""
    with open_text(file) as (text, _):
        try:
            first = next(csv.reader(text), [])
        except UnicodeDecodeError as exc:
            raise DataFormatError(file, f"is not UTF-8 text ({exc.reason})", line=1) from None
    lowered = [f.strip().lower() for f in first]
    roles = {role: first[lowered.index(name)] for role, names in HEADER_NAMES.items()
             for name in names[::-1] if name in lowered}
    if "artist" in roles and "track" in roles:
        if "time" not in roles:
            raise DataFormatError(file, f"the header has no time column (one of "
                                        f"{list(HEADER_NAMES['time'])}); found {first}",
                                  line=1)
        return first, True, roles
    if len(first) != len(HEADERLESS):
        raise DataFormatError(
            file, f"a headerless Last.fm export has {len(HEADERLESS)} fields "
                  f"({', '.join(HEADERLESS)}); the first row has {len(first)}", line=1)
    return list(HEADERLESS), False, {r: r for r in ("artist", "track", "time")}


def _read_file(
    file: Path, user: str | None, acc: LogAccumulator, namer: TrackNamer, bar: object
) -> None:
    names, header, roles = _columns(file)
    if user is None and "user" not in roles:
        raise ParameterError(f"{file}: a Last.fm export has no user column; use "
                             "--user-from filename (user_from='filename')")
    report = acc.report
    hows = [0, 0, 0]
    for first, chunk in delimited_chunks(file, bar, sep=",", names=names, header=header):
        frame, lines = drop_blank(chunk, first)
        if len(frame) == 0:
            continue
        report.rows_read += len(frame)
        with relocated(file, lines):
            for role in ("artist", "track") + (("user",) if user is None else ()):
                empty = (frame[roles[role]].str.strip() == "").to_numpy()
                if empty.any():
                    raise DataFormatError(file, f"empty {role}", column=roles[role],
                                          line=int(np.flatnonzero(empty)[0]))
        timed = (frame[roles["time"]].str.strip() != "").to_numpy()
        report.skip(NO_TIME, int((~timed).sum()))
        frame, lines = frame[timed], lines[timed]
        if len(frame) == 0:
            continue
        with relocated(file, lines):
            stamps = parse_timestamps(frame[roles["time"]], roles["time"], "csv", file,
                                      first_line=0)
        mbids = frame[roles["mbid"]] if "mbid" in roles else [None] * len(frame)
        tracks = []
        for artist, title, raw in zip(frame[roles["artist"]], frame[roles["track"]], mbids,
                                      strict=True):
            track, how = namer(artist, title, raw)
            hows[how] += 1
            tracks.append(track)
        users = (np.full(len(frame), user, dtype=object) if user is not None
                 else frame[roles["user"]].str.strip().to_numpy(dtype=object))
        acc.add(users, np.asarray(tracks, dtype=object), np.ones(len(frame)), stamps)
    if "mbid" in roles:
        report.note(NO_MBID, hows[TrackNamer.NO_MBID])
    report.note(BAD_MBID, hows[TrackNamer.BAD_MBID])
