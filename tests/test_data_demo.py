"""The embedded demo dataset: rendered corpus excerpts, the build, its errors.

The tiny dataset (40 tracks, 50 users: about 10-15 s on 2 cores) is built once per session
with a parse-and-render cache that later builds reuse (a cached rebuild takes < 1 s).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicrec.cli import main
from musicrec.data.catalog import read_catalog
from musicrec.data.demo import CATALOG_COLUMNS, build_demo_dataset
from musicrec.data.demo import build as build_module
from musicrec.data.demo.build import style_quotas
from musicrec.data.demo.render import (
    Clip,
    ClipJob,
    ParseJob,
    Piece,
    RenderJob,
    default_soundfont,
    estimate_key,
    excerpt_windows,
    parse_file,
    render_clip,
    render_notes,
    render_piece,
)
from musicrec.data.logs import read_log
from musicrec.errors import ParameterError

TINY = {"n_tracks": 40, "n_users": 50, "seed": 0}


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-render-cache")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory, render_cache: Path) -> Path:
    """A 40-track, 50-user demo dataset, built once per session (about 10-15 s)."""
    out = tmp_path_factory.mktemp("demo") / "tiny"
    build_demo_dataset(out, **TINY, show_progress=False, cache_dir=render_cache)
    return out


def test_layout_and_counts(tiny_demo: Path) -> None:
    catalog = read_catalog(tiny_demo / "catalog.csv")
    assert len(catalog) == 40
    assert list(catalog.frame.columns) == list(CATALOG_COLUMNS)
    assert catalog.track_ids == [f"t{i:05d}" for i in range(40)]
    log_ = read_log(tiny_demo / "plays.csv")
    assert log_.n_users == 50
    assert log_.has_timestamps
    assert set(log_.tracks) <= set(catalog.track_ids)
    raw = pd.read_csv(tiny_demo / "plays.csv")
    assert list(raw.columns) == ["user", "track", "timestamp", "plays"]
    assert int(raw["plays"].sum()) == int(log_.plays.sum())
    info = json.loads((tiny_demo / "truth" / "model.json").read_text())
    assert info["n_tracks"] == 40 and info["n_users"] == 50
    assert info["n_plays"] == int(raw["plays"].sum())
    for name in ("users.csv", "tastes.csv", "tracks.csv", "skipped.csv"):
        assert (tiny_demo / "truth" / name).is_file()
    readme = (tiny_demo / "README.md").read_text()
    assert "simulated" in readme and "soundfont" in readme
    assert "partly encodes instrumentation" in readme
    # the timestamps are spread over months
    stamps = pd.to_datetime(raw["timestamp"], utc=True)
    assert (stamps.max() - stamps.min()).days >= 90
    # no temporary folder is left beside the dataset
    assert [p.name for p in tiny_demo.parent.iterdir()] == ["tiny"]


def test_every_clip_decodes_is_20_to_30_s_and_not_silent(tiny_demo: Path) -> None:
    catalog = pd.read_csv(tiny_demo / "catalog.csv")
    files = sorted((tiny_demo / "audio").iterdir())
    assert [f.name for f in files] == [f"{t}.ogg" for t in catalog["track_id"]]
    for row in catalog.itertuples():
        audio, sr = sf.read(tiny_demo / row.audio_path, dtype="float32")
        assert sr == 22050 and audio.ndim == 1
        seconds = len(audio) / sr
        assert 20.0 <= seconds <= 30.0, row.audio_path
        assert abs(seconds - row.duration) < 0.05
        assert np.sqrt(np.mean(audio**2)) > 0.01, f"{row.audio_path} is silent"


def test_catalog_labels_come_from_the_corpus(tiny_demo: Path) -> None:
    catalog = pd.read_csv(tiny_demo / "catalog.csv", keep_default_na=False)
    # seven styles taken in turn: every style is present in 40 tracks
    assert catalog["style"].nunique() == 7
    palestrina = catalog[catalog["collection"] == "palestrina"]
    assert set(palestrina["artist"]) == {"Giovanni Pierluigi da Palestrina"}
    assert (catalog["measure_end"] >= catalog["measure_start"]).all()
    assert (catalog["licence"].str.contains("music21")).all()
    # the styles are balanced: 40 = 5 * 6 + 2 * 5
    assert sorted(catalog["style"].value_counts()) == [5, 5, 6, 6, 6, 6, 6]
    # long pieces give up to 3 non-overlapping excerpts (numbered in piece order)
    per_piece = catalog[catalog["tune"] == ""].groupby("corpus_path")
    assert per_piece.size().max() == 3 and per_piece.size().min() == 1
    for _, rows in per_piece:
        rows = rows.sort_values("excerpt")
        assert rows["excerpt"].tolist() == list(range(1, len(rows) + 1))
        assert (rows["measure_start"].iloc[1:].to_numpy()
                > rows["measure_end"].iloc[:-1].to_numpy()).all()
    info = json.loads((tiny_demo / "truth" / "model.json").read_text())
    assert info["n_reused_pieces"] == int((catalog["excerpt"] > 1).sum()) > 0


def test_same_seed_is_byte_identical_with_or_without_cache(
    tiny_demo: Path, tmp_path: Path
) -> None:
    # 12 tracks without the cache: the first 12 of the same piece order, rendered afresh
    again = build_demo_dataset(tmp_path / "again", n_tracks=12, n_users=50, seed=0,
                               show_progress=False)
    assert again.n_tracks == 12
    first = pd.read_csv(tiny_demo / "catalog.csv").head(12)
    second = pd.read_csv(tmp_path / "again" / "catalog.csv")
    pd.testing.assert_frame_equal(first, second)


def test_same_seed_same_bytes_different_seed_differs(
    tiny_demo: Path, tmp_path: Path, render_cache: Path
) -> None:
    build_demo_dataset(tmp_path / "same", **TINY, show_progress=False, cache_dir=render_cache)
    for name in ("catalog.csv", "plays.csv", "truth/users.csv", "truth/tastes.csv"):
        assert (tmp_path / "same" / name).read_bytes() == (tiny_demo / name).read_bytes(), name
    other = build_demo_dataset(tmp_path / "other", n_tracks=8, n_users=50, seed=1,
                               show_progress=False, cache_dir=render_cache)
    assert other.n_tracks == 8
    first = pd.read_csv(tiny_demo / "catalog.csv")
    second = pd.read_csv(tmp_path / "other" / "catalog.csv")
    assert first["corpus_path"].head(8).tolist() != second["corpus_path"].tolist()
    assert ((tmp_path / "other" / "plays.csv").read_bytes()
            != (tiny_demo / "plays.csv").read_bytes())


def test_refuses_non_empty_out_unless_forced(tiny_demo: Path, tmp_path: Path,
                                            render_cache: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ParameterError, match=r"out='.*taken' exists and is not empty"):
        build_demo_dataset(out, n_tracks=3, n_users=5, seed=0, show_progress=False,
                           cache_dir=render_cache)
    assert (out / "keep.txt").read_text() == "mine"
    build_demo_dataset(out, n_tracks=3, n_users=5, seed=0, show_progress=False,
                       cache_dir=render_cache, force=True)
    assert not (out / "keep.txt").exists()
    assert len(pd.read_csv(out / "catalog.csv")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_cli_refuses_non_empty_out_and_unknown_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "x").write_text("x")
    assert main(["demo-data", "--tracks", "2", "--users", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("exists and is not empty; pass force=True (--force) to replace it")
    with pytest.raises(SystemExit, match="unrecognized arguments: --colour"):
        main(["demo-data", "--out", str(tmp_path / "x"), "--colour"])
    with pytest.raises(SystemExit, match="argument --tracks: 0 must be at least 1"):
        main(["demo-data", "--out", str(tmp_path / "x"), "--tracks", "0"])


@pytest.mark.parametrize("bad", [{"n_tracks": 0}, {"n_users": -1}, {"n_workers": 0}])
def test_bad_sizes_name_the_value(tmp_path: Path, bad: dict[str, int]) -> None:
    args = {"n_tracks": 2, "n_users": 2, "seed": 0, **bad}
    name, value = next(iter(bad.items()))
    with pytest.raises(ParameterError, match=f"{name}={value} must be a positive integer"):
        build_demo_dataset(tmp_path / "x", **args, show_progress=False)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_too_many_tracks_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, render_cache: Path
) -> None:
    real = build_module.list_corpus_files
    monkeypatch.setattr(build_module, "list_corpus_files",
                        lambda: [f for f in real() if f.collection.name == "verdi"])
    with pytest.raises(ParameterError, match=r"n_tracks=50 is more than the music21 corpus "
                       r"can serve: \d+ excerpts rendered from 1 files"):
        build_demo_dataset(tmp_path / "big", n_tracks=50, n_users=2, seed=0,
                           show_progress=False, n_workers=1, cache_dir=render_cache)
    assert list(tmp_path.iterdir()) == []


def test_failed_pieces_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, render_cache: Path
) -> None:
    real = build_module.list_corpus_files

    def with_broken() -> list:
        files = real()
        broken = tmp_path / "broken.mxl"
        broken.write_bytes(b"PK\x03\x04 this is not a score")
        bad = build_module.CorpusFile(broken, "bach/broken.mxl", files[0].collection)
        # two short chorales: one excerpt each
        return [bad] + [f for f in files if f.relpath in ("bach/bwv348.mxl", "bach/bwv388.mxl")]

    monkeypatch.setattr(build_module, "list_corpus_files", with_broken)
    # three files, two tracks: the two good chorales render, the broken file is skipped
    ds = build_demo_dataset(tmp_path / "ds", n_tracks=2, n_users=4, seed=0,
                            show_progress=False, n_workers=1, cache_dir=render_cache)
    assert ds.n_tracks == 2
    assert ds.n_pieces_parsed == 3
    assert ds.n_skipped == 1
    assert any(src == "bach/broken.mxl" for src, _ in ds.skipped)
    skipped = pd.read_csv(tmp_path / "ds" / "truth" / "skipped.csv")
    assert "bach/broken.mxl" in set(skipped["source"])
    assert "skipped" in ds.summary()
    assert "bach/broken.mxl" not in set(pd.read_csv(tmp_path / "ds" / "catalog.csv")
                                        ["corpus_path"])


def test_interrupted_build_leaves_no_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = build_module.render_clip

    def interrupt(job: ClipJob):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(build_module, "render_clip", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_demo_dataset(tmp_path / "ds", n_tracks=5, n_users=5, seed=0,
                           show_progress=False, n_workers=1)
    assert list(tmp_path.iterdir()) == []


def test_short_and_broken_pieces_return_reasons(tmp_path: Path) -> None:
    from musicrec.data.demo.corpus import corpus_root

    sf2 = str(default_soundfont())
    out = tmp_path / "out"
    out.mkdir()
    # music21 reads this two-bar tune without measures: skipped, with the reason
    tune = tmp_path / "short.abc"
    tune.write_text("X:1\nT:Short\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|]\n")
    short = render_piece(RenderJob(str(tune), "short.abc", 1, str(out), "a", sf2))
    assert short.clips == []
    assert short.failures == [("short.abc@0", "no measures")]
    missing = render_piece(RenderJob(str(tmp_path / "nope.krn"), "nope.krn", 1, str(out),
                                     "b", sf2))
    assert missing.clips == [] and len(missing.failures) == 1
    assert missing.failures[0][0] == "nope.krn"
    # a real chorale renders to one clip
    good = render_piece(RenderJob(str(corpus_root() / "bach/bwv348.mxl"), "bach/bwv348.mxl",
                                  1, str(out), "c", sf2))
    assert good.failures == [] and len(good.clips) == 1
    assert [p.name for p in out.iterdir()] == ["c-0.ogg"]


def _piece(onset: list[float], dur: list[float], measures: list[float],
           tempo_at: tuple[float, ...] = (0.0,), bpm: tuple[float, ...] = (120.0,)) -> Piece:
    n = len(onset)
    return Piece("t", None, [0], np.asarray(onset, dtype=np.float64),
                 np.asarray(onset, dtype=np.float64) + np.asarray(dur, dtype=np.float64),
                 np.full(n, 60, dtype=np.int16), np.full(n, 90, dtype=np.int16),
                 np.zeros(n, dtype=np.int16), np.asarray(measures, dtype=np.float64),
                 np.asarray(tempo_at, dtype=np.float64), np.asarray(bpm, dtype=np.float64))


def test_tempo_map_converts_quarters_to_seconds() -> None:
    # 120 bpm for 8 quarters (4 s), then 60 bpm
    piece = _piece([0.0], [1.0], [0.0, 4.0], tempo_at=(0.0, 8.0), bpm=(120.0, 60.0))
    np.testing.assert_allclose(piece.seconds([0.0, 4.0, 8.0, 10.0]), [0.0, 2.0, 4.0, 6.0])
    assert piece.bpm_at(7.5) == 120.0 and piece.bpm_at(8.0) == 60.0


def test_excerpt_windows_are_whole_measures_non_overlapping_and_spread() -> None:
    # 60 measures of 4 quarters at 120 bpm: 2 s a measure; one note per measure.
    # Windows grow to >= 22 s: 11 measures each -> 5 full windows (55 measures) and a
    # last one of 5 measures (10 s: too short, not the whole piece).
    onsets = [4.0 * m for m in range(60)]
    piece = _piece(onsets, [4.0] * 60, [4.0 * m for m in range(61)])
    every = excerpt_windows(piece, n_excerpts=10)
    assert not isinstance(every, str)
    assert [(w.start, w.end) for w in every] == [(0, 11), (11, 22), (22, 33), (33, 44),
                                                (44, 55)]
    assert all(w.content == 22.0 and not w.played_twice for w in every)
    three = excerpt_windows(piece, n_excerpts=3)
    assert not isinstance(three, str)
    assert [(w.start, w.end) for w in three] == [(0, 11), (22, 33), (44, 55)]  # spread
    one = excerpt_windows(piece, n_excerpts=1)
    assert not isinstance(one, str) and [(w.start, w.end) for w in one] == [(0, 11)]


def test_short_whole_tune_is_played_twice_and_shorter_is_refused() -> None:
    # 8 measures of 2 s = 16 s: played twice
    tune = _piece([4.0 * m for m in range(8)], [4.0] * 8, [4.0 * m for m in range(9)])
    windows = excerpt_windows(tune, n_excerpts=3)
    assert not isinstance(windows, str)
    assert [(w.start, w.end, w.content, w.played_twice) for w in windows] == [(0, 8, 16.0, True)]
    # 4 measures = 8 s: too short even twice
    short = _piece([4.0 * m for m in range(4)], [4.0] * 4, [4.0 * m for m in range(5)])
    assert excerpt_windows(short, n_excerpts=3) == (
        "too short: 8.0 s of music in 4 measures (need 10.0 s)")


def test_estimate_key_finds_scales() -> None:
    c_major = np.array([60, 62, 64, 65, 67, 69, 71, 72])
    weights = np.array([2.0, 1, 1, 1, 2, 1, 1, 2])
    assert estimate_key(c_major, weights) == "C major"
    assert estimate_key(c_major + 7, weights) == "G major"
    assert estimate_key(c_major + 3, weights) == "E- major"
    a_minor = np.array([57, 59, 60, 62, 64, 65, 68, 69])  # harmonic minor
    assert estimate_key(a_minor, np.array([3.0, 1, 1, 1, 2, 1, 1, 3])) == "A minor"
    assert estimate_key(np.array([], dtype=int), np.array([])) == ""


def test_render_notes_plays_the_pitch_for_the_asked_length() -> None:
    on, off = np.array([0.0]), np.array([2.0])
    audio = render_notes((on, off, np.array([69]), np.array([100]), np.array([0])),
                         programs=[0], soundfont=str(default_soundfont()), sample_rate=22050,
                         seconds=3.0, fade=False)
    assert audio.shape == (3 * 22050,) and audio.dtype == np.float32
    assert abs(float(np.max(np.abs(audio))) - 0.9) < 1e-6
    spectrum = np.abs(np.fft.rfft(audio[:22050]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2  # 1 s window: bins are 1 Hz apart


def test_style_quotas_fill_evenly_within_caps() -> None:
    assert style_quotas(40, dict.fromkeys("abcdefg", math.inf)) == {
        "a": 6, "b": 6, "c": 6, "d": 6, "e": 6, "f": 5, "g": 5}
    assert style_quotas(10, {"a": 1, "b": math.inf, "c": 2}) == {"a": 1, "b": 7, "c": 2}
    assert style_quotas(10, {"a": 1, "b": 3}) == {"a": 1, "b": 3}


def test_parse_and_render_caches_skip_music21_and_give_the_same_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from music21 import converter

    from musicrec.data.demo.corpus import corpus_root

    job = ParseJob(str(corpus_root() / "bach/bwv348.mxl"), "bach/bwv348.mxl", 3,
                   str(tmp_path / "cache"))
    first = parse_file(job)
    assert first.failures == [] and len(first.excerpts) == 1

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("music21 parsed a cached file")

    monkeypatch.setattr(converter, "parse", no_parse)
    again = parse_file(job)
    assert [(e.tune, e.excerpt, e.window) for e in again.excerpts] == [
        (e.tune, e.excerpt, e.window) for e in first.excerpts]
    for name in Piece.ARRAYS:
        np.testing.assert_array_equal(getattr(again.excerpts[0].piece, name),
                                      getattr(first.excerpts[0].piece, name))
    sf2 = str(default_soundfont())
    fresh = render_clip(ClipJob(first.excerpts[0], str(tmp_path / "a.ogg"), sf2))
    cached = [render_clip(ClipJob(again.excerpts[0], str(tmp_path / f"{n}.ogg"), sf2,
                                  cache_dir=str(tmp_path / "cache"))) for n in "bc"]
    assert isinstance(fresh, Clip) and all(isinstance(c, Clip) for c in cached)
    # OGG streams carry a random serial number: compare the decoded audio
    a, b = (sf.read(tmp_path / f"{n}.ogg", dtype="float32")[0] for n in "ab")
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "b.ogg").read_bytes() == (tmp_path / "c.ogg").read_bytes()  # a copy
    assert [asdict(c) | {"audio_file": ""} for c in cached] == [
        asdict(fresh) | {"audio_file": ""}] * 2
