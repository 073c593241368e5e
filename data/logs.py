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
from tqdm.auto import tqdm

from musicrec.data._tables import infer_format, iter_table, read_table, row_location
from musicrec.data.catalog import TrackCatalog
from musicrec.data.idmap import IdMap
from musicrec.errors import DataFormatError, ParameterError

log = logging.getLogger(__name__)

#: Rows of a CSV, TSV or Parquet log read at a time: memory follows the distinct
#: (user, track) pairs and one chunk, not the file's size.
CHUNK_ROWS = 500_000

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
    """What happened to the rows of a log file.

    ``skipped`` counts rows dropped by a reader's documented rules (rule -> rows), beside
    the rows with 0 plays; ``notes`` counts rows read in a documented special way (for
    example, listens identified by text because they carry no MusicBrainz id). Aliases
    re-point ``aliased_pairs`` (user, track) pairs to canonical ids, and ``alias_merged`` of
    those land on a pair that already exists and are merged into it.
    """

    source: str
    rows_read: int = 0
    rows_zero_weight: int = 0
    duplicates_merged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    aliased_pairs: int = 0
    alias_merged: int = 0

    @property
    def rows_skipped(self) -> int:
        return self.rows_zero_weight + sum(self.skipped.values())

    def skip(self, rule: str, rows: int) -> None:
        """Count ``rows`` skipped by ``rule`` (and log it)."""
        if rows:
            self.skipped[rule] = self.skipped.get(rule, 0) + rows
            log.warning("%s: skipped %d %s", self.source, rows, rule)

    def note(self, what: str, rows: int) -> None:
        if rows:
            self.notes[what] = self.notes.get(what, 0) + rows

    def summary(self) -> str:
        text = (
            f"{self.source}: {self.rows_read} rows read, {self.duplicates_merged} duplicate "
            f"(user, track) rows merged, {self.rows_zero_weight} rows with 0 plays skipped"
        )
        for rule, rows in self.skipped.items():
            text += f", {rows} {rule} skipped"
        for what, rows in self.notes.items():
            text += f", {rows} {what}"
        if self.aliased_pairs:
            text += (f"; aliases re-pointed {self.aliased_pairs} (user, track) pairs to "
                     f"canonical ids, {self.alias_merged} of them merged into an existing pair")
        return text


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


@dataclass
class NamedLog:
    """A log with a catalogue of its tracks' names (``None`` where the source has none)."""

    log: ListeningLog
    catalog: TrackCatalog | None = None


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
    given = {"user_col": user_col, "track_col": track_col, "weight_col": weight_col,
             "timestamp_col": timestamp_col}
    report = ReadReport(str(path))
    acc = LogAccumulator(report)
    roles: tuple[str, str, str | None, str | None] | None = None
    chunks = iter_table(path, fmt=fmt, sep=sep, chunk_rows=CHUNK_ROWS)
    for frame, first in tqdm(chunks, desc=f"reading {path.name}", unit=" chunks",
                             disable=not path.is_file() or path.stat().st_size < 64 * 2**20,
                             leave=False):
        if roles is None:
            roles = _pick_columns(path, [str(c) for c in frame.columns], given)
        report.rows_read += len(frame)
        _add_rows(acc, frame, roles, fmt, path, first_line=row_location(fmt, first))
    return acc.finish(path)


@dataclass
class PlayEvents:
    """Single plays in time order per user (nothing merged): what sessions are cut from.

    ``frame`` has the columns ``user``, ``track`` (raw ids), ``plays`` and ``timestamp``
    (``datetime64[s]``), sorted by user, then time (file order among equal times).
    """

    frame: pd.DataFrame
    report: ReadReport


