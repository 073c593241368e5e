"""Alias files: chains, cycles, conflicts, and re-pointing any log's pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from musicrec.data.aliases import apply_aliases, read_aliases
from musicrec.data.readers import read_interactions
from musicrec.errors import DataFormatError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_chains_are_followed_to_their_end(tmp_path: Path) -> None:
    aliases = read_aliases(write(tmp_path / "a.txt", "a\tb\nb\tc\nc\td\nx\td\n\n\tq\ny\ty\n"))
    assert aliases.mapping == {"a": "d", "b": "d", "c": "d", "x": "d"}
    assert aliases.canonical("a") == "d"
    assert aliases.canonical("d") == "d"
    assert aliases.canonical("zzz") == "zzz"
    assert (aliases.lines_read, aliases.empty_skipped) == (6, 1)
    assert "1 lines with an empty alias skipped" in aliases.summary()


def test_chains_across_two_files_and_a_csv(tmp_path: Path) -> None:
    first = write(tmp_path / "one.txt", "a\tb\n")
    second = write(tmp_path / "two.csv", "alias,canonical\nb,c\nc,e\n")
    assert read_aliases(first, second).mapping == {"a": "e", "b": "e", "c": "e"}


@pytest.mark.parametrize(("text", "line", "cycle"), [
    ("a\tb\nb\ta\n", 2, "a -> b -> a"),
    ("x\ty\na\tb\nb\tc\nc\ta\n", 4, "a -> b -> c -> a"),
    ("a\tb\nb\tc\nc\tb\n", 3, "b -> c -> b"),      # a chain that runs into a cycle
])
def test_a_cycle_is_an_error_naming_its_ids_file_and_line(
    tmp_path: Path, text: str, line: int, cycle: str
) -> None:
    path = write(tmp_path / "aliases.txt", text)
    with pytest.raises(DataFormatError) as info:
        read_aliases(path)
    assert (info.value.path, info.value.line, info.value.column) == (str(path), line,
                                                                      "canonical")
    assert info.value.reason == f"aliases form a cycle: {cycle}"


def test_bad_alias_files(tmp_path: Path) -> None:
    conflict = write(tmp_path / "c.txt", "a\tb\nx\ty\na\tc\n")
    with pytest.raises(DataFormatError, match=r"c.txt, line 3, column 'canonical': alias 'a' "
                                              r"maps to 'c' here and to 'b' at .*c.txt, line 1"):
        read_aliases(conflict)
    no_target = write(tmp_path / "n.txt", "a\tb\nq\t\n")
    with pytest.raises(DataFormatError, match=r"n.txt, line 2, column 'canonical': alias 'q' "
                                              r"has no canonical id"):
        read_aliases(no_target)
    three = write(tmp_path / "t.txt", "a\tb\nq\tr\ts\n")
    with pytest.raises(DataFormatError, match=r"t.txt, line 2: Expected 2 fields"):
        read_aliases(three)
    bad_csv = write(tmp_path / "b.csv", "from,to\na,b\n")
    with pytest.raises(DataFormatError, match="needs the columns alias and canonical"):
        read_aliases(bad_csv)
    with pytest.raises(DataFormatError, match="alias file not found"):
        read_aliases(tmp_path / "missing.txt")


def test_aliases_on_a_plain_csv_log_merge_pairs_and_keep_the_latest_time(
    tmp_path: Path, same_model  # type: ignore[no-untyped-def]
) -> None:
    log_path = tmp_path / "plays.csv"
    pd.DataFrame({
        "user": ["u1", "u1", "u1", "u2", "u2"],
        "track": ["misspelt", "right", "other", "misspelt", "other"],
        "plays": [2, 3, 1, 4, 1],
        "timestamp": [300, 100, 50, 70, 80],
    }).to_csv(log_path, index=False)
    aliases = write(tmp_path / "aliases.txt", "misspelt\tright\n")
    data = read_interactions(log_path, aliases=aliases)
    frame = data.log.to_frame()
    assert frame[["user", "track", "plays"]].values.tolist() == [
        ["u1", "other", 1.0], ["u1", "right", 5.0], ["u2", "other", 1.0], ["u2", "right", 4.0]]
    assert [int(t.timestamp()) for t in frame["timestamp"]] == [50, 300, 80, 70]
    report = data.log.report
    assert (report.aliased_pairs, report.alias_merged) == (2, 1)
    expected = tmp_path / "expected.csv"
    pd.DataFrame({"user": ["u1", "u1", "u1", "u2", "u2"],
                  "track": ["right", "right", "other", "right", "other"],
                  "plays": [2, 3, 1, 4, 1], "timestamp": [300, 100, 50, 70, 80]}
                 ).to_csv(expected, index=False)
    same_model(data.log, read_interactions(expected).log)


def test_a_canonical_track_borrows_the_name_of_its_alias(tmp_path: Path) -> None:
    from musicrec.data.catalog import TrackCatalog
    from musicrec.data.logs import ListeningLog, NamedLog

    log = ListeningLog.from_frame(pd.DataFrame({"user": ["u", "u"], "track": ["old", "x"]}))
    catalog = TrackCatalog(pd.DataFrame({"track_id": ["old", "x"], "title": ["Old", "X"]}))
    aliases = read_aliases(write(tmp_path / "a.txt", "old\tnew\n"))
    data = apply_aliases(NamedLog(log, catalog), aliases)
    assert list(data.log.tracks) == ["new", "x"]
    assert data.catalog is not None
    assert data.catalog.track_ids == ["new", "x"]
    assert data.catalog.title("new") == "Old"
    unchanged = apply_aliases(data, read_aliases(write(tmp_path / "b.txt", "zz\tyy\n")))
    assert unchanged.log is data.log and unchanged.log.report.aliased_pairs == 1
