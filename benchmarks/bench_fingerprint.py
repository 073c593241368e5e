"""Benchmark of landmark fingerprinting (``musicrec.embedding.fingerprint``).

Data: the real recordings of ``../shared/datasets/librosa-audio/`` (librosa's example
audio; licences in each ``.txt``). The catalogue holds the music recordings decoded from
their ``.ogg`` files; every query is cut from the *other* encoding (``.hq.ogg``, 44.1 kHz
stereo), at ``--offsets`` random offsets per recording, so no query is a bit-exact copy of
the indexed audio. Conditions (top-1 = the right track and an offset within 0.1 s of the
truth, among *all* queries: a "no match" counts as a miss):

* clean snippets of 10, 5 and 3 s;
* 10-s clips with white noise at 20, 10 and 5 dB SNR, and 5-s clips at 10 dB;
* 10-s clips at gain −12 dB;
* 10-s clips re-encoded as OGG Vorbis at the lowest quality, and as 32-kb/s MP3
  (libsndfile's encoders, through soundfile);
* 10-s clips resampled to 8 kHz and back.

False matches: clips that are not in the catalogue — leave-one-out music (each music
recording queried, clean and at 10 dB SNR, against an index of all the *other* music),
speech, a dog, a robin and a whale (against the full music index), and white and pink noise
— must give "no match"; the false-match rate is the share that gives any match. Their best
scores are printed as the null distribution that sets ``min_votes``/``min_ratio``.

A phone in a room (``--sections room``): 5-s excerpts through a telephone band (4th-order
Butterworth band-pass, 300–3400 Hz), a short room reverb (a synthetic impulse response:
the direct path plus an exponentially decaying Gaussian tail of equal energy, RT60
0.3 s), white noise at 10 dB SNR (relative to the clip as degraded so far), each alone and
all three in that order. One index holds librosa's music (``.ogg``; queries from
``.hq.ogg``), every second track of the real-music set (``--real-music``, the Debian game
soundtracks of ``benchmarks/real_music/build_set.py``; the other half is *held out*), and
the demo dataset's tracks (``--demo``, a folder made by ``musicrec demo``). Top-1 counts
the right track (game music loops, so a clip often plays at several offsets of its track;
the offset is not checked here). False matches: the held-out real-music tracks under every
condition, librosa's speech and animal recordings, white and pink noise. Game soundtracks
re-use material (a loop, an older version of a track): a held-out track whose *whole
length* aligns with one catalogue track in at least ``--shared-votes`` (30) landmarks at
one offset is listed as sharing audio, and its clips' matches are counted apart (column
"shared"), not as false matches. Times are medians of ``identify`` on one 5-s clip
(fingerprinting the clip included). The columns "without verification" decide the same
clips, in the same run, by the vote alone (format 3's rule: 8 anchors, strictly above the
runner-up; ``min_peaks=None``), so the verification stage's effect and cost are measured
side by side. ``--seed`` draws other clips: the thresholds were chosen on ``--seed 0`` and
confirmed on ``--seed 1``.

Cost (``--sections cost``): CPU seconds of ``fingerprint`` on ``--cost-tracks`` full-length
recordings of the real-music set (>= 3 min), from signals already at ``params.sr``.

Scale: index size (bytes per track) and query time at 1k, 10k and 100k tracks. The tracks
beyond the real ones are *synthetic hash streams with realistic statistics*: each is a
random ``--synthetic-s``-second window of a real recording's landmarks, pitch-shifted by
a random ±2..40 frequency bins and time-stretched by a random factor 0.8..1.25 in hash
space (f1, f2 shifted; dt and anchor times scaled), so hash frequencies follow real music.
Queries there are 10-s clips at 10 dB SNR of the real recordings, which stay in the index.

Run::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fingerprint.py \
        --data ../shared/datasets/librosa-audio --offsets 30 --scale 1000 10000 100000 \
        --real-music ~/.cache/musicrec/real_music --demo demo/data
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from musicrec.embedding.fingerprint import (
    Fingerprint,
    FingerprintIndex,
    FingerprintParams,
    find_duplicates,
    fingerprint,
    join_hashes,
    load_audio,
    resample,
    split_hashes,
)

log = logging.getLogger("bench_fingerprint")

NOT_MUSIC = ("198-209-0000", "3436-172162-0000", "5703-47212-0000", "pibble",
             "456440__inspectorj__bird-whistling-robin-single-13", "glacier-bay-humpback")
SR_QUERY = 22050
KBPS: dict[str, list[float]] = {}  # measured bitrates of the re-encoded clips
SECTIONS = ("conditions", "room", "false", "duplicates", "scale", "cost")


def recordings(data: Path) -> tuple[list[str], list[str]]:
    """Stems of the music and the non-music recordings that decode."""
    music, other = [], []
    for path in sorted(data.glob("*.hq.ogg")):
        stem = path.name[: -len(".hq.ogg")]
        try:
            sf.info(str(path))
        except Exception:  # noqa: BLE001 - librosa's data ships two broken stubs
            continue
        (other if stem in NOT_MUSIC else music).append(stem)
    return music, other


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(y**2)) + 1e-12
    noise = rng.standard_normal(y.size).astype(np.float32)
    return (y + noise * np.sqrt(power / 10 ** (snr_db / 10))).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    y = np.fft.irfft(spectrum, n)
    return (0.1 * y / np.std(y)).astype(np.float32)


def reencode(y: np.ndarray, sr: int, fmt: str) -> np.ndarray:
    buf = io.BytesIO()
    if fmt == "OGG":
        sf.write(buf, y, sr, format="OGG", subtype="VORBIS", compression_level=1.0)
    else:
        sf.write(buf, y, sr, format="MP3", subtype="MPEG_LAYER_III",
                 bitrate_mode="CONSTANT", compression_level=0.9)
    KBPS.setdefault(fmt, []).append(buf.tell() * 8 / (y.size / sr) / 1000)
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return out[: y.size]


def conditions(rng: np.random.Generator) -> dict[str, tuple[float, object]]:
    """Condition name -> (clip seconds, transform of a clip at SR_QUERY)."""
    def noise(snr: float):  # noqa: ANN202
        return lambda y: add_noise(y, snr, rng)
    return {
        "clean 10 s": (10, None),
        "clean 5 s": (5, None),
        "clean 3 s": (3, None),
        "10 s, white noise 20 dB": (10, noise(20)),
        "10 s, white noise 10 dB": (10, noise(10)),
        "10 s, white noise 5 dB": (10, noise(5)),
        "5 s, white noise 10 dB": (5, noise(10)),
        "10 s, gain -12 dB": (10, lambda y: y * 10 ** (-12 / 20)),
        "10 s, OGG Vorbis lowest q": (10, lambda y: reencode(y, SR_QUERY, "OGG")),
        "10 s, MP3 CBR low": (10, lambda y: reencode(y, SR_QUERY, "MP3")),
        "10 s, 8 kHz and back": (10, lambda y: resample(
            resample(y, orig_sr=SR_QUERY, sr=8000), orig_sr=8000, sr=SR_QUERY)),
    }


def phone_band(y: np.ndarray, sr: int) -> np.ndarray:
    """A telephone's pass band: 4th-order Butterworth, 300–3400 Hz."""
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, y).astype(np.float32)


