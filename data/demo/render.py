"""Render excerpts of music21 corpus scores to audio through a General MIDI soundfont.

:func:`parse_file` parses one corpus file once, reduces each score to a light note list
(:class:`Piece`: onsets, ends, pitches, velocities, parts, measure boundaries and a tempo
map) and finds up to ``n_excerpts`` non-overlapping excerpts (:class:`Excerpt`);
:func:`render_clip` renders one excerpt straight from that list through
``tinysoundfont`` and encodes it as OGG Vorbis. :func:`render_piece` does both for one
file. music21's MIDI writer is not used: it deep-copied every excerpt to expand repeats
and cost as much as parsing.

Every known hazard of the corpus is guarded:

* an excerpt is a window of whole measures of about :data:`TARGET_SECONDS` seconds,
  capped at :data:`MAX_MEASURES` measures and :data:`MAX_QUARTERS` quarter notes, and no
  more than :data:`MAX_SECONDS` seconds of audio are ever synthesised (a full piece with
  expanded repeats once made a 19 GB MIDI file);
* repeats are never expanded: the notes are read in written order, once;
* opus files (many tunes in one file) give up to ``n_excerpts`` tunes, one excerpt each;
* a piece that raises (``StreamException``, a corrupt file, ...), is silent, or is shorter
  than :data:`MIN_CONTENT_SECONDS` is skipped and its reason returned, never raised.

Instruments come from the score's own parts (each part's instrument gives the General
MIDI program of its channel), never from the style label. Dynamics are not rendered: a
note plays at its own velocity when the encoding gives one, else at
:data:`DEFAULT_VELOCITY`.

Speed, measured on the shared 2-core machine: music21 parses a corpus file in 0.03 s (a
fiddle tune) to 1-3 s (a Beethoven or Schumann movement); extracting the note list takes
0.01-0.07 s; synthesising a 25 s excerpt 0.03-0.5 s (dense string writing is the slow
end) and encoding it as OGG Vorbis about 0.1 s. A long piece gives several excerpts for
one parse.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Bump when rendering changes, to invalidate render caches.
RENDER_VERSION = "2"
#: Shortest musical content (seconds) an excerpt may have. A whole tune between
#: :data:`MIN_TWICE_SECONDS` and this is played twice (as folk tunes and hymns are);
#: anything shorter is skipped.
MIN_CONTENT_SECONDS = 19.0
MIN_TWICE_SECONDS = 10.0
#: Content length an excerpt's window of measures aims at (it grows by whole measures
#: until it spans at least ``TARGET_SECONDS - 3`` seconds).
TARGET_SECONDS = 25.0
#: Shortest and longest rendered clip (seconds), release tail included.
MIN_SECONDS = 20.0
MAX_SECONDS = 30.0
#: Seconds of release kept after the last note ends.
TAIL_SECONDS = 1.5
#: Fade-out applied when the content is cut at :data:`MAX_SECONDS`.
FADE_SECONDS = 1.0
#: Hard caps on the window of one excerpt.
MAX_MEASURES = 96
MAX_QUARTERS = 480.0
#: RMS below which a rendered clip counts as silent.
SILENCE_RMS = 1e-3
#: Tunes of an opus file tried for each tune wanted.
OPUS_TRIES_PER_TUNE = 3
#: Velocity of a note whose encoding gives none.
DEFAULT_VELOCITY = 90
#: Tempo (quarter notes per minute) before a score's first metronome mark.
DEFAULT_BPM = 120.0
#: MIDI channels given to parts in turn (channel 9 is General MIDI percussion).
_CHANNELS = tuple(c for c in range(16) if c != 9)


@dataclass
class Clip:
    """One rendered excerpt, written to ``audio_file``."""

    corpus_path: str
    tune: int | None
    excerpt: int
    measure_start: int
    measure_end: int
    title: str
    composer: str | None
    key: str
    tempo: float
    duration: float
    played_twice: bool
    programs: str
    audio_file: str


@dataclass
class PieceResult:
    """What :func:`render_piece` made of one corpus file: clips and skip reasons."""

    corpus_path: str
    clips: list[Clip] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RenderJob:
    """One corpus file to parse and render (see :func:`render_piece`)."""

    path: str
    corpus_path: str
    n_excerpts: int
    out_dir: str
    file_stem: str
    soundfont: str
    sample_rate: int = 22050
    cache_dir: str | None = None


@dataclass(frozen=True)
class ParseJob:
    """One corpus file to parse into excerpts (a plain record, so it crosses processes)."""

    path: str
    corpus_path: str
    n_excerpts: int
    cache_dir: str | None = None


@dataclass
class Piece:
    """One score reduced to what rendering needs; times are in quarter notes.

    ``onset``, ``end``, ``pitch``, ``velocity`` and ``part`` have one entry per note (tied
    notes merged), sorted by onset. ``measures`` holds the start of every measure and then
    the end of the last one. The tempo is ``tempo_bpm[i]`` quarter notes per minute from
    ``tempo_at[i]`` on (``tempo_at[0] == 0``).
    """

    title: str
    composer: str | None
    programs: list[int]
    onset: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    part: np.ndarray
    measures: np.ndarray
    tempo_at: np.ndarray
    tempo_bpm: np.ndarray

    ARRAYS = ("onset", "end", "pitch", "velocity", "part", "measures", "tempo_at", "tempo_bpm")

    @property
    def n_measures(self) -> int:
        return len(self.measures) - 1

    def seconds(self, quarters: np.ndarray | float) -> np.ndarray:
        """Seconds from the start of the piece at the given quarter-note offsets."""
        q = np.asarray(quarters, dtype=np.float64)
        spq = 60.0 / self.tempo_bpm
        start_s = np.concatenate(([0.0], np.cumsum(np.diff(self.tempo_at) * spq[:-1])))
        i = np.clip(np.searchsorted(self.tempo_at, q, side="right") - 1, 0, None)
        return np.asarray(start_s[i] + (q - self.tempo_at[i]) * spq[i])

    def bpm_at(self, quarter: float) -> float:
        i = max(int(np.searchsorted(self.tempo_at, quarter, side="right")) - 1, 0)
        return round(float(self.tempo_bpm[i]), 1)

    def keep_notes(self, windows: list[Window]) -> Piece:
        """A copy holding only the notes that start inside ``windows`` (smaller to ship)."""
        keep = np.zeros(len(self.onset), dtype=bool)
        for w in windows:
            keep |= (self.onset >= self.measures[w.start]) & (self.onset < self.measures[w.end])
        return Piece(self.title, self.composer, list(self.programs), self.onset[keep],
                     self.end[keep], self.pitch[keep], self.velocity[keep], self.part[keep],
                     self.measures, self.tempo_at, self.tempo_bpm)


@dataclass(frozen=True)
class Window:
    """An excerpt: measures ``start`` (inclusive) to ``end`` (exclusive), 0-based."""

    start: int
    end: int
    content: float
    played_twice: bool


@dataclass
class Excerpt:
    """A usable excerpt of a parsed file, ready to render."""

    corpus_path: str
    tune: int | None
    excerpt: int
    piece: Piece
    window: Window


@dataclass
class ParsedFile:
    """What :func:`parse_file` made of one corpus file: excerpts and skip reasons."""

    corpus_path: str
    excerpts: list[Excerpt] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ClipJob:
    """One excerpt to render to ``out_file`` (a plain record, so it crosses processes)."""

    excerpt: Excerpt
    out_file: str
    soundfont: str
    sample_rate: int = 22050
    cache_dir: str | None = None


def default_soundfont() -> Path:
    """The General MIDI soundfont ``TimGM6mb.sf2`` shipped in pretty_midi's wheel."""
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


