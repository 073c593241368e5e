"""Streaming input shared by the readers of exports and dumps.

Files may be plain or compressed (``.gz``, ``.bz2``, ``.xz``); a folder is read file by
file in sorted order. Lines come in chunks that carry their first line number, so every
error names the file and the line; one progress bar counts the bytes of all the files.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pandas as pd

from musicrec.data._tables import sniff_binary
from musicrec.data.logs import LogAccumulator, parse_ids, parse_weights
from musicrec.errors import DataFormatError, ParameterError

#: Compressed suffixes and their openers (each wraps a binary file object).
_DECOMPRESS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    ".gz": lambda raw: cast(IO[bytes], gzip.GzipFile(fileobj=raw)),
    ".bz2": lambda raw: cast(IO[bytes], bz2.BZ2File(raw)),
    ".xz": lambda raw: cast(IO[bytes], lzma.LZMAFile(raw)),
}

#: Rows per chunk of a delimited file, lines per chunk of a JSON lines file.
CHUNK_ROWS = 200_000

#: Values of ``user_from``: the user id comes from a column (or field) of each row, or
#: from the name of each file of a folder of single-user exports.
USER_FROM = ("column", "filename")


def base_name(path: Path) -> str:
    """The file name without a compression suffix and without its extension."""
    name = path.name
    for suffix in _DECOMPRESS:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name).stem if "." in name.lstrip(".") else name


def data_suffix(path: Path) -> str:
    """The extension under any compression suffix, lower case: ``a.jsonl.gz`` -> ``.jsonl``."""
    name = path.name.lower()
    for suffix in _DECOMPRESS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name).suffix


def list_files(path: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """``[path]`` for a file; for a folder, its files (recursively, sorted) whose extension
    under any compression is one of ``suffixes``. An empty folder is an error."""
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not p.name.startswith(".")
                   and data_suffix(p) in suffixes)
    if not files:
        raise DataFormatError(path, f"folder holds no {what} files "
                                    f"({', '.join('*' + s for s in suffixes)})")
    return files


def user_of_file(root: Path, path: Path) -> str:
    """The user of one file of a folder of single-user exports: the first part of its path
    under ``root``, without extension (``root/alice.csv`` and ``root/alice/2023/1.jsonl``
    both give ``alice``); for a single file, its own name."""
    if path == root:
        return base_name(path)
    first = path.relative_to(root).parts[0]
    return base_name(Path(first)) if (root / first).is_file() else first


def check_user_from(user_from: str) -> None:
    if user_from not in USER_FROM:
        raise ParameterError(f"user_from={user_from!r} must be one of {', '.join(USER_FROM)}")


@contextmanager
def open_binary(path: Path, *, utf8: bool = True) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """The bytes of a plain or decompressed file, and the raw file under it (whose
    position is what a progress bar counts). A plain file that is not text (or, with
    ``utf8``, whose head is not UTF-8) is refused."""
    if path.is_dir():
        raise DataFormatError(path, "is a directory, not a file")
    with path.open("rb") as raw:
        opener = _DECOMPRESS.get(path.suffix.lower())
        if opener is None:
            sniff_binary(path, raw.read(65536), "csv", utf8=utf8)
            raw.seek(0)
            yield raw, raw
            return
        try:
            yield opener(raw), raw
        except (EOFError, OSError, lzma.LZMAError) as exc:
            raise DataFormatError(path, f"cannot decompress: {exc}") from None


@contextmanager
def open_text(path: Path, *, errors: str = "strict") -> Iterator[tuple[IO[str], IO[bytes]]]:
    """The UTF-8 text of a plain or compressed file, and the raw file under it."""
    with open_binary(path, utf8=errors == "strict") as (binary, raw):
        text = io.TextIOWrapper(binary, encoding="utf-8", errors=errors, newline="")
        try:
            yield text, raw
        finally:
            text.detach()


def progress(files: Sequence[Path], desc: str, show: bool) -> Any:
    """A tqdm bar over the bytes of ``files`` (on disk, so compressed bytes)."""
    from tqdm.auto import tqdm

    total = sum(p.stat().st_size for p in files)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not show,
                leave=False)


def line_chunks(
    path: Path, bar: Any, *, size: int | None = None, errors: str = "strict"
) -> Iterator[tuple[int, list[str]]]:
    """Chunks of lines of a text file as ``(number of the first line, lines)``; ``errors``
    is how undecodable bytes are handled (``"strict"``: an error naming the line)."""
    size = size or CHUNK_ROWS
    with open_binary(path, utf8=errors == "strict") as (binary, raw):
        first, lines, done = 1, [], 0
        for data in binary:
            try:
                lines.append(data.decode("utf-8", errors))
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, f"is not UTF-8 text ({exc.reason})",
                                      line=first + len(lines)) from None
            if len(lines) == size:
                yield first, lines
                first += len(lines)
                lines = []
                done = _advance(bar, raw, done)
        if lines:
            yield first, lines
        _advance(bar, raw, done)


def _advance(bar: Any, raw: IO[bytes], done: int) -> int:
    where = raw.tell()
    bar.update(where - done)
    return where


def delimited_chunks(
    path: Path,
    bar: Any,
    *,
    sep: str,
    names: Sequence[str],
    header: bool = False,
    size: int | None = None,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Chunks of a delimited text file read as strings: ``(line of the first row, frame)``.

    Each row must have ``len(names)`` fields; a missing trailing field reads as ``""``.
    Blank lines are kept as rows of ``""`` so that line numbers stay exact (callers skip
    them with :func:`drop_blank`). A row with too many fields, or a first row with too
    few, is an error naming the line. With ``header``, the first line is skipped.
    """
    width = len(names)
    with open_text(path) as (text, raw):
        try:
            reader = pd.read_csv(
                text, sep=sep, header=None, dtype=str, keep_default_na=False, na_values=[],
                quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
                skip_blank_lines=False, chunksize=size or CHUNK_ROWS, engine="c",
            )
            line, done = 1, 0
            for frame in reader:
                first, line = line, line + len(frame)
                if header and first == 1:
                    frame, first = frame.iloc[1:], 2
                _check_width(path, frame, first, names)
                yield first, frame.iloc[:, :width].set_axis(list(names), axis=1)
                done = _advance(bar, raw, done)
        except pd.errors.ParserError as exc:
            message = _parser_message(exc)
            found = re.search(r"Expected (\d+) fields in line (\d+)", message)
            if found and int(found.group(1)) < width:  # the first row was short
                raise DataFormatError(
                    path, f"expected {width} fields ({', '.join(names)}), the first row has "
                          f"{found.group(1)}", line=1) from None
            raise DataFormatError(path, message, line=int(found.group(2)) if found else None
                                  ) from None
        except pd.errors.EmptyDataError:
            raise DataFormatError(path, "file is empty") from None
        except UnicodeDecodeError as exc:
            raise DataFormatError(path, f"is not UTF-8 text ({exc.reason})") from None


