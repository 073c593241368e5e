"""Format detection, the read_interactions options, and every format through the CLI:
train, build and evaluate on a format give what they give on its plain-CSV equivalent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.cli import main
from musicrec.data.readers import detect_format, read_interactions
from musicrec.errors import DataFormatError, ParameterError

T0 = 1_600_000_000
PAIRS = [(u, t, 1 + (u * t) % 4) for u in range(30) for t in range(12) if t % 3 == u % 3]


def _times(u: int, t: int, plays: int) -> list[int]:
    return [T0 + u * 3600 + t * 300 + k * 60 for k in range(plays)]


def write_format(fmt: str, root: Path) -> tuple[Path, Path]:
    """The block log in ``fmt`` and its plain-CSV equivalent (ids as the reader makes them)."""
    root.mkdir()
    rows: list[tuple[str, str, int, int | None]] = []  # user, track, plays, time
    if fmt == "listenbrainz":
        path = root / "listens.jsonl"
        with path.open("w") as fh:
            for u, t, plays in PAIRS:
                for at in _times(u, t, plays):
                    artist = f"Artist {t // 4}" if at % 120 else f"ARTIST  {t // 4}"
                    fh.write(json.dumps({"user_name": f"u{u}", "listened_at": at,
                                         "track_metadata": {"artist_name": artist,
                                                            "track_name": f"Song {t}"}}) + "\n")
                    rows.append((f"u{u}", f"artist {t // 4} – song {t}", 1, at))
    elif fmt == "lastfm":
        path = root / "exports"
        path.mkdir()
        for u in range(30):
            lines = []
            for uu, t, plays in PAIRS:
                if uu != u:
                    continue
                for at in _times(u, t, plays):
                    when = datetime.fromtimestamp(at, UTC).strftime("%d %b %Y %H:%M")
                    lines.append(f"Artist {t // 4},Album,Song {t} (feat. X),{when}\n")
                    rows.append((f"u{u}", f"artist {t // 4} – song {t}", 1, at))
            (path / f"u{u}.csv").write_text("".join(lines))
    elif fmt == "audioscrobbler":
        path = root / "profiledata"
        path.mkdir()
        lines = [f"{1000 + u} {100 + t} {plays}\n" for u, t, plays in PAIRS]
        lines += [f"{1000 + u} 999 2\n" for u in range(0, 30, 3)]  # 999 -> 998 -> 100
        (path / "user_artist_data.txt").write_text("".join(lines))
        (path / "artist_alias.txt").write_text("999\t998\n998\t100\n")
        (path / "artist_data.txt").write_text("".join(f"{100 + t}\tArtist {t}\n"
                                                      for t in range(12)))
        rows = [(str(1000 + u), str(100 + t), plays, None) for u, t, plays in PAIRS]
        rows += [(str(1000 + u), "100", 2, None) for u in range(0, 30, 3)]
    else:
        path = root / "train_triplets.txt"
        path.write_text("".join(f"user{u:03d}\tSO{t:016d}\t{plays}\n" for u, t, plays in PAIRS))
        rows = [(f"user{u:03d}", f"SO{t:016d}", plays, None) for u, t, plays in PAIRS]
    csv = root / "plays.csv"
    frame = pd.DataFrame(rows, columns=["user", "track", "plays", "timestamp"])
    frame.dropna(axis=1).to_csv(csv, index=False)
    return path, csv


FORMATS = ["listenbrainz", "lastfm", "audioscrobbler", "msd-triplets"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_detection(fmt: str, tmp_path: Path) -> None:
    path, csv = write_format(fmt, tmp_path / "data")
    assert detect_format(csv) == "csv"
    if fmt == "lastfm":  # a CSV export is a table too: never guessed
        with pytest.raises(DataFormatError, match="cannot tell the format of this folder"):
            detect_format(path)
        assert detect_format(path / "u0.csv") == "csv"
    else:
        assert detect_format(path) == fmt


def test_more_detection(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"listened_at": 1}\n')
    (tmp_path / "b.json").write_text('[{"listened_at": 1}]\n')
    (tmp_path / "c.txt").write_text("u\tt\t1\n")
    (tmp_path / "hetrec").mkdir()
    (tmp_path / "hetrec" / "user_artists.dat").write_text("userID\tartistID\tweight\n")
    (tmp_path / "dump" / "2023").mkdir(parents=True)
    (tmp_path / "dump" / "2023" / "1.listens").write_text("")
    assert detect_format(tmp_path / "a.json") == "listenbrainz"
    assert detect_format(tmp_path / "hetrec") == "hetrec"
    assert detect_format(tmp_path / "hetrec" / "user_artists.dat") == "hetrec"
    assert detect_format(tmp_path / "dump") == "listenbrainz"
    for name in ("b.json", "c.txt"):
        with pytest.raises(DataFormatError, match="cannot tell the table format"):
            detect_format(tmp_path / name)
    with pytest.raises(DataFormatError, match="file not found"):
        detect_format(tmp_path / "nope.jsonl")


def test_options_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    path, csv = write_format("msd-triplets", tmp_path / "d")
    with pytest.raises(ParameterError, match="applies to listenbrainz and lastfm exports, "
                                             "not to csv"):
        read_interactions(csv, user_from="filename")
    with pytest.raises(ParameterError, match="--track-col maps the columns"):
        read_interactions(path, track_col="song")
    with pytest.raises(ParameterError, match="format='xml' must be one of"):
        read_interactions(path, format="xml")
    with pytest.raises(ParameterError, match="user_from='name' must be one of"):
        read_interactions(path, user_from="name")


def _train(argv: list[str], out: Path) -> dict[str, np.ndarray]:
    assert main(["train", *argv, "--out", str(out), "--factors", "4",
                 "--iterations", "3"]) == 0
    return {f.name: np.load(f, allow_pickle=False) for f in sorted((out / "cf").glob("*.npy"))}


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_train_build_evaluate_on_each_format(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from musicrec.recommender.facade import Recommender

    path, csv = write_format(fmt, tmp_path / "data")
    given = ["--interactions", str(path), "--format", fmt]
    if fmt == "lastfm":
        given += ["--user-from", "filename"]
    plain = ["--interactions", str(csv)]

    a, b = _train(given, tmp_path / "m1"), _train(plain, tmp_path / "m2")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    summary = capsys.readouterr().err
    if fmt == "audioscrobbler":
        assert "aliases re-pointed 10 (user, track) pairs to canonical ids, 10 of them " \
               "merged into an existing pair" in summary
    rec = Recommender(tmp_path / "m1")
    first = rec.catalog.track_ids[0]
    expected = {"listenbrainz": "Song 0 — Artist 0", "lastfm": "Song 0 (feat. X) — Artist 0",
                "audioscrobbler": "Artist 0", "msd-triplets": "SO0000000000000000"}[fmt]
    assert rec.catalog.label(first) == expected

    assert main(["build", *given, "--out", str(tmp_path / "b"), "--factors", "4",
                 "--iterations", "3"]) == 0
    assert "built a cf model of 12 tracks" in capsys.readouterr().out

    reports = []
    for argv, name in ((given, "r1"), (plain, "r2")):
        assert main(["evaluate", *argv, "--models", "popularity,als", "--k", "5",
                     "--min-history", "3", "--bootstrap", "20",
                     "--report", str(tmp_path / name)]) == 0
        payload = json.loads((tmp_path / name / "report.json").read_text())
        reports.append([(m["name"], m["status"], m["params"], m["metrics"])
                        for m in payload["models"]])
    assert reports[0] == reports[1]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"listened_at": 1}\n')
    assert main(["train", "--interactions", str(path), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err == (f"musicrec: error: {path}, line 1, column 'track_metadata': missing or not "
                   "an object")
    aliases = tmp_path / "aliases.txt"
    aliases.write_text("a\tb\nb\ta\n")
    _, csv = write_format("msd-triplets", tmp_path / "d")
    assert main(["train", "--interactions", str(csv), "--aliases", str(aliases), "--out",
                 str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "aliases.txt, line 2, column 'canonical': aliases form a cycle: a -> b -> a")
