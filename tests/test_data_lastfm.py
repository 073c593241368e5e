"""Last.fm scrobble exports: headerless and with a header, one user per file, bad rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from musicrec.data.lastfm import read_lastfm
from musicrec.data.logs import read_log
from musicrec.errors import DataFormatError, ParameterError

MBID = "0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

ALICE = """\
Radiohead,Pablo Honey,Creep,31 Jan 2021 12:34
RADIOHEAD,Pablo Honey,  Creep ,01 Feb 2021 10:00
"Beyoncé feat. Jay-Z","Dangerously in Love","Crazy in Love",02 Feb 2021 08:00
BEYONCÉ,Dangerously in Love,Crazy In Love [ft. Jay-Z],02 Feb 2021 09:00

Beyonce,Dangerously in Love,Crazy in Love,03 Feb 2021 08:00
Sigur Rós,Takk...,Hoppípolla,
"""
BOB = f"""\
uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid
1612345678,"03 Feb 2021, 09:41",Radiohead,,Pablo Honey,,Creep,
1612345978,"03 Feb 2021, 09:46",Sigur Rós,,Takk...,,Hoppípolla,{MBID}
1612346278,"03 Feb 2021, 09:51",Sigur Ros,,Takk,,Hoppipolla (Live),{MBID.upper()}
1612346578,"03 Feb 2021, 09:56",Sigur Rós,,Takk...,,Glósóli,nonsense
"""


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "alice.csv").write_text(ALICE, encoding="utf-8")
    (folder / "bob.csv").write_text(BOB, encoding="utf-8")
    return folder


def test_folder_of_exports_one_user_per_file(exports: Path) -> None:
    data = read_lastfm(exports, show_progress=False)
    frame = data.log.to_frame()
    assert frame[["user", "track", "plays"]].values.tolist() == [
        ["alice", "beyonce – crazy in love", 1.0],   # accents are not folded
        ["alice", "beyoncé – crazy in love", 2.0],   # feat. dropped, case folded
        ["alice", "radiohead – creep", 2.0],
        ["bob", MBID, 2.0],                          # merged by MBID, spellings differ
        ["bob", "radiohead – creep", 1.0],
        ["bob", "sigur rós – glósóli", 1.0],         # a malformed MBID: identified by text
    ]
    assert str(frame["timestamp"][1]) == "2021-02-02 09:00:00+00:00"
    assert str(frame["timestamp"][2]) == "2021-02-01 10:00:00+00:00"
    assert str(frame["timestamp"][3]) == "2021-02-03 09:57:58+00:00"  # uts (utc_time: 09:51)
    report = data.log.report
    assert report.rows_read == 10
    assert report.skipped == {"scrobbles without a time": 1}
    assert report.rows_skipped == 1
    assert report.duplicates_merged == 9 - 6
    assert report.notes == {"scrobbles identified by text": 1,
                            "scrobbles with a malformed track MBID identified by text": 1}
    assert data.catalog is not None
    assert data.catalog.label(MBID) == "Hoppípolla — Sigur Rós"
    assert data.catalog.label("beyoncé – crazy in love") == "Crazy in Love — Beyoncé feat. Jay-Z"
    assert "sigur rós – hoppípolla" not in data.catalog  # its only row had no time


def test_single_file_user_is_its_name(exports: Path) -> None:
    log = read_lastfm(exports / "alice.csv", show_progress=False).log
    assert list(log.users) == ["alice"]
    assert len(log) == 3


def test_plain_csv_equivalent_gives_the_same_model(exports: Path, tmp_path: Path,
                                                   same_model) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ("alice", "radiohead – creep", "2021-01-31T12:34:00"),
        ("alice", "radiohead – creep", "2021-02-01T10:00:00"),
        ("alice", "beyoncé – crazy in love", "2021-02-02T08:00:00"),
        ("alice", "beyoncé – crazy in love", "2021-02-02T09:00:00"),
        ("alice", "beyonce – crazy in love", "2021-02-03T08:00:00"),
        ("bob", "radiohead – creep", "1612345678"),
        ("bob", MBID, "1612345978"),
        ("bob", MBID, "1612346278"),
        ("bob", "sigur rós – glósóli", "1612346578"),
    ]
    frame = pd.DataFrame(rows, columns=["user", "track", "timestamp"])
    frame["timestamp"] = [int(t) if t.isdigit() else int(pd.Timestamp(t, tz="UTC").timestamp())
                          for t in frame["timestamp"]]
    path = tmp_path / "plays.csv"
    frame.to_csv(path, index=False)
    same_model(read_lastfm(exports, show_progress=False).log, read_log(path))


def test_user_column_of_a_header(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("username,artist,track,date\nann,A,B,2021-01-01\nbea,A,B,2021-01-02\n")
    log = read_lastfm(path, user_from="column", show_progress=False).log
    assert list(log.users) == ["ann", "bea"]
    with pytest.raises(ParameterError, match="alice.csv: a Last.fm export has no user column"):
        (tmp_path / "alice.csv").write_text(ALICE)
        read_lastfm(tmp_path / "alice.csv", user_from="column", show_progress=False)


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("A,B,C,01 Jan 2021\nA,B,C\n,B,C,01 Jan 2021\n", 3, "artist", "empty artist"),
    ("A,B,C,01 Jan 2021\n\nA,B, ,01 Jan 2021\n", 3, "track", "empty track"),
    ("A,B,C,01 Jan 2021\nA,B,C,yesterday\n", 2, "time", "cannot parse timestamp 'yesterday'"),
    ("A,B,C,01 Jan 2021\nA,B,C,01 Jan 2021,extra\n", 2, None,
     "Expected 4 fields in line 2, saw 5"),
    ("artist,album,track,date\nA,B,C,01 Jan 2021\nA,B,C,01 Jan 2021,extra\n", 3, None,
     "Expected 4 fields in line 3, saw 5"),
    ("A,B,01 Jan 2021\n", 1, None, "a headerless Last.fm export has 4 fields"),
    ("artist,album,track\nA,B,C\n", 1, None, "the header has no time column"),
])
def test_every_bad_row_names_file_line_and_column(
    tmp_path: Path, text: str, line: int | None, column: str | None, message: str
) -> None:
    path = tmp_path / "u.csv"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_lastfm(path, show_progress=False)
    assert info.value.path == str(path)
    assert (info.value.line, info.value.column) == (line, column)
    assert message in info.value.reason


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="file not found"):
        read_lastfm(tmp_path / "nope.csv", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"folder holds no Last.fm CSV files \(\*.csv\)"):
        read_lastfm(tmp_path / "empty", show_progress=False)
    only_now = tmp_path / "now.csv"
    only_now.write_text("A,B,C,\n")
    with pytest.raises(DataFormatError, match="now.csv: holds no listening data"):
        read_lastfm(only_now, show_progress=False)
