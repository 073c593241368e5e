"""Reader for the Million Song Dataset's Taste Profile triplets (The Echo Nest, 2011).

``train_triplets.txt`` (and the evaluation files of the MSD Challenge) hold one
``user<TAB>song<TAB>count`` line per pair: a user hash, an MSD song id (``SO...``) and a
play count. When ``unique_tracks.txt`` (``track<SEP>song<SEP>artist<SEP>title``, from the
MSD's additional files) lies beside the triplets, titles and artists go into the
catalogue; otherwise songs are shown by id.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from musicrec.data._stream import line_chunks, progress, read_triplets
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import LogAccumulator, NamedLog, ReadReport
from musicrec.errors import DataFormatError

log = logging.getLogger(__name__)

NAMES = "unique_tracks.txt"
_SEP = "<SEP>"


def read_msd_triplets(path: str | Path, *, show_progress: bool = True) -> NamedLog:
    """Read a Taste Profile triplets file (plain or compressed).

    Examples
    --------
    >>> data = read_msd_triplets("train_triplets.txt")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.is_dir():
        raise DataFormatError(path, "is a directory; give the triplets file")
    report = ReadReport(str(path))
    acc = LogAccumulator(report)
    with progress([path], "reading triplets", show_progress) as bar:
        read_triplets(path, acc, bar, sep="\t", names=("user", "song", "count"))
    log_ = acc.finish(path)
    names = read_song_names(path.parent / NAMES, set(log_.tracks.ids),
                            show_progress=show_progress)
    return NamedLog(log_, TrackCatalog.for_tracks(log_.tracks.ids, names))


def read_song_names(
    path: Path, wanted: set[str], *, show_progress: bool = True
) -> pd.DataFrame | None:
    """``track_id, title, artist`` of the ``wanted`` song ids in ``unique_tracks.txt``
    (the first line of a song listed under several track ids); ``None`` when absent."""
    if not path.exists():
        return None
    rows: dict[str, tuple[str, str]] = {}
    with progress([path], "reading song names", show_progress) as bar:
        for first, lines in line_chunks(path, bar, errors="replace"):
            for offset, line in enumerate(lines):
                if not line.strip():
                    continue
                fields = line.rstrip("\r\n").split(_SEP)
                if len(fields) != 4:
                    raise DataFormatError(
                        path, f"expected 4 fields track{_SEP}song{_SEP}artist{_SEP}title, "
                              f"found {len(fields)}", line=first + offset)
                song = fields[1].strip()
                if song in wanted and song not in rows:
                    rows[song] = (fields[3].strip(), fields[2].strip())
    log.info("%s: names for %d of %d songs", path, len(rows), len(wanted))
    return pd.DataFrame([(s, t, a) for s, (t, a) in rows.items()],
                        columns=["track_id", "title", "artist"])