def room_reverb(y: np.ndarray, sr: int, rng: np.random.Generator,
                rt60: float = 0.3) -> np.ndarray:
    """Convolve with a synthetic room: the direct path plus a Gaussian tail of equal
    energy decaying by 60 dB in ``rt60`` seconds."""
    t = np.arange(1, int(rt60 * sr)) / sr
    tail = rng.standard_normal(t.size) * np.exp(-np.log(1000.0) * t / rt60)
    h = np.concatenate([[1.0], tail / np.sqrt(np.sum(tail**2))])
    return signal.fftconvolve(y, h)[: y.size].astype(np.float32)


def room_conditions(rng: np.random.Generator) -> dict[str, object]:
    """Condition name -> transform of a 5-s clip at SR_QUERY (a phone in a room)."""
    def everything(y: np.ndarray) -> np.ndarray:
        return add_noise(phone_band(room_reverb(y, SR_QUERY, rng), SR_QUERY), 10, rng)
    return {
        "5 s clean": None,
        "5 s, phone band 300-3400 Hz": lambda y: phone_band(y, SR_QUERY),
        "5 s, room reverb 0.3 s": lambda y: room_reverb(y, SR_QUERY, rng),
        "5 s, white noise 10 dB": lambda y: add_noise(y, 10, rng),
        "5 s, all three": everything,
    }


