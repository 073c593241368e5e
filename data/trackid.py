"""Track identity for logs that name tracks by text (artist and title).

A listen that carries a MusicBrainz recording id (MBID) is identified by it. Otherwise
the track id is built from the artist and the title, each normalised so that spellings
of the same credit meet:

- Unicode compatibility forms are folded (NFKC: full-width letters, ligatures, composed
  and decomposed accents all become one form);
- case is folded (``casefold``: "Straße" and "STRASSE" meet);
- runs of whitespace become one space, and leading/trailing space goes;
- featured-artist credits are dropped: "A feat. B", "A ft. B", "A featuring B" and a title's
  "(feat. B)" or "[ft. B]" all lose the featured part (so does a name that has the word
  "featuring" in it: everything after the word goes).

Nothing else is merged: punctuation, "&" against "and", "The" prefixes, remaster or live
suffixes and misspellings stay distinct (map them with aliases), and a listen with an MBID
never meets one without.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

#: Between the normalised artist and title in a text track id: ``radiohead – creep``.
SEPARATOR = " – "

_FEAT = r"(?:feat\.?|ft\.|ft|featuring)"
_FEAT_BRACKETED = re.compile(rf"\s*[(\[]\s*{_FEAT}\s[^)\]]*[)\]]")
_FEAT_TAIL = re.compile(rf"\s+{_FEAT}\s.*$")
_MBID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalise(text: str) -> str:
    """The normalised form of an artist credit or a title (see the module docstring).

    Examples
    --------
    >>> normalise("  Daft  Punk feat. Pharrell Williams ")
    'daft punk'
    >>> normalise("Get Lucky (Feat. Pharrell)")
    'get lucky'
    >>> normalise("Ｂｅｙｏｎｃé")
    'beyoncé'
    """
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    stripped = _FEAT_TAIL.sub("", _FEAT_BRACKETED.sub("", folded)).strip()
    return stripped or folded


def text_track_id(artist: str, title: str) -> str:
    """The track id of an (artist, title) pair: ``normalise(artist) – normalise(title)``.

    Examples
    --------
    >>> text_track_id("Radiohead", "Creep")
    'radiohead – creep'
    """
    return f"{normalise(artist)}{SEPARATOR}{normalise(title)}"


def mbid(value: object) -> str | None:
    """A MusicBrainz id in canonical (lower-case) form, or None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if _MBID.match(value) else None


class TrackNamer:
    """Track ids of (artist, title, MBID) spellings, cached, with the names of each id.

    ``names[track_id]`` is ``(title, artist)`` as first spelt; :attr:`counts` counts the
    rows identified by MBID, by text for want of an MBID, and by text because the MBID
    given was malformed.
    """

    MBID, NO_MBID, BAD_MBID = 0, 1, 2

    def __init__(self) -> None:
        self.names: dict[str, tuple[str, str]] = {}
        self._ids: dict[tuple[str, str, str | None], tuple[str, int]] = {}

    def __call__(self, artist: str, title: str, raw_mbid: object = None) -> tuple[str, int]:
        """``(track_id, how)`` of one row; ``how`` is one of MBID, NO_MBID, BAD_MBID."""
        if not isinstance(raw_mbid, str):
            raw_mbid = None if raw_mbid is None else repr(raw_mbid)
        key = (artist, title, raw_mbid or None)
        known = self._ids.get(key)
        if known is not None:
            return known
        track = mbid(raw_mbid)
        how = self.MBID
        if track is None:
            track = text_track_id(artist, title)
            how = self.NO_MBID if not raw_mbid else self.BAD_MBID
        self._ids[key] = (track, how)
        if track not in self.names:
            self.names[track] = (title.strip(), artist.strip())
        return track, how

    def frame(self) -> pd.DataFrame:
        """The names as a catalogue frame ``track_id, title, artist``."""
        return pd.DataFrame([(t, title, artist) for t, (title, artist) in self.names.items()],
                            columns=["track_id", "title", "artist"])
