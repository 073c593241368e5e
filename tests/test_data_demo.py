"""The embedded demo dataset: rendered corpus excerpts, the build, its errors.

Every test that builds a dataset is marked slow: music21 parses about one score a second.
The tiny dataset is built once per session, with a render cache that later builds reuse.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicrec.cli import main
from musicrec.data.catalog import read_catalog
from musicrec.data.demo import CATALOG_COLUMNS, build_demo_dataset
from musicrec.data.demo import build as build_module
from musicrec.data.demo.render import RenderJob, default_soundfont, render_piece
from musicrec.data.logs import read_log
from musicrec.errors import ParameterError

TINY = {"n_tracks": 40, "n_users": 50, "seed": 0}


@pytest.fixture(scope="session")
def render_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-render-cache")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory, render_cache: Path) -> Path:
    """A 40-track, 50-user demo dataset, built once per session (about 20-45 s)."""
    out = tmp_path_factory.mktemp("demo") / "tiny"
    build_demo_dataset(out, **TINY, show_progress=False, cache_dir=render_cache)
    return out



@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_catalog_labels_come_from_the_corpus(tiny_demo: Path) -> None:
    catalog = pd.read_csv(tiny_demo / "catalog.csv", keep_default_na=False)
    # seven styles taken in turn: every style is present in 40 tracks
    assert catalog["style"].nunique() == 7
    palestrina = catalog[catalog["collection"] == "palestrina"]
    assert set(palestrina["artist"]) == {"Giovanni Pierluigi da Palestrina"}
    assert (catalog["measure_end"] >= catalog["measure_start"]).all()
    assert catalog["corpus_path"].is_unique  # 40 tracks: one excerpt per piece
    assert (catalog["licence"].str.contains("music21")).all()


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_failed_pieces_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, render_cache: Path
) -> None:
    real = build_module.list_corpus_files

    def with_broken() -> list:
        files = real()
        broken = tmp_path / "broken.mxl"
        broken.write_bytes(b"PK\x03\x04 this is not a score")
        bad = build_module.CorpusFile(broken, "bach/broken.mxl", files[0].collection)
        return [bad] + [f for f in files if f.collection.name == "bach"][:2]

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
    real = build_module.render_piece

    def interrupt(job: RenderJob):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(build_module, "render_piece", interrupt)
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