def room_sources(args: argparse.Namespace, music: list[str]) -> list[tuple[str, str, Path,
                                                                             Path, bool]]:
    """``(source, track_id, catalogue file, query file, in catalogue)`` of the phone-in-a-room
    section: librosa's music, the real-music set (every second track held out), the demo."""
    rows = [("librosa", stem, args.data / f"{stem}.ogg", args.data / f"{stem}.hq.ogg", True)
            for stem in music]
    real = args.real_music / "catalog.csv" if args.real_music else None
    if real is not None and real.is_file():
        with real.open() as f:
            tracks = [r for r in csv.DictReader(f) if r["label"] != "librosa"]
        tracks.sort(key=lambda r: r["track_id"])
        for i, r in enumerate(tracks):
            path = args.real_music / r["audio_path"]
            rows.append(("real-music", r["track_id"], path, path, i % 2 == 0))
    else:
        print(f"(no real-music set at {args.real_music}: build it with "
              "benchmarks/real_music/build_set.py)")
    demo = args.demo / "catalog.csv" if args.demo else None
    if demo is not None and demo.is_file():
        with demo.open() as f:
            tracks = list(csv.DictReader(f))
        for r in tracks[: args.demo_tracks]:
            path = args.demo / r["audio_path"]
            rows.append(("demo", r["track_id"], path, path, True))
    else:
        print(f"(no demo dataset at {args.demo}: make one with `musicrec demo`)")
    return rows


