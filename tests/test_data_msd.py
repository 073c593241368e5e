"""Taste Profile triplets: counts, names from unique_tracks.txt, bad lines."""

from __future__ import annotations

import bz2
from pathlib import Path

import pandas as pd
import pytest

from musicrec.data.logs import read_log
from musicrec.data.msd import read_msd_triplets
from musicrec.errors import DataFormatError

U1 = "b80344d063b5ccb3212f76538f3d9e43d87dca9e"
U2 = "85c1f87fea955d09b4bec2e36aee110927aedf9a"
S1, S2, S3 = "SOAKIMP12A8C130995", "SOBBMDR12A8C13253B", "SOBXHDL12A81C204C0"
TRIPLETS = f"{U1}\t{S1}\t1\n{U1}\t{S2}\t2\n{U2}\t{S1}\t5\n{U2}\t{S3}\t0\n\n{U2}\t{S1}\t3\n"
UNIQUE = (f"TRMMMYQ128F932D901<SEP>{S1}<SEP>Faster Pussy cat<SEP>Silent Night\n"
          f"TRMMMKD128F425225D<SEP>{S1}<SEP>Another spelling<SEP>Silent Night (dup)\n"
          f"TRMMMRX128F93187D9<SEP>{S2}<SEP>Hudson Mohawke<SEP>Nuku Nuku\n"
          f"TRMMMCH128F425532C<SEP>SOBYHAJ12A6701BF1D<SEP>Yerba Brava<SEP>Tu Cancion\n")


def test_triplets_with_names(tmp_path: Path) -> None:
    path = tmp_path / "train_triplets.txt"
    path.write_text(TRIPLETS)
    (tmp_path / "unique_tracks.txt").write_text(UNIQUE)
    data = read_msd_triplets(path, show_progress=False)
    log = data.log
    assert log.to_frame().values.tolist() == [[U2, S1, 8.0], [U1, S1, 1.0], [U1, S2, 2.0]]
    assert (log.report.rows_read, log.report.rows_zero_weight,
            log.report.duplicates_merged) == (5, 1, 1)
    assert data.catalog is not None
    assert data.catalog.label(S1) == "Silent Night — Faster Pussy cat"  # the first line
    assert data.catalog.label(S2) == "Nuku Nuku — Hudson Mohawke"
    assert len(data.catalog) == 2


def test_compressed_triplets_without_names(tmp_path: Path) -> None:
    path = tmp_path / "train_triplets.txt.bz2"
    path.write_bytes(bz2.compress(TRIPLETS.encode()))
    data = read_msd_triplets(path, show_progress=False)
    assert len(data.log) == 3
    assert data.catalog is not None and data.catalog.title(S1) == S1


def test_plain_csv_equivalent_gives_the_same_model(tmp_path: Path, same_model) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "train_triplets.txt"
    path.write_text(TRIPLETS)
    frame = pd.read_csv(path, sep="\t", header=None, names=["user", "track", "plays"])
    csv = tmp_path / "plays.csv"
    frame.to_csv(csv, index=False)
    same_model(read_msd_triplets(path, show_progress=False).log, read_log(csv))


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    (f"{U1}\t{S1}\t1\n{U1}\t{S2}\tmany\n", 2, "count", "play count 'many' is not a number"),
    (f"{U1}\t{S1}\t1\n\t{S2}\t1\n", 2, "user", "empty user id"),
    (f"{U1}\t{S1}\t1\n{U1} {S2} 1\n", 2, "song", "empty track id"),
    (f"{U1}\t{S1}\t1\n{U1}\t{S2}\n", 2, "count", "play count is missing"),
    (f"{U1}\t{S1}\t1\n{U1}\t{S1}\t1\t7\n", 2, None, "Expected 3 fields in line 2, saw 4"),
    (f"{U1}\t{S1}\t1\t7\n{U1}\t{S1}\t1\n", 1, None,
     "expected 3 fields (user, song, count), found 4"),
    (f"{U1}\t{S1}\n{U1}\t{S1}\t1\n", 1, None,
     "expected 3 fields (user, song, count), the first row has 2"),
])
def test_every_bad_line_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, column: str | None, message: str
) -> None:
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_msd_triplets(path, show_progress=False)
    assert info.value.path == str(path)
    assert (info.value.line, info.value.column) == (line, column)
    assert message in info.value.reason


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="file not found"):
        read_msd_triplets(tmp_path / "nope.txt", show_progress=False)
    with pytest.raises(DataFormatError, match="is a directory"):
        read_msd_triplets(tmp_path, show_progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataFormatError, match="empty.txt: file is empty"):
        read_msd_triplets(empty, show_progress=False)
    path = tmp_path / "train_triplets.txt"
    path.write_text(TRIPLETS)
    (tmp_path / "unique_tracks.txt").write_text("TR<SEP>SO<SEP>only three\n")
    with pytest.raises(DataFormatError, match=r"unique_tracks.txt, line 1: expected 4 fields"):
        read_msd_triplets(path, show_progress=False)
