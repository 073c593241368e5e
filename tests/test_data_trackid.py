"""Track identity from text: what the normalisation merges, and what it leaves apart."""

from __future__ import annotations

import pytest

from musicrec.data.trackid import TrackNamer, mbid, normalise, text_track_id


@pytest.mark.parametrize(("spellings", "expected"), [
    (["Daft Punk", "DAFT PUNK", "  daft\tpunk ", "Daft Punk feat. Pharrell",
      "Daft Punk ft. Pharrell", "Daft Punk Featuring Pharrell", "Daft Punk feat Pharrell"],
     "daft punk"),
    (["Get Lucky", "Get Lucky (feat. Pharrell Williams)", "Get Lucky [Ft. Pharrell]",
      "GET LUCKY (FEATURING PHARRELL)"], "get lucky"),
    (["Beyoncé", "Beyonce\u0301", "ＢＥＹＯＮＣÉ"], "beyoncé"),      # NFKC + case
    (["Straße", "STRASSE"], "strasse"),                              # casefold
    (["ﬁve", "five"], "five"),                                        # ligature
])
def test_spellings_that_meet(spellings: list[str], expected: str) -> None:
    assert {normalise(s) for s in spellings} == {expected}


@pytest.mark.parametrize(("a", "b"), [
    ("Beyoncé", "Beyonce"),
    ("Simon & Garfunkel", "Simon and Garfunkel"),
    ("The Beatles", "Beatles"),
    ("Creep", "Creep (Acoustic)"),
    ("Creep", "Creep - Remastered 2011"),
    ("Left Behind", "Left"),                 # "ft" inside a word is not a credit
    ("Daft Punk", "Daft"),
])
def test_spellings_that_stay_apart(a: str, b: str) -> None:
    assert normalise(a) != normalise(b)


def test_a_bare_featuring_word_is_read_as_a_credit() -> None:
    # The documented cost of the rule: what follows "feat."/"ft."/"featuring" is dropped.
    assert normalise("The Featuring Song") == "the"


def test_a_credit_alone_is_kept() -> None:
    assert normalise("(feat. Nobody)") == "(feat. nobody)"
    assert text_track_id("Radiohead", "Creep") == "radiohead – creep"


def test_mbids() -> None:
    assert mbid(" 7A5B0D3C-1111-2222-3333-444455556666 ") == "7a5b0d3c-1111-2222-3333-444455556666"
    for bad in ("", "not-an-mbid", "7a5b0d3c111122223333444455556666", None, 42):
        assert mbid(bad) is None


def test_namer_caches_and_keeps_the_first_spelling() -> None:
    namer = TrackNamer()
    assert namer("Radiohead ", "Creep") == ("radiohead – creep", TrackNamer.NO_MBID)
    assert namer("RADIOHEAD", "creep", "") == ("radiohead – creep", TrackNamer.NO_MBID)
    assert namer("X", "Y", "bad") == ("x – y", TrackNamer.BAD_MBID)
    assert namer("X", "Y", ["odd"]) == ("x – y", TrackNamer.BAD_MBID)
    one = "7a5b0d3c-1111-2222-3333-444455556666"
    assert namer("Daft Punk", "Get Lucky", one.upper()) == (one, TrackNamer.MBID)
    assert namer.frame().values.tolist() == [
        ["radiohead – creep", "Creep", "Radiohead"], ["x – y", "Y", "X"],
        [one, "Get Lucky", "Daft Punk"]]
