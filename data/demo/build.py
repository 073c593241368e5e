"""Build the embedded demo dataset: rendered corpus excerpts plus simulated listening logs.

Layout of a built dataset folder::

    audio/<track_id>.ogg   20-30 s, 22,050 Hz mono OGG Vorbis
    catalog.csv            one row per track (see CATALOG_COLUMNS)
    plays.csv              user, track, timestamp, plays
    truth/                 the simulation's ground truth (users, tastes, tracks, model.json)
    truth/skipped.csv      corpus pieces that failed to render, and why
    README.md              what the data is and how it was made

The folder is written to a temporary sibling and renamed into place at the end, so a
failed or interrupted build leaves nothing half-written.

Speed. The build parses in rounds: every style short of its share of tracks parses the
next files it is expected to need (from its own yield so far), then exactly the excerpts
chosen are rendered. A long piece gives several non-overlapping excerpts, so the default
1,000 tracks parse about 400 files instead of 1,000+. Each excerpt is rendered straight
from the note list extracted once per score (music21's MIDI writer, which deep-copied every
excerpt to expand repeats, is not used); what remains is music21's parser (0.05-3 s a
file), the synthesis (about 0.05-0.5 s a clip) and the OGG Vorbis encoder (about 0.1 s a
clip). ``benchmarks/bench_demo_data.py`` measures it.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musicrec.data.demo.corpus import CorpusFile, artist_of, list_corpus_files
from musicrec.data.demo.listeners import ListenerModel, simulate_listeners
from musicrec.data.demo.readme import render_readme
from musicrec.data.demo.render import (
    MAX_SECONDS,
    MIN_SECONDS,
    Clip,
    ClipJob,
    Excerpt,
    ParseJob,
    default_soundfont,
    parse_file,
    render_clip,
)
from musicrec.errors import ParameterError

log = logging.getLogger(__name__)

#: Columns of ``catalog.csv``, in order.
CATALOG_COLUMNS = (
    "track_id", "title", "artist", "style", "key", "tempo", "duration", "audio_path",
    "licence", "collection", "corpus_path", "tune", "excerpt", "measure_start", "measure_end",
    "played_twice", "midi_programs",
)
#: Tunes taken from each opus file, per excerpt wanted of an ordinary piece.
OPUS_TUNES = 8
#: Fewest and most non-overlapping excerpts taken from one piece (see
#: :func:`excerpts_per_piece`).
MIN_EXCERPTS = 3
MAX_EXCERPTS = 24
#: Tracks per extra excerpt allowed per piece above :data:`MIN_EXCERPTS`.
TRACKS_PER_EXCERPT = 250
#: Files over this many times their style's median size are parsed after the others.
SLOW_SIZE_RATIO = 4.0
SAMPLE_RATE = 22050


@dataclass
class DemoDataset:
    """What :func:`build_demo_dataset` built."""

    path: Path
    seed: int
    n_tracks: int
    n_users: int
    n_rows: int
    n_plays: int
    n_pieces_parsed: int
    n_reused_pieces: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def skip_reasons(self) -> dict[str, int]:
        """How many pieces were skipped, by kind of reason."""
        return dict(Counter(_reason_kind(r) for _, r in self.skipped).most_common())

    def summary(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in self.skip_reasons().items()) or "none"
        return (
            f"{self.path}: {self.n_tracks} tracks from {self.n_pieces_parsed} corpus files "
            f"({self.n_reused_pieces} tracks are 2nd or later excerpts of a piece), "
            f"{self.n_users} users, {self.n_rows} log rows, {self.n_plays} plays; "
            f"{self.n_skipped} pieces/excerpts skipped ({reasons}); built in "
            f"{self.seconds:.1f} s"
        )


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def build_demo_dataset(
    out: str | Path,
    *,
    n_tracks: int = 1000,
    n_users: int = 2000,
    seed: int = 0,
    force: bool = False,
    show_progress: bool = True,
    n_workers: int = 2,
    cache_dir: str | Path | None = None,
    model: ListenerModel | None = None,
) -> DemoDataset:
    """Build the demo dataset into the folder ``out``.

    Deterministic under ``seed``: the same arguments give byte-identical ``catalog.csv``,
    ``plays.csv`` and ``truth/`` tables.

    Parameters
    ----------
    out : str or Path
        The dataset folder. An existing non-empty folder is refused unless ``force``.
    n_tracks : int
        Number of tracks, shared evenly by the styles as far as their collections allow.
        A long piece gives up to :func:`excerpts_per_piece` non-overlapping excerpts (3 up
        to 750 tracks, 4 at 1,000, 20 at 5,000), so far fewer files are parsed.
    n_users : int
        Number of simulated users.
    seed : int
        Seed of the piece order and of the listener simulation.
    force : bool
        Replace an existing non-empty ``out``.
    show_progress : bool
        Show a tqdm bar while rendering.
    n_workers : int
        Processes that parse and render corpus files (1 = in this process).
    cache_dir : str or Path, optional
        A folder that keeps each parsed corpus file's note lists (``p*.npz``/``.json``)
        and each rendered clip (``c*.ogg``/``.json``) between builds; the same tables come
        out with or without it, and a rebuild from a warm cache takes about a second.
    model : ListenerModel, optional
        Parameters of the listener simulation.

    Returns
    -------
    DemoDataset

    Raises
    ------
    ParameterError
        For a bad size, an existing non-empty ``out`` without ``force``, or more tracks
        than the corpus can serve.

    Examples
    --------
    >>> ds = build_demo_dataset("demo", n_tracks=40, n_users=50, seed=0)  # doctest: +SKIP
    >>> ds.n_tracks
    40
    """
    started = time.perf_counter()
    for name, value in (("n_tracks", n_tracks), ("n_users", n_users), ("n_workers", n_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name}={value!r} must be a positive integer")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"out={str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ParameterError(
            f"out={str(out)!r} exists and is not empty; pass force=True (--force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        result = _build(tmp, n_tracks=n_tracks, n_users=n_users, seed=seed,
                        show_progress=show_progress, n_workers=n_workers,
                        cache_dir=None if cache_dir is None else str(cache_dir),
                        model=model or ListenerModel())
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.path = out
    result.seconds = time.perf_counter() - started
    log.info("%s", result.summary())
    return result


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def piece_order(
    files: list[CorpusFile], rng: np.random.Generator
) -> dict[str, list[CorpusFile]]:
    """Each style's corpus files in the order they are used: shuffled under ``rng``.

    A cheap pre-filter puts the files that are slow to parse after the others of their
    style (the order within each group stays shuffled): first ordinary files, then files
    over :data:`SLOW_SIZE_RATIO` times the style's median file size (music21 takes 1-3 s
    on a 150 KB MusicXML quartet, 0.05 s on a chorale), then opus files (many short
    tunes in one slow file).
    """
    by_style: dict[str, list[CorpusFile]] = {}
    for f in files:
        by_style.setdefault(f.collection.style, []).append(f)
    order = {}
    for style in sorted(by_style):
        group = by_style[style]
        sizes = {f.relpath: f.path.stat().st_size for f in group}
        limit = SLOW_SIZE_RATIO * float(np.median(list(sizes.values())))
        shuffled = [group[i] for i in rng.permutation(len(group))]
        # stable: keeps the shuffle within each group
        shuffled.sort(key=lambda f: (f.collection.opus, sizes[f.relpath] > limit))
        order[style] = shuffled
    return order


def excerpts_per_piece(n_tracks: int) -> int:
    """Most non-overlapping excerpts taken from one piece for a dataset of ``n_tracks``.

    :data:`MIN_EXCERPTS` up to 750 tracks, one more per :data:`TRACKS_PER_EXCERPT` tracks
    above, at most :data:`MAX_EXCERPTS` (1,000 tracks: 4; 5,000 tracks: 20). Short pieces
    give fewer: an excerpt is about 25 s of music.
    """
    return min(MAX_EXCERPTS, max(MIN_EXCERPTS, math.ceil(n_tracks / TRACKS_PER_EXCERPT)))


def style_quotas(n_tracks: int, caps: dict[str, float]) -> dict[str, int]:
    """Split ``n_tracks`` over styles as evenly as their caps allow (water filling).

    A style gets ``min(cap, level)`` tracks; the level is the lowest that reaches
    ``n_tracks`` (or every cap). Left-over single tracks go to styles in sorted order.
    """
    styles = sorted(caps)
    quotas = dict.fromkeys(styles, 0)
    left = n_tracks
    open_ = [s for s in styles if caps[s] > 0]
    while left > 0 and open_:
        share = max(left // len(open_), 1)
        for s in list(open_):
            if left == 0:
                break
            take = int(min(share, caps[s] - quotas[s], left))
            quotas[s] += take
            left -= take
            if quotas[s] >= caps[s]:
                open_.remove(s)
    return quotas


class _Runner:
    """Maps a function over jobs in order, in this process or in a pool kept for the build."""

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers
        self.pool: Any = None

    def map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> Iterator[Any]:
        if self.n_workers == 1 or len(jobs) == 1:
            return map(fn, jobs)
        if self.pool is None:
            import music21.converter  # noqa: F401  (imported once, before the fork)

            self.pool = multiprocessing.get_context("fork").Pool(self.n_workers)
        return self.pool.imap(fn, jobs, chunksize=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


@dataclass
class _Candidate:
    """An excerpt that may become a track; ``clip`` once rendered, ``failed`` if unusable."""

    excerpt: Excerpt
    clip: Clip | None = None
    failed: bool = False


def _interleave(groups: list[list[Any]]) -> list[Any]:
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


def _build(
    tmp: Path,
    *,
    n_tracks: int,
    n_users: int,
    seed: int,
    show_progress: bool,
    n_workers: int,
    cache_dir: str | None,
    model: ListenerModel,
) -> DemoDataset:
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    files = list_corpus_files()
    if not files:
        raise ParameterError("the music21 corpus is not installed (no scores found)")
    order = piece_order(files, rng)
    per_piece = excerpts_per_piece(n_tracks)
    clip_dir = tmp / "clips"
    clip_dir.mkdir()
    soundfont = str(default_soundfont())
    jobs = {
        style: [ParseJob(path=str(f.path), corpus_path=f.relpath,
                         n_excerpts=OPUS_TUNES * per_piece if f.collection.opus else per_piece,
                         cache_dir=cache_dir) for f in group]
        for style, group in order.items()
    }
    stems = {job.corpus_path: f"s{s_idx}-{i:05d}"
             for s_idx, style in enumerate(jobs) for i, job in enumerate(jobs[style])}
    by_path = {f.relpath: f for f in files}

    # Rounds of parsing then rendering. Parsing takes, for every style short of its quota
    # of usable excerpts, the next files it is expected to need (from its yield so far);
    # rendering takes the first `quota` excerpts of each style, in file order. Each round
    # depends only on the results before it, so the build is deterministic.
    found: dict[str, list[_Candidate]] = {style: [] for style in jobs}
    done = dict.fromkeys(jobs, 0)
    skipped: list[tuple[str, str]] = []
    n_parsed = 0
    runner = _Runner(n_workers)
    bar = tqdm(total=n_tracks, desc="rendering corpus excerpts", unit="track",
               disable=not show_progress)
    try:
        while True:
            usable = {s: [c for c in found[s] if not c.failed] for s in jobs}
            caps = {s: len(usable[s]) if done[s] == len(jobs[s]) else math.inf for s in jobs}
            quotas = style_quotas(n_tracks, caps)
            to_parse = []
            for s in jobs:
                need = quotas[s] - len(usable[s])
                if need <= 0 or done[s] == len(jobs[s]):
                    continue
                # optimistic before the style's first file (every file gives its most
                # excerpts): a second round costs less than parsing files not needed
                per_file = len(found[s]) / done[s] if done[s] else per_piece
                k = min(math.ceil(need / max(per_file, 0.5)), len(jobs[s]) - done[s])
                to_parse.append([(s, job) for job in jobs[s][done[s]:done[s] + k]])
                done[s] += k
            if to_parse:
                batch = _interleave(to_parse)
                for (s, _), parsed in zip(batch, runner.map(parse_file, [j for _, j in batch]),
                                          strict=True):
                    n_parsed += 1
                    skipped.extend(parsed.failures)
                    found[s].extend(_Candidate(ex) for ex in parsed.excerpts)
                continue
            wanted = _interleave([[c for c in usable[s][:quotas[s]] if c.clip is None]
                                  for s in jobs])
            if not wanted:
                break
            clip_jobs = [ClipJob(c.excerpt, str(clip_dir / f"{stems[c.excerpt.corpus_path]}-"
                                                f"{c.excerpt.excerpt}.ogg"),
                                 soundfont, SAMPLE_RATE, cache_dir) for c in wanted]
            for cand, clip in zip(wanted, runner.map(render_clip, clip_jobs), strict=True):
                if isinstance(clip, str):
                    ex = cand.excerpt
                    where = ex.corpus_path + (f"#{ex.tune}" if ex.tune is not None
                                              else f"@{ex.excerpt}")
                    skipped.append((where, clip))
                    cand.failed = True
                else:
                    cand.clip = clip
                    bar.update(1)
    finally:
        runner.close()
        bar.close()
    usable = {s: [c for c in found[s] if c.clip is not None] for s in jobs}
    quotas = style_quotas(n_tracks, {s: len(usable[s]) for s in jobs})
    # Tracks take the styles in turn; within a style, clips keep their file order.
    chosen: list[Clip] = [c.clip for c in _interleave([usable[s][:quotas[s]] for s in jobs])
                          if c.clip is not None]
    if len(chosen) < n_tracks:
        n_rendered = sum(len(c) for c in usable.values())
        raise ParameterError(
            f"n_tracks={n_tracks} is more than the music21 corpus can serve: "
            f"{n_rendered} excerpts rendered from {n_parsed} files ({len(skipped)} skipped); "
            f"ask for at most {n_rendered} tracks")

    audio_dir = tmp / "audio"
    audio_dir.mkdir()
    rows = []
    for i, clip in enumerate(chosen):
        track_id = f"t{i:05d}"
        Path(clip.audio_file).rename(audio_dir / f"{track_id}.ogg")
        collection = by_path[clip.corpus_path].collection
        duration = min(max(clip.duration, MIN_SECONDS), MAX_SECONDS)
        rows.append({
            "track_id": track_id,
            "title": clip.title,
            "artist": artist_of(collection, clip.composer),
            "style": collection.style,
            "key": clip.key,
            "tempo": clip.tempo,
            "duration": duration,
            "audio_path": f"audio/{track_id}.ogg",
            "licence": collection.licence,
            "collection": collection.name,
            "corpus_path": clip.corpus_path,
            "tune": "" if clip.tune is None else clip.tune + 1,
            "excerpt": clip.excerpt + 1,
            "measure_start": clip.measure_start,
            "measure_end": clip.measure_end,
            "played_twice": clip.played_twice,
            "midi_programs": clip.programs,
        })
    shutil.rmtree(clip_dir)
    catalog = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    n_reused = int(sum(1 for c in chosen if c.tune is None and c.excerpt > 0))

    sim = simulate_listeners(track_ids=catalog["track_id"].tolist(),
                             styles=catalog["style"].tolist(),
                             artists=catalog["artist"].tolist(),
                             n_users=n_users, rng=rng, model=model)

    _write_csv(catalog, tmp / "catalog.csv")
    _write_csv(sim.plays, tmp / "plays.csv")
    truth = tmp / "truth"
    truth.mkdir()
    _write_csv(sim.users, truth / "users.csv")
    _write_csv(sim.tastes.round(6), truth / "tastes.csv")
    tracks = catalog[["track_id", "style", "artist"]].copy()
    tracks["popularity"] = np.round(sim.popularity, 6)
    tracks["plays"] = (sim.plays.groupby("track")["plays"].sum()
                       .reindex(tracks["track_id"], fill_value=0).to_numpy())
    _write_csv(tracks, truth / "tracks.csv")
    _write_csv(pd.DataFrame(skipped, columns=["source", "reason"]), truth / "skipped.csv")
    n_plays = int(sim.plays["plays"].sum())
    info: dict[str, object] = {
        "seed": seed,
        "n_tracks": n_tracks,
        "n_users": n_users,
        "n_rows": len(sim.plays),
        "n_plays": n_plays,
        "excerpts_per_piece": per_piece,
        "n_files_parsed": n_parsed,
        "n_reused_pieces": n_reused,
        "n_skipped": len(skipped),
        "styles": sim.styles,
        "listener_model": model.as_dict(),
        "sample_rate": SAMPLE_RATE,
        "soundfont": Path(soundfont).name,
        "versions": _versions(),
    }
    (truth / "model.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    (tmp / "README.md").write_text(render_readme(info, catalog), encoding="utf-8")
    return DemoDataset(path=tmp, seed=seed, n_tracks=n_tracks, n_users=n_users,
                       n_rows=len(sim.plays), n_plays=n_plays, n_pieces_parsed=n_parsed,
                       n_reused_pieces=n_reused, skipped=skipped)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("music21", "tinysoundfont", "pretty_midi", "soundfile"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found