def read_play_events(
    path: str | Path,
    *,
    format: str | None = None,
    user_col: str | None = None,
    track_col: str | None = None,
    weight_col: str | None = None,
    timestamp_col: str | None = None,
    sep: str | None = None,
) -> PlayEvents:
    """Read a log's rows as single timed plays, validated as :func:`read_log` does
    (rows with 0 plays are skipped and counted the same way).

    Raises :class:`DataFormatError` when the file has no timestamp column.
    """
    path = Path(path)
    frame, fmt, (user_c, track_c, weight_c, time_c) = _read_columns(
        path, format, sep, user_col=user_col, track_col=track_col, weight_col=weight_col,
        timestamp_col=timestamp_col)
    if time_c is None:
        raise DataFormatError(path, "play events need a timestamp column: expected one of "
                                    f"{list(COLUMN_ALIASES['timestamp'][:4])}, found "
                                    f"{[str(c) for c in frame.columns]}; name yours with "
                                    "--timestamp-col")
    report = ReadReport(str(path), rows_read=len(frame))
    users = parse_ids(frame[user_c], "user", user_c, fmt, path)
    tracks = parse_ids(frame[track_c], "track", track_c, fmt, path)
    plays = (parse_weights(frame[weight_c], weight_c, fmt, path) if weight_c is not None
             else np.ones(len(frame), dtype=np.float64))
    stamps = parse_timestamps(frame[time_c], time_c, fmt, path)
    keep = plays > 0
    report.rows_zero_weight = int((~keep).sum())
    if report.rows_zero_weight:
        log.warning("%s: skipped %d rows with 0 plays", report.source,
                    report.rows_zero_weight)
    if not keep.any():
        raise DataFormatError(path, "every row has 0 plays: there is nothing to learn from")
    events = pd.DataFrame({"user": users[keep], "track": tracks[keep], "plays": plays[keep],
                           "timestamp": stamps[keep]})
    events = events.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
    return PlayEvents(events, report)


def _read_columns(
    path: Path,
    format: str | None,
    sep: str | None,
    **given: str | None,
) -> tuple[pd.DataFrame, str, tuple[str, str, str | None, str | None]]:
    """The whole table and the columns of each role (given explicitly or found by alias)."""
    fmt = infer_format(path, format) if path.exists() else (format or "csv")
    frame = read_table(path, fmt=fmt, sep=sep)
    return frame, fmt, _pick_columns(path, [str(c) for c in frame.columns], given)


def _pick_columns(
    path: Path, columns: list[str], given: dict[str, str | None]
) -> tuple[str, str, str | None, str | None]:
    """The column of each role: given explicitly, or the first alias present."""

    def pick(role: str, required: bool) -> str | None:
        wanted = given[f"{role}_col"]
        if wanted is not None:
            if wanted not in columns:
                raise DataFormatError(
                    path,
                    f"no column {wanted!r} for the {role}; the columns are {columns}",
                    column=wanted,
                )
            return wanted
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

    user_c = pick("user", True)
    track_c = pick("track", True)
    assert user_c is not None and track_c is not None
    return user_c, track_c, pick("weight", False), pick("timestamp", False)


def _line(fmt: str, row: int, first_line: int | None) -> int:
    return row_location(fmt, row) if first_line is None else first_line + row


def parse_weights(
    values: pd.Series, column: str, fmt: str, path: Path | str, *, first_line: int | None = None
) -> np.ndarray:
    """Play counts as float64, validated; ``first_line`` is the line of ``values[0]`` when
    the values are a chunk of a file (else it follows from ``fmt``)."""
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        stripped = values.astype(str).str.strip()
        numbers = pd.to_numeric(stripped, errors="coerce")
        bad = numbers.isna() & (stripped != "") & (stripped.str.lower() != "nan")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                path, f"play count {stripped.iloc[row]!r} is not a number",
                line=_line(fmt, row, first_line), column=column,
            )
    else:
        numbers = pd.to_numeric(values, errors="coerce")
    arr = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(arr)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataFormatError(path, "play count is missing (NaN)",
                              line=_line(fmt, row, first_line), column=column)
    if np.isinf(arr).any():
        row = int(np.flatnonzero(np.isinf(arr))[0])
        raise DataFormatError(path, "play count is infinite",
                              line=_line(fmt, row, first_line), column=column)
    negative = arr < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise DataFormatError(path, f"play count {arr[row]:g} is negative",
                              line=_line(fmt, row, first_line), column=column)
    return arr