def phone_in_a_room(args: argparse.Namespace, params: FingerprintParams, music: list[str],
                    other: list[str], rng: np.random.Generator) -> dict[str, object]:
    """Top-1 and false matches of 5-s clips through a phone band, reverb and noise."""
    sources = room_sources(args, music)
    index = FingerprintIndex(params=params)
    clips: list[tuple[str, str, bool, np.ndarray]] = []  # source, track, in catalogue, clip
    seconds = 0.0
    fp_s = 0.0
    n = 5 * SR_QUERY
    held_out: dict[str, Fingerprint] = {}  # whole held-out tracks, for the shared-audio check
    for source, track_id, cat_path, query_path, in_cat in sources:
        y = load_audio(query_path, sr=SR_QUERY)
        if in_cat:
            t0 = time.perf_counter()
            fp = fingerprint(y if cat_path == query_path else cat_path, sr=SR_QUERY,
                             params=params)
            fp_s += time.perf_counter() - t0
            index.add(track_id, fp)
            seconds += fp.duration_s
        else:
            held_out[track_id] = fingerprint(y, sr=SR_QUERY, params=params)
        if y.size < n:
            continue
        for start in rng.integers(0, y.size - n + 1, size=args.room_offsets):
            clips.append((source, track_id, in_cat, y[start:start + n].copy()))
        del y
    for stem in other:
        y = load_audio(args.data / f"{stem}.hq.ogg", sr=SR_QUERY)
        if y.size >= n:
            for start in rng.integers(0, y.size - n + 1, size=args.room_offsets):
                clips.append(("speech/animal", stem, False, y[start:start + n].copy()))
    for _ in range(args.room_offsets * 2):
        clips.append(("noise", "white", False,
                      rng.standard_normal(n).astype(np.float32) * 0.1))
        clips.append(("noise", "pink", False, pink_noise(n, rng)))
    index.build()
    # A held-out track "shares audio" with the catalogue when its whole length aligns with
    # one catalogue track in >= --shared-votes landmarks at one offset (a re-used loop or
    # an old version of a track: game soundtracks re-use material); chance alignments of
    # whole 4-minute tracks reach about 25 here. Their clips are reported apart.
    shared: dict[str, tuple[str, int]] = {}
    for track_id, fp in held_out.items():
        tracks, _, scores, _, _ = index._votes(fp.hashes, fp.times, distinct_anchors=False)
        if scores.size and int(scores.max()) >= args.shared_votes:
            best = int(np.argmax(scores))
            shared[track_id] = (str(index.track_ids_[tracks[best]]), int(scores[best]))
    print(f"held-out tracks sharing audio with a catalogue track (whole-track alignment >= "
          f"{args.shared_votes} landmarks): {shared}")
    counts = {src: sum(c[0] == src and c[2] for c in clips)
              for src in ("librosa", "real-music", "demo")}
    n_neg = sum(not c[2] for c in clips)
    n_shared = sum(not c[2] and c[1] in shared for c in clips)
    print(f"\nphone in a room: index of {len(index)} tracks ({seconds / 3600:.2f} h, "
          f"{index.n_postings} hashes, {index.nbytes / 1e6:.1f} MB, fingerprinting "
          f"{seconds / max(fp_s, 1e-9):.0f}x real time); catalogue clips per source "
          f"{counts}, {n_neg} clips not in the catalogue ({n_shared} of tracks sharing audio)")
    head = " ".join(f"{src:>10s}" for src in counts)
    print(f"{'condition':28s} {head} {'all':>6s} {'false':>7s} {'shared':>6s} "
          f"{'ms median':>9s} | without verification: {'all':>6s} {'false':>7s} "
          f"{'ms median':>9s}")
    verify = index.min_peaks
    out: dict[str, object] = {"tracks": len(index), "postings": index.n_postings,
                              "bytes": index.nbytes, "clips": counts, "negatives": n_neg}
    null: list[int] = []
    false_list: list[tuple[str, str, str, int, int]] = []
    for name, transform in room_conditions(rng).items():
        right = dict.fromkeys(counts, 0)
        false = false_shared = right_old = false_old = 0
        times, times_old = [], []
        for source, track_id, in_cat, clip in clips:
            y = clip if transform is None else transform(clip)  # type: ignore[operator]
            t0 = time.perf_counter()
            match = index.identify(y, sr=SR_QUERY)
            times.append(time.perf_counter() - t0)
            # the previous rule on the same clip: 8 anchors, strictly above the runner-up,
            # no verification stage (its time is the lookup without verification)
            index.min_peaks = None
            t0 = time.perf_counter()
            old = index.identify(y, sr=SR_QUERY, min_votes=8)
            times_old.append(time.perf_counter() - t0)
            index.min_peaks = verify
            if in_cat:
                right_old += bool(old and old.track_id == track_id)
            elif track_id not in shared:
                false_old += old is not None
            if in_cat:
                right[source] += bool(match and match.track_id == track_id)
            elif track_id in shared:
                false_shared += match is not None
            else:
                false += match is not None
                if match is not None:
                    false_list.append((name, track_id, match.track_id, match.score,
                                       match.second_score))
                ranked = index.query(y, sr=SR_QUERY, n=1)
                null.append(ranked[0][2] if ranked else 0)
        ms = float(np.median(times)) * 1000
        ms_old = float(np.median(times_old)) * 1000
        rates = {src: right[src] / max(1, counts[src]) for src in counts}
        total = sum(right.values()) / max(1, sum(counts.values()))
        total_old = right_old / max(1, sum(counts.values()))
        cells = " ".join(f"{rates[src]:10.3f}" for src in counts)
        print(f"{name:28s} {cells} {total:6.3f} {false:3d}/{n_neg - n_shared:<3d} "
              f"{false_shared:3d}/{n_shared:<2d} {ms:9.1f} | {'':22s} {total_old:6.3f} "
              f"{false_old:3d}/{n_neg - n_shared:<3d} {ms_old:9.1f}")
        out[name] = {"top1": rates, "top1_all": total, "false": false,
                     "false_shared": false_shared, "ms_median": ms,
                     "without_verification": {"top1_all": total_old, "false": false_old,
                                              "ms_median": ms_old}}
    for name, clip_of, matched, score, second in false_list:
        print(f"  false match ({name}): a clip of {clip_of} -> {matched}, score {score}, "
              f"second {second}")
    per_hash = index.nbytes / max(1, index.n_postings)
    print(f"  identify = fingerprint the 5-s clip + lookup; index {per_hash:.2f} bytes a hash")
    print(f"  null best score (not in the catalogue, not sharing audio; every condition): "
          f"median "
          f"{np.median(null):.0f}, p99 {np.quantile(null, 0.99):.0f}, max {max(null)}; "
          f"min_votes={index.min_votes}, min_ratio={index.min_ratio}, "
          f"min_peaks={index.min_peaks}")
    return out


