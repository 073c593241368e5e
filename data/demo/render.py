"""Render excerpts of music21 corpus scores to audio through a General MIDI soundfont.

One call of :func:`render_piece` parses one corpus file once and renders one or more
non-overlapping excerpts of it. Every known hazard of the corpus is guarded:

* the score is always cropped to a window of measures before MIDI is written (a full
  piece with expanded repeats once made a 19 GB file), and the window is capped at
  :data:`MAX_MEASURES` measures and :data:`MAX_QUARTERS` quarter notes;
* repeat barlines, repeat brackets and repeat expressions are stripped, so music21 never
  expands repeats of an excerpt;
* the MIDI bytes are capped at :data:`MAX_MIDI_BYTES`, and no more than
  :data:`MAX_SECONDS` seconds of audio are ever synthesised;
* opus files (many tunes in one file) give up to ``n_excerpts`` tunes, one excerpt each;
* a piece that raises (``StreamException``, a corrupt file, ...), is silent, or is shorter
  than :data:`MIN_CONTENT_SECONDS` is skipped and its reason returned, never raised.

Instruments come from the score's own parts (music21 writes each part's instrument as a
MIDI program), never from the style label.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Bump when rendering changes, to invalidate render caches.
RENDER_VERSION = "1"
#: Shortest musical content (seconds) an excerpt may have. A whole tune between
#: :data:`MIN_TWICE_SECONDS` and this is played twice (as folk tunes and hymns are);
#: anything shorter is skipped.
MIN_CONTENT_SECONDS = 19.0
MIN_TWICE_SECONDS = 10.0
#: Content length an excerpt's window of measures aims at.
TARGET_SECONDS = 25.0
#: Shortest and longest rendered clip (seconds), release tail included.
MIN_SECONDS = 20.0
MAX_SECONDS = 30.0
#: Seconds of release kept after the last note ends.
TAIL_SECONDS = 1.5
#: Fade-out applied when the content is cut at :data:`MAX_SECONDS`.
FADE_SECONDS = 1.0
#: Hard caps on an excerpt before and after MIDI is written.
MAX_MEASURES = 96
MAX_QUARTERS = 480.0
MAX_MIDI_BYTES = 512 * 1024
#: RMS below which a rendered clip counts as silent.
SILENCE_RMS = 1e-3
#: Tunes of an opus file tried for each tune wanted.
OPUS_TRIES_PER_TUNE = 3


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
    """One corpus file to parse and render (a plain record, so it crosses processes)."""

    path: str
    corpus_path: str
    n_excerpts: int
    out_dir: str
    file_stem: str
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

    Never raises for a fault of the piece: each skipped piece, tune or excerpt adds
    ``(where, reason)`` to :attr:`PieceResult.failures`.

    Parameters
    ----------
    job : RenderJob
        The file, how many excerpts to take, and where to write them
        (``{out_dir}/{file_stem}-{k}.ogg``).

    Returns
    -------
    PieceResult
    """
    if job.cache_dir:
        cached = _from_cache(job)
        if cached is not None:
            return cached
    result = PieceResult(job.corpus_path)
    with warnings.catch_warnings():
        # music21 warns about many encodings; a warning is not a failure of the piece
        # (and a caller's "error" filter, inherited by forked workers, must not make it one).
        warnings.simplefilter("ignore")
        try:
            _render_piece(job, result)
        except Exception as exc:  # a fault of one piece must not stop the build
            result.failures.append((job.corpus_path, _reason(exc)))
    if job.cache_dir:
        _to_cache(job, result)
    return result


