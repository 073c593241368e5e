"""Tracks' tag probabilities, and search by words through them (zero-shot).

A tagging embedder (musicnn) predicts 50 tags with every track's vector; the model
directory stores them as ``tags.npy`` (``[n_tracks, n_tags]``, a zero row for a track
without audio) with the tag names in the manifest. :class:`TagSearch` answers a text
query with no training: a text encoder (:mod:`musicrec.embedding.text`) embeds the query
and the tag names; for the whole query and for each of its words, a softmax over the
query-to-tag cosines (temperature ``tau``) gives tag weights, and a track scores the mean,
over the parts that match some tag, of its tag probabilities under those weights. A part
whose best cosine is below the encoder's threshold matches no tag; when no part matches,
the results are still ranked but flagged as a weak match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicrec.errors import ParameterError

#: Best query-to-tag cosine below which a part of the query matches no tag, per encoder.
#: Chosen on the MTT and MSD tag lists: unrelated words reach 0.45-0.52 with MiniLM
#: ("vibraphone" -> cello 0.47, "jazz" -> rock 0.50), related ones 0.59 and up ("calm" ->
#: quiet 0.59); WordLlama's cosines are lower throughout.
MATCH_THRESHOLD = {"minilm": 0.55, "wordllama": 0.45}
DEFAULT_TAU = 0.05
#: Words that say nothing about the sound.
STOPWORDS = frozenset({"a", "an", "and", "the", "with", "of", "for", "in", "on", "some", "music",
                       "song", "songs", "track", "tracks", "sound", "sounds", "sounding",
                       "like", "by", "to", "or", "very", "me", "play", "something"})
MAX_QUERY_CHARS = 200
#: A tag names a result in its reason when the track has it with at least this probability.
REASON_MIN_PROBABILITY = 0.2


@dataclass(frozen=True)
class TrackTags:
    """Tag probabilities of tracks: ``probabilities[i]`` belongs to ``track_ids[i]``."""

    track_ids: list[str]
    probabilities: np.ndarray
    names: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        shape = (len(self.track_ids), len(self.names))
        if np.shape(self.probabilities) != shape:
            raise ParameterError(f"tag probabilities have shape {np.shape(self.probabilities)}"
                                 f"; {shape} expected")

    def aligned(self, track_ids: Any) -> np.ndarray:
        """``[len(track_ids), n_tags]`` float32 in the order of ``track_ids`` (an
        :class:`~musicrec.data.idmap.IdMap`); zero rows for tracks without tags."""
        out = np.zeros((len(track_ids), len(self.names)), dtype=np.float32)
        if self.track_ids:
            out[track_ids.to_idx_many(self.track_ids)] = self.probabilities
        return out


@dataclass
class QueryPart:
    """One part of a query (the whole text, or one word) and the tags it matched."""

    text: str
    best_tag: str
    cosine: float
    matched: bool
    weights: np.ndarray = field(repr=False)

    def to_dict(self, names: list[str], top: int = 3) -> dict[str, Any]:
        order = np.argsort(-self.weights, kind="stable")[:top]
        return {"text": self.text, "best_tag": self.best_tag, "cosine": round(self.cosine, 4),
                "matched": self.matched,
                "tags": {names[i]: round(float(self.weights[i]), 4) for i in order
                         if self.weights[i] >= 0.01}}


@dataclass
class TextQuery:
    """How a query maps onto the tags: the tag weights tracks are scored with."""

    query: str
    parts: list[QueryPart]
    weights: np.ndarray  # [n_parts_used, n_tags]

    @property
    def weak(self) -> bool:
        """True when no part of the query matched a tag above the threshold."""
        return not any(p.matched for p in self.parts)


def query_parts(query: str) -> list[str]:
    """The whole query, then each of its words that is not a stop word (once each)."""
    words = [w for w in re.findall(r"[\w'-]+", query.lower()) if w not in STOPWORDS]
    parts = [" ".join(query.lower().split())]
    for w in words:
        if w not in parts:
            parts.append(w)
    return parts


class TagSearch:
    """Scores tracks' tag probabilities against text queries.

    Parameters
    ----------
    tag_names : list of str
        The tags (columns of the probabilities).
    encoder : TextEncoder
        Embeds queries and tag names (see :func:`~musicrec.embedding.text.get_text_encoder`).
    tau : float
        Softmax temperature over cosines; small values put the weight on the closest tags.
    threshold : float or None
        Best cosine a part needs to match a tag (default :data:`MATCH_THRESHOLD` of the
        encoder).

    Examples
    --------
    >>> search = TagSearch(["piano", "drums"], encoder)  # doctest: +SKIP
    >>> search.score("calm piano", probabilities)  # doctest: +SKIP
    """

    def __init__(self, tag_names: list[str], encoder: Any, *, tau: float = DEFAULT_TAU,
                 threshold: float | None = None) -> None:
        if not tag_names:
            raise ParameterError("tag_names must name at least one tag")
        if not isinstance(tau, int | float) or isinstance(tau, bool) or not 0 < tau <= 10:
            raise ParameterError(f"tau={tau!r} must be a number in (0, 10]")
        self.tag_names = list(tag_names)
        self.encoder = encoder
        self.tau = float(tau)
        self.threshold = (MATCH_THRESHOLD.get(encoder.name, 0.5) if threshold is None
                          else float(threshold))
        self._tags = encoder.encode([t.lower() for t in self.tag_names])

    def parse(self, query: str) -> TextQuery:
        """Map ``query`` onto tag weights."""
        if not isinstance(query, str) or not query.strip():
            raise ParameterError(f"q={query!r} must be a non-empty text")
        if len(query) > MAX_QUERY_CHARS:
            raise ParameterError(f"q has {len(query)} characters; at most {MAX_QUERY_CHARS} "
                                 "are allowed")
        texts = query_parts(query)
        cos = self.encoder.encode(texts) @ self._tags.T  # [n_parts, n_tags]
        logits = (cos - cos.max(axis=1, keepdims=True)) / self.tau
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
        parts = [QueryPart(t, self.tag_names[int(np.argmax(c))], float(c.max()),
                           bool(c.max() >= self.threshold), w)
                 for t, c, w in zip(texts, cos, weights, strict=True)]
        used = [i for i, p in enumerate(parts) if p.matched] or list(range(len(parts)))
        return TextQuery(query, parts, weights[used])

    def score(self, parsed: TextQuery, probabilities: np.ndarray) -> np.ndarray:
        """Each track's score in [0, 1]: the mean over parts of its weighted tag
        probabilities (``probabilities`` is ``[n_tracks, n_tags]``)."""
        probs = np.asarray(probabilities, dtype=np.float64)
        return (probs @ parsed.weights.T).mean(axis=1)

    def reasons(self, parsed: TextQuery, row: np.ndarray, top: int = 2) -> list[str]:
        """The query's tags this track carries (probability at least
        :data:`REASON_MIN_PROBABILITY`), strongest contribution first; else the strongest
        one with its probability, e.g. ``["drums (0.06)"]``."""
        weight = parsed.weights.mean(axis=0)
        contribution = weight * np.asarray(row, dtype=np.float64)
        order = np.argsort(-contribution, kind="stable")
        picked = [self.tag_names[i] for i in order[:top * 4]
                  if weight[i] >= 0.05 and row[i] >= REASON_MIN_PROBABILITY][:top]
        if picked:
            return picked
        best = int(order[0])  # no query tag is probable: say how weakly it is tagged
        return [f"{self.tag_names[best]} ({float(row[best]):.2f})"]