_SOUNDFONT_CACHE: dict[str, bytes] = {}


def _soundfont_bytes(path: str) -> bytes:
    data = _SOUNDFONT_CACHE.get(path)
    if data is None:
        data = Path(path).read_bytes()
        _SOUNDFONT_CACHE[path] = data
    return data


def render_piece(job: RenderJob) -> PieceResult:
    """Parse one corpus file and render up to ``job.n_excerpts`` clips of it.

    :func:`parse_file` then :func:`render_clip` for each excerpt. Never raises for a
    fault of the piece: each skipped piece, tune or excerpt adds ``(where, reason)`` to
    :attr:`PieceResult.failures`.

    Parameters
    ----------
    job : RenderJob
        The file, how many excerpts to take, and where to write them
        (``{out_dir}/{file_stem}-{k}.ogg``).

    Returns
    -------
    PieceResult
    """
    parsed = parse_file(ParseJob(job.path, job.corpus_path, job.n_excerpts, job.cache_dir))
    result = PieceResult(job.corpus_path, failures=list(parsed.failures))
    for ex in parsed.excerpts:
        out_file = str(Path(job.out_dir) / f"{job.file_stem}-{ex.excerpt}.ogg")
        clip = render_clip(ClipJob(ex, out_file, job.soundfont, job.sample_rate, job.cache_dir))
        if isinstance(clip, str):
            where = ex.corpus_path + (f"#{ex.tune}" if ex.tune is not None
                                      else f"@{ex.excerpt}")
            result.failures.append((where, clip))
        else:
            result.clips.append(clip)
    return result


