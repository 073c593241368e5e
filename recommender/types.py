"""Result types shared by every recommender."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

#: Reason templates by kind; ``{because}`` is the track that explains the result.
REASONS = {
    "cf": "listeners of {because} also played this",
    "content": "sounds like {because}",
    "played-content": "sounds like {because}, which you played",
    "hybrid": "sounds like {because} and shares its listeners",
    "popular": "popular with listeners",
    "fingerprint": "same recording as {because}",
    "radio-content": "after {because}: sounds like it",
    "tags": "tagged {because}",
    "clap": "sounds like the words (CLAP)",
}


@dataclass(frozen=True)
class Recommendation:
    """One recommended track with its score and a short human-readable reason.

    ``because`` names the track that explains the result (a track the user played, or
    the seed; for ``kind="tags"``, the tags that matched a text query), and ``kind``
    which template of :data:`REASONS` renders it.
    """

    track_id: str
    score: float
    kind: str = "popular"
    because: str | None = None

    @property
    def reason(self) -> str:
        return self.describe()

    def describe(self, label: Callable[[str], str] | None = None) -> str:
        """The reason, with ``because`` rendered by ``label`` (e.g. a track title)."""
        because = self.because or ""
        if label is not None and self.because is not None and self.kind != "tags":
            because = label(self.because)
        return REASONS[self.kind].format(because=because)

    def labelled(self, label: Callable[[str], str]) -> dict[str, Any]:
        return {"track_id": self.track_id, "score": self.score, "reason": self.describe(label),
                "because": self.because}

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "score": self.score, "reason": self.reason,
                "because": self.because}

    def rescored(self, score: float) -> Recommendation:
        return replace(self, score=score)
