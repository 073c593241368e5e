"""Reader for the Audioscrobbler data set (2005; the one Spark's ALS tutorial uses).

The folder holds ``user_artist_data.txt`` (``user artist count``, space-separated, one
line per pair), ``artist_alias.txt`` (``alias<TAB>canonical`` artist ids: misspelt artists
mapped to one id; chains occur) and ``artist_data.txt`` (``id<TAB>name``). Items are
artists. The aliases are applied automatically and the names go into the catalogue.

``artist_data.txt`` has malformed lines (no tab, an empty name) and ids listed twice: those
lines name nothing usable and are skipped by rule, the counts logged; the first name of an
id is kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from musicrec.data._stream import line_chunks, progress, read_triplets
from musicrec.data.aliases import Aliases, apply_aliases, read_aliases
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import LogAccumulator, NamedLog, ReadReport
from musicrec.errors import DataFormatError

log = logging.getLogger(__name__)

PLAYS = "user_artist_data.txt"
ALIASES = "artist_alias.txt"
NAMES = "artist_data.txt"


def audioscrobbler_folder(path: str | Path) -> Path:
    """The data set's folder, given it or its ``user_artist_data.txt``."""
    path = Path(path)
    if path.is_file() and path.name == PLAYS:
        path = path.parent
    if not path.exists():
        raise DataFormatError(path, "Audioscrobbler folder not found")
    if not (path / PLAYS).exists():
        raise DataFormatError(path, f"not an Audioscrobbler folder: no {PLAYS}")
    return path


def read_audioscrobbler(
    path: str | Path,
    *,
    aliases: str | Path | None = None,
    show_progress: bool = True,
) -> NamedLog:
    """Read the Audioscrobbler data set: plays, aliases applied, artist names.

    Parameters
    ----------
    path : str or Path
        The folder (or its ``user_artist_data.txt``).
    aliases : str or Path, optional
        Another alias file, applied together with the folder's ``artist_alias.txt``.
    show_progress : bool
        Show a progress bar over the bytes read.

    Examples
    --------
    >>> data = read_audioscrobbler("profiledata_06-May-2005")  # doctest: +SKIP
    >>> data.log.report.alias_merged  # doctest: +SKIP
    """
    folder = audioscrobbler_folder(path)
    plays = folder / PLAYS
    report = ReadReport(str(plays))
    acc = LogAccumulator(report)
    with progress([plays], "reading plays", show_progress) as bar:
        read_triplets(plays, acc, bar, sep=" ", names=("user", "artist", "count"))
    data = NamedLog(acc.finish(plays))
    files = [p for p in (folder / ALIASES, aliases) if p is not None and Path(p).exists()]
    if aliases is not None and not Path(aliases).exists():
        raise DataFormatError(aliases, "alias file not found")
    resolved = read_aliases(*files) if files else Aliases()
    data = apply_aliases(data, resolved)
    names = read_artist_names(folder / NAMES, set(data.log.tracks.ids),
                              show_progress=show_progress)
    return NamedLog(data.log, TrackCatalog.for_tracks(data.log.tracks.ids, names))


def read_artist_names(
    path: Path, wanted: set[str], *, show_progress: bool = True
) -> pd.DataFrame | None:
    """``track_id, title, artist`` (title = artist = the name) of the ``wanted`` ids named in
    ``artist_data.txt``; ``None`` when the file is absent."""
    if not path.exists():
        log.warning("%s not found: artists are shown by id", path)
        return None
    names: dict[str, str] = {}
    malformed = duplicates = 0
    with progress([path], "reading artist names", show_progress) as bar:
        for _first, lines in line_chunks(path, bar, errors="replace"):
            for line in lines:
                artist_id, tab, name = line.rstrip("\r\n").partition("\t")
                artist_id, name = artist_id.strip(), name.strip()
                if not tab or not artist_id or not name:
                    malformed += bool(line.strip())
                    continue
                if artist_id in wanted:
                    if artist_id in names:
                        duplicates += 1
                    else:
                        names[artist_id] = name
    if malformed or duplicates:
        log.warning("%s: skipped %d lines without an id and a name, %d repeated ids",
                    path, malformed, duplicates)
    return pd.DataFrame({"track_id": list(names), "title": list(names.values()),
                         "artist": list(names.values())})
