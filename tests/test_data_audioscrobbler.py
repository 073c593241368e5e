"""The Audioscrobbler data set: plays, aliases applied (chains, cycles), artist names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from musicrec.data.audioscrobbler import read_audioscrobbler
from musicrec.data.logs import read_log
from musicrec.errors import DataFormatError

PLAYS = """\
1 100 10
1 101 5
1 102 2
2 101 3
2 200 0
2 300 4
3 200 7

3 200 1
"""
# 101 -> 102 -> 100 is a chain; the third line names no alias (as in the real file).
ALIASES = "101\t102\n102\t100\n\t100\n300\t301\n"
NAMES = ("100\tRadiohead\n101\tRadiohed\n200\tBjörk\n301\tThe Beatles\n"
         "a line without a tab\n200\tBjork\n")


def folder(tmp_path: Path, plays: str = PLAYS, aliases: str | None = ALIASES,
           names: str | None = NAMES) -> Path:
    root = tmp_path / "profiledata"
    root.mkdir(exist_ok=True)
    (root / "user_artist_data.txt").write_text(plays, encoding="utf-8")
    if aliases is not None:
        (root / "artist_alias.txt").write_text(aliases, encoding="utf-8")
    if names is not None:
        (root / "artist_data.txt").write_text(names, encoding="utf-8")
    return root


def test_plays_are_merged_after_following_alias_chains(tmp_path: Path) -> None:
    data = read_audioscrobbler(folder(tmp_path), show_progress=False)
    log = data.log
    assert log.to_frame().values.tolist() == [
        ["1", "100", 17.0],   # 10 + 5 (101 -> 102 -> 100) + 2 (102 -> 100)
        ["2", "100", 3.0],    # 101 -> 102 -> 100, nothing to merge with
        ["2", "301", 4.0],    # 300 -> 301
        ["3", "200", 8.0],    # two rows of one pair in the file
    ]
    report = log.report
    assert report.rows_read == 8
    assert report.rows_zero_weight == 1
    assert report.duplicates_merged == 1
    assert report.aliased_pairs == 4
    assert report.alias_merged == 2
    assert "aliases re-pointed 4 (user, track) pairs to canonical ids, 2 of them merged" \
        in report.summary()
    assert data.catalog is not None
    assert [data.catalog.title(t) for t in log.tracks] == ["Radiohead", "Björk", "The Beatles"]


def test_the_file_itself_and_an_extra_alias_file(tmp_path: Path) -> None:
    root = folder(tmp_path)
    extra = tmp_path / "more_aliases.txt"
    extra.write_text("200\t100\n")
    data = read_audioscrobbler(root / "user_artist_data.txt", aliases=extra,
                               show_progress=False)
    assert data.log.to_frame().values.tolist() == [
        ["1", "100", 17.0], ["2", "100", 3.0], ["2", "301", 4.0], ["3", "100", 8.0]]
    assert data.log.report.aliased_pairs == 5


def test_undecodable_names_are_replaced_not_fatal(tmp_path: Path) -> None:
    root = folder(tmp_path, names=None)
    (root / "artist_data.txt").write_bytes(b"100\tRadiohead\n200\tBj"
                                          + b"\xf6rk\n")
    data = read_audioscrobbler(root, show_progress=False)
    assert data.catalog is not None
    assert data.catalog.title("200") == "Bj\ufffdrk"


def test_without_alias_and_name_files(tmp_path: Path) -> None:
    data = read_audioscrobbler(folder(tmp_path, aliases=None, names=None),
                               show_progress=False)
    assert list(data.log.tracks) == ["100", "101", "102", "200", "300"]
    assert data.log.report.aliased_pairs == 0
    assert data.catalog is not None and data.catalog.title("101") == "101"


def test_plain_csv_equivalent_gives_the_same_model(tmp_path: Path, same_model) -> None:  # type: ignore[no-untyped-def]
    rows = [("1", "100", 10), ("1", "100", 5), ("1", "100", 2), ("2", "100", 3),
            ("2", "200", 0), ("2", "301", 4), ("3", "200", 7), ("3", "200", 1)]
    csv = tmp_path / "plays.csv"
    pd.DataFrame(rows, columns=["user", "track", "plays"]).to_csv(csv, index=False)
    data = read_audioscrobbler(folder(tmp_path), show_progress=False)
    same_model(data.log, read_log(csv))


def test_a_cycle_of_aliases_is_an_error_naming_it(tmp_path: Path) -> None:
    root = folder(tmp_path, aliases="101\t102\n102\t103\n103\t101\n")
    with pytest.raises(DataFormatError) as info:
        read_audioscrobbler(root, show_progress=False)
    assert info.value.path == str(root / "artist_alias.txt")
    assert info.value.line == 3
    assert "aliases form a cycle: 101 -> 102 -> 103 -> 101" in str(info.value)


@pytest.mark.parametrize(("plays", "line", "column", "message"), [
    ("1 100 10\n1 101 x\n", 2, "count", "play count 'x' is not a number"),
    ("1 100 10\n\n1 101 -2\n", 3, "count", "play count -2 is negative"),
    ("1 100 10\n1 101\n", 2, "count", "play count is missing"),
    ("1 100 10\n1 101 2 7\n", 2, None, "Expected 3 fields in line 2, saw 4"),
    ("1 100 10\n1  3\n", 2, "artist", "empty track id"),
])
def test_every_bad_play_line_names_file_line_and_field(
    tmp_path: Path, plays: str, line: int, column: str | None, message: str
) -> None:
    root = folder(tmp_path, plays=plays)
    with pytest.raises(DataFormatError) as info:
        read_audioscrobbler(root, show_progress=False)
    assert info.value.path == str(root / "user_artist_data.txt")
    assert (info.value.line, info.value.column) == (line, column)
    assert message in info.value.reason


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="Audioscrobbler folder not found"):
        read_audioscrobbler(tmp_path / "nope", show_progress=False)
    with pytest.raises(DataFormatError, match="no user_artist_data.txt"):
        read_audioscrobbler(tmp_path, show_progress=False)
    with pytest.raises(DataFormatError, match="alias file not found"):
        read_audioscrobbler(folder(tmp_path), aliases=tmp_path / "x.txt", show_progress=False)
    with pytest.raises(DataFormatError, match="every row has 0 plays"):
        read_audioscrobbler(folder(tmp_path, plays="1 100 0\n"), show_progress=False)
