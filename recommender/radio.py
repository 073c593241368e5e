"""Radio: an endless, varied playlist from seeds, continued page by page.

:meth:`musicrec.recommender.facade.Recommender.radio` calls :func:`play`. A radio starts
from seeds (tracks, an artist's tracks, or a user's most played tracks) and picks one
track at a time. With ``sim(a, b) = alpha * cos(c_a, c_b) + (1 - alpha) * cf(a, b)``, the
similarity of :meth:`~musicrec.recommender.facade.Recommender.similar` ("sounds like" and
"listeners also played"; ``cf`` is the chosen model's similarity to ``a``, scaled so that
``a``'s closest track scores 1, or the CF cosine on a model without one; see
:mod:`musicrec.recommender.similarity`):

* **relevance** of a candidate ``j`` is ``seed_weight * mean_s sim(j, s)`` over the seeds
  plus ``(1 - seed_weight) * sum_k w_k sim(j, r_k)`` over the ``recent`` tracks played last
  (weights ``1, 1/2, 1/4, ...``, normalised): close to the seeds and to what just played;
  plus ``popularity * log1p(listeners_j) / log1p(max listeners)``, a prior for tracks
  many listeners played;
* **variety** is maximal marginal relevance (Carbonell and Goldstein, 1998): the pick
  maximises ``(1 - variety) * relevance - variety * max_m sim(j, m)`` over the ``memory``
  tracks played last, so ``variety=0`` is "most similar next" and higher values spread out;
* **rules**: no track twice (seeds included), no artist twice within ``artist_window``
  consecutive tracks (seeds count as played before the first pick);
* **bounded drift**: candidates are only the ``reach`` tracks most similar to the seeds,
  so however long it plays, the radio never leaves the seeds' neighbourhood; it ends
  (``exhausted``) when the rules leave no candidate there;
* **determinism**: Gumbel noise of scale ``temperature`` drawn from
  ``default_rng([seed, position])`` breaks near-ties, so one seed number always gives
  the same radio, and a continued radio equals one long call.

Each item's reason names the seed or recent track whose similarity to it stands out most
(above that similarity's mean over the candidates), and whether sound or listeners
stand out more.

The whole state fits in a :class:`RadioState`, which :meth:`RadioState.to_cursor`
turns into a URL-safe string for the API.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from musicrec.errors import ParameterError, UnknownIdError
from musicrec.recommender.types import Recommendation

if TYPE_CHECKING:
    from musicrec.recommender.facade import Recommender

#: Seeds taken from an artist's tracks or a user's history (most listened first).
MAX_DERIVED_SEEDS = 5
#: Most explicit seed tracks accepted.
MAX_SEEDS = 50
CURSOR_VERSION = 1


class UnknownArtistError(UnknownIdError):
    kind = "artist"


@dataclass(frozen=True)
class RadioParams:
    """The knobs of a radio (see the module docstring).

    ``variety``, ``seed_weight`` and ``popularity`` were chosen on validation sessions of
    the demo dataset (``benchmarks/bench_radio.py``; the README has the numbers).
    """

    alpha: float | None = None
    variety: float = 0.1
    seed_weight: float = 0.9
    recent: int = 3
    memory: int = 10
    artist_window: int = 4
    reach: int = 300
    temperature: float = 0.01
    popularity: float = 0.5
    seed: int = 0

    def validate(self) -> RadioParams:
        for name, low, high in (("variety", 0.0, 1.0), ("seed_weight", 0.0, 1.0),
                                ("temperature", 0.0, 1.0), ("popularity", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not low <= value <= high:
                raise ParameterError(f"{name}={value!r} must be a number from {low:g} to "
                                     f"{high:g}")
        for name, low, high in (("recent", 1, 100), ("memory", 0, 1000),
                                ("artist_window", 1, 1000), ("reach", 1, 100_000),
                                ("seed", 0, 2**32 - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ParameterError(f"{name}={value!r} must be an integer from {low} to "
                                     f"{high}")
        return self


@dataclass(frozen=True)
class RadioState:
    """Everything needed to continue a radio: seeds, what it played, its parameters."""

    seeds: tuple[str, ...]
    played: tuple[str, ...] = ()
    params: RadioParams = field(default_factory=RadioParams)
    #: How the seeds were chosen, for display ("tracks", "artist NAME", "user ID").
    source: str = "tracks"

    def to_cursor(self) -> str:
        """A URL-safe string (zlib-compressed JSON) that :meth:`from_cursor` reads back."""
        payload = {"v": CURSOR_VERSION, "seeds": list(self.seeds), "played": list(self.played),
                   "params": asdict(self.params), "source": self.source}
        raw = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 9)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str) -> RadioState:
        """Read a cursor; anything that is not one raises :class:`ParameterError`."""
        def bad(why: str) -> ParameterError:
            shown = cursor if len(cursor) <= 40 else cursor[:37] + "..."
            return ParameterError(f"cursor={shown!r} is not a radio cursor ({why})")

        if not isinstance(cursor, str) or not cursor or len(cursor) > 1_000_000:
            raise bad("empty or too long")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload = json.loads(zlib.decompressobj().decompress(raw, 10_000_000))
        except (binascii.Error, ValueError, zlib.error):
            raise bad("not base64 of compressed JSON") from None
        if not isinstance(payload, dict) or payload.get("v") != CURSOR_VERSION:
            raise bad("unknown version")
        seeds, played = payload.get("seeds"), payload.get("played")
        params, source = payload.get("params"), payload.get("source", "tracks")
        if not (isinstance(seeds, list) and isinstance(played, list)
                and all(isinstance(t, str) for t in seeds + played)
                and isinstance(params, dict) and isinstance(source, str) and seeds):
            raise bad("malformed fields")
        try:
            radio_params = RadioParams(**params).validate()
        except TypeError:
            raise bad("unknown parameters") from None
        return cls(tuple(seeds), tuple(played), radio_params, source)


@dataclass
class RadioPage:
    """One page of a radio: its tracks and the state to continue from."""

    items: list[Recommendation]
    state: RadioState
    #: True when the rules leave no further track within the radio's reach.
    exhausted: bool = False

    @property
    def cursor(self) -> str:
        return self.state.to_cursor()


def start_state(
    rec: Recommender,
    seeds: Sequence[str] = (),
    *,
    artist: str | None = None,
    user: str | None = None,
    params: RadioParams,
) -> RadioState:
    """The initial state: explicit seed tracks, else an artist's, else a user's."""
    seeds = list(seeds)
    if len(seeds) > MAX_SEEDS:
        raise ParameterError(f"{len(seeds)} seed tracks; at most {MAX_SEEDS} are allowed")
    for t in seeds:
        rec.tracks.to_idx(t)  # raises UnknownTrackError naming it
    source = "tracks"
    if artist is not None:
        seeds += [t for t in artist_tracks(rec, artist) if t not in seeds]
        source = f"artist {artist}"
    if user is not None and not seeds:
        seeds = user_tracks(rec, user)
        source = f"user {user}"
    elif user is not None:
        user_tracks(rec, user)  # an unknown user is an error even with other seeds
    if not seeds:
        raise ParameterError("a radio needs seeds: give seed tracks, an artist or a user")
    return RadioState(tuple(dict.fromkeys(seeds)), (), params.validate(), source)


def artist_tracks(rec: Recommender, artist: str) -> list[str]:
    """The artist's tracks (case-insensitive name), most listened first."""
    wanted = artist.strip().casefold()
    rows = np.flatnonzero([str(a).casefold() == wanted and wanted != ""
                           for a in rec.artist_of])
    if len(rows) == 0:
        raise UnknownArtistError(artist)
    order = rows[np.lexsort((rows, -np.asarray(rec.evidence)[rows]))]
    return rec.tracks.to_ids(order[:MAX_DERIVED_SEEDS])


