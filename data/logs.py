"""Listening logs: who played what, how often and when.

A log file is a table (CSV, TSV or Parquet) with one row per play or per (user, track)
pair. :func:`read_log` maps its columns, validates every value, and aggregates duplicate
(user, track) pairs: play counts are summed and the latest timestamp is kept.

Rows are skipped by one documented rule only: a play count of exactly 0 carries no
signal. Skipped rows are counted in :attr:`ListeningLog.report` and logged. Every other
fault (a missing column, a non-numeric, negative or missing play count, an unparsable
timestamp, an empty id) is an error that names the file, the line and the column.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec.data._tables import infer_format, read_table, row_location
from musicrec.data.idmap import IdMap
from musicrec.errors import DataFormatError, ParameterError

log = logging.getLogger(__name__)

#: Column names tried, in order, when a role's column is not given explicitly.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "userID", "listener", "listener_id"),
    "track": ("track", "track_id", "trackid", "trackID", "item", "item_id", "itemID",
              "artist", "artist_id", "artistID", "song", "song_id"),
    "weight": ("plays", "play_count", "playcount", "count", "weight", "n_plays"),
    "timestamp": ("timestamp", "ts", "time", "played_at", "datetime", "date"),
}


@dataclass
class ReadReport:
    """What happened to the rows of a log file."""

    source: str
    rows_read: int = 0
    rows_zero_weight: int = 0
    duplicates_merged: int = 0

    @property
    def rows_skipped(self) -> int:
        return self.rows_zero_weight

    def summary(self) -> str:
        return (
            f"{self.source}: {self.rows_read} rows read, {self.duplicates_merged} duplicate "
            f"(user, track) rows merged, {self.rows_zero_weight} rows with 0 plays skipped"
        )


@dataclass
class ListeningLog:
    """Aggregated (user, track, plays[, last timestamp]) interactions.

    ``user_idx[i]``, ``track_idx[i]``, ``plays[i]`` and ``timestamp[i]`` describe one
    distinct pair; indices are dense and defined by ``users`` and ``tracks``.
    """

    users: IdMap
    tracks: IdMap
    user_idx: np.ndarray
    track_idx: np.ndarray
    plays: np.ndarray
    timestamp: np.ndarray | None = None
    report: ReadReport = field(default_factory=lambda: ReadReport("<memory>"))

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        if not (len(self.track_idx) == len(self.plays) == n):
            raise ParameterError("user_idx, track_idx and plays must have the same length")
        if self.timestamp is not None and len(self.timestamp) != n:
            raise ParameterError("timestamp must have one value per interaction")

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        track_col: str = "track",
        weight_col: str | None = None,
        timestamp_col: str | None = None,
        users: IdMap | None = None,
        tracks: IdMap | None = None,
        source: str = "<frame>",
    ) -> ListeningLog:
        """Build a log from a validated frame (see :func:`read_log` for the checks)."""
        return _build(frame, user_col, track_col, weight_col, timestamp_col, users, tracks,
                      ReadReport(source), "frame")

    # -- views ----------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_tracks(self) -> int:
        return len(self.tracks)

    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def has_timestamps(self) -> bool:
        return self.timestamp is not None

    def to_csr(self) -> sp.csr_matrix:
        """The ``n_users x n_tracks`` matrix of play counts (float32, CSR)."""
        matrix = sp.csr_matrix(
            (self.plays.astype(np.float32), (self.user_idx, self.track_idx)),
            shape=(self.n_users, self.n_tracks),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        matrix.sort_indices()
        return matrix

    def to_frame(self) -> pd.DataFrame:
        """The log as a frame with raw ids: ``user, track, plays[, timestamp]``."""
        frame = pd.DataFrame(
            {
                "user": self.users.ids[self.user_idx],
                "track": self.tracks.ids[self.track_idx],
                "plays": self.plays,
            }
        )
        if self.timestamp is not None:
            frame["timestamp"] = pd.to_datetime(self.timestamp, utc=True)
        return frame

    def subset(self, mask: np.ndarray) -> ListeningLog:
        """The interactions where ``mask`` is true, with the same id maps."""
        return replace(
            self,
            user_idx=self.user_idx[mask],
            track_idx=self.track_idx[mask],
            plays=self.plays[mask],
            timestamp=None if self.timestamp is None else self.timestamp[mask],
        )

    def fingerprint(self) -> str:
        """A sha256 over the aggregated content, stable across file formats."""
        digest = hashlib.sha256()
        order = np.lexsort((self.track_idx, self.user_idx))
        digest.update(self.users.to_array().tobytes())
        digest.update(self.tracks.to_array().tobytes())
        for arr in (self.user_idx, self.track_idx, self.plays):
            digest.update(np.ascontiguousarray(arr[order]).tobytes())
        return digest.hexdigest()


def read_log(
    path: str | Path,
    *,
    format: str | None = None,
    user_col: str | None = None,
    track_col: str | None = None,
    weight_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
) -> ListeningLog:
    """Read a listening log from CSV, TSV or Parquet.

    Parameters
    ----------
    path : str or Path
        The file. Its extension picks the format unless ``format`` is given.
    format : {"csv", "tsv", "parquet"}, optional
    user_col, track_col : str, optional
        The columns holding the user and track ids. When omitted, the first present of
        :data:`COLUMN_ALIASES` is used.
    weight_col : str, optional
        Play counts or weights (numbers >= 0). Without one, every row counts as one play.
    timestamp_col : str, optional
        When the play happened: unix seconds or any date string pandas parses.
    sep : str, optional
        Override the delimiter of a text table.

    Returns
    -------
    ListeningLog

    Examples
    --------
    >>> log = read_log("plays.csv", user_col="listener", weight_col="count")  # doctest: +SKIP
    """
    path = Path(path)
    fmt = infer_format(path, format) if path.exists() else (format or "csv")
    frame = read_table(path, fmt=fmt, sep=sep)
    columns = [str(c) for c in frame.columns]

    def pick(role: str, given: str | None, required: bool) -> str | None:
        if given is not None:
            if given not in columns:
                raise DataFormatError(
                    path,
                    f"no column {given!r} for the {role}; the columns are {columns}",
                    column=given,
                )
            return given
        for alias in COLUMN_ALIASES[role]:
            if alias in columns:
                return alias
        lowered = {c.lower(): c for c in columns}
        for alias in COLUMN_ALIASES[role]:
            if alias.lower() in lowered:
                return lowered[alias.lower()]
        if required:
            raise DataFormatError(
                path,
                f"no {role} column: expected one of {list(COLUMN_ALIASES[role][:4])}, "
                f"found {columns}; name yours with --{role}-col",
            )
        return None

    user_c = pick("user", user_col, True)
    track_c = pick("track", track_col, True)
    weight_c = pick("weight", weight_col, False)
    time_c = pick("timestamp", timestamp_col, False)
    assert user_c is not None and track_c is not None
    return _build(frame, user_c, track_c, weight_c, time_c, None, None,
                  ReadReport(str(path)), fmt, path=path)


def _parse_weights(values: pd.Series, column: str, fmt: str, path: Path | str) -> np.ndarray:
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        stripped = values.astype(str).str.strip()
        numbers = pd.to_numeric(stripped, errors="coerce")
        bad = numbers.isna() & (stripped != "") & (stripped.str.lower() != "nan")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                path, f"play count {stripped.iloc[row]!r} is not a number",
                line=row_location(fmt, row), column=column,
            )
    else:
        numbers = pd.to_numeric(values, errors="coerce")
    arr = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(arr)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataFormatError(path, "play count is missing (NaN)",
                              line=row_location(fmt, row), column=column)
    if np.isinf(arr).any():
        row = int(np.flatnonzero(np.isinf(arr))[0])
        raise DataFormatError(path, "play count is infinite",
                              line=row_location(fmt, row), column=column)
    negative = arr < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise DataFormatError(path, f"play count {arr[row]:g} is negative",
                              line=row_location(fmt, row), column=column)
    return arr


def _parse_timestamps(values: pd.Series, column: str, fmt: str, path: Path | str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
        text = values.astype(str)
    else:
        text = values.astype(str).str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        if numeric.notna().all():
            parsed = pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
        else:
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            path, f"cannot parse timestamp {text.iloc[row]!r} (use unix seconds or ISO 8601)",
            line=row_location(fmt, row), column=column,
        )
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[s]")


def _build(
    frame: pd.DataFrame,
    user_c: str,
    track_c: str,
    weight_c: str | None,
    time_c: str | None,
    users: IdMap | None,
    tracks: IdMap | None,
    report: ReadReport,
    fmt: str,
    *,
    path: Path | str | None = None,
) -> ListeningLog:
    where = path if path is not None else report.source
    for col in (user_c, track_c, weight_c, time_c):
        if col is not None and col not in frame.columns:
            raise DataFormatError(where, f"no column {col!r}; the columns are "
                                         f"{[str(c) for c in frame.columns]}", column=col)
    report.rows_read = len(frame)
    ids = {}
    for role, col in (("user", user_c), ("track", track_c)):
        raw = frame[col]
        text = raw.astype(str).str.strip()
        empty = (text == "") | raw.isna().to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataFormatError(where, f"empty {role} id", line=row_location(fmt, row),
                                  column=col)
        ids[role] = text.to_numpy(dtype=object)

    if weight_c is not None:
        plays = _parse_weights(frame[weight_c], weight_c, fmt, where)
    else:
        plays = np.ones(len(frame), dtype=np.float64)
    stamps = _parse_timestamps(frame[time_c], time_c, fmt, where) if time_c else None

    keep = plays > 0
    report.rows_zero_weight = int((~keep).sum())
    if report.rows_zero_weight:
        log.warning("%s: skipped %d rows with 0 plays", report.source, report.rows_zero_weight)
    if not keep.any():
        raise DataFormatError(where, "every row has 0 plays: there is nothing to learn from")

    agg = pd.DataFrame({"user": ids["user"][keep], "track": ids["track"][keep],
                        "plays": plays[keep]})
    if stamps is not None:
        agg["timestamp"] = stamps[keep]
    grouped = agg.groupby(["user", "track"], sort=True, as_index=False)
    if stamps is not None:
        agg = grouped.agg(plays=("plays", "sum"), timestamp=("timestamp", "max"))
    else:
        agg = grouped.agg(plays=("plays", "sum"))
    report.duplicates_merged = int(keep.sum()) - len(agg)

    if users is None:
        users, user_idx = IdMap.from_values(agg["user"].to_numpy(), kind="user")
    else:
        user_idx = users.to_idx_many(agg["user"]).astype(np.int32)
    if tracks is None:
        tracks, track_idx = IdMap.from_values(agg["track"].to_numpy(), kind="track")
    else:
        track_idx = tracks.to_idx_many(agg["track"]).astype(np.int32)
    log.info("%s", report.summary())
    return ListeningLog(
        users=users,
        tracks=tracks,
        user_idx=np.asarray(user_idx, dtype=np.int32),
        track_idx=np.asarray(track_idx, dtype=np.int32),
        plays=agg["plays"].to_numpy(dtype=np.float32),
        timestamp=None if stamps is None else agg["timestamp"].to_numpy(dtype="datetime64[s]"),
        report=report,
    )
