"""Which music21 corpus collections the demo dataset draws on, and how they are labelled.

The music21 package ships about 3,200 encoded scores. Each collection used here is given a
*style* (the genre label of the demo dataset) and a default *artist* (the composer, or the
collection's name for anonymous folk tunes). Collections not listed (exercises, demos,
lead sheets, 20th-century pieces, the Essen folk-song database whose licence is unclear
and whose opus files take 5-15 s each to parse, Aird's Airs whose six opus files take 6-10 s
each) are not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Collection:
    """A folder of the music21 corpus and the labels its pieces get."""

    name: str
    style: str
    artist: str
    #: Use the score's own composer field as the artist (collections of many composers).
    artist_from_score: bool = False
    #: Opus files (many tunes per file, slow to parse): used after the other pieces.
    opus: bool = False
    licence: str = (
        "public-domain composition; encoding from the music21 corpus, licensed for use "
        "with music21 (some encodings non-commercial only: see music21/corpus/license.txt)"
    )


#: The collections used, by music21 corpus folder.
COLLECTIONS: dict[str, Collection] = {
    c.name: c
    for c in (
        Collection("palestrina", "renaissance polyphony", "Giovanni Pierluigi da Palestrina"),
        Collection("josquin", "renaissance polyphony", "Josquin des Prez", opus=True),
        Collection("lusitano", "renaissance polyphony", "Vicente Lusitano"),
        Collection("trecento", "medieval polyphony", "Trecento (anonymous)", True),
        Collection("ciconia", "medieval polyphony", "Johannes Ciconia"),
        Collection("luca", "medieval polyphony", "Luca (Gloria)"),
        Collection("monteverdi", "madrigal", "Claudio Monteverdi"),
        Collection("bach", "baroque chorale", "Johann Sebastian Bach"),
        Collection("cpebach", "baroque chorale", "Carl Philipp Emanuel Bach"),
        Collection("handel", "baroque chorale", "George Frideric Handel"),
        Collection("corelli", "baroque chorale", "Arcangelo Corelli"),
        Collection("beethoven", "classical string quartet", "Ludwig van Beethoven"),
        Collection("mozart", "classical string quartet", "Wolfgang Amadeus Mozart"),
        Collection("haydn", "classical string quartet", "Joseph Haydn"),
        Collection("schumann_robert", "romantic", "Robert Schumann"),
        Collection("schumann_clara", "romantic", "Clara Schumann"),
        Collection("schubert", "romantic", "Franz Schubert"),
        Collection("chopin", "romantic", "Frédéric Chopin"),
        Collection("beach", "romantic", "Amy Beach"),
        Collection("weber", "romantic", "Carl Maria von Weber"),
        Collection("verdi", "romantic", "Giuseppe Verdi"),
        Collection("ryansMammoth", "irish fiddle tune", "Ryan's Mammoth Collection (1883)"),
        Collection("oneills1850", "irish fiddle tune", "O'Neill's Music of Ireland (1903)",
                   opus=True),
    )
}

#: Score formats the corpus uses for music (``.rntxt`` files are harmonic analyses).
SCORE_SUFFIXES = (".krn", ".abc", ".mxl", ".xml", ".musicxml")


@dataclass(frozen=True)
class CorpusFile:
    """One file of the music21 corpus."""

    path: Path
    relpath: str
    collection: Collection


def corpus_root() -> Path:
    """The folder of the installed music21 corpus."""
    import music21.corpus

    return Path(music21.corpus.__file__).resolve().parent


def list_corpus_files() -> list[CorpusFile]:
    """Every usable corpus file, sorted by its path relative to the corpus folder.

    Listing the folder directly (rather than through music21's metadata cache) keeps the
    order, and so the dataset, independent of caches on the machine.
    """
    root = corpus_root()
    files = []
    for name, collection in COLLECTIONS.items():
        folder = root / name
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix.lower() in SCORE_SUFFIXES:
                files.append(CorpusFile(path, path.relative_to(root).as_posix(), collection))
    files.sort(key=lambda f: f.relpath)
    return files


def artist_of(collection: Collection, composer: str | None) -> str:
    """The artist shown for a piece: the collection's composer, or the score's own."""
    if collection.artist_from_score and composer and not composer.lower().startswith("anon"):
        return composer
    return collection.artist
