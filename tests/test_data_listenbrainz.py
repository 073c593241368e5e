"""ListenBrainz JSON lines: track identity, streaming, per-user files, every bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from musicrec.data import _stream
from musicrec.data.listenbrainz import read_listenbrainz
from musicrec.data.logs import LogAccumulator, read_log
from musicrec.errors import DataFormatError, ParameterError

T0 = 1_700_000_000
GET_LUCKY = "7a5b0d3c-1111-2222-3333-444455556666"


def listen(user: str | None, artist: str, title: str, at: Any = T0,
           mbid: str | None = None, where: str = "additional_info") -> dict[str, Any]:
    meta: dict[str, Any] = {"artist_name": artist, "track_name": title,
                            "release_name": "whatever"}
    if mbid is not None:
        meta[where] = {"recording_mbid": mbid}
    out: dict[str, Any] = {"listened_at": at, "track_metadata": meta}
    if user is not None:
        out["user_name"] = user
    return out


LISTENS = [
    listen("alice", "Radiohead", "Creep", T0 + 10),
    listen("alice", "RADIOHEAD", "  creep ", T0 + 30),           # case and whitespace
    listen("alice", "Ｒａｄｉｏｈｅａｄ", "Creep", T0 + 20),        # full-width: NFKC
    listen("bob", "Daft Punk feat. Pharrell Williams", "Get Lucky", T0 + 40),
    listen("bob", "Daft Punk", "Get Lucky (feat. Pharrell Williams)", T0 + 50),
    listen("bob", "Daft Punk", "Get Lucky", T0 + 60, mbid=GET_LUCKY.upper()),
    listen("bob", "daft punk", "Get Lucky (Radio Edit)", T0 + 70, mbid=GET_LUCKY,
           where="mbid_mapping"),
    listen("carol", "Radiohead", "Creep (Acoustic)", T0 + 80),   # another recording
]


def write_jsonl(path: Path, listens: list[dict[str, Any]], blank_after: int = 2) -> Path:
    lines = [json.dumps(x, ensure_ascii=False) for x in listens]
    lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_listens_merge_by_normalised_text_or_mbid(tmp_path: Path) -> None:
    data = read_listenbrainz(write_jsonl(tmp_path / "listens.jsonl", LISTENS),
                             show_progress=False)
    log = data.log
    frame = log.to_frame()
    assert frame[["user", "track"]].values.tolist() == [
        ["alice", "radiohead – creep"],
        ["bob", GET_LUCKY],
        ["bob", "daft punk – get lucky"],
        ["carol", "radiohead – creep (acoustic)"],
    ]
    assert frame["plays"].tolist() == [3.0, 2.0, 2.0, 1.0]
    latest = [int(t.timestamp()) - T0 for t in frame["timestamp"]]
    assert latest == [30, 70, 50, 80]
    report = log.report
    assert (report.rows_read, report.duplicates_merged, report.rows_skipped) == (8, 4, 0)
    assert report.notes == {"listens without a recording MBID identified by text": 6}
    # The catalogue shows the first spelling of each track.
    assert data.catalog is not None
    assert data.catalog.label("radiohead – creep") == "Creep — Radiohead"
    assert data.catalog.label(GET_LUCKY) == "Get Lucky — Daft Punk"
    assert data.catalog.title("daft punk – get lucky") == "Get Lucky"
    assert len(data.catalog) == log.n_tracks == 4


def test_a_malformed_mbid_falls_back_to_text_and_is_counted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "l.jsonl", [
        listen("u", "A", "B", mbid="not-an-mbid"), listen("u", "a", "b")])
    log = read_listenbrainz(path, show_progress=False).log
    assert list(log.tracks) == ["a – b"]
    assert log.plays.tolist() == [2.0]
    assert log.report.notes == {
        "listens without a recording MBID identified by text": 1,
        "listens with a malformed recording MBID identified by text": 1}


def test_plain_csv_equivalent_gives_the_same_model(tmp_path: Path, same_model) -> None:  # type: ignore[no-untyped-def]
    data = read_listenbrainz(write_jsonl(tmp_path / "listens.jsonl", LISTENS),
                             show_progress=False)
    rows = [("alice", "radiohead – creep", T0 + 10), ("alice", "radiohead – creep", T0 + 30),
            ("alice", "radiohead – creep", T0 + 20), ("bob", "daft punk – get lucky", T0 + 40),
            ("bob", "daft punk – get lucky", T0 + 50), ("bob", GET_LUCKY, T0 + 60),
            ("bob", GET_LUCKY, T0 + 70), ("carol", "radiohead – creep (acoustic)", T0 + 80)]
    csv = tmp_path / "plays.csv"
    pd.DataFrame(rows, columns=["user", "track", "timestamp"]).to_csv(csv, index=False)
    same_model(data.log, read_log(csv))


def test_small_chunks_and_merges_give_the_same_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_model  # type: ignore[no-untyped-def]
) -> None:
    rng = np.random.default_rng(3)
    listens = [listen(f"u{rng.integers(20)}", f"Artist {rng.integers(15)}",
                      f"Song {rng.integers(4)}", T0 + int(rng.integers(10**6)))
               for _ in range(3000)]
    path = write_jsonl(tmp_path / "many.jsonl", listens, blank_after=1500)
    whole = read_listenbrainz(path, show_progress=False).log
    monkeypatch.setattr(_stream, "CHUNK_ROWS", 97)
    monkeypatch.setattr(LogAccumulator, "merge_rows", 50)
    chunked = read_listenbrainz(path, show_progress=False).log
    same_model(whole, chunked)
    assert chunked.report.rows_read == 3000
    assert chunked.report.duplicates_merged == whole.report.duplicates_merged
    assert chunked.report.duplicates_merged == 3000 - len(whole)


def test_compressed_file_and_folder_of_per_user_exports(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    (folder / "bob" / "2023").mkdir(parents=True)
    with gzip.open(folder / "alice.jsonl.gz", "wt", encoding="utf-8") as fh:
        for x in LISTENS[:3]:
            fh.write(json.dumps({**x, "user_name": None}) + "\n")
    write_jsonl(folder / "bob" / "2023" / "1.jsonl",
                [listen(None, "Daft Punk", "Get Lucky", T0)])
    write_jsonl(folder / "bob" / "2023" / "2.listens",
                [listen(None, "Daft Punk", "Get Lucky", T0 + 5)])
    (folder / "notes.txt").write_text("not a listen")
    (folder / "bob" / "feedback.jsonl").write_text('{"score": 1}\n')
    (folder / "bob" / "user.json").write_text('{"user_name": "bob"}\n')
    log = read_listenbrainz(folder, user_from="filename", show_progress=False).log
    assert log.to_frame()[["user", "track", "plays"]].values.tolist() == [
        ["alice", "radiohead – creep", 3.0], ["bob", "daft punk – get lucky", 2.0]]
    with pytest.raises(DataFormatError, match=r"1\.jsonl, line 1, column 'user_name': no "
                                              r"user_name.*--user-from filename"):
        read_listenbrainz(folder / "bob", show_progress=False)


def _error(tmp_path: Path, text: str) -> DataFormatError:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(listen("u", "A", "B")) + "\n" + text + "\n")
    with pytest.raises(DataFormatError) as info:
        read_listenbrainz(path, show_progress=False)
    assert info.value.path == str(path)
    return info.value


@pytest.mark.parametrize(("line", "column", "message"), [
    ('{"listened_at": 1, "track_metadata": {"artist_name": "A"', None, "not valid JSON"),
    ('"just a string"', None, "expected a JSON object"),
    ('{"user_name": "u", "track_metadata": {"artist_name": "A", "track_name": "B"}}',
     "listened_at", "missing"),
    ('{"user_name": "u", "listened_at": "yesterday", '
     '"track_metadata": {"artist_name": "A", "track_name": "B"}}',
     "listened_at", "'yesterday' is not unix seconds"),
    ('{"user_name": "u", "listened_at": true, '
     '"track_metadata": {"artist_name": "A", "track_name": "B"}}',
     "listened_at", "True is not unix seconds"),
    ('{"user_name": "u", "listened_at": 1}', "track_metadata", "missing or not an object"),
    ('{"user_name": "u", "listened_at": 1, "track_metadata": {"artist_name": " ", '
     '"track_name": "B"}}', "track_metadata.artist_name", "missing or empty artist name"),
    ('{"user_name": "u", "listened_at": 1, "track_metadata": {"artist_name": "A"}}',
     "track_metadata.track_name", "missing or empty track name"),
    ('{"listened_at": 1, "track_metadata": {"artist_name": "A", "track_name": "B"}}',
     "user_name", "no user_name"),
])
def test_every_bad_listen_names_file_line_and_field(
    tmp_path: Path, line: str, column: str | None, message: str
) -> None:
    exc = _error(tmp_path, line)
    assert exc.line == 2
    assert exc.column == column
    assert message in exc.reason


def test_a_float_listened_at_that_is_whole_is_accepted(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "l.jsonl", [listen("u", "A", "B", at=float(T0))])
    log = read_listenbrainz(path, show_progress=False).log
    assert int(log.timestamp[0].astype(np.int64)) == T0


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="file not found"):
        read_listenbrainz(tmp_path / "nope.jsonl", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="folder holds no ListenBrainz"):
        read_listenbrainz(tmp_path / "empty", show_progress=False)
    (tmp_path / "empty" / "feedback.jsonl").write_text('{"score": 1}\n')
    with pytest.raises(DataFormatError, match=r"holds no listens \(only feedback.jsonl\)"):
        read_listenbrainz(tmp_path / "empty", show_progress=False)
    array = tmp_path / "listens.json"
    array.write_text(json.dumps([listen("u", "A", "B")]))
    with pytest.raises(DataFormatError, match=r"line 1: is a JSON array.*jq -c"):
        read_listenbrainz(array, show_progress=False)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(DataFormatError, match="blank.jsonl: holds no listening data"):
        read_listenbrainz(blank, show_progress=False)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes((json.dumps(listen("u", "A", "B")) + "\n").encode()
                      + b'{"user_name": "\xe9"}\n')
    with pytest.raises(DataFormatError, match=r"latin.jsonl, line 2: is not UTF-8"):
        read_listenbrainz(latin, show_progress=False)
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes((json.dumps(listen("u", "A", "B")) + "\n").encode("utf-16"))
    with pytest.raises(DataFormatError, match="utf16.jsonl: is UTF-16 text; save it as UTF-8"):
        read_listenbrainz(utf16, show_progress=False)
    audio = tmp_path / "clip.jsonl"
    audio.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(DataFormatError, match="looks like WAV audio"):
        read_listenbrainz(audio, show_progress=False)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"a": 1}\n')[:-8])
    with pytest.raises(DataFormatError, match="broken.jsonl.gz: cannot decompress"):
        read_listenbrainz(broken, show_progress=False)
    with pytest.raises(ParameterError, match="user_from='file'"):
        read_listenbrainz(blank, user_from="file")
