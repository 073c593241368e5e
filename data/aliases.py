"""Track aliases: ids that name the same track as a canonical id.

An alias file has one ``alias canonical`` pair per line, tab-separated without a header
(the layout of the Audioscrobbler data set's ``artist_alias.txt``), or is a CSV with the
columns ``alias`` and ``canonical``. Chains (``a -> b -> c``) are followed to their end; a
cycle is an error that names the ids, the file and the line that closes it, as is an alias
mapped to two different ids. A line whose alias is empty names nothing and is skipped by
rule (the Audioscrobbler file has such lines); the count is reported.

:func:`apply_aliases` re-points the (user, track) pairs of a log to canonical ids, merges
the pairs that now coincide (plays summed, latest timestamp kept) and records both counts
in the log's report. Aliases apply to track ids only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from musicrec.data._stream import delimited_chunks, progress
from musicrec.data._tables import read_table
from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import NamedLog, assemble_log, reduce_pairs
from musicrec.errors import DataFormatError

log = logging.getLogger(__name__)


@dataclass
class Aliases:
    """Resolved aliases: ``mapping[alias]`` is the end of the alias's chain."""

    mapping: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    lines_read: int = 0
    empty_skipped: int = 0

    def __len__(self) -> int:
        return len(self.mapping)

    def canonical(self, track_id: str) -> str:
        return self.mapping.get(track_id, track_id)

    def summary(self) -> str:
        text = f"{', '.join(self.sources)}: {len(self)} aliases"
        if self.empty_skipped:
            text += f" ({self.empty_skipped} lines with an empty alias skipped)"
        return text


def read_aliases(*paths: str | Path) -> Aliases:
    """Read and resolve alias files (pairs from all files are resolved together).

    Examples
    --------
    >>> aliases = read_aliases("artist_alias.txt")  # doctest: +SKIP
    >>> aliases.canonical("1092764")  # doctest: +SKIP
    '1000311'
    """
    pairs: dict[str, tuple[str, str, int]] = {}  # alias -> (canonical, file, line)
    out = Aliases()
    for path in map(Path, paths):
        out.sources.append(str(path))
        for line, alias, target in _read_pairs(path, out):
            if alias == target:
                continue
            seen = pairs.get(alias)
            if seen is not None and seen[0] != target:
                raise DataFormatError(
                    path, f"alias {alias!r} maps to {target!r} here and to {seen[0]!r} at "
                          f"{seen[1]}, line {seen[2]}", line=line, column="canonical")
            pairs.setdefault(alias, (target, str(path), line))
    out.mapping = _resolve(pairs)
    log.info("%s", out.summary())
    return out


def _read_pairs(path: Path, out: Aliases) -> list[tuple[int, str, str]]:
    if not path.exists():
        raise DataFormatError(path, "alias file not found")
    if path.suffix.lower() == ".csv":
        frame = read_table(path, fmt="csv")
        missing = [c for c in ("alias", "canonical") if c not in frame.columns]
        if missing:
            raise DataFormatError(path, f"an alias CSV needs the columns alias and canonical; "
                                        f"found {[str(c) for c in frame.columns]}")
        chunks = [(2, frame[["alias", "canonical"]])]
    else:
        chunks = list(delimited_chunks(path, progress([path], "", False), sep="\t",
                                       names=("alias", "canonical")))
    rows: list[tuple[int, str, str]] = []
    for first, chunk in chunks:
        for offset, (alias, target) in enumerate(zip(chunk["alias"].astype(str).str.strip(),
                                                     chunk["canonical"].astype(str).str.strip(),
                                                     strict=True)):
            line = first + offset
            if not alias and not target:
                continue  # a blank line
            out.lines_read += 1
            if not alias:
                out.empty_skipped += 1
                continue
            if not target:
                raise DataFormatError(path, f"alias {alias!r} has no canonical id", line=line,
                                      column="canonical")
            rows.append((line, alias, target))
    if out.empty_skipped:
        log.warning("%s: skipped %d alias lines with an empty alias", path, out.empty_skipped)
    return rows


def _resolve(pairs: dict[str, tuple[str, str, int]]) -> dict[str, str]:
    """Follow every chain to its end; a cycle is an error naming its ids."""
    resolved: dict[str, str] = {}
    for start in pairs:
        chain = [start]
        on_chain = {start}
        node = pairs[start][0]
        while node in pairs and node not in resolved:
            if node in on_chain:
                cycle = chain[chain.index(node):] + [node]
                _, file, line = pairs[chain[-1]]
                raise DataFormatError(
                    file, f"aliases form a cycle: {' -> '.join(cycle)}", line=line,
                    column="canonical")
            chain.append(node)
            on_chain.add(node)
            node = pairs[node][0]
        end = resolved.get(node, node)
        for alias in chain:
            resolved[alias] = end
    return resolved


def apply_aliases(data: NamedLog, aliases: Aliases) -> NamedLog:
    """The log with its track ids mapped to canonical ids, and its catalogue to match.

    Pairs that land on the same (user, canonical track) are merged; the report gets the
    number of pairs re-pointed (``aliased_pairs``) and merged (``alias_merged``). A
    canonical track without a catalogue row takes the names of one of its aliases.
    """
    log_ = data.log
    ids = log_.tracks.ids
    targets = np.fromiter((aliases.mapping.get(t, t) for t in ids), dtype=object,
                          count=len(ids))
    moved = targets != ids
    report = log_.report
    if not moved.any():
        return data
    codes, vocab = pd.factorize(targets)
    keys = (log_.user_idx.astype(np.int64) << 32) | codes[log_.track_idx].astype(np.int64)
    stamps = None if log_.timestamp is None else log_.timestamp.astype(np.int64)
    keys, plays, latest = reduce_pairs(keys, log_.plays.astype(np.float64), stamps)
    report.aliased_pairs += int(moved[log_.track_idx].sum())
    report.alias_merged += len(log_) - len(keys)
    out = assemble_log(log_.users.ids, np.asarray(vocab, dtype=object), keys, plays, latest,
                       report, users=log_.users)
    log.info("%s", report.summary())
    catalog = None
    if data.catalog is not None:
        names = data.catalog.frame
        borrowed = names[names["track_id"].isin(set(ids[moved]))].assign(
            track_id=lambda f: f["track_id"].map(aliases.mapping))
        catalog = TrackCatalog.for_tracks(out.tracks.ids, pd.concat([names, borrowed],
                                                                    ignore_index=True))
    return replace(data, log=out, catalog=catalog)
