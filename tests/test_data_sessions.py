"""Play events and sessions: reading single plays, cutting at gaps, the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec.data.logs import read_play_events
from musicrec.data.sessions import cut_sessions, session_split
from musicrec.errors import DataFormatError, ParameterError


def write(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "plays.csv"
    pd.DataFrame(rows, columns=["user", "track", "timestamp"]).to_csv(path, index=False)
    return path


def test_events_keep_every_play_in_time_order(tmp_path: Path) -> None:
    path = write(tmp_path, [("b", "x", "2024-01-01T10:00:00"), ("a", "y", "2024-01-01T10:05:00"),
                            ("a", "x", "2024-01-01T10:00:00"), ("a", "x", "2024-01-01T10:10:00")])
    events = read_play_events(path)
    assert events.frame[["user", "track"]].values.tolist() == [
        ["a", "x"], ["a", "y"], ["a", "x"], ["b", "x"]]  # not merged
    assert events.frame["plays"].tolist() == [1.0] * 4
    assert events.report.rows_read == 4


def test_events_need_timestamps_and_name_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    pd.DataFrame({"user": ["a"], "track": ["x"]}).to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="p.csv: play events need a timestamp column"):
        read_play_events(path)
    bad = write(tmp_path, [("a", "x", "2024-01-01"), ("a", "y", "yesterday-ish")])
    with pytest.raises(DataFormatError, match="line 3, column 'timestamp': cannot parse "
                                              "timestamp 'yesterday-ish'"):
        read_play_events(bad)


def test_cut_sessions_at_gaps() -> None:
    t = np.array([0, 60, 60 + 1800, 60 + 1801 + 1800, 10, 20], dtype="datetime64[s]")
    users = np.array(["a", "a", "a", "a", "b", "b"])
    # a gap of exactly 30 minutes stays in the session; 30 min 1 s cuts it
    assert cut_sessions(users, t).tolist() == [0, 0, 0, 1, 2, 2]
    assert cut_sessions(users, t, gap=59).tolist() == [0, 1, 2, 3, 4, 4]
    with pytest.raises(ParameterError, match="gap=0 must be a positive number"):
        cut_sessions(users, t, gap=0)
    with pytest.raises(ParameterError, match="sorted by user, then time"):
        cut_sessions(users[::-1], t)


def test_session_split_holds_out_each_users_last_session(tmp_path: Path) -> None:
    day1, day2 = "2024-01-01T10:", "2024-01-02T10:"
    rows = [
        # a: two sessions; the last has 4 distinct tracks -> seeds p, q; continuation r, s
        ("a", "x", day1 + "00:00"), ("a", "y", day1 + "04:00"),
        ("a", "p", day2 + "00:00"), ("a", "q", day2 + "03:00"), ("a", "p", day2 + "06:00"),
        ("a", "r", day2 + "09:00"), ("a", "s", day2 + "12:00"),
        # b: one session only -> never held out
        ("b", "x", day1 + "00:00"), ("b", "p", day1 + "03:00"), ("b", "q", day1 + "06:00"),
        # c: the last session has 2 distinct tracks only -> stays in training
        ("c", "y", day1 + "00:00"), ("c", "x", day2 + "00:00"), ("c", "r", day2 + "03:00"),
    ]
    split = session_split(read_play_events(write(tmp_path, rows)), n_seeds=2)
    assert [(s.user_id, s.seeds, s.continuation) for s in split.sessions] == [
        ("a", ("p", "q"), ("r", "s"))]
    assert split.n_sessions == 5 and split.n_eligible == 1
    train = split.train.to_frame()
    assert sorted(map(tuple, train[["user", "track"]].values.tolist())) == [
        ("a", "x"), ("a", "y"), ("b", "p"), ("b", "q"), ("b", "x"), ("c", "r"), ("c", "x"),
        ("c", "y")]
    # the id maps hold every track, including those only in held-out sessions
    assert "s" in split.train.tracks and split.train.n_users == 3
    with pytest.raises(ParameterError, match="nothing to hold out"):
        session_split(read_play_events(write(tmp_path, rows)), n_seeds=4)


def test_session_split_samples_sessions_reproducibly(tmp_path: Path) -> None:
    rows = []
    for u in range(20):
        rows.append((f"u{u}", "a", "2024-01-01T10:00:00"))
        rows += [(f"u{u}", t, f"2024-01-03T10:0{m}:00") for m, t in enumerate("bcd")]
    events = read_play_events(write(tmp_path, rows))
    one = session_split(events, max_sessions=5, seed=3)
    assert len(one.sessions) == 5 and one.n_eligible == 20
    assert one.sessions == session_split(events, max_sessions=5, seed=3).sessions
    # the sample does not change the training data
    assert len(one.train) == len(session_split(events).train) == 20