def fingerprint_cost(args: argparse.Namespace, params: FingerprintParams) -> dict[str, float]:
    """CPU seconds of :func:`fingerprint` on full-length recordings (>= 3 min of the
    real-music set), from a signal already at ``params.sr`` (decoding excluded)."""
    real = args.real_music / "catalog.csv"
    with real.open() as f:
        rows = [r for r in csv.DictReader(f)
                if r["label"] != "librosa" and float(r["duration_s"]) >= 180]
    rows = rows[:: max(1, len(rows) // args.cost_tracks)][: args.cost_tracks]
    signals = [load_audio(args.real_music / r["audio_path"], sr=params.sr) for r in rows]
    seconds = sum(y.size for y in signals) / params.sr
    cpu = []
    for _ in range(3):
        t0 = time.process_time()
        for y in signals:
            fingerprint(y, sr=params.sr, params=params)
        cpu.append(time.process_time() - t0)
    per_track = min(cpu) / len(signals)
    per_260 = min(cpu) / seconds * 260
    print(f"\nfingerprint cost: {len(signals)} full-length tracks ({seconds / len(signals):.0f} s "
          f"mean), best of 3: {per_track:.3f} CPU-s a track, {per_260:.3f} CPU-s per 4:20 of "
          f"audio (decoding excluded)")
    return {"tracks": len(signals), "cpu_s_per_track": per_track, "cpu_s_per_260_s": per_260}


def synthetic_stream(fp: Fingerprint, *, seconds: float, params: FingerprintParams,
                     rng: np.random.Generator) -> Fingerprint:
    """A random window of ``fp`` pitch-shifted and time-stretched in hash space."""
    fb = params.freq_bits
    f1, f2, dt = split_hashes(fp.hashes, params)
    t = fp.times.astype(np.int64)
    # never the identity: a copy at shift 0 and stretch 1 would be a true duplicate
    stretch = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    shift = int(rng.choice([-1, 1]) * rng.integers(2, 41))
    f1, f2 = f1 + shift, f2 + shift
    dt = np.rint(dt * stretch).astype(np.int64)
    t = np.rint(t * stretch).astype(np.int64)
    n_frames = int(seconds / params.frame_s)
    start = int(rng.integers(0, max(1, t.max(initial=0) - n_frames)))
    ok = ((f1 >= 0) & (f1 < 2**fb) & (f2 >= 0) & (f2 < 2**fb) & (dt >= 1)
          & (dt <= params.max_dt) & (t >= start) & (t < start + n_frames))
    hashes = join_hashes(f1[ok], f2[ok], dt[ok], params)
    return Fingerprint(hashes=hashes, times=(t[ok] - start).astype(np.uint32),
                       duration_s=seconds)


def query_fingerprint(clip: np.ndarray, params: FingerprintParams) -> Fingerprint:
    """A clip hashed as a query. Releases before the denser query side had no ``query``
    keyword; the fallback lets this script measure them too (run with their package)."""
    if "query" in inspect.signature(fingerprint).parameters:
        return fingerprint(clip, sr=SR_QUERY, params=params, query=True)
    return fingerprint(clip, sr=SR_QUERY, params=params)


def top1(index: FingerprintIndex, queries: list[tuple[str, float, np.ndarray]]) -> float:
    right = 0
    for stem, offset, clip in queries:
        match = index.identify(clip, sr=SR_QUERY)
        right += bool(match and match.track_id == stem and abs(match.offset_s - offset) < 0.1)
    return right / max(1, len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/librosa-audio"))
    parser.add_argument("--offsets", type=int, default=30,
                        help="random query offsets per recording and condition")
    parser.add_argument("--scale", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--synthetic-s", type=float, default=30.0,
                        help="seconds of audio per synthetic track")
    parser.add_argument("--scale-queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", help='FingerprintParams overrides as JSON, e.g. '
                        '\'{"fan_out": 5}\'')
    parser.add_argument("--real-music", type=Path, default=Path.home() / ".cache" / "musicrec"
                        / "real_music", help="the real-music set (its catalog.csv)")
    parser.add_argument("--demo", type=Path, default=Path("demo/data"),
                        help="a demo dataset folder (catalog.csv and audio/)")
    parser.add_argument("--demo-tracks", type=int, default=150)
    parser.add_argument("--room-offsets", type=int, default=3,
                        help="5-s clips per recording in the phone-in-a-room section")
    parser.add_argument("--cost-tracks", type=int, default=12,
                        help="full-length recordings timed in the cost section")
    parser.add_argument("--shared-votes", type=int, default=30,
                        help="whole-track aligned landmarks from which a held-out track "
                        "counts as sharing audio with the catalogue")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    overrides = json.loads(args.params) if args.params else {}
    params = FingerprintParams(**overrides)
    music, other = recordings(args.data)
    results: dict[str, object] = {"n_music": len(music), "params": params.to_dict()}

    t0 = time.perf_counter()
    catalogue = {stem: fingerprint(args.data / f"{stem}.ogg", params=params) for stem in music}
    fp_time = time.perf_counter() - t0
    seconds = sum(fp.duration_s for fp in catalogue.values())
    index = FingerprintIndex(params=params)
    for stem, fp in catalogue.items():
        index.add(stem, fp)
    index.build()
    print(f"catalogue: {len(music)} music recordings, {seconds:.0f} s of audio, "
          f"{index.n_postings} hashes ({index.n_postings / seconds:.0f}/s), "
          f"fingerprinting {seconds / fp_time:.0f}x real time")
    results["hashes_per_s"] = index.n_postings / seconds

    hq = {stem: load_audio(args.data / f"{stem}.hq.ogg", sr=SR_QUERY) for stem in music}
    if "conditions" in args.sections:
        # -- identification under each condition ------------------------------------------
        print(f"\n{'condition':28s} {'queries':>7s} {'top-1':>6s} {'ms/query':>8s}")
        cond_results = {}
        for name, (clip_s, transform) in conditions(rng).items():
            queries = []
            for stem in music:
                y = hq[stem]
                n = int(clip_s * SR_QUERY)
                if y.size < n:
                    continue
                for start in rng.integers(0, y.size - n + 1, size=args.offsets):
                    clip = y[start:start + n]
                    if transform is not None:
                        clip = transform(clip)  # type: ignore[operator]
                    queries.append((stem, start / SR_QUERY, clip))
            t0 = time.perf_counter()
            acc = top1(index, queries)
            ms = (time.perf_counter() - t0) / max(1, len(queries)) * 1000
            cond_results[name] = {"queries": len(queries), "top1": acc, "ms": ms}
            print(f"{name:28s} {len(queries):7d} {acc:6.3f} {ms:8.1f}")
        results["conditions"] = cond_results
        results["kbps"] = {fmt: float(np.median(v)) for fmt, v in KBPS.items()}
        print("re-encoded bitrates (median): "
              + ", ".join(f"{fmt} {np.median(v):.0f} kb/s" for fmt, v in KBPS.items()))

    if "false" in args.sections:
        # -- false matches ------------------------------------------------------------------
        null_best: list[tuple[str, int, int]] = []
        false = 0
        n_null = 0

        def null_query(idx: FingerprintIndex, label: str, clip: np.ndarray) -> None:
            nonlocal false, n_null
            ranked = idx.query(clip, sr=SR_QUERY, n=2)
            best = ranked[0][2] if ranked else 0
            second = ranked[1][2] if len(ranked) > 1 else 0
            null_best.append((label, best, second))
            false += idx.identify(clip, sr=SR_QUERY) is not None
            n_null += 1

        for held in music:
            loo = FingerprintIndex(params=params)
            for stem, fp in catalogue.items():
                if stem != held:
                    loo.add(stem, fp)
            loo.build()
            y = hq[held]
            for clip_s, snr in ((10, None), (5, None), (10, 10.0)):
                n = min(int(clip_s * SR_QUERY), y.size)
                for start in rng.integers(0, y.size - n + 1, size=max(1, args.offsets // 3)):
                    clip = y[start:start + n]
                    null_query(loo, "music (leave-one-out)",
                               clip if snr is None else add_noise(clip, snr, rng))
        for stem in other:
            y = load_audio(args.data / f"{stem}.hq.ogg", sr=SR_QUERY)
            n = min(int(10 * SR_QUERY), y.size)
            for start in rng.integers(0, y.size - n + 1, size=args.offsets):
                null_query(index, "speech/animal", y[start:start + n])
        for _ in range(args.offsets):
            null_query(index, "noise", rng.standard_normal(10 * SR_QUERY).astype(np.float32) * 0.1)
            null_query(index, "noise", pink_noise(10 * SR_QUERY, rng))
        best = np.array([b for _, b, _ in null_best])
        print(f"\nfalse matches: {false} of {n_null} non-catalogue clips "
              f"({false / n_null:.2%}); thresholds min_votes={index.min_votes}, "
              f"min_ratio={index.min_ratio}")
        for label in sorted({lab for lab, _, _ in null_best}):
            b = np.array([x for lab, x, _ in null_best if lab == label])
            print(f"  null best score, {label:22s} n={b.size:4d} median {np.median(b):.0f} "
                  f"p99 {np.quantile(b, 0.99):.0f} max {b.max()}")
        results["false_match"] = {"n": n_null, "false": false, "rate": false / n_null,
                                  "null_best_max": int(best.max()),
                                  "null_best_p99": float(np.quantile(best, 0.99))}

    if "duplicates" in args.sections:
        # -- duplicates and round trip ------------------------------------------------------
        dup = FingerprintIndex(params=params)
        for stem in music:
            dup.add(f"{stem}.ogg", catalogue[stem])
            dup.add(f"{stem}.hq.ogg", args.data / f"{stem}.hq.ogg")
        for stem in other:
            dup.add(f"{stem}.ogg", args.data / f"{stem}.ogg")
        dup.build()
        t0 = time.perf_counter()
        groups = find_duplicates(dup)
        dup_s = time.perf_counter() - t0
        pairs_right = sum(len(g.track_ids) == 2 and g.track_ids[0].replace(".ogg", "")
                          == g.track_ids[1].replace(".hq.ogg", "") for g in groups)
        print(f"\nduplicates: {len(groups)} groups among {len(dup)} tracks "
              f"({pairs_right} are exactly a .ogg/.hq.ogg pair of the {len(music)} music "
              f"pairs), {dup_s:.2f} s")
        results["duplicates"] = {"groups": len(groups), "right_pairs": pairs_right,
                                 "tracks": len(dup)}

    if "scale" in args.sections:
        # -- scale -------------------------------------------------------------------------
        fps = list(catalogue.values())
        scale_results = {}
        for n_tracks in args.scale:
            big = FingerprintIndex(params=params)
            for stem, fp in catalogue.items():
                big.add(stem, fp)
            for i in range(n_tracks - len(music)):
                src = fps[int(rng.integers(len(fps)))]
                big.add(f"synthetic-{i}", synthetic_stream(src, seconds=args.synthetic_s,
                                                           params=params, rng=rng))
            t0 = time.perf_counter()
            big.build()
            build_s = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as tmp:
                big.save(Path(tmp) / "fp")
                size = sum(f.stat().st_size for f in (Path(tmp) / "fp").iterdir())
                loaded = FingerprintIndex.load(Path(tmp) / "fp", mmap=True)
                queries = []
                for _ in range(args.scale_queries):
                    stem = music[int(rng.integers(len(music)))]
                    y = hq[stem]
                    n = min(10 * SR_QUERY, y.size)
                    start = int(rng.integers(0, y.size - n + 1))
                    clip = add_noise(y[start:start + n], 10, rng)
                    queries.append((stem, start / SR_QUERY, query_fingerprint(clip, params)))
                times = []
                right = 0
                for stem, offset, qfp in queries:
                    t0 = time.perf_counter()
                    match = loaded.identify(qfp)
                    times.append(time.perf_counter() - t0)
                    right += bool(match and match.track_id == stem
                                  and abs(match.offset_s - offset) < 0.1)
                del loaded
            row = {"tracks": n_tracks, "postings": big.n_postings, "bytes": size,
                   "bytes_per_track": size / n_tracks, "build_s": build_s,
                   "lookup_ms_median": float(np.median(times) * 1000),
                   "lookup_ms_p95": float(np.quantile(times, 0.95) * 1000),
                   "top1": right / len(queries), "queries": len(queries)}
            scale_results[n_tracks] = row
            print(f"scale {n_tracks:>7d} tracks: {size / 1e6:8.1f} MB "
                  f"({size / n_tracks / 1e3:.1f} kB/track), lookup median "
                  f"{row['lookup_ms_median']:.1f} ms (p95 {row['lookup_ms_p95']:.1f}), "
                  f"top-1 {row['top1']:.3f} on {len(queries)} queries, build {build_s:.1f} s")
            del big
        results["scale"] = scale_results
    if "room" in args.sections:
        results["room"] = phone_in_a_room(args, params, music, other, rng)
    if "cost" in args.sections:
        results["cost"] = fingerprint_cost(args, params)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
