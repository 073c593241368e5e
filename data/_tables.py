"""Reading user tables (CSV, TSV, Parquet) with errors that name the file and the fault."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from musicrec.errors import DataFormatError, ParameterError

FORMATS = ("csv", "tsv", "parquet")
_SEPARATORS = {"csv": ",", "tsv": "\t"}

# Leading bytes of files that are often passed by mistake where a table is expected.
_MAGIC = {
    b"RIFF": "WAV audio",
    b"OggS": "OGG audio",
    b"fLaC": "FLAC audio",
    b"ID3": "MP3 audio",
    b"\xff\xfb": "MP3 audio",
    b"PK\x03\x04": "a ZIP archive",
    b"\x1f\x8b": "a gzip archive",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\x93NUMPY": "a NumPy array",
}


def infer_format(path: Path, fmt: str | None) -> str:
    """The table format: ``fmt`` when given, else from the file's extension."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ParameterError(f"format={fmt!r} must be one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".tsv" in suffixes or ".tab" in suffixes or ".dat" in suffixes:
        return "tsv"
    if ".csv" in suffixes:
        return "csv"
    raise DataFormatError(
        path, "cannot tell the table format from the extension; pass format= (csv, tsv, parquet)"
    )


def sniff_binary(path: Path, head: bytes, fmt: str, *, utf8: bool = True) -> None:
    """Refuse a file that is not what ``fmt`` says: audio, archives, binary, Parquet as
    text (or text as Parquet), UTF-16/32, and (with ``utf8``) bytes that are not UTF-8."""
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            what = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
            raise DataFormatError(
                path, f"is not a Parquet file ({what or 'no PAR1 header'})"
            )
        return
    if head.startswith(b"PAR1"):
        raise DataFormatError(path, "is a Parquet file, not text; use format='parquet'")
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            raise DataFormatError(path, f"is not a text table: it looks like {name}")
    for bom, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                          (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if head.startswith(bom):
            raise DataFormatError(path, f"is {encoding} text; save it as UTF-8")
    if b"\x00" in head:
        raise DataFormatError(path, "is not a text table: it holds binary data")
    if not utf8:
        return
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the 64 KiB window is fine; anything else is not text.
        if exc.start < len(head) - 4:
            raise DataFormatError(
                path, f"is not UTF-8 text (bad byte at offset {exc.start})",
                line=head.count(b"\n", 0, exc.start) + 1,
            ) from None


def read_table(
    path: str | Path,
    *,
    fmt: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a whole table as strings (text formats) or typed columns (Parquet).

    Raises :class:`DataFormatError` for a missing, empty, binary or malformed file.
    """
    chunks = [chunk for chunk, _ in iter_table(path, fmt=fmt, sep=sep, encoding=encoding,
                                               chunk_rows=None)]
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def iter_table(
    path: str | Path,
    *,
    fmt: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
    columns: list[str] | None = None,
    chunk_rows: int | None = 500_000,
) -> Iterator[tuple[pd.DataFrame, int]]:
    """Read a table in chunks of ``chunk_rows`` rows: ``(chunk, index of its first row)``.

    Memory stays at one chunk of the ``columns`` asked for (all by default), whatever the
    file's size. ``chunk_rows=None`` reads the whole table as one chunk. The checks are
    those of :func:`read_table`; a malformed line in any chunk is a :class:`DataFormatError`.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "file not found")
    if path.is_dir():
        raise DataFormatError(path, "is a directory, not a table file")
    fmt = infer_format(path, fmt)
    if path.stat().st_size == 0:
        raise DataFormatError(path, "file is empty")
    with path.open("rb") as fh:
        head = fh.read(65536)
    sniff_binary(path, head, fmt)
    rows = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
            batches = (table.iter_batches(batch_size=chunk_rows, columns=columns)
                       if chunk_rows else [table.read(columns=columns)])
            for batch in batches:
                frame = batch.to_pandas()
                if len(frame):
                    yield frame, rows
                rows += len(frame)
        except DataFormatError:
            raise
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise DataFormatError(path, f"cannot read Parquet: {exc}") from None
    else:
        delimiter = sep or _SEPARATORS[fmt]
        options: dict[str, Any] = {
            "sep": delimiter, "dtype": str, "keep_default_na": False, "encoding": encoding,
            "quoting": csv.QUOTE_MINIMAL, "skip_blank_lines": True, "usecols": columns}
        try:
            with contextlib.ExitStack() as stack:
                if chunk_rows is None:
                    frames: Iterable[pd.DataFrame] = [pd.read_csv(path, **options)]
                else:
                    frames = stack.enter_context(
                        pd.read_csv(path, chunksize=chunk_rows, **options))
                for frame in frames:
                    if rows == 0 and frame.shape[1] == 1 and columns is None:
                        _check_delimiter(path, str(frame.columns[0]), delimiter, fmt)
                    if len(frame):
                        yield frame, rows
                    rows += len(frame)
        except pd.errors.EmptyDataError:
            raise DataFormatError(path, "file is empty") from None
        except pd.errors.ParserError as exc:
            raise DataFormatError(path, f"malformed {fmt.upper()}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise DataFormatError(path, f"is not {encoding} text: {exc.reason}") from None
    if rows == 0:
        raise DataFormatError(path, "has a header but no rows")


def table_columns(path: str | Path, *, fmt: str, sep: str | None = None,
                  encoding: str = "utf-8") -> list[str]:
    """The column names of a table, read from its header (or Parquet schema) alone."""
    path = Path(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return [str(c) for c in pq.ParquetFile(path).schema_arrow.names]
        except Exception as exc:  # noqa: BLE001 - a corrupt file, for a person
            raise DataFormatError(path, f"cannot read Parquet: {exc}") from None
    try:
        header = pd.read_csv(path, sep=sep or _SEPARATORS[fmt], dtype=str, nrows=0,
                             encoding=encoding, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, "file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"malformed {fmt.upper()}: {exc}") from None
    return [str(c) for c in header.columns]


def _check_delimiter(path: Path, header: str, delimiter: str, fmt: str) -> None:
    for other, name in (("\t", "tab"), (",", "comma"), (";", "semicolon"), ("|", "pipe")):
        if other != delimiter and other in header:
            hint = "use format='tsv'" if other == "\t" else f"pass sep={other!r}"
            raise DataFormatError(
                path,
                f"found a single column {header!r}: the file looks {name}-separated, "
                f"not {'tab' if delimiter == chr(9) else repr(delimiter)}-separated; {hint}",
            )


def row_location(fmt: str, row: int) -> int:
    """The 1-based line of a data row in a text file with a header (or the row for Parquet)."""
    return row + 2 if fmt in _SEPARATORS else row + 1