def parse_file(job: ParseJob) -> ParsedFile:
    """Parse one corpus file with music21 and find up to ``job.n_excerpts`` excerpts.

    An ordinary piece gives up to ``n_excerpts`` non-overlapping windows (see
    :func:`excerpt_windows`); an opus file gives up to ``n_excerpts`` tunes, spread over the
    opus, one window each. Never raises for a fault of the file: each skipped piece or tune
    adds ``(where, reason)`` to :attr:`ParsedFile.failures`. With ``job.cache_dir``, the
    result (note lists included) is kept there as ``.npz`` and ``.json`` files, and music21
    is not run again for the same file.
    """
    if job.cache_dir:
        cached = _parsed_from_cache(job)
        if cached is not None:
            return cached
    result = ParsedFile(job.corpus_path)
    with warnings.catch_warnings():
        # music21 warns about many encodings; a warning is not a failure of the piece
        # (and a caller's "error" filter, inherited by forked workers, must not make it one).
        warnings.simplefilter("ignore")
        try:
            _parse(job, result)
        except Exception as exc:  # a fault of one file must not stop the build
            result.failures.append((job.corpus_path, _reason(exc)))
    if job.cache_dir:
        _parsed_to_cache(job, result)
    return result


def _parse(job: ParseJob, result: ParsedFile) -> None:
    from music21 import converter, stream

    parsed = converter.parse(job.path, forceSource=True, storePickle=False)
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            result.failures.append((job.corpus_path, "opus holds no scores"))
            return
        # Spread the tunes taken over the whole opus, trying a few more than wanted.
        n_try = min(len(scores), job.n_excerpts * OPUS_TRIES_PER_TUNE)
        order = sorted({int(i * len(scores) / n_try) for i in range(n_try)})
        for tune in order:
            if len(result.excerpts) >= job.n_excerpts:
                break
            where = f"{job.corpus_path}#{tune}"
            try:
                piece = extract_piece(scores[tune], corpus_path=job.corpus_path, tune=tune)
                windows = (excerpt_windows(piece, n_excerpts=1)
                           if isinstance(piece, Piece) else piece)
            except Exception as exc:
                result.failures.append((where, _reason(exc)))
                continue
            if isinstance(windows, str):
                result.failures.append((where, windows))
                continue
            assert isinstance(piece, Piece)
            result.excerpts.append(Excerpt(job.corpus_path, tune, len(result.excerpts),
                                           piece.keep_notes(windows), windows[0]))
        return
    if not isinstance(parsed, stream.Score):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    piece = extract_piece(parsed, corpus_path=job.corpus_path, tune=None)
    windows = excerpt_windows(piece, n_excerpts=job.n_excerpts) if isinstance(
        piece, Piece) else piece
    if isinstance(windows, str):
        result.failures.append((f"{job.corpus_path}@0", windows))
        return
    assert isinstance(piece, Piece)
    small = piece.keep_notes(windows)
    result.excerpts.extend(Excerpt(job.corpus_path, None, k, small, w)
                           for k, w in enumerate(windows))


