"""Reading listening logs: formats, column mapping, aggregation, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.data.idmap import IdMap
from musicrec.data.logs import read_log
from musicrec.errors import DataFormatError, ParameterError, UnknownTrackError


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "listener": ["u1", "u1", "u2", "u1", "u3"],
        "song": ["s1", "s2", "s1", "s1", "s3"],
        "count": [2, 1, 4, 3, 0],
        "when": ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-05", "2024-03-04"],
    })


def _read(path: Path, **kw):  # type: ignore[no-untyped-def]
    return read_log(path, user_col="listener", track_col="song", weight_col="count",
                    timestamp_col="when", **kw)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_formats_give_the_same_log(tmp_path: Path, fmt: str) -> None:
    frame = _frame()
    path = tmp_path / f"plays.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)
    log = _read(path)
    assert list(log.users) == ["u1", "u2"]  # u3 only had a 0-play row
    assert list(log.tracks) == ["s1", "s2"]
    out = log.to_frame().sort_values(["user", "track"]).reset_index(drop=True)
    assert out[["user", "track"]].values.tolist() == [["u1", "s1"], ["u1", "s2"], ["u2", "s1"]]
    # (u1, s1) appears twice: 2 + 3 plays, the latest timestamp kept.
    assert out["plays"].tolist() == [5.0, 1.0, 4.0]
    assert str(out["timestamp"][0].date()) == "2024-03-05"
    assert log.report.rows_read == 5
    assert log.report.duplicates_merged == 1
    assert log.report.rows_zero_weight == 1


def test_aliases_and_csr(tiny_log_csv: Path) -> None:
    log = read_log(tiny_log_csv)  # columns user, track, plays, timestamp found by alias
    assert log.has_timestamps
    csr = log.to_csr()
    assert csr.shape == (3, 3)
    a, t1 = log.users.to_idx("a"), log.tracks.to_idx("t1")
    assert csr[a, t1] == 5.0  # 3 + 2 plays of (a, t1)
    assert csr.sum() == 14.0


def test_without_weights_each_row_is_one_play(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("user,track\nx,1\nx,1\ny,2\n")
    log = read_log(path)
    assert sorted(log.plays.tolist()) == [1.0, 2.0]
    assert not log.has_timestamps


def test_fingerprint_is_stable_across_formats(tmp_path: Path) -> None:
    frame = _frame()
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.sample(frac=1, random_state=3).to_parquet(tmp_path / "b.parquet")
    assert _read(tmp_path / "a.csv").fingerprint() == _read(tmp_path / "b.parquet").fingerprint()


# -- bad input: each fault has its own message naming the file, line and column ----------
def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nope\.csv: file not found"):
        read_log(tmp_path / "nope.csv")


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.csv", "")
    with pytest.raises(DataFormatError, match=r"empty\.csv: file is empty"):
        read_log(path)


def test_header_only(tmp_path: Path) -> None:
    path = _write(tmp_path, "head.csv", "user,track,plays\n")
    with pytest.raises(DataFormatError, match="has a header but no rows"):
        read_log(path)


def test_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "user,plays\nu,1\n")
    with pytest.raises(DataFormatError, match=r"p\.csv: no track column.*\['user', 'plays'\]"):
        read_log(path)
    with pytest.raises(DataFormatError, match=r"column 'song': no column 'song' for the track"):
        read_log(path, track_col="song")


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", r"line 3, column 'plays': play count 'abc' is not a number"),
     ("-2", r"line 3, column 'plays': play count -2 is negative"),
     ("NaN", r"line 3, column 'plays': play count is missing \(NaN\)"),
     ("", r"line 3, column 'plays': play count is missing \(NaN\)")],
)
def test_bad_weight(tmp_path: Path, value: str, message: str) -> None:
    path = _write(tmp_path, "p.csv", f"user,track,plays\nu,t,1\nu,s,{value}\n")
    with pytest.raises(DataFormatError, match=message):
        read_log(path)


def test_bad_timestamp(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv",
                  "user,track,timestamp\nu,t,2024-01-01\nu,s,2024-01-02\nv,t,yesterday-ish\n")
    with pytest.raises(DataFormatError,
                       match=r"line 4, column 'timestamp': cannot parse timestamp 'yesterday-ish'"):
        read_log(path)


def test_unix_timestamps(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "user,track,timestamp\nu,t,0\nu,s,86400\n")
    log = read_log(path)
    assert log.timestamp is not None
    assert sorted(str(t) for t in log.timestamp) == ["1970-01-01T00:00:00", "1970-01-02T00:00:00"]


def test_wrong_delimiter(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "user\ttrack\tplays\nu\tt\t1\n")
    with pytest.raises(DataFormatError, match=r"looks tab-separated, not ','-separated"):
        read_log(path)
    assert len(read_log(path, format="tsv")) == 1


def test_empty_id(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "user,track\nu,t\n,t\n")
    with pytest.raises(DataFormatError, match=r"line 3, column 'user': empty user id"):
        read_log(path)


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV audio"),
     (b"OggS\x00\x02" + bytes(40), "OGG audio"),
     (b"\x00\x01\x02\x03binary" * 10, "binary data")],
)
def test_not_a_table(tmp_path: Path, content: bytes, what: str) -> None:
    path = _write(tmp_path, "plays.csv", content)
    with pytest.raises(DataFormatError, match=f"plays.csv: is not a text table.*{what}"):
        read_log(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_logs_say_so(tmp_path: Path, encoding: str) -> None:
    text = "user,track,plays\nu1,t1,3\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # the BOM Windows tools write
    path = _write(tmp_path, "plays.csv", data)
    expected = "UTF-32" if encoding == "utf-32" else "UTF-16"
    with pytest.raises(DataFormatError,
                       match=f"plays.csv: is {expected} text; save it as UTF-8"):
        read_log(path)


def test_parquet_expected_but_csv_given(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.parquet", "user,track\nu,t\n")
    with pytest.raises(DataFormatError, match=r"p\.parquet: is not a Parquet file"):
        read_log(path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", "{}")
    with pytest.raises(DataFormatError, match="cannot tell the table format"):
        read_log(path)


def test_all_zero_weights(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "user,track,plays\nu,t,0\n")
    with pytest.raises(DataFormatError, match="every row has 0 plays"):
        read_log(path)


def test_subset_keeps_maps(tiny_log_csv: Path) -> None:
    log = read_log(tiny_log_csv)
    part = log.subset(log.user_idx == log.users.to_idx("a"))
    assert part.users is log.users and len(part) == 2
    assert part.to_csr().shape == log.to_csr().shape


def test_idmap_round_trip_and_errors() -> None:
    ids, codes = IdMap.from_values(np.array(["b", "a", "b", "c"], dtype=object), kind="track")
    assert list(ids) == ["a", "b", "c"] and codes.tolist() == [1, 0, 1, 2]
    assert IdMap.from_array(ids.to_array(), kind="track") == ids
    with pytest.raises(UnknownTrackError, match="unknown track 'zz'"):
        ids.to_idx("zz")
    with pytest.raises(ParameterError, match="track id 'a' appears more than once"):
        IdMap(["a", "a"], kind="track")
    assert list(ids.extend(["c", "d"])) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_logs_are_read_in_chunks_to_the_same_log(tmp_path: Path, fmt: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 3 rows give the log that one read gives: pairs split across chunks merge,
    the latest timestamp wins, 0-play rows are counted."""
    import musicrec.data.logs as logs

    frame = pd.DataFrame({
        "user": ["a", "b", "a", "c", "a", "b", "c", "a"],
        "track": ["t1", "t2", "t1", "t3", "t2", "t2", "t1", "t1"],
        "plays": ["1", "2", "3", "0", "1", "1", "2", "4"],
        "timestamp": [f"2024-01-0{d}" for d in (1, 2, 3, 4, 5, 6, 7, 8)]})
    path = tmp_path / f"plays.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    whole = read_log(path)
    monkeypatch.setattr(logs, "CHUNK_ROWS", 3)
    chunked = read_log(path)
    assert chunked.fingerprint() == whole.fingerprint()
    assert chunked.report.rows_read == 8 and chunked.report.rows_zero_weight == 1
    a_t1 = (chunked.user_idx == chunked.users.to_idx("a")) & (
        chunked.track_idx == chunked.tracks.to_idx("t1"))
    assert chunked.plays[a_t1].tolist() == [8.0]
    assert chunked.timestamp is not None
    assert str(chunked.timestamp[a_t1][0])[:10] == "2024-01-08"


def test_an_error_in_a_later_chunk_names_its_line(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import musicrec.data.logs as logs

    rows = [f"u{i},t{i},1" for i in range(7)] + ["u7,t7,-2"]
    path = _write(tmp_path, "plays.csv", ("user,track,plays\n" + "\n".join(rows)).encode())
    monkeypatch.setattr(logs, "CHUNK_ROWS", 3)
    with pytest.raises(DataFormatError, match=r"plays.csv, line 9, column 'plays'"):
        read_log(path)
