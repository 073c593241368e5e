"""Simulated listeners: a documented generative model of who plays what, and when.

The model (all draws from one ``numpy.random.Generator``):

1. **Track popularity.** Each track gets a latent popularity
   ``q_t = exp(sigma_pop * z_t)``, ``z_t ~ N(0, 1)`` (lognormal, ``sigma_pop = 1.5``):
   a long tail where the top 10 % of tracks draw about half of the plays.
2. **Tastes.** Each user ``u`` has a taste over styles ``theta_u ~ Dirichlet(alpha_style)``
   (``alpha_style = 0.3``: most users love one or two styles) and 1-3 favourite artists,
   drawn from the artists of their top styles in proportion to ``theta_u`` and the
   artist's total popularity.
3. **Activity.** A user is *light* with probability ``p_light = 0.3`` and then has
   ``1 + Poisson(1)`` sessions; otherwise ``1 + Poisson(lambda_u)`` sessions with
   ``lambda_u ~ Lognormal(log(11), 0.6)``. A session holds ``1 + Poisson(4)`` plays.
4. **Sessions.** Each session starts at a uniform random time in the ``days``-day window
   (default 180 days from 2024-01-01 UTC) and picks a *session style* ``s ~ theta_u``.
   Each play of it is, with probability ``p_fav = 0.25``, a track by one of the user's
   favourite artists; with probability ``p_explore = 0.05``, any track; otherwise a track
   of the session style. Within each pool a track is drawn in proportion to ``q_t``.
   Consecutive plays are 2-6 minutes apart.
5. **Log rows.** Plays of the same track in the same session are merged into one row
   ``(user, track, timestamp of the first, plays)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from musicrec.errors import ParameterError

log = logging.getLogger(__name__)

#: Start of the simulated listening window.
EPOCH = pd.Timestamp("2024-01-01T00:00:00Z")


@dataclass(frozen=True)
class ListenerModel:
    """Parameters of the listener simulation (see the module docstring)."""

    sigma_pop: float = 1.5
    alpha_style: float = 0.3
    max_favourite_artists: int = 3
    p_light: float = 0.3
    light_sessions: float = 1.0
    sessions_median: float = 11.0
    sessions_sigma: float = 0.6
    session_plays: float = 4.0
    p_fav: float = 0.25
    p_explore: float = 0.05
    days: int = 180

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class Simulation:
    """The simulated logs and the ground truth they were drawn from."""

    plays: pd.DataFrame
    users: pd.DataFrame
    tastes: pd.DataFrame
    popularity: np.ndarray
    styles: list[str]
    model: ListenerModel = field(default_factory=ListenerModel)


def simulate_listeners(
    *,
    track_ids: list[str],
    styles: list[str],
    artists: list[str],
    n_users: int,
    rng: np.random.Generator,
    model: ListenerModel | None = None,
) -> Simulation:
    """Simulate ``n_users`` listeners of a catalogue.

    Parameters
    ----------
    track_ids, styles, artists : list of str [length n_tracks]
        The catalogue: each track's id, style and artist.
    n_users : int
        Number of users (ids ``u00000``, ``u00001``, ...).
    rng : numpy.random.Generator
        The only source of randomness.
    model : ListenerModel, optional
        Parameters; the defaults give about 48 plays per user.

    Returns
    -------
    Simulation
        ``plays`` has columns ``user, track, timestamp, plays`` sorted by user then time;
        ``users`` has ``user, light, n_sessions, top_style, favourite_artists``;
        ``tastes`` has one row per user and one column per style.

    Examples
    --------
    >>> sim = simulate_listeners(track_ids=["a", "b"], styles=["x", "y"], artists=["p", "q"],
    ...                          n_users=3, rng=np.random.default_rng(0))
    >>> list(sim.plays.columns)
    ['user', 'track', 'timestamp', 'plays']
    """
    model = model or ListenerModel()
    n_tracks = len(track_ids)
    if n_tracks == 0:
        raise ParameterError("the catalogue has no tracks to simulate listeners for")
    if not (len(styles) == len(artists) == n_tracks):
        raise ParameterError("track_ids, styles and artists must have the same length")
    if n_users < 1:
        raise ParameterError(f"n_users={n_users} must be at least 1")

    style_names = sorted(set(styles))
    artist_names = sorted(set(artists))
    track_style = np.array([style_names.index(s) for s in styles])
    artist_index = {a: i for i, a in enumerate(artist_names)}
    track_artist = np.array([artist_index[a] for a in artists])
    n_styles, n_artists = len(style_names), len(artist_names)

    popularity = np.exp(model.sigma_pop * rng.standard_normal(n_tracks))
    style_pools = [np.flatnonzero(track_style == s) for s in range(n_styles)]
    artist_pools = [np.flatnonzero(track_artist == a) for a in range(n_artists)]
    artist_pop = np.bincount(track_artist, weights=popularity, minlength=n_artists)
    artist_style = np.zeros((n_artists, n_styles))
    np.add.at(artist_style, (track_artist, track_style), popularity)
    all_tracks = np.arange(n_tracks)

    def draw(pool: np.ndarray, size: int) -> np.ndarray:
        weights = popularity[pool]
        return pool[rng.choice(len(pool), size=size, p=weights / weights.sum())]

    tastes = rng.dirichlet(np.full(n_styles, model.alpha_style), size=n_users)
    light = rng.random(n_users) < model.p_light
    lam = np.exp(np.log(model.sessions_median) + model.sessions_sigma
                 * rng.standard_normal(n_users))
    n_sessions = 1 + np.where(light, rng.poisson(model.light_sessions, n_users),
                              rng.poisson(lam))
    window = model.days * 86400.0

    user_rows = []
    columns: dict[str, list[np.ndarray]] = {"user": [], "track": [], "time": [], "session": []}
    session_counter = 0
    for u in range(n_users):
        theta = tastes[u]
        # Favourite artists: weighted by the user's taste for their styles and their pull.
        affinity = artist_style @ theta
        if affinity.sum() <= 0:
            affinity = artist_pop
        affinity = affinity / affinity.sum()
        n_fav = int(rng.integers(1, model.max_favourite_artists + 1))
        n_fav = min(n_fav, int(np.count_nonzero(affinity)))
        favs = rng.choice(n_artists, size=n_fav, replace=False, p=affinity)
        fav_pool = np.concatenate([artist_pools[a] for a in favs])

        starts = np.sort(rng.random(n_sessions[u]) * window)
        for start in starts:
            k = 1 + int(rng.poisson(model.session_plays))
            style = int(rng.choice(n_styles, p=theta))
            kind = rng.random(k)
            tracks = np.empty(k, dtype=np.int64)
            is_fav = kind < model.p_fav
            is_exp = (kind >= model.p_fav) & (kind < model.p_fav + model.p_explore)
            is_sty = ~(is_fav | is_exp)
            if is_fav.any():
                tracks[is_fav] = draw(fav_pool, int(is_fav.sum()))
            if is_exp.any():
                tracks[is_exp] = draw(all_tracks, int(is_exp.sum()))
            if is_sty.any():
                pool = style_pools[style]
                tracks[is_sty] = draw(pool, int(is_sty.sum()))
            gaps = rng.uniform(120.0, 360.0, size=k)
            gaps[0] = 0.0
            columns["user"].append(np.full(k, u))
            columns["track"].append(tracks)
            columns["time"].append(start + np.cumsum(gaps))
            columns["session"].append(np.full(k, session_counter))
            session_counter += 1
        user_rows.append((
            f"u{u:05d}", bool(light[u]), int(n_sessions[u]), style_names[int(np.argmax(theta))],
            "|".join(artist_names[a] for a in sorted(favs)),
        ))

    events = pd.DataFrame({key: np.concatenate(v) for key, v in columns.items()})
    rows = (events.groupby(["session", "track"], sort=False)
            .agg(user=("user", "first"), time=("time", "min"), plays=("time", "size"))
            .reset_index())
    rows = rows.sort_values(["user", "time", "track"], kind="stable")
    seconds = np.floor(rows["time"].to_numpy()).astype("int64")
    plays = pd.DataFrame({
        "user": [f"u{u:05d}" for u in rows["user"]],
        "track": [track_ids[t] for t in rows["track"]],
        "timestamp": (EPOCH + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "plays": rows["plays"].to_numpy(dtype=np.int64),
    })
    users = pd.DataFrame(user_rows, columns=["user", "light", "n_sessions", "top_style",
                                             "favourite_artists"])
    taste_frame = pd.DataFrame(tastes, columns=style_names)
    taste_frame.insert(0, "user", users["user"])
    log.info("simulated %d users, %d log rows, %d plays", n_users, len(plays),
             int(plays["plays"].sum()))
    return Simulation(plays=plays.reset_index(drop=True), users=users, tastes=taste_frame,
                      popularity=popularity, styles=style_names, model=model)
