"""Reader for HetRec 2011 Last.fm 2K (GroupLens; non-commercial research use).

Items are artists: ``user_artists.dat`` holds ``userID artistID weight`` (play counts),
``artists.dat`` the names, ``user_taggedartists.dat`` and ``tags.dat`` the tags that
listeners gave artists.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import ListeningLog, read_log
from musicrec.errors import DataFormatError


@dataclass
class HetRec:
    log: ListeningLog
    catalog: TrackCatalog


def _dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name == "user_artists.dat":
        path = path.parent
    if not path.exists():
        raise DataFormatError(path, "HetRec folder not found")
    if not (path / "user_artists.dat").exists():
        raise DataFormatError(path, "not a HetRec 2011 Last.fm folder: no user_artists.dat")
    return path


def _read_dat(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    if not path.exists():
        raise DataFormatError(path, "file not found")
    return pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE,
                       keep_default_na=False, encoding=encoding)


def read_hetrec(path: str | Path) -> HetRec:
    """Read the logs and the artist names of a HetRec 2011 Last.fm 2K folder."""
    folder = _dir(path)
    log = read_log(folder / "user_artists.dat", format="tsv", user_col="userID",
                   track_col="artistID", weight_col="weight")
    names = _read_dat(folder / "artists.dat") if (folder / "artists.dat").exists() else None
    if names is not None:
        names = names.rename(columns={"id": "track_id", "name": "title"})
        names["artist"] = names["title"]
        known = names[names["track_id"].isin(set(log.tracks))]
        missing = sorted(set(log.tracks) - set(known["track_id"]))
        extra = pd.DataFrame({"track_id": missing, "title": missing, "artist": ""})
        catalog = TrackCatalog(pd.concat([known[["track_id", "title", "artist", "url"]], extra],
                                         ignore_index=True))
    else:
        catalog = TrackCatalog.from_ids(log.tracks.ids)
    return HetRec(log=log, catalog=catalog)


def read_hetrec_tags(path: str | Path) -> pd.DataFrame:
    """Tag assignments as a frame ``user, track, tag`` (tag names, Latin-1 decoded)."""
    folder = _dir(path)
    assigned = _read_dat(folder / "user_taggedartists.dat")
    tags = _read_dat(folder / "tags.dat", encoding="latin-1")
    names = dict(zip(tags["tagID"], tags["tagValue"], strict=True))
    return pd.DataFrame({
        "user": assigned["userID"],
        "track": assigned["artistID"],
        "tag": assigned["tagID"].map(names).fillna(assigned["tagID"]),
    })
