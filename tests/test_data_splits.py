"""Splits: partitions of the input, no leakage, repeatable with a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musicrec.data.logs import ListeningLog
from musicrec.data.splits import (
    cold_tracks,
    leave_last_out,
    make_split,
    random_holdout,
    temporal,
)
from musicrec.errors import DataFormatError, ParameterError


def make_log(rng: np.random.Generator, *, timestamps: bool = True, n_users: int = 40,
             n_tracks: int = 60) -> ListeningLog:
    rows = []
    for u in range(n_users):
        for t in rng.choice(n_tracks, size=int(rng.integers(2, 15)), replace=False):
            rows.append((f"u{u}", f"t{t}", int(rng.integers(1, 50)),
                         int(rng.integers(1_600_000_000, 1_700_000_000))))
    frame = pd.DataFrame(rows, columns=["user", "track", "plays", "timestamp"])
    if not timestamps:
        frame = frame.drop(columns="timestamp")
    return ListeningLog.from_frame(frame, weight_col="plays",
                                   timestamp_col="timestamp" if timestamps else None,
                                   source="synthetic.csv")


def pairs(log: ListeningLog) -> set[tuple[int, int]]:
    return set(zip(log.user_idx.tolist(), log.track_idx.tolist(), strict=True))


@pytest.mark.parametrize("protocol", ["random-holdout", "leave-last-out", "temporal",
                                      "cold-tracks"])
def test_every_split_is_a_partition(rng: np.random.Generator, protocol: str) -> None:
    log = make_log(rng)
    split = make_split(log, protocol=protocol, seed=3)
    train, test = pairs(split.train), pairs(split.test)
    assert train | test == pairs(log)  # train ∪ test equals the input
    assert not train & test  # nothing in both
    assert len(split.train) + len(split.test) == len(log)
    assert len(split.test) > 0
    # plays travel with their pair
    full = dict(zip(zip(log.user_idx.tolist(), log.track_idx.tolist(), strict=True),
                    log.plays.tolist(), strict=True))
    for part in (split.train, split.test):
        for u, t, p in zip(part.user_idx, part.track_idx, part.plays, strict=True):
            assert full[(int(u), int(t))] == p
    assert split.train.tracks == log.tracks and split.test.users == log.users


def test_random_holdout_sizes_and_seed(rng: np.random.Generator) -> None:
    log = make_log(rng)
    split = random_holdout(log, fraction=0.2, min_history=5, seed=7)
    counts = np.bincount(log.user_idx, minlength=log.n_users)
    held = np.bincount(split.test.user_idx, minlength=log.n_users)
    expected = np.where(counts >= 5, np.round(0.2 * counts).astype(int), 0)
    np.testing.assert_array_equal(held, expected)
    again = random_holdout(log, fraction=0.2, min_history=5, seed=7)
    assert pairs(again.test) == pairs(split.test)
    other = random_holdout(log, fraction=0.2, min_history=5, seed=8)
    assert pairs(other.test) != pairs(split.test)


def test_leave_last_out_takes_the_latest_item(rng: np.random.Generator) -> None:
    log = make_log(rng)
    split = leave_last_out(log)
    assert len(split.test) == log.n_users  # every user has >= 2 items
    assert log.timestamp is not None and split.test.timestamp is not None
    for u, stamp in zip(split.test.user_idx, split.test.timestamp, strict=True):
        assert stamp == log.timestamp[log.user_idx == u].max()


def test_leave_last_out_ties_break_by_track_index() -> None:
    frame = pd.DataFrame({"user": ["a", "a", "a"], "track": ["x", "y", "z"],
                          "timestamp": [5, 9, 9]})
    log = ListeningLog.from_frame(frame, timestamp_col="timestamp")
    split = leave_last_out(log)
    assert log.tracks.to_ids(split.test.track_idx) == ["z"]


def test_temporal_cuts_at_one_global_time(rng: np.random.Generator) -> None:
    log = make_log(rng)
    split = temporal(log, fraction=0.25)
    assert split.train.timestamp is not None and split.test.timestamp is not None
    assert split.train.timestamp.max() < split.test.timestamp.min()
    assert len(split.test) == pytest.approx(0.25 * len(log), abs=2)


def test_cold_tracks_hold_out_every_play_of_a_track(rng: np.random.Generator) -> None:
    log = make_log(rng)
    split = cold_tracks(log, fraction=0.2, seed=1)
    assert split.cold_tracks is not None and len(split.cold_tracks) > 0
    assert not np.isin(split.train.track_idx, split.cold_tracks).any()
    assert set(split.test.track_idx.tolist()) == set(split.cold_tracks.tolist())
    again = cold_tracks(log, fraction=0.2, seed=1)
    np.testing.assert_array_equal(again.cold_tracks, split.cold_tracks)


def test_timestamp_protocols_need_timestamps(rng: np.random.Generator) -> None:
    log = make_log(rng, timestamps=False)
    for protocol in ("leave-last-out", "temporal"):
        with pytest.raises(DataFormatError,
                           match=f"synthetic.csv: protocol '{protocol}' needs timestamps"):
            make_split(log, protocol=protocol)


def test_empty_test_set_and_bad_parameters(rng: np.random.Generator) -> None:
    log = make_log(rng)  # at most 14 items per user
    with pytest.raises(ParameterError, match="random-holdout split of synthetic.csv has an "
                                             "empty test set"):
        make_split(log, protocol="random-holdout", min_history=100)
    with pytest.raises(ParameterError, match="protocol='k-fold' must be one of"):
        make_split(log, protocol="k-fold")
    with pytest.raises(ParameterError, match="fraction=1.5 must lie strictly between 0 and 1"):
        make_split(log, protocol="temporal", fraction=1.5)