def parse_timestamps(
    values: pd.Series, column: str, fmt: str, path: Path | str, *, first_line: int | None = None
) -> np.ndarray:
    """Play times as datetime64[s] (UTC); unix seconds or any date pandas parses."""
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
            line=_line(fmt, row, first_line), column=column,
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
    acc = LogAccumulator(report)
    _add_rows(acc, frame, (user_c, track_c, weight_c, time_c), fmt, where)
    return acc.finish(where, users=users, tracks=tracks)


def _add_rows(
    acc: LogAccumulator,
    frame: pd.DataFrame,
    roles: tuple[str, str, str | None, str | None],
    fmt: str,
    where: Path | str,
    *,
    first_line: int | None = None,
) -> None:
    """Validate one table (or chunk of one) and add its rows to ``acc``."""
    user_c, track_c, weight_c, time_c = roles
    user_ids = parse_ids(frame[user_c], "user", user_c, fmt, where, first_line=first_line)
    track_ids = parse_ids(frame[track_c], "track", track_c, fmt, where, first_line=first_line)
    if weight_c is not None:
        plays = parse_weights(frame[weight_c], weight_c, fmt, where, first_line=first_line)
    else:
        plays = np.ones(len(frame), dtype=np.float64)
    stamps = (parse_timestamps(frame[time_c], time_c, fmt, where, first_line=first_line)
              if time_c else None)
    acc.add(user_ids, track_ids, plays, stamps)


def parse_ids(
    values: pd.Series, role: str, column: str, fmt: str, path: Path | str,
    *, first_line: int | None = None,
) -> np.ndarray:
    """Ids as stripped strings (an object array); an empty or missing id is an error."""
    text = values.astype(str).str.strip()
    empty = (text == "").to_numpy() | values.isna().to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataFormatError(path, f"empty {role} id", line=_line(fmt, row, first_line),
                              column=column)
    return text.to_numpy(dtype=object)


# -- aggregation ------------------------------------------------------------------------
_NO_TIME = np.iinfo(np.int64).min


class LogAccumulator:
    """Builds a :class:`ListeningLog` from chunks of rows, in memory bounded by the
    distinct ids and (user, track) pairs rather than by the rows read.

    Each chunk's ids are coded against growing vocabularies, its rows are aggregated
    into (user, track) pairs at once (plays summed, latest timestamp kept), and the pairs
    of all chunks are merged again whenever they outgrow the last merge. Rows with 0 plays
    are skipped and counted in the report, which also gets the duplicates merged.

    Examples
    --------
    >>> acc = LogAccumulator(ReadReport("plays"))
    >>> acc.add(np.array(["u1", "u1"], dtype=object), np.array(["t1", "t1"], dtype=object),
    ...         np.array([2.0, 3.0]))
    >>> acc.finish("plays").plays
    array([5.], dtype=float32)
    """

    #: Pairs held unmerged before the chunks' pairs are merged again (at least).
    merge_rows = 1_000_000

    def __init__(self, report: ReadReport) -> None:
        self.report = report
        self._users: dict[str, int] = {}
        self._tracks: dict[str, int] = {}
        self._keys: list[np.ndarray] = []
        self._plays: list[np.ndarray] = []
        self._stamps: list[np.ndarray] = []
        self._timed: bool | None = None
        self._pending = 0
        self._merged = 0
        self._rows_kept = 0

    def add(
        self,
        users: np.ndarray,
        tracks: np.ndarray,
        plays: np.ndarray,
        timestamps: np.ndarray | None = None,
    ) -> None:
        """Add rows: ids as arrays of str, validated plays (>= 0), datetime64 times."""
        timed = timestamps is not None
        if self._timed is None:
            self._timed = timed
        elif self._timed != timed:
            raise ParameterError("every chunk of a log must have timestamps, or none")
        keep = plays > 0
        zero = int(len(plays) - keep.sum())
        if zero:
            self.report.rows_zero_weight += zero
            users, tracks, plays = users[keep], tracks[keep], plays[keep]
            timestamps = None if timestamps is None else timestamps[keep]
        if len(plays) == 0:
            return
        self._rows_kept += len(plays)
        keys = (_code(self._users, users) << 32) | _code(self._tracks, tracks)
        stamps = (np.asarray(timestamps, dtype="datetime64[s]").astype(np.int64)
                  if timestamps is not None else None)
        keys, summed, latest = reduce_pairs(keys, np.asarray(plays, dtype=np.float64), stamps)
        self._keys.append(keys)
        self._plays.append(summed)
        if latest is not None:
            self._stamps.append(latest)
        self._pending += len(keys)
        if self._pending > max(self._merged, self.merge_rows):
            self._merge()

    def _merge(self) -> None:
        keys, plays, stamps = reduce_pairs(
            np.concatenate(self._keys), np.concatenate(self._plays),
            np.concatenate(self._stamps) if self._stamps else None)
        self._keys, self._plays = [keys], [plays]
        self._stamps = [] if stamps is None else [stamps]
        self._merged, self._pending = len(keys), 0

    def finish(
        self, where: Path | str, *, users: IdMap | None = None, tracks: IdMap | None = None
    ) -> ListeningLog:
        """The aggregated log (ids sorted unless ``users``/``tracks`` maps are given)."""
        if self.report.rows_zero_weight:
            log.warning("%s: skipped %d rows with 0 plays", self.report.source,
                        self.report.rows_zero_weight)
        if not self._keys:
            if self.report.rows_zero_weight:
                raise DataFormatError(where, "every row has 0 plays: there is nothing to "
                                             "learn from")
            raise DataFormatError(where, "holds no listening data")
        self._merge()
        self.report.duplicates_merged = self._rows_kept - self._merged
        out = assemble_log(
            np.fromiter(self._users, dtype=object, count=len(self._users)),
            np.fromiter(self._tracks, dtype=object, count=len(self._tracks)),
            self._keys[0], self._plays[0], self._stamps[0] if self._stamps else None,
            self.report, users=users, tracks=tracks)
        log.info("%s", self.report.summary())
        return out