def render_clip(job: ClipJob) -> Clip | str:
    """Render one excerpt to ``job.out_file`` (OGG Vorbis); a reason string if unusable.

    With ``job.cache_dir``, the rendered clip is kept there and copied on later calls.
    """
    if job.cache_dir:
        cached = _clip_from_cache(job)
        if cached is not None:
            return cached
    clip = _render_window(job)
    if job.cache_dir and isinstance(clip, Clip):
        _clip_to_cache(job, clip)
    return clip


def _music21_version() -> str:
    from importlib.metadata import version

    return version("music21")


def _parse_key(job: ParseJob) -> str:
    text = "\0".join(("parse", RENDER_VERSION, _music21_version(), job.corpus_path,
                       str(job.n_excerpts)))
    return "p" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _clip_key(job: ClipJob) -> str:
    ex = job.excerpt
    text = "\0".join(("clip", RENDER_VERSION, _music21_version(), ex.corpus_path, str(ex.tune),
                       str(ex.window.start), str(ex.window.end), str(job.sample_rate),
                       Path(job.soundfont).name))
    return "c" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    tmp.replace(path)


def _parsed_to_cache(job: ParseJob, parsed: ParsedFile) -> None:
    folder = Path(job.cache_dir or ".")
    key = _parse_key(job)
    pieces: list[Piece] = []
    records = []
    for ex in parsed.excerpts:
        if not any(p is ex.piece for p in pieces):
            pieces.append(ex.piece)
        index = next(i for i, p in enumerate(pieces) if p is ex.piece)
        records.append({"tune": ex.tune, "excerpt": ex.excerpt, "piece": index,
                        "window": asdict(ex.window)})
    arrays = {f"{i}_{name}": getattr(p, name) for i, p in enumerate(pieces)
              for name in Piece.ARRAYS}
    meta = [{"title": p.title, "composer": p.composer, "programs": p.programs} for p in pieces]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _write_atomic(folder / f"{key}.npz", buf.getvalue())
        record = {"pieces": meta, "excerpts": records, "failures": parsed.failures}
        _write_atomic(folder / f"{key}.json", json.dumps(record).encode("utf-8"))
    except OSError as exc:
        log.warning("cannot write parse cache entry in %s: %s", folder, exc)