def user_tracks(rec: Recommender, user: str) -> list[str]:
    """The user's most played tracks (the model keeps no play times)."""
    cf = rec._require_cf("start a radio from a user")
    u = cf.users_.to_idx(user)
    ui = cf.user_items_
    tracks = ui.indices[ui.indptr[u] : ui.indptr[u + 1]].astype(np.int64)
    plays = ui.data[ui.indptr[u] : ui.indptr[u + 1]]
    order = tracks[np.lexsort((tracks, -plays))]
    return rec.tracks.to_ids(order[:MAX_DERIVED_SEEDS])


def play(rec: Recommender, state: RadioState, n: int) -> RadioPage:
    """The next ``n`` tracks of the radio in ``state``, and the state after them."""
    p = state.params
    alpha = rec._alpha(p.alpha)
    seeds = rec.tracks.to_idx_many(state.seeds).astype(np.int64)
    played = rec.tracks.to_idx_many(state.played).astype(np.int64)
    rows: dict[int, np.ndarray | None] = {}  # the chosen model's row of each anchor
    pool = _pool(rec, seeds, alpha, p.reach, rows)
    seed_content, seed_cf = rec.blend_parts(pool, seeds, cache=rows)
    seed_sim = (alpha * seed_content + (1 - alpha) * seed_cf).mean(axis=1)
    prior = np.zeros(len(pool))
    if p.popularity > 0 and len(pool):
        listeners = np.log1p(np.asarray(rec.evidence, dtype=np.float64))
        prior = p.popularity * listeners[pool] / max(float(listeners.max()), 1e-12)
    history = np.concatenate([seeds, played])  # seeds play "before" the radio
    used = np.zeros(len(rec.tracks), dtype=bool)
    used[history] = True
    artists = rec.artist_of
    items: list[Recommendation] = []
    exhausted = False
    for _ in range(n):
        position = len(history) - len(seeds)
        recent = history[::-1][: p.recent]
        weights = 0.5 ** np.arange(len(recent))
        weights /= weights.sum()
        recent_content, recent_cf = rec.blend_parts(pool, recent, cache=rows)
        recent_part = (alpha * recent_content + (1 - alpha) * recent_cf) * weights
        relevance = p.seed_weight * seed_sim + (1 - p.seed_weight) * recent_part.sum(axis=1)
        relevance = relevance + prior
        mmr = (1 - p.variety) * relevance
        radio_played = history[len(seeds):]
        memory = radio_played[::-1][: p.memory]
        if len(memory) and p.variety > 0:
            mem_content, mem_cf = rec.blend_parts(pool, memory, cache=rows)
            mmr = mmr - p.variety * (alpha * mem_content + (1 - alpha) * mem_cf).max(axis=1)
        if p.temperature > 0:
            rng = np.random.default_rng([p.seed, position])
            mmr = mmr + p.temperature * rng.gumbel(size=len(pool))
        window = {artists[t] for t in history[::-1][: p.artist_window - 1] if artists[t]}
        allowed = ~used[pool] & np.array([artists[t] not in window for t in pool], dtype=bool)
        if not allowed.any():
            exhausted = True
            break
        best = int(np.flatnonzero(allowed)[np.argmax(mmr[allowed])])
        pick = int(pool[best])
        # what stands out: each part's similarity above its mean over the pool
        items.append(_explain(
            rec, pick, float(relevance[best]), alpha, p.seed_weight, seeds,
            seed_content[best] - seed_content.mean(axis=0),
            seed_cf[best] - seed_cf.mean(axis=0), recent, weights,
            recent_content[best] - recent_content.mean(axis=0),
            recent_cf[best] - recent_cf.mean(axis=0)))
        used[pick] = True
        history = np.append(history, pick)
    new_state = replace(state, played=state.played + tuple(r.track_id for r in items))
    return RadioPage(items, new_state, exhausted)


