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
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from musicrec.data.demo.corpus import CorpusFile, artist_of, list_corpus_files
from musicrec.data.demo.listeners import ListenerModel, simulate_listeners
from musicrec.data.demo.readme import render_readme
from musicrec.data.demo.render import (
    MAX_SECONDS,
    MIN_SECONDS,
    Clip,
    PieceResult,
    RenderJob,
    default_soundfont,
    render_piece,
)
from musicrec.errors import ParameterError

log = logging.getLogger(__name__)

#: Columns of ``catalog.csv``, in order.
CATALOG_COLUMNS = (
    "track_id", "title", "artist", "style", "key", "tempo", "duration", "audio_path",
    "licence", "collection", "corpus_path", "tune", "excerpt", "measure_start", "measure_end",
    "played_twice", "midi_programs",
)
#: Tunes taken from each opus file (per excerpt wanted of an ordinary piece).
OPUS_TUNES = 8
#: Share of corpus files expected to render; above it, pieces give several excerpts.
EXPECTED_YIELD = 0.6
#: Most excerpts taken from one piece.
MAX_EXCERPTS = 4
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
            f"({self.n_reused_pieces} tracks are further excerpts of a piece already used), "
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
        Number of tracks. Up to about 1,800 every track is a different corpus piece; above
        that, long pieces also give their 2nd, 3rd... non-overlapping excerpt.
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
        A folder that keeps each corpus file's rendered clips between builds (music21
        parsing takes about 1 s a file); the same clips come out with or without it.
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


def piece_order(files: list[CorpusFile], rng: np.random.Generator) -> list[CorpusFile]:
    """Corpus files in the order they are used: styles taken in turn, each style shuffled.

    Opus files (many short tunes, slow to parse) come after the other files of a style.
    """
    by_style: dict[str, list[CorpusFile]] = {}
    for f in files:
        by_style.setdefault(f.collection.style, []).append(f)
    queues = []
    for style in sorted(by_style):
        group = by_style[style]
        shuffled = [group[i] for i in rng.permutation(len(group))]
        shuffled.sort(key=lambda f: f.collection.opus)  # stable: keeps the shuffle
        queues.append(shuffled)
    order: list[CorpusFile] = []
    for i in range(max(len(q) for q in queues)):
        order.extend(q[i] for q in queues if i < len(q))
    return order


def excerpts_per_piece(n_tracks: int, n_files: int) -> int:
    """Excerpts rendered per piece: 1 while the corpus has enough pieces, more above."""
    capacity = EXPECTED_YIELD * n_files
    if n_tracks <= capacity:
        return 1
    return min(MAX_EXCERPTS, math.ceil(n_tracks / capacity))


def _results(jobs: list[RenderJob], n_workers: int) -> Generator[PieceResult, None, None]:
    if n_workers == 1:
        for job in jobs:
            yield render_piece(job)
        return
    pool = multiprocessing.get_context("fork").Pool(n_workers)
    try:
        yield from pool.imap(render_piece, jobs, chunksize=1)
    finally:
        pool.terminate()
        pool.join()


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
    per_piece = excerpts_per_piece(n_tracks, len(files))
    clip_dir = tmp / "clips"
    clip_dir.mkdir()
    soundfont = str(default_soundfont())
    jobs = [
        RenderJob(path=str(f.path), corpus_path=f.relpath,
                  n_excerpts=OPUS_TUNES * per_piece if f.collection.opus else per_piece,
                  out_dir=str(clip_dir), file_stem=f"p{i:05d}", soundfont=soundfont,
                  sample_rate=SAMPLE_RATE, cache_dir=cache_dir)
        for i, f in enumerate(order)
    ]
    by_path = {f.relpath: f for f in files}

    # rounds[k]: the k-th excerpts of ordinary pieces (and every tune of an opus in round 0)
    rounds: list[list[Clip]] = [[] for _ in range(max(per_piece, 1))]
    skipped: list[tuple[str, str]] = []
    n_parsed = 0
    bar = tqdm(total=n_tracks, desc="rendering corpus excerpts", unit="track",
               disable=not show_progress)
    try:
        with closing(_results(jobs, n_workers)) as results:
            for result in results:
                n_parsed += 1
                skipped.extend(result.failures)
                for clip in result.clips:
                    k = 0 if clip.tune is not None else clip.excerpt
                    rounds[min(k, len(rounds) - 1)].append(clip)
                bar.update(min(len(rounds[0]), n_tracks) - bar.n)
                if len(rounds[0]) >= n_tracks:
                    break
    finally:
        bar.close()
    chosen = [clip for r in rounds for clip in r][:n_tracks]
    if len(chosen) < n_tracks:
        raise ParameterError(
            f"n_tracks={n_tracks} is more than the music21 corpus can serve: "
            f"{len(chosen)} excerpts rendered from {n_parsed} files ({len(skipped)} skipped); "
            f"ask for at most {len(chosen)} tracks")

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