def _parsed_from_cache(job: ParseJob) -> ParsedFile | None:
    folder = Path(job.cache_dir or ".")
    key = _parse_key(job)
    index = folder / f"{key}.json"
    if not index.is_file():
        return None
    try:
        record = json.loads(index.read_text(encoding="utf-8"))
        with np.load(folder / f"{key}.npz", allow_pickle=False) as arrays:
            pieces = [Piece(m["title"], m["composer"], list(m["programs"]),
                            *(arrays[f"{i}_{name}"] for name in Piece.ARRAYS))
                      for i, m in enumerate(record["pieces"])]
        result = ParsedFile(job.corpus_path, failures=[(w, r) for w, r in record["failures"]])
        result.excerpts = [Excerpt(job.corpus_path, e["tune"], e["excerpt"], pieces[e["piece"]],
                                   Window(**e["window"])) for e in record["excerpts"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("ignoring unreadable parse cache entry %s: %s", index, exc)
        return None
    return result


def _clip_to_cache(job: ClipJob, clip: Clip) -> None:
    folder = Path(job.cache_dir or ".")
    key = _clip_key(job)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / f"{key}.ogg", Path(clip.audio_file).read_bytes())
        fields = {k: v for k, v in asdict(clip).items() if k != "audio_file"}
        _write_atomic(folder / f"{key}.json", json.dumps(fields).encode("utf-8"))
    except OSError as exc:
        log.warning("cannot write render cache entry in %s: %s", folder, exc)


def _clip_from_cache(job: ClipJob) -> Clip | None:
    folder = Path(job.cache_dir or ".")
    key = _clip_key(job)
    index = folder / f"{key}.json"
    if not index.is_file():
        return None
    try:
        fields = json.loads(index.read_text(encoding="utf-8"))
        shutil.copyfile(folder / f"{key}.ogg", job.out_file)
        return Clip(**{**fields, "excerpt": job.excerpt.excerpt, "audio_file": job.out_file})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable render cache entry %s: %s", index, exc)
        return None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def extract_piece(score: Any, *, corpus_path: str, tune: int | None) -> Piece | str:
    """Reduce a parsed music21 score to a :class:`Piece` (or a reason it has none).

    One pass over the measures of every part: no flattening, no deep copies.
    """
    from music21 import instrument, stream, tempo

    parts = list(score.parts) or [score]
    measure_lists = [list(p.getElementsByClass(stream.Measure)) for p in parts]
    ref = max(range(len(parts)), key=lambda i: len(measure_lists[i]))
    if not measure_lists[ref]:
        return "no measures"
    marks: dict[float, float] = {}
    onsets: list[float] = []
    ends: list[float] = []
    pitches: list[int] = []
    velocities: list[int] = []
    part_of: list[int] = []
    programs: list[int] = []
    for p_idx, (part, measures) in enumerate(zip(parts, measure_lists, strict=True)):
        inst = part.recurse().getElementsByClass(instrument.Instrument).first()
        program = getattr(inst, "midiProgram", None)
        programs.append(int(program) if program is not None else 0)
        raw: list[tuple[float, float, int, str | None, int]] = []
        containers: list[tuple[float, Any]] = []
        if measures:
            for m in measures:
                base = float(m.offset)
                containers.append((base, m))
                containers.extend((base + float(v.offset), v) for v in m.voices)
                for mark in m.getElementsByClass(tempo.MetronomeMark):
                    _add_mark(marks, base + float(mark.offset), mark)
        else:
            containers.append((0.0, part.flatten()))
        for base, container in containers:
            for el in container.notes:
                d = float(el.quarterLength)
                if d <= 0 or el.duration.isGrace:
                    continue
                q = base + float(el.offset)
                vel = DEFAULT_VELOCITY
                if el.hasVolumeInformation() and el.volume.velocity:
                    vel = int(el.volume.velocity)
                sub = el.notes if el.isChord else ((el,) if hasattr(el, "pitch") else ())
                for n in sub:
                    midi = int(round(n.pitch.ps))
                    if 0 <= midi <= 127:
                        tie = n.tie if n.tie is not None else getattr(el, "tie", None)
                        raw.append((q, d, midi, None if tie is None else tie.type, vel))
        raw.sort(key=lambda r: r[0])
        open_ties: dict[int, int] = {}
        for q, d, midi, tie_type, vel in raw:
            i = open_ties.get(midi)
            if tie_type in ("continue", "stop") and i is not None and q <= ends[i] + 1e-6:
                ends[i] = max(ends[i], q + d)
                if tie_type == "stop":
                    del open_ties[midi]
                continue
            onsets.append(q)
            ends.append(q + d)
            pitches.append(midi)
            velocities.append(min(max(vel, 1), 127))
            part_of.append(p_idx)
            if tie_type in ("start", "continue"):
                open_ties[midi] = len(onsets) - 1
            else:
                open_ties.pop(midi, None)
    ref_measures = measure_lists[ref]
    bounds = [float(m.offset) for m in ref_measures]
    last = ref_measures[-1]
    bounds.append(max(float(last.offset) + float(last.highestTime), bounds[-1]))
    order = np.argsort(np.asarray(onsets, dtype=np.float64), kind="stable")
    tempo_at = [0.0] + [q for q in sorted(marks) if q > 0]
    tempo_bpm = [marks.get(0.0, DEFAULT_BPM)] + [marks[q] for q in tempo_at[1:]]
    return Piece(
        title=_title(score, corpus_path, tune),
        composer=_composer(score),
        programs=programs,
        onset=np.asarray(onsets, dtype=np.float64)[order],
        end=np.asarray(ends, dtype=np.float64)[order],
        pitch=np.asarray(pitches, dtype=np.int16)[order],
        velocity=np.asarray(velocities, dtype=np.int16)[order],
        part=np.asarray(part_of, dtype=np.int16)[order],
        measures=np.asarray(bounds, dtype=np.float64),
        tempo_at=np.asarray(tempo_at, dtype=np.float64),
        tempo_bpm=np.asarray(tempo_bpm, dtype=np.float64),
    )


def _add_mark(marks: dict[float, float], offset: float, mark: Any) -> None:
    try:
        bpm = mark.getQuarterBPM()
    except Exception:
        bpm = None
    if bpm and float(bpm) > 0 and offset not in marks:
        marks[offset] = float(bpm)


def excerpt_windows(piece: Piece, *, n_excerpts: int) -> list[Window] | str:
    """Up to ``n_excerpts`` non-overlapping excerpts of ``piece``, or why there is none.

    The piece is cut, from its start, into consecutive windows of whole measures that each
    span at least ``TARGET_SECONDS - 3`` seconds (or reach the end of the piece). Windows
    with at least :data:`MIN_CONTENT_SECONDS` of music are usable; a whole piece of
    :data:`MIN_TWICE_SECONDS` to :data:`MIN_CONTENT_SECONDS` is usable played twice. The
    first usable window is always taken; further ones are spread evenly over the rest.
    """
    n_total = piece.n_measures
    bounds = piece.measures
    secs = piece.seconds(bounds)
    usable: list[Window] = []
    first_reason = None
    start = 0
    while start < n_total:
        end = start + 1
        while (end < n_total and secs[end] - secs[start] < TARGET_SECONDS - 3.0
               and end - start < MAX_MEASURES
               and bounds[end + 1] - bounds[start] <= MAX_QUARTERS):
            end += 1
        q0, q1 = bounds[start], bounds[end]
        inside = (piece.onset >= q0) & (piece.onset < q1)
        content = 0.0
        if inside.any():
            last = min(float(piece.end[inside].max()), q1)
            content = float(piece.seconds(last)) - float(secs[start])
        twice = start == 0 and end == n_total and MIN_TWICE_SECONDS <= content
        twice = twice and content < MIN_CONTENT_SECONDS
        if content >= MIN_CONTENT_SECONDS or twice:
            usable.append(Window(start, end, content, twice))
        elif first_reason is None:
            need = MIN_TWICE_SECONDS if start == 0 and end == n_total else MIN_CONTENT_SECONDS
            first_reason = (f"too short: {content:.1f} s of music in {end - start} measures "
                            f"(need {need} s)")
        start = end
    if not usable:
        return first_reason or "no measures"
    if len(usable) <= n_excerpts:
        return usable
    if n_excerpts == 1:
        return usable[:1]
    picks = sorted({round(i * (len(usable) - 1) / (n_excerpts - 1)) for i in range(n_excerpts)})
    return [usable[i] for i in picks]


def _render_window(job: ClipJob) -> Clip | str:
    """Render one excerpt to ``job.out_file``; a reason string if it is silent."""
    piece, window = job.excerpt.piece, job.excerpt.window
    q0, q1 = float(piece.measures[window.start]), float(piece.measures[window.end])
    inside = (piece.onset >= q0) & (piece.onset < q1)
    t0 = float(piece.seconds(q0))
    on = piece.seconds(piece.onset[inside]) - t0
    off = piece.seconds(np.minimum(piece.end[inside], q1)) - t0
    content = window.content
    total = 2 * content if window.played_twice else content
    duration = min(max(total + TAIL_SECONDS, MIN_SECONDS), MAX_SECONDS)
    notes = (on, off, piece.pitch[inside], piece.velocity[inside], piece.part[inside])
    audio = render_notes(notes, programs=piece.programs, soundfont=job.soundfont,
                         sample_rate=job.sample_rate, seconds=duration,
                         fade=total + TAIL_SECONDS > MAX_SECONDS,
                         repeat_at=content if window.played_twice else None)
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        return f"silent render (rms {rms:.2e})"
    write_ogg(job.out_file, audio, sample_rate=job.sample_rate)
    used = sorted(set(piece.part[inside].tolist()))
    return Clip(
        corpus_path=job.excerpt.corpus_path,
        tune=job.excerpt.tune,
        excerpt=job.excerpt.excerpt,
        measure_start=window.start + 1,
        measure_end=window.end,
        title=piece.title,
        composer=piece.composer,
        key=estimate_key(piece.pitch[inside],
                         np.minimum(piece.end[inside], q1) - piece.onset[inside]),
        tempo=piece.bpm_at(q0),
        duration=round(len(audio) / job.sample_rate, 3),
        played_twice=window.played_twice,
        programs="|".join(str(piece.programs[p]) for p in used),
        audio_file=job.out_file,
    )


def render_notes(
    notes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    programs: list[int],
    soundfont: str,
    sample_rate: int,
    seconds: float,
    fade: bool,
    repeat_at: float | None = None,
) -> np.ndarray:
    """Synthesise exactly ``seconds`` of mono float32 audio from a note list.

    Parameters
    ----------
    notes : tuple of np.ndarray
        ``(on, off, pitch, velocity, part)``: note-on and note-off times in seconds, MIDI
        pitch and velocity, and the index of each note's part in ``programs``.
    programs : list of int
        General MIDI program of each part; part ``i`` plays on channel ``i`` (skipping the
        percussion channel 9, wrapping after 15 parts).
    soundfont : str
        Path of an SF2 soundfont.
    sample_rate : int
        Output rate in Hz.
    seconds : float
        Length of the output; never more than :data:`MAX_SECONDS`.
    fade : bool
        Fade the last :data:`FADE_SECONDS` out (used when the music is cut).
    repeat_at : float, optional
        Play the notes a second time from this many seconds.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        Peak-normalised to 0.9 (unless silent).
    """
    import tinysoundfont

    seconds = min(seconds, MAX_SECONDS)
    n = int(round(seconds * sample_rate))
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(_soundfont_bytes(soundfont))
    for p, program in enumerate(programs):
        channel = _CHANNELS[p % len(_CHANNELS)]
        try:
            synth.program_select(channel, sfid, 0, int(program))
        except RuntimeError:
            synth.program_select(channel, sfid, 0, 0)
    on, off, pitch, velocity, part = notes
    if repeat_at is not None:
        on, off = np.concatenate((on, on + repeat_at)), np.concatenate((off, off + repeat_at))
        pitch, velocity, part = (np.concatenate((a, a)) for a in (pitch, velocity, part))
    channel_of = np.asarray(_CHANNELS, dtype=np.int64)[part.astype(np.int64) % len(_CHANNELS)]
    # (sample, kind, channel, key, velocity); at one instant note-offs come first.
    m = len(on)
    events = np.empty((2 * m, 5), dtype=np.int64)
    events[:m, 0] = np.round(np.asarray(on) * sample_rate)
    events[m:, 0] = np.round(np.maximum(np.asarray(off), np.asarray(on)) * sample_rate)
    events[:m, 1], events[m:, 1] = 1, 0
    events[:, 2] = np.tile(channel_of, 2)
    events[:, 3] = np.tile(pitch, 2)
    events[:, 4] = np.tile(velocity, 2)
    events = events[np.lexsort((events[:, 3], events[:, 2], events[:, 1], events[:, 0]))]
    buffer = memoryview(bytearray(n * 8))
    pos = 0
    for sample, kind, channel, key, vel in events.tolist():
        if sample >= n:
            break
        if sample > pos:
            synth.generate(sample - pos, buffer=buffer[pos * 8:sample * 8])
            pos = sample
        if kind:
            synth.noteon(channel, key, vel)
        else:
            synth.noteoff(channel, key)
    if pos < n:
        synth.generate(n - pos, buffer=buffer[pos * 8:])
    stereo = np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2)
    audio = stereo.mean(axis=1).astype(np.float32)
    if fade:
        k = min(int(FADE_SECONDS * sample_rate), n)
        audio[n - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak > 1e-6:
        audio *= np.float32(0.9 / peak)
    return audio


#: Aarden-Essen key profiles (music21's default ``analyze("key")``), from C.
_MAJOR_PROFILE = np.array([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248,
                           22.062, 0.145624, 8.15494, 0.232998, 4.95122])
_MINOR_PROFILE = np.array([18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494,
                           18.6161, 4.56621, 1.93186, 7.37619, 1.75623])
#: Tonic names in music21's spelling ("-" is a flat).
_MAJOR_TONICS = ("C", "D-", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")
_MINOR_TONICS = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")


def estimate_key(pitch: np.ndarray, quarters: np.ndarray) -> str:
    """The key of a passage by Krumhansl-Schmuckler correlation with Aarden-Essen profiles.

    Each pitch class is weighted by its notes' durations (as music21's
    ``analyze("key")`` does). Returns e.g. ``"G major"``, ``"E- minor"``, or ``""``.
    """
    hist = np.bincount(np.asarray(pitch, dtype=np.int64) % 12,
                       weights=np.asarray(quarters, dtype=np.float64), minlength=12)
    if not np.any(hist > 0) or np.allclose(hist, hist[0]):
        return ""
    best = (-2.0, "")
    for profile, tonics, mode in ((_MAJOR_PROFILE, _MAJOR_TONICS, "major"),
                                  (_MINOR_PROFILE, _MINOR_TONICS, "minor")):
        for tonic in range(12):
            r = float(np.corrcoef(np.roll(profile, tonic), hist)[0, 1])
            if r > best[0]:
                best = (r, f"{tonics[tonic]} {mode}")
    return best[1]


def write_ogg(path: str, audio: np.ndarray, *, sample_rate: int) -> None:
    """Write mono audio as OGG Vorbis."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="OGG", subtype="VORBIS")
    Path(path).write_bytes(buf.getvalue())


def _title(score: Any, corpus_path: str, tune: int | None) -> str:
    md = score.metadata
    title = None
    if md is not None:
        title = md.title or md.movementName
    title = " ".join(str(title or "").split())
    name = Path(corpus_path).name
    letters = sum(ch.isalpha() or ch == " " for ch in title)
    if not title or title == name or letters < 0.7 * len(title):
        # No title, the file name, or an encoding's garbage: name it after the file.
        title = Path(corpus_path).stem.replace("_", " ")
        if tune is not None:
            title = f"{title} #{tune + 1}"
    return title


def _composer(score: Any) -> str | None:
    md = score.metadata
    if md is None or not md.composer:
        return None
    return " ".join(str(md.composer).split())
