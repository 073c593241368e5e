"""The simulated listeners of the demo dataset: long tail, tastes, light users, seeding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musicrec.data.demo import simulate_listeners
from musicrec.errors import ParameterError


def _catalogue(n: int) -> tuple[list[str], list[str], list[str]]:
    return ([f"t{i}" for i in range(n)], [f"style{i % 7}" for i in range(n)],
            [f"artist{i % 50}" for i in range(n)])


@pytest.fixture(scope="module")
def simulation():  # type: ignore[no-untyped-def]
    ids, styles, artists = _catalogue(1000)
    return simulate_listeners(track_ids=ids, styles=styles, artists=artists, n_users=1000,
                              rng=np.random.default_rng(7))


def test_popularity_is_long_tailed(simulation) -> None:  # type: ignore[no-untyped-def]
    per_track = simulation.plays.groupby("track")["plays"].sum().sort_values(ascending=False)
    total = per_track.sum()
    top = per_track.iloc[:100].sum()  # top 10 % of 1,000 tracks
    assert top / total >= 0.40


def test_users_play_their_simulated_tastes(simulation) -> None:  # type: ignore[no-untyped-def]
    plays = simulation.plays
    style_of = {f"t{i}": f"style{i % 7}" for i in range(1000)}
    plays = plays.assign(style=plays["track"].map(style_of))
    base = plays.groupby("style")["plays"].sum() / plays["plays"].sum()
    top = simulation.users.set_index("user")["top_style"]
    per_user = plays.groupby("user").apply(
        lambda g: g.loc[g["style"] == top[g.name], "plays"].sum() / g["plays"].sum(),
        include_groups=False)
    base_rate = top.loc[per_user.index].map(base)
    # on average a user's top style takes several times its share of all plays
    assert per_user.mean() >= 0.35, per_user.mean()
    lift = (per_user / base_rate.to_numpy()).median()
    assert lift >= 2.5, lift
    # and light users exist and listen lightly
    n = plays.groupby("user")["plays"].sum()
    light = simulation.users.set_index("user")["light"]
    assert n[light[light].index].median() * 3 < n[light[~light].index].median()


def test_simulation_is_seeded() -> None:
    ids, styles, artists = _catalogue(30)
    a = simulate_listeners(track_ids=ids, styles=styles, artists=artists, n_users=20,
                           rng=np.random.default_rng(1))
    b = simulate_listeners(track_ids=ids, styles=styles, artists=artists, n_users=20,
                           rng=np.random.default_rng(1))
    c = simulate_listeners(track_ids=ids, styles=styles, artists=artists, n_users=20,
                           rng=np.random.default_rng(2))
    pd.testing.assert_frame_equal(a.plays, b.plays)
    assert not a.plays.equals(c.plays)
    with pytest.raises(ParameterError, match="n_users=0 must be at least 1"):
        simulate_listeners(track_ids=ids, styles=styles, artists=artists, n_users=0,
                           rng=np.random.default_rng(1))