def _check_width(path: Path, frame: pd.DataFrame, first: int, names: Sequence[str]) -> None:
    width = len(names)
    expected = f"expected {width} fields ({', '.join(names)})"
    if frame.shape[1] < width:
        rows = np.flatnonzero((frame != "").any(axis=1).to_numpy())
        raise DataFormatError(path, f"{expected}, found {frame.shape[1]}",
                              line=first + int(rows[0]) if len(rows) else first)
    if frame.shape[1] > width:
        over = (frame.iloc[:, width:] != "").any(axis=1).to_numpy()
        if over.any():
            row = int(np.flatnonzero(over)[0])
            found = int((frame.iloc[row] != "").to_numpy().nonzero()[0].max()) + 1
            raise DataFormatError(path, f"{expected}, found {found}", line=first + row)


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1]
    return text.removeprefix("Error tokenizing data. C error: ")


def read_triplets(
    path: Path,
    acc: LogAccumulator,
    bar: Any,
    *,
    sep: str,
    names: tuple[str, str, str],
    size: int | None = None,
) -> None:
    """Add a headerless ``user track count`` file to ``acc``, chunk by chunk.

    ``names`` name the three fields in errors. Blank lines are ignored; an empty id, a
    missing field or a count that is not a number >= 0 is an error naming the line.
    """
    user_c, track_c, count_c = names
    for first, chunk in delimited_chunks(path, bar, sep=sep, names=names, size=size):
        frame, lines = drop_blank(chunk, first)
        if len(frame) == 0:
            continue
        acc.report.rows_read += len(frame)
        with relocated(path, lines):
            users = parse_ids(frame[user_c], "user", user_c, "tsv", path, first_line=0)
            tracks = parse_ids(frame[track_c], "track", track_c, "tsv", path, first_line=0)
            plays = parse_weights(frame[count_c], count_c, "tsv", path, first_line=0)
        acc.add(users, tracks, plays)


def drop_blank(frame: pd.DataFrame, first: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of a chunk that are not blank lines, and the file line of each."""
    blank = (frame == "").all(axis=1).to_numpy()
    lines = first + np.flatnonzero(~blank)
    return (frame[~blank] if blank.any() else frame), lines


@contextmanager
def relocated(path: Path, lines: np.ndarray) -> Iterator[None]:
    """Turn the row number (from 0) of an error raised inside into the file line."""
    try:
        yield
    except DataFormatError as exc:
        raise DataFormatError(path, exc.reason, line=int(lines[exc.line or 0]),
                              column=exc.column) from None