def _cache_key(job: RenderJob) -> str:
    from importlib.metadata import version

    text = "\0".join((RENDER_VERSION, version("music21"), job.corpus_path, str(job.n_excerpts),
                      str(job.sample_rate), Path(job.soundfont).name))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _from_cache(job: RenderJob) -> PieceResult | None:
    folder = Path(job.cache_dir or ".")
    key = _cache_key(job)
    index = folder / f"{key}.json"
    if not index.is_file():
        return None
    try:
        record = json.loads(index.read_text(encoding="utf-8"))
        result = PieceResult(job.corpus_path,
                             failures=[(w, r) for w, r in record["failures"]])
        for i, fields in enumerate(record["clips"]):
            target = Path(job.out_dir) / f"{job.file_stem}-{fields['excerpt']}.ogg"
            shutil.copyfile(folder / f"{key}-{i}.ogg", target)
            result.clips.append(Clip(**{**fields, "audio_file": str(target)}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable render cache entry %s: %s", index, exc)
        return None
    return result


def _to_cache(job: RenderJob, result: PieceResult) -> None:
    folder = Path(job.cache_dir or ".")
    key = _cache_key(job)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        clips = []
        for i, clip in enumerate(result.clips):
            shutil.copyfile(clip.audio_file, folder / f"{key}-{i}.ogg")
            clips.append({k: v for k, v in asdict(clip).items() if k != "audio_file"})
        tmp = folder / f".{key}.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"clips": clips, "failures": result.failures}),
                       encoding="utf-8")
        tmp.replace(folder / f"{key}.json")
    except OSError as exc:
        log.warning("cannot write render cache entry in %s: %s", folder, exc)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _render_piece(job: RenderJob, result: PieceResult) -> None:
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
            if len(result.clips) >= job.n_excerpts:
                break
            where = f"{job.corpus_path}#{tune}"
            try:
                clip = _render_excerpt(scores[tune], job, tune=tune, excerpt=len(result.clips),
                                       start=0)
            except Exception as exc:
                result.failures.append((where, _reason(exc)))
                continue
            if isinstance(clip, str):
                result.failures.append((where, clip))
            else:
                result.clips.append(clip[0])
        return
    if not isinstance(parsed, stream.Score):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    start = 0
    for k in range(job.n_excerpts):
        where = f"{job.corpus_path}@{k}"
        try:
            clip = _render_excerpt(parsed, job, tune=None, excerpt=k, start=start)
        except Exception as exc:
            result.failures.append((where, _reason(exc)))
            return
        if isinstance(clip, str):
            # The first excerpt's reason is the piece's; a later one just ran out of piece.
            if k == 0:
                result.failures.append((where, clip))
            return
        result.clips.append(clip[0])
        start = clip[1]


def _strip_repeats(score: Any) -> None:
    from music21 import bar, repeat, spanner

    for el in list(score.recurse().getElementsByClass(
            (bar.Repeat, repeat.RepeatExpression))):
        site = el.activeSite
        if site is not None:
            site.remove(el)
    for sp in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        site = sp.activeSite
        if site is not None:
            site.remove(sp)


def _n_measures(score: Any) -> int:
    from music21 import stream

    parts = list(score.parts) or [score]
    return max(len(p.getElementsByClass(stream.Measure)) for p in parts)


def _render_excerpt(
    score: Any, job: RenderJob, *, tune: int | None, excerpt: int, start: int
) -> tuple[Clip, int] | str:
    """Render the excerpt of ``score`` that starts at measure index ``start``.

    Returns the clip and the index where the next excerpt may start, or a reason string.
    """
    from music21.midi.translate import streamToMidiFile

    if excerpt == 0 or tune is not None:
        _strip_repeats(score)
    n_total = _n_measures(score)
    if n_total == 0:
        return "no measures"
    if start >= n_total:
        return "no measures left"
    n = min(8, n_total - start, MAX_MEASURES)
    # Size the window from quarter lengths and the first tempo mark (cheap), then check
    # the real duration from the MIDI data (costly) and grow once or twice if needed.
    ex = score.measures(start, start + n - 1, indicesNotNumbers=True)
    quarters = float(ex.highestTime)
    if quarters > 0:
        estimate = quarters * 60.0 / _tempo(ex)
        if estimate < TARGET_SECONDS:
            n = min(math.ceil(n * TARGET_SECONDS / estimate), n_total - start, MAX_MEASURES)
    midi = b""
    seconds = 0.0
    for _ in range(4):
        ex = score.measures(start, start + n - 1, indicesNotNumbers=True)
        _strip_repeats(ex)
        if float(ex.highestTime) > MAX_QUARTERS:
            return f"excerpt of {n} measures spans {float(ex.highestTime):.0f} quarter notes"
        midi = streamToMidiFile(ex).writestr()
        if len(midi) > MAX_MIDI_BYTES:
            return f"MIDI of {n} measures is {len(midi)} bytes (cap {MAX_MIDI_BYTES})"
        seconds = _content_seconds(midi)
        if seconds >= TARGET_SECONDS - 3.0 or start + n >= n_total or n >= MAX_MEASURES:
            break
        grow = math.ceil(n * TARGET_SECONDS / seconds) if seconds > 0 else 2 * n
        n = min(max(grow, n + 1), n_total - start, MAX_MEASURES)
    twice = start == 0 and start + n >= n_total and MIN_TWICE_SECONDS <= seconds
    twice = twice and seconds < MIN_CONTENT_SECONDS
    if seconds < MIN_CONTENT_SECONDS and not twice:
        need = MIN_TWICE_SECONDS if start == 0 else MIN_CONTENT_SECONDS
        return f"too short: {seconds:.1f} s of music in {n} measures (need {need} s)"
    content = 2 * seconds if twice else seconds
    duration = min(max(content + TAIL_SECONDS, MIN_SECONDS), MAX_SECONDS)
    audio = render_midi(midi, soundfont=job.soundfont, sample_rate=job.sample_rate,
                        seconds=duration, fade=content + TAIL_SECONDS > MAX_SECONDS,
                        repeat_at=seconds if twice else None)
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < SILENCE_RMS:
        return f"silent render (rms {rms:.2e})"
    stem = f"{job.file_stem}-{excerpt}"
    audio_file = str(Path(job.out_dir) / f"{stem}.ogg")
    write_ogg(audio_file, audio, sample_rate=job.sample_rate)
    clip = Clip(
        corpus_path=job.corpus_path,
        tune=tune,
        excerpt=excerpt,
        measure_start=start + 1,
        measure_end=start + n,
        title=_title(score, job.corpus_path, tune),
        composer=_composer(score),
        key=_key(ex),
        tempo=_tempo(ex),
        duration=round(len(audio) / job.sample_rate, 3),
        played_twice=twice,
        programs=_programs(ex),
        audio_file=audio_file,
    )
    return clip, start + n


def _content_seconds(midi: bytes) -> float:
    """Seconds from the start of the MIDI data to its last event."""
    from tinysoundfont.midi import load_memory

    events = load_memory(midi, persistent=False)
    return float(events[-1].t) if events else 0.0


def render_midi(
    midi: bytes,
    *,
    soundfont: str,
    sample_rate: int,
    seconds: float,
    fade: bool,
    repeat_at: float | None = None,
) -> np.ndarray:
    """Synthesise exactly ``seconds`` of mono float32 audio from Standard MIDI bytes.

    Parameters
    ----------
    midi : bytes
        A Standard MIDI file.
    soundfont : str
        Path of an SF2 soundfont.
    sample_rate : int
        Output rate in Hz.
    seconds : float
        Length of the output; never more than :data:`MAX_SECONDS`.
    fade : bool
        Fade the last :data:`FADE_SECONDS` out (used when the music is cut).
    repeat_at : float, optional
        Play the MIDI data a second time from this many seconds.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        Peak-normalised to 0.9 (unless silent).
    """
    import tinysoundfont
    from tinysoundfont.midi import load_memory

    seconds = min(seconds, MAX_SECONDS)
    n = int(round(seconds * sample_rate))
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    synth.sfload(_soundfont_bytes(soundfont))
    seq = tinysoundfont.Sequencer(synth)
    events = load_memory(midi, persistent=False)
    if repeat_at is not None:
        events += load_memory(midi, delta_time=repeat_at, persistent=False)
    seq.add(events)
    buffer = synth.generate(n)
    stereo = np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2)[:n]
    audio = stereo.mean(axis=1).astype(np.float32)
    if fade:
        m = min(int(FADE_SECONDS * sample_rate), n)
        audio[n - m:] *= np.linspace(1.0, 0.0, m, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak > 1e-6:
        audio *= np.float32(0.9 / peak)
    return audio


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


def _key(ex: Any) -> str:
    try:
        k = ex.analyze("key")
        return f"{k.tonic.name} {k.mode}"
    except Exception:
        return ""


def _tempo(ex: Any) -> float:
    from music21 import tempo

    mark = ex.recurse().getElementsByClass(tempo.MetronomeMark).first()
    if mark is None:
        return 120.0
    try:
        bpm = mark.getQuarterBPM()
    except Exception:
        bpm = None
    return round(float(bpm), 1) if bpm else 120.0


def _programs(ex: Any) -> str:
    """The General MIDI programs of the excerpt's parts, ``|``-joined (``""`` if unknown)."""
    from music21 import instrument

    programs = []
    for part in list(ex.parts) or [ex]:
        inst = part.recurse().getElementsByClass(instrument.Instrument).first()
        program = getattr(inst, "midiProgram", None)
        programs.append(str(program if program is not None else 0))
    return "|".join(programs)
