"""One entry point for every listening-log format: pick the reader, apply aliases.

==================  =============================================  ===========================
format              what                                           detected from
==================  =============================================  ===========================
``csv``, ``tsv``,   a table with a column mapping                  the extension
``parquet``         (:func:`~musicrec.data.logs.read_log`)
``hetrec``          HetRec 2011 Last.fm 2K folder                  ``user_artists.dat``
``audioscrobbler``  Audioscrobbler folder (aliases applied)        ``user_artist_data.txt``
``listenbrainz``    ListenBrainz JSON lines (export or dump)       ``.jsonl``, ``.listens``,
                                                                   ``.ndjson``; ``.json``
                                                                   starting with ``{``; a
                                                                   folder holding such files
``msd-triplets``    Taste Profile ``user song count`` triplets     a ``.txt`` whose first
                                                                   line is a triplet with an
                                                                   MSD song id
``lastfm``          Last.fm scrobble CSV exports                   never (a CSV is a table):
                                                                   pass ``format="lastfm"``
==================  =============================================  ===========================
"""

from __future__ import annotations

import re
from pathlib import Path

from musicrec.data._stream import USER_FROM, data_suffix, open_text
from musicrec.data._tables import infer_format
from musicrec.data.logs import NamedLog
from musicrec.errors import DataFormatError, ParameterError

FORMATS = ("csv", "tsv", "parquet", "hetrec", "listenbrainz", "lastfm", "audioscrobbler",
           "msd-triplets")
TABLES = ("csv", "tsv", "parquet")
#: Formats whose files hold one user each, so that ``user_from="filename"`` applies.
PER_USER = ("listenbrainz", "lastfm")

_JSON_LINES = (".jsonl", ".listens", ".ndjson")
_MSD_LINE = re.compile(r"^[^\t]+\tSO[A-Z0-9]{16}\t\d+\s*$")


def detect_format(path: str | Path) -> str:
    """The format of a log file or folder where the files leave no doubt.

    Examples
    --------
    >>> detect_format("listens.jsonl.gz")  # doctest: +SKIP
    'listenbrainz'
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.is_dir():
        if (path / "user_artists.dat").exists():
            return "hetrec"
        if (path / "user_artist_data.txt").exists():
            return "audioscrobbler"
        if any(data_suffix(p) in _JSON_LINES for p in path.rglob("*") if p.is_file()):
            return "listenbrainz"
        raise DataFormatError(path, "cannot tell the format of this folder; pass --format "
                                    "(hetrec, audioscrobbler, listenbrainz or lastfm)")
    if path.name == "user_artist_data.txt":
        return "audioscrobbler"
    if path.name == "user_artists.dat":
        return "hetrec"
    suffix = data_suffix(path)
    if suffix in _JSON_LINES or (suffix == ".json" and _first_char(path) == "{"):
        return "listenbrainz"
    if suffix == ".txt" and _MSD_LINE.match(_first_line(path)):
        return "msd-triplets"
    return infer_format(path, None)


def _first_line(path: Path) -> str:
    with open_text(path, errors="replace") as (text, _):
        return text.readline(4096)


def _first_char(path: Path) -> str:
    return _first_line(path).lstrip()[:1]


def read_interactions(
    path: str | Path,
    *,
    format: str | None = None,
    aliases: str | Path | None = None,
    user_from: str | None = None,
    user_col: str | None = None,
    track_col: str | None = None,
    weight_col: str | None = None,
    timestamp_col: str | None = None,
    show_progress: bool = True,
) -> NamedLog:
    """Read a listening log in any supported format, then apply ``aliases``.

    Parameters
    ----------
    path : str or Path
        The file or folder.
    format : str, optional
        One of :data:`FORMATS`; detected when omitted (see :func:`detect_format`).
    aliases : str or Path, optional
        An alias file (:mod:`musicrec.data.aliases`) mapping track ids to canonical ids.
        The Audioscrobbler folder's own ``artist_alias.txt`` is always applied.
    user_from : {"column", "filename"}, optional
        For ListenBrainz and Last.fm: the user of each row from its user field, or from its
        file's name. Default: ``"filename"`` for Last.fm, ``"column"`` otherwise.
    user_col, track_col, weight_col, timestamp_col : str, optional
        The column mapping of a CSV, TSV or Parquet table.
    show_progress : bool
        Progress bars for the streaming readers.

    Returns
    -------
    NamedLog
        The log, and a catalogue of names where the format has them (else ``None``).
    """
    path = Path(path)
    fmt = format if format is not None else detect_format(path)
    if fmt not in FORMATS:
        raise ParameterError(f"format={fmt!r} must be one of {', '.join(FORMATS)}")
    if user_from is not None and user_from not in USER_FROM:
        raise ParameterError(f"user_from={user_from!r} must be one of {', '.join(USER_FROM)}")
    if user_from == "filename" and fmt not in PER_USER:
        raise ParameterError(f"user_from='filename' (--user-from filename) applies to "
                             f"{' and '.join(PER_USER)} exports, not to {fmt}")
    mapping = {"user_col": user_col, "track_col": track_col, "weight_col": weight_col,
               "timestamp_col": timestamp_col}
    given = [k for k, v in mapping.items() if v is not None]
    if given and fmt not in TABLES:
        raise ParameterError(f"--{given[0].replace('_', '-')} maps the columns of a CSV, TSV "
                             f"or Parquet table; the {fmt} format has fixed fields")
    data = _read(path, fmt, aliases, user_from, mapping, show_progress)
    if aliases is not None and fmt != "audioscrobbler":
        from musicrec.data.aliases import apply_aliases, read_aliases

        data = apply_aliases(data, read_aliases(aliases))
    return data


def _read(
    path: Path, fmt: str, aliases: str | Path | None, user_from: str | None,
    mapping: dict[str, str | None], show_progress: bool,
) -> NamedLog:
    if fmt in TABLES:
        from musicrec.data.logs import read_log

        return NamedLog(read_log(path, format=fmt, **mapping))
    if fmt == "hetrec":
        from musicrec.data.hetrec import read_hetrec

        hetrec = read_hetrec(path)
        return NamedLog(hetrec.log, hetrec.catalog)
    if fmt == "listenbrainz":
        from musicrec.data.listenbrainz import read_listenbrainz

        return read_listenbrainz(path, user_from=user_from or "column",
                                 show_progress=show_progress)
    if fmt == "lastfm":
        from musicrec.data.lastfm import read_lastfm

        return read_lastfm(path, user_from=user_from or "filename",
                           show_progress=show_progress)
    if fmt == "audioscrobbler":
        from musicrec.data.audioscrobbler import read_audioscrobbler

        return read_audioscrobbler(path, aliases=aliases, show_progress=show_progress)
    from musicrec.data.msd import read_msd_triplets

    return read_msd_triplets(path, show_progress=show_progress)
