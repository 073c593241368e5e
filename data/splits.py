"""Train/test splits of a listening log for offline evaluation.

Every split keeps the id maps of the full log, so train and test indices align, and
every split is a partition: each interaction lands in exactly one of train and test.
Randomness comes from ``numpy.random.default_rng(seed)`` only; the default seed is 0
everywhere, so a split is repeatable unless a caller changes it.

========================  ==================================================================
protocol                  what it holds out (defaults)
========================  ==================================================================
``random-holdout``        ``round(fraction * n)`` random items of each user with
                          ``n >= min_history`` items (fraction 0.2, min_history 5, seed 0)
``leave-last-out``        each user's latest item (users with >= 2 items); needs timestamps
``temporal``              every interaction at or after the global ``1 - fraction`` time
                          quantile (fraction 0.2); needs timestamps
``cold-tracks``           every play of a random ``fraction`` of the tracks with >= 2
                          listeners (fraction 0.1, seed 0)
========================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from musicrec.data.logs import ListeningLog
from musicrec.errors import DataFormatError, ParameterError

PROTOCOLS = ("random-holdout", "leave-last-out", "temporal", "cold-tracks")


@dataclass
class Split:
    train: ListeningLog
    test: ListeningLog
    protocol: str
    params: dict[str, float | int | str]
    #: Track indices held out entirely (``cold-tracks`` only).
    cold_tracks: np.ndarray | None = None

    @property
    def test_users(self) -> np.ndarray:
        return np.unique(self.test.user_idx)

    def fingerprint(self) -> str:
        """A sha256 that identifies the split: the protocol, its parameters, and the
        training and test logs (:meth:`ListeningLog.fingerprint`)."""
        import hashlib
        import json

        digest = hashlib.sha256()
        digest.update(json.dumps({"protocol": self.protocol, "params": self.params},
                                 sort_keys=True, default=str).encode())
        digest.update(self.train.fingerprint().encode())
        digest.update(self.test.fingerprint().encode())
        if self.cold_tracks is not None:
            digest.update(np.sort(np.asarray(self.cold_tracks, dtype=np.int64)).tobytes())
        return digest.hexdigest()

    def test_frame(self) -> pd.DataFrame:
        """The held-out pairs as raw ids (``user_id``, ``track_id``, ``plays``)."""
        return pd.DataFrame({"user_id": self.test.users.to_ids(self.test.user_idx),
                             "track_id": self.test.tracks.to_ids(self.test.track_idx),
                             "plays": self.test.plays})


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise ParameterError(f"fraction={fraction} must lie strictly between 0 and 1")


def _need_timestamps(log: ListeningLog, protocol: str) -> np.ndarray:
    if log.timestamp is None:
        raise DataFormatError(
            log.report.source,
            f"protocol {protocol!r} needs timestamps, and this log has none; "
            "map a timestamp column (--timestamp-col) or use random-holdout",
        )
    return log.timestamp


def random_holdout(
    log: ListeningLog, *, fraction: float = 0.2, min_history: int = 5, seed: int = 0
) -> Split:
    """Hold out ``round(fraction * n)`` random items of each user with ``n >= min_history``.

    Users with fewer items stay wholly in training.
    """
    _check_fraction(fraction)
    if min_history < 2:
        raise ParameterError(f"min_history={min_history} must be at least 2")
    rng = np.random.default_rng(seed)
    order = np.argsort(log.user_idx, kind="stable")
    counts = np.bincount(log.user_idx, minlength=log.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    test = np.zeros(len(log), dtype=bool)
    for user in np.flatnonzero(counts >= min_history):
        n = int(counts[user])
        k = int(round(fraction * n))
        if k == 0:
            continue
        rows = order[starts[user] : starts[user] + n]
        test[rng.choice(rows, size=k, replace=False)] = True
    return Split(log.subset(~test), log.subset(test), "random-holdout",
                 {"fraction": fraction, "min_history": min_history, "seed": seed})


def leave_last_out(log: ListeningLog, *, min_history: int = 2) -> Split:
    """Hold out each user's most recent item (ties broken by track index)."""
    stamps = _need_timestamps(log, "leave-last-out")
    order = np.lexsort((log.track_idx, stamps, log.user_idx))
    users = log.user_idx[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = users[:-1] != users[1:]
    counts = np.bincount(log.user_idx, minlength=log.n_users)
    eligible = counts[users] >= min_history
    test = np.zeros(len(log), dtype=bool)
    test[order[last & eligible]] = True
    return Split(log.subset(~test), log.subset(test), "leave-last-out",
                 {"min_history": min_history})


def temporal(log: ListeningLog, *, fraction: float = 0.2) -> Split:
    """Hold out the latest ``fraction`` of interactions, by a single global cut-off time."""
    _check_fraction(fraction)
    stamps = _need_timestamps(log, "temporal")
    cutoff = np.quantile(stamps.astype(np.int64), 1 - fraction, method="higher")
    test = stamps.astype(np.int64) >= cutoff
    if test.all() or not test.any():
        raise DataFormatError(log.report.source,
                              "all timestamps are equal: a temporal split is impossible")
    return Split(log.subset(~test), log.subset(test), "temporal",
                 {"fraction": fraction, "cutoff": str(np.datetime64(int(cutoff), "s"))})


def cold_tracks(
    log: ListeningLog, *, fraction: float = 0.1, min_listeners: int = 2, seed: int = 0,
    candidates: np.ndarray | None = None,
) -> Split:
    """Hold out every play of a random ``fraction`` of the tracks.

    Only tracks with at least ``min_listeners`` listeners (and, when given, among
    ``candidates``, e.g. the tracks that have content vectors) are eligible.
    """
    _check_fraction(fraction)
    rng = np.random.default_rng(seed)
    listeners = np.bincount(log.track_idx, minlength=log.n_tracks)
    eligible = listeners >= min_listeners
    if candidates is not None:
        mask = np.zeros(log.n_tracks, dtype=bool)
        mask[np.asarray(candidates, dtype=np.int64)] = True
        eligible &= mask
    pool = np.flatnonzero(eligible)
    k = int(round(fraction * len(pool)))
    if k == 0:
        raise ParameterError(
            f"no track can be held out: {len(pool)} tracks have >= {min_listeners} listeners")
    cold = np.sort(rng.choice(pool, size=k, replace=False))
    test = np.isin(log.track_idx, cold)
    return Split(log.subset(~test), log.subset(test), "cold-tracks",
                 {"fraction": fraction, "min_listeners": min_listeners, "seed": seed},
                 cold_tracks=cold)


#: Default ``fraction`` of each protocol (leave-last-out holds out one item per user).
DEFAULT_FRACTION: dict[str, float] = {
    "random-holdout": 0.2, "temporal": 0.2, "cold-tracks": 0.1,
}


def make_split(
    log: ListeningLog,
    *,
    protocol: str,
    fraction: float | None = None,
    min_history: int | None = None,
    seed: int = 0,
    candidates: np.ndarray | None = None,
) -> Split:
    """Split ``log`` with the named protocol (see the table in this module's docstring).

    Parameters
    ----------
    log : ListeningLog
    protocol : {"random-holdout", "leave-last-out", "temporal", "cold-tracks"}
    fraction : float, optional
        Held-out share; ``None`` takes :data:`DEFAULT_FRACTION` (ignored by leave-last-out).
    min_history : int, optional
        Users (random-holdout, leave-last-out) or tracks (``min_listeners`` of
        cold-tracks) need at least this many interactions to be held out from;
        ``None`` takes each protocol's default.
    seed : int
        Seed of the random protocols.
    candidates : np.ndarray, optional
        cold-tracks only: the tracks that may be held out (e.g. those with content).

    Raises
    ------
    ParameterError
        An unknown protocol, or a split whose test set is empty.
    DataFormatError
        A timestamp protocol on a log without timestamps.
    """
    if protocol not in PROTOCOLS:
        raise ParameterError(f"protocol={protocol!r} must be one of {list(PROTOCOLS)}")
    frac = DEFAULT_FRACTION.get(protocol, 0.0) if fraction is None else fraction
    if protocol == "random-holdout":
        split = random_holdout(log, fraction=frac, seed=seed,
                               min_history=5 if min_history is None else min_history)
    elif protocol == "leave-last-out":
        split = leave_last_out(log, min_history=2 if min_history is None else min_history)
    elif protocol == "temporal":
        split = temporal(log, fraction=frac)
    else:
        split = cold_tracks(log, fraction=frac, seed=seed, candidates=candidates,
                            min_listeners=2 if min_history is None else min_history)
    if len(split.test) == 0:
        raise ParameterError(
            f"the {protocol} split of {log.report.source} has an empty test set "
            f"({log.n_users} users, {len(log)} interactions, parameters {split.params}); "
            "lower --min-history or raise --fraction")
    return split