def _code(vocab: dict[str, int], values: np.ndarray) -> np.ndarray:
    """Codes of ``values`` in ``vocab`` (int64), adding the new ones."""
    codes, uniques = pd.factorize(values)
    lookup = np.fromiter((vocab.setdefault(u, len(vocab)) for u in uniques),
                         dtype=np.int64, count=len(uniques))
    return lookup[codes]


def reduce_pairs(
    keys: np.ndarray, plays: np.ndarray, stamps: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Aggregate rows by key: sorted distinct keys, summed plays, latest stamp per key."""
    order = np.lexsort((stamps, keys)) if stamps is not None else np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    summed = np.add.reduceat(plays[order], starts)
    latest = None
    if stamps is not None:
        ends = np.r_[starts[1:], len(keys)] - 1
        latest = stamps[order][ends]
    return keys[starts], summed, latest


def assemble_log(
    user_vocab: np.ndarray,
    track_vocab: np.ndarray,
    keys: np.ndarray,
    plays: np.ndarray,
    stamps: np.ndarray | None,
    report: ReadReport,
    *,
    users: IdMap | None = None,
    tracks: IdMap | None = None,
) -> ListeningLog:
    """A log from distinct pair keys ``user_code << 32 | track_code`` over vocabularies.

    Unless maps are given, the ids are sorted, so the same pairs give the same log
    whatever order the rows came in.
    """
    def remap(vocab: np.ndarray, given: IdMap | None, kind: str) -> tuple[IdMap, np.ndarray]:
        if given is not None:
            return given, given.to_idx_many(vocab)
        order = np.argsort(vocab, kind="stable")  # object: code-point order, as IdMap
        rank = np.empty(len(vocab), dtype=np.int64)
        rank[order] = np.arange(len(vocab))
        return IdMap(vocab[order], kind=kind), rank

    users, user_rank = remap(user_vocab, users, "user")
    tracks, track_rank = remap(track_vocab, tracks, "track")
    user_idx = user_rank[keys >> 32]
    track_idx = track_rank[keys & 0xFFFFFFFF]
    order = np.lexsort((track_idx, user_idx))
    return ListeningLog(
        users=users,
        tracks=tracks,
        user_idx=user_idx[order].astype(np.int32),
        track_idx=track_idx[order].astype(np.int32),
        plays=plays[order].astype(np.float32),
        timestamp=None if stamps is None else stamps[order].astype("datetime64[s]"),
        report=report,
    )
