"""Listening sessions: plays cut at gaps, and a held-out-session split for evaluation.

A session is a user's run of plays with no gap longer than ``gap`` seconds (30 minutes
by default). :func:`session_split` holds out each eligible user's *last* session: its
first ``n_seeds`` distinct tracks are the seeds, the rest its continuation. Everything
else (the user's earlier sessions and every other user's plays) is training data, so a
user is always known to the model when their session is tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from musicrec.data.idmap import IdMap
from musicrec.data.logs import ListeningLog, PlayEvents
from musicrec.errors import ParameterError

DEFAULT_GAP_SECONDS = 30 * 60


def cut_sessions(users: np.ndarray, times: np.ndarray, *, gap: float = DEFAULT_GAP_SECONDS
                 ) -> np.ndarray:
    """Session numbers (0, 1, ...) for plays sorted by user, then time.

    A new session starts at each new user and after each gap longer than ``gap``
    seconds.

    Examples
    --------
    >>> t = np.array([0, 60, 4000, 4100, 0], dtype="datetime64[s]")
    >>> cut_sessions(np.array(["a", "a", "a", "a", "b"]), t).tolist()
    [0, 0, 1, 1, 2]
    """
    if not gap > 0:
        raise ParameterError(f"gap={gap!r} must be a positive number of seconds")
    users = np.asarray(users)
    seconds = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    new_user = np.r_[True, users[1:] != users[:-1]]
    if np.any(~new_user[1:] & (np.diff(seconds) < 0)):
        raise ParameterError("plays must be sorted by user, then time")
    new = new_user | np.r_[True, np.diff(seconds) > gap]
    return np.cumsum(new) - 1


@dataclass(frozen=True)
class HeldOutSession:
    """One test session: who, the seed tracks, and what they really played next."""

    user_id: str
    seeds: tuple[str, ...]
    continuation: tuple[str, ...]


@dataclass
class SessionSplit:
    train: ListeningLog
    sessions: list[HeldOutSession]
    params: dict[str, float | int]
    #: Sessions in the whole log, and users with an eligible held-out session.
    n_sessions: int
    n_eligible: int


def session_split(
    events: PlayEvents,
    *,
    gap: float = DEFAULT_GAP_SECONDS,
    n_seeds: int = 2,
    max_sessions: int | None = None,
    seed: int = 0,
    tracks: IdMap | None = None,
) -> SessionSplit:
    """Hold out each user's last session (with an earlier one and ``> n_seeds`` tracks).

    Parameters
    ----------
    events : PlayEvents
        Single plays (see :func:`musicrec.data.logs.read_play_events`).
    gap : float
        Seconds of silence that end a session.
    n_seeds : int
        Distinct tracks at the start of a held-out session given as seeds; the session
        needs at least one more distinct track to be held out.
    max_sessions : int, optional
        Test at most this many sessions, drawn with ``default_rng(seed)``.
    tracks : IdMap, optional
        The track id map of the training log (default: every track of ``events``).
    """
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ParameterError(f"n_seeds={n_seeds!r} must be a positive integer")
    if max_sessions is not None and max_sessions < 1:
        raise ParameterError(f"max_sessions={max_sessions!r} must be a positive integer")
    frame = events.frame
    session = cut_sessions(frame["user"].to_numpy(), frame["timestamp"].to_numpy(), gap=gap)
    users = frame["user"].to_numpy()
    track_ids = frame["track"].to_numpy()
    first_of_user = pd.Series(session).groupby(users, sort=False).transform("min").to_numpy()
    last_of_user = pd.Series(session).groupby(users, sort=False).transform("max").to_numpy()
    candidates = np.unique(session[(session == last_of_user) & (session > first_of_user)])
    held: list[HeldOutSession] = []
    starts = np.searchsorted(session, candidates, side="left")
    ends = np.searchsorted(session, candidates, side="right")
    for start, end in zip(starts, ends, strict=True):
        distinct = list(dict.fromkeys(track_ids[start:end].tolist()))
        if len(distinct) > n_seeds:
            held.append(HeldOutSession(str(users[start]), tuple(distinct[:n_seeds]),
                                       tuple(distinct[n_seeds:])))
    n_eligible = len(held)
    if not held:
        raise ParameterError(
            f"no user has two sessions (gap {gap / 60:g} min) with more than {n_seeds} "
            "distinct tracks in the last one: nothing to hold out")
    test_users = {s.user_id for s in held}
    if max_sessions is not None and len(held) > max_sessions:
        pick = np.sort(np.random.default_rng(seed).choice(len(held), max_sessions,
                                                          replace=False))
        held = [held[i] for i in pick]
    # every held-out-eligible session leaves training, tested or not, so a sample
    # does not change what the model learns from
    out = np.isin(users, list(test_users)) & (session == last_of_user)
    train_frame = frame.loc[~out, ["user", "track", "plays", "timestamp"]]
    all_users = IdMap.from_values(frame["user"].to_numpy(), kind="user")[0]
    track_map = tracks or IdMap.from_values(frame["track"].to_numpy(), kind="track")[0]
    train = ListeningLog.from_frame(train_frame, user_col="user", track_col="track",
                                    weight_col="plays", timestamp_col="timestamp",
                                    users=all_users, tracks=track_map,
                                    source=f"{events.report.source} (training sessions)")
    return SessionSplit(train, held, {"gap_seconds": float(gap), "n_seeds": n_seeds,
                                      "max_sessions": max_sessions or 0, "seed": seed},
                        n_sessions=int(session.max()) + 1 if len(session) else 0,
                        n_eligible=n_eligible)
