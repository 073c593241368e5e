"""The real-music benchmark's own code: the C4Group reader, the music and licence rules of
``build_set.py`` and the same-source precision of ``bench_real_music.py``."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_music"


def _module(name: str) -> ModuleType:
    for folder in (BENCH, BENCH.parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


c4group = _module("c4group")
build_set = _module("build_set")
bench = _module("bench_real_music")


def test_scramble_is_its_own_inverse_and_matches_a_hand_computed_header() -> None:
    # "Red" XOR 0xED = bf 88 89, then bytes 0 and 2 swapped = 89 88 bf
    assert c4group.scramble(b"Red") == bytes([0x89, 0x88, 0xBF])
    assert c4group.scramble(c4group.scramble(b"RedWolf Design")) == b"RedWolf Design"


def test_group_round_trip_with_child_groups(tmp_path: Path) -> None:
    path = tmp_path / "Music.ocg"
    tree = {"Title.txt": b"x", "Music.ocg": {"Song.ogg": b"OggS" + bytes(50),
                                             "Deep.ocg": {"Loop.wav": b"RIFF1234"}},
            "Empty.txt": b""}
    c4group.write_group(tree, path)
    assert path.read_bytes()[:2] == b"\x1e\x8c"
    assert list(c4group.read_group(path)) == [
        ("Title.txt", b"x"), ("Music.ocg/Song.ogg", b"OggS" + bytes(50)),
        ("Music.ocg/Deep.ocg/Loop.wav", b"RIFF1234"), ("Empty.txt", b"")]


def test_damaged_groups_are_named(tmp_path: Path) -> None:
    plain = tmp_path / "plain.ocg"
    plain.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(c4group.C4GroupError, match=r"plain\.ocg: not a packed C4Group "
                       r"\(starts 1f8b, expected 1e8c\)"):
        list(c4group.read_group(plain))
    good = tmp_path / "good.ocg"
    c4group.write_group({"a.ogg": bytes(1000)}, good)
    cut = tmp_path / "cut.ocg"
    cut.write_bytes(good.read_bytes()[:-12])
    with pytest.raises(c4group.C4GroupError, match=r"cut\.ocg: damaged gzip stream"):
        list(c4group.read_group(cut))
    raw = bytearray(gzip.compress(bytes(300), mtime=0))
    raw[:2] = b"\x1e\x8c"
    zeros = tmp_path / "zeros.ocg"
    zeros.write_bytes(bytes(raw))
    with pytest.raises(c4group.C4GroupError, match=r"zeros\.ocg: no C4Group header at byte 0"):
        list(c4group.read_group(zeros))


def test_music_rule_looks_at_folders_only() -> None:
    assert build_set.is_music_path("usr/share/games/hedgewars/Data/Music/Art.ogg")
    assert build_set.is_music_path("usr/share/games/openclonk/Music.ocg/Cavern.ogg")
    assert not build_set.is_music_path("usr/share/games/megaglest/tilesets/x/sounds/day.ogg")
    assert not build_set.is_music_path("usr/share/games/supertux2/speech/tux_rap.ogg")
    assert not build_set.is_music_path("sounds/music_box.ogg")


def test_licence_lines_of_dep5_and_free_form_files(tmp_path: Path) -> None:
    dep5 = tmp_path / "dep5"
    dep5.write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
                    "\n\nFiles: *\nCopyright: 2001 Someone\n           2002 Other\n"
                    "License: GPL-2+\n\nFiles: data/fonts/*\nLicense: OFL-1.1\n\n"
                    "Files: data/music/a.ogg\n data/music/b.ogg\nCopyright: Composer\n"
                    "License: CC-BY-SA-3.0\n\nLicense: GPL-2+\n This program is free.\n")
    assert build_set.licence_lines(dep5) == [
        "* -> GPL-2+", "data/music/a.ogg data/music/b.ogg -> CC-BY-SA-3.0"]
    free = tmp_path / "free"
    free.write_text("Copyright:\n  2009 Team\n\nLicense:\n   The engine is licensed under the "
                    "ISC license:\n   Permission to use ...\n   Content is under the Creative "
                    "Commons Attribution 3.0 license.\n")
    assert build_set.licence_lines(free) == [
        "The engine is licensed under the ISC license:",
        "Content is under the Creative Commons Attribution 3.0 license."]
    assert build_set.licence_lines(tmp_path / "none") == [f"{tmp_path / 'none'} is missing"]


def test_same_source_precision_by_hand() -> None:
    """Unit vectors at 0, 20, 70 and 90 degrees labelled a a b b, and a distractor c at 45
    degrees that is never a query. Two nearest: 0 -> 20, 45; 20 -> 0, 45; 70 -> 90, 45;
    90 -> 70, 45: one same-label track in two each. One nearest: always the same label."""
    angles = np.radians([0, 20, 70, 90, 45])
    v = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    labels = np.array(list("aabbc"))
    queries = np.array([True, True, True, True, False])
    precision, chance = bench.same_source_precision(v, labels, queries, k=2)
    assert precision.tolist() == [0.5, 0.5, 0.5, 0.5]
    np.testing.assert_allclose(chance, [0.25] * 4)  # 1 same-label track among 4 others
    precision, _ = bench.same_source_precision(v, labels, queries, k=1)
    assert precision.tolist() == [1.0, 1.0, 1.0, 1.0]
    precision, _ = bench.same_source_precision(v, labels, np.array([1, 0, 0, 0, 1], bool), k=3)
    np.testing.assert_allclose(precision, [1 / 3, 0.0])  # c's neighbours are never c


def test_excerpt_reads_the_asked_span(tmp_path: Path) -> None:
    import soundfile as sf

    sr = 8000
    ramp = np.linspace(-1, 1, 10 * sr, dtype=np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, np.stack([ramp, ramp], axis=1), sr, subtype="FLOAT")
    clip = bench.excerpt(path, fraction=0.5, seconds=2.0, sample_rate=sr)
    assert len(clip) == 2 * sr
    np.testing.assert_allclose(clip, ramp[4 * sr:6 * sr], atol=1e-6)


def test_embedder_options_follow_the_name() -> None:
    assert bench.parse_spec("musicnn-msd@n_windows=4@window_seconds=3.5@precision=float32") == (
        "musicnn-msd", {"n_windows": 4, "window_seconds": 3.5, "precision": "float32"})
    assert bench.parse_spec("trained:/a/b") == ("trained:/a/b", {})
    with pytest.raises(SystemExit, match="option 'n_windows' is not key=value"):
        bench.parse_spec("musicnn@n_windows")