def _pool(rec: Recommender, seeds: np.ndarray, alpha: float, reach: int,
          rows: dict[int, np.ndarray | None]) -> np.ndarray:
    """The ``reach`` tracks most similar to the seeds (seeds excluded), by track index:
    candidates as :meth:`Recommender.similar` finds them, for every seed (``rows``
    caches the chosen model's row of each)."""
    from musicrec.recommender.facade import CANDIDATES_PER_RESULT, MIN_CANDIDATES

    k = max(MIN_CANDIDATES, reach + CANDIDATES_PER_RESULT)
    for s in seeds.tolist():
        rows[s] = rec._cf_row(s, alpha)
    cand = rec._similar_candidates(seeds, [rows[s] for s in seeds.tolist()], alpha, k)
    cand = cand[~np.isin(cand, seeds)]
    if len(cand) == 0:
        return cand
    content, cf = rec.blend_parts(cand, seeds, cache=rows)
    sim = (alpha * content + (1 - alpha) * cf).mean(axis=1)
    top = cand[np.lexsort((cand, -sim))[:reach]]
    return np.sort(top)


def _explain(rec: Recommender, pick: int, score: float, alpha: float, seed_weight: float,
             seeds: np.ndarray, seed_content: np.ndarray, seed_cf: np.ndarray,
             recent: np.ndarray, weights: np.ndarray, recent_content: np.ndarray,
             recent_cf: np.ndarray) -> Recommendation:
    """The anchor (seed or recent track) whose similarity stands out most, and whether
    sound or listeners stand out more (similarities are given above their pool means, so
    a "sounds like" is not claimed from the high cosines every track of a catalogue may
    share in an embedding space)."""
    anchors = np.concatenate([seeds, recent])
    share = np.concatenate([np.full(len(seeds), seed_weight / len(seeds)),
                            (1 - seed_weight) * weights])
    content = alpha * np.concatenate([seed_content, recent_content])
    cf = (1 - alpha) * np.concatenate([seed_cf, recent_cf])
    best = int(np.argmax(share * (content + cf)))
    anchor = rec.tracks.to_id(int(anchors[best]))
    if alpha == 0 or (alpha < 1 and content[best] < cf[best]):
        kind = "cf"
    else:
        after = best >= len(seeds) and anchors[best] not in seeds
        kind = "radio-content" if after else "content"
    return Recommendation(rec.tracks.to_id(pick), score, kind, anchor)


def describe_state(state: RadioState) -> dict[str, Any]:
    """A JSON-friendly summary of a state (for the CLI and the API)."""
    return {"seeds": list(state.seeds), "source": state.source, "played": len(state.played),
            "params": asdict(state.params)}
