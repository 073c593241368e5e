"""Track catalogues: metadata for each track id (title, artist, audio path, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musicrec.data._tables import read_table
from musicrec.errors import DataFormatError, UnknownTrackError

_ALIASES = {
    "track_id": ("track_id", "track", "id", "trackID", "item_id"),
    "title": ("title", "name", "track_name"),
    "artist": ("artist", "artist_name", "composer"),
}


class TrackCatalog:
    """Metadata of the tracks, one row per ``track_id``.

    The frame always has the columns ``track_id``, ``title`` and ``artist`` (strings;
    a missing title falls back to the id, a missing artist to ``""``). Any other
    columns the source had are kept.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = frame.copy()
        if "track_id" not in frame.columns:
            raise DataFormatError("<catalog>", "a catalogue needs a 'track_id' column")
        frame["track_id"] = frame["track_id"].astype(str)
        dup = frame["track_id"].duplicated()
        if dup.any():
            raise DataFormatError(
                "<catalog>", f"track id {frame['track_id'][dup].iloc[0]!r} appears twice",
                column="track_id")
        if "title" not in frame.columns:
            frame["title"] = frame["track_id"]
        if "artist" not in frame.columns:
            frame["artist"] = ""
        frame["title"] = frame["title"].fillna("").astype(str)
        frame["artist"] = frame["artist"].fillna("").astype(str)
        self.frame = frame.reset_index(drop=True)
        self._row = {tid: i for i, tid in enumerate(self.frame["track_id"])}
        self._search_text: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._row

    @property
    def track_ids(self) -> list[str]:
        return self.frame["track_id"].tolist()

    def get(self, track_id: str) -> dict[str, Any]:
        """The metadata of one track as a JSON-friendly dict."""
        try:
            row = self._row[track_id]
        except KeyError:
            raise UnknownTrackError(track_id) from None
        record = self.frame.iloc[row].to_dict()
        return {k: _plain(v) for k, v in record.items()}

    def title(self, track_id: str) -> str:
        row = self._row.get(track_id)
        return track_id if row is None else str(self.frame.at[row, "title"])

    def label(self, track_id: str) -> str:
        """``"Title — Artist"`` (or the title alone) for display."""
        row = self._row.get(track_id)
        if row is None:
            return track_id
        title, artist = self.frame.at[row, "title"], self.frame.at[row, "artist"]
        return f"{title} — {artist}" if artist and artist != title else str(title)

    def details(self) -> dict[str, str]:
        """What tells apart tracks that share a title and artist: ``track_id -> text``.

        Only tracks whose ``(title, artist)`` repeats are listed. The text comes from the
        catalogue's own columns, the first of :data:`DETAIL_COLUMNS` that differs within
        the group (``excerpt`` also shows ``measure_start``-``measure_end`` as bars), else
        the track id.

        Examples
        --------
        >>> TrackCatalog(pd.DataFrame({"track_id": ["a", "b", "c"], "title": ["X", "X", "Y"],
        ...                            "excerpt": [1, 2, 1], "measure_start": [1, 9, 1],
        ...                            "measure_end": [8, 16, 4]})).details()
        {'a': 'excerpt 1, bars 1-8', 'b': 'excerpt 2, bars 9-16'}
        """
        frame = self.frame
        repeated = frame[frame.duplicated(["title", "artist"], keep=False)]
        out: dict[str, str] = {}
        for _, group in repeated.groupby(["title", "artist"], sort=False):
            column = next((c for c in DETAIL_COLUMNS if c in group.columns
                           and group[c].nunique(dropna=False) > 1), None)
            for record in group.to_dict("records"):
                out[str(record["track_id"])] = _detail(record, column)
        return out

    def artists(self, track_ids: list[str] | np.ndarray) -> list[str]:
        return [
            str(self.frame.at[self._row[t], "artist"]) if t in self._row else ""
            for t in track_ids
        ]

    def search(self, query: str, *, offset: int = 0, limit: int = 20) -> tuple[int, list[str]]:
        """Track ids whose title or artist contains every word of ``query``.

        Returns the total number of matches and the ids of one page, in catalogue order.
        """
        if self._search_text is None:
            self._search_text = (
                self.frame["title"].str.lower() + " \x00 " + self.frame["artist"].str.lower()
            ).to_numpy()
        mask = np.ones(len(self.frame), dtype=bool)
        for word in query.lower().split():
            mask &= np.fromiter((word in t for t in self._search_text), dtype=bool,
                                count=len(self._search_text))
        hits = np.flatnonzero(mask)
        page = hits[offset : offset + limit]
        return len(hits), self.frame["track_id"].to_numpy()[page].tolist()

    def save(self, path: str | Path) -> None:
        self.frame.to_parquet(path, index=False)

    @classmethod
    def load(cls, path: str | Path) -> TrackCatalog:
        return cls(pd.read_parquet(path))

    @classmethod
    def from_ids(cls, track_ids: list[str] | np.ndarray) -> TrackCatalog:
        return cls(pd.DataFrame({"track_id": [str(t) for t in track_ids]}))

    @classmethod
    def for_tracks(
        cls, track_ids: list[str] | np.ndarray, names: pd.DataFrame | None
    ) -> TrackCatalog:
        """A catalogue of exactly ``track_ids``, in their order: the first row of ``names``
        (``track_id``, ``title``, ``artist``, ...) for each id it has; the id itself as the
        title of the others."""
        frame = pd.DataFrame({"track_id": [str(t) for t in track_ids]})
        if names is not None and len(names):
            names = names.assign(track_id=names["track_id"].astype(str))
            frame = frame.merge(names.drop_duplicates("track_id"), on="track_id", how="left")
            frame["title"] = frame["title"].fillna(frame["track_id"])
        return cls(frame)


#: Catalogue columns that tell apart tracks with one title and artist, in order of choice.
DETAIL_COLUMNS = ("excerpt", "version", "album", "release", "year", "duration")


def _detail(record: dict[str, Any], column: str | None) -> str:
    if column is None:
        return str(record["track_id"])
    value = _plain(record[column])
    if column == "duration" and isinstance(value, float):
        return f"{value:.1f} s"
    text = f"{column} {value}" if column in ("excerpt", "version") else str(value)
    start, end = record.get("measure_start"), record.get("measure_end")
    if column == "excerpt" and start is not None and end is not None:
        text += f", bars {_plain(start)}-{_plain(end)}"
    return text


def read_catalog(
    path: str | Path, *, format: str | None = None, track_col: str | None = None
) -> TrackCatalog:
    """Read a catalogue table (CSV, TSV or Parquet); ``track_id`` may be named by alias."""
    frame = read_table(path, fmt=format)
    columns = [str(c) for c in frame.columns]
    renames = {}
    for role, aliases in _ALIASES.items():
        given = track_col if role == "track_id" else None
        candidates = (given,) if given else aliases
        found = next((c for c in candidates if c in columns), None)
        if found is None and role == "track_id":
            raise DataFormatError(
                path, f"no track id column: expected one of {list(aliases)}, found {columns}")
        if found is not None and found != role:
            if role in columns:
                continue
            renames[found] = role
    try:
        return TrackCatalog(frame.rename(columns=renames))
    except DataFormatError as exc:
        raise DataFormatError(path, exc.reason, column=exc.column) from None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
