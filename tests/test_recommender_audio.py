"""Models built from audio: content-only build, query by example, fingerprints, add-tracks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrec.cli import main
from musicrec.errors import CapabilityError
from musicrec.recommender.facade import Recommender

MUSIC = [
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy",
    "Kevin_MacLeod_-_Vibe_Ace",
    "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime",
    "147793__setuniman__sweet-waltz-0i-22mi",
    "admiralbob77_-_Choice_-_Drum-bass",
]
SR = 22050


def _load(path: Path, seconds: float, start: float = 0.0) -> np.ndarray:
    import librosa

    y, _ = librosa.load(path, sr=SR, mono=True, offset=start, duration=seconds)
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def audio_dir(librosa_audio_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30 s of six real recordings, as WAV files named t0..t5."""
    folder = tmp_path_factory.mktemp("audio")
    for k, name in enumerate(MUSIC):
        sf.write(folder / f"t{k}.wav", _load(librosa_audio_dir / f"{name}.ogg", 30.0), SR)
    return folder


@pytest.fixture(scope="module")
def model(audio_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("m") / "model"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["build", "--catalog", str(audio_dir), "--embedder", "mfcc",
                 "--cache-dir", str(cache), "--out", str(out)]) == 0
    return out


def _noisy(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(y)).astype(np.float32)
    noise *= np.sqrt(np.mean(y**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (0.5 * y + 0.5 * noise).astype(np.float32)


def test_content_only_model_from_a_folder(model: Path) -> None:
    rec = Recommender(model)
    manifest = json.loads((model / "manifest.json").read_text())
    assert rec.kind == "content" and manifest["embedder"]["spec"] == "mfcc"
    assert sorted(rec.tracks) == [f"t{k}" for k in range(6)]  # ids from the file names
    assert "fingerprints" in manifest["files"]
    assert len(rec.similar("t0", n=3)) == 3
    with pytest.raises(CapabilityError, match="cannot recommend for users"):
        rec.recommend("anyone")


def test_query_by_example_identifies_a_noisy_excerpt(model: Path, audio_dir: Path) -> None:
    rec = Recommender(model)
    hits = 0
    for k in range(6):
        clip = _noisy(_load(audio_dir / f"t{k}.wav", 10.0, start=12.0), snr_db=10, seed=k)
        result = rec.similar_to_audio(clip, sample_rate=SR, n=3)
        assert len(result.neighbours) == 3
        assert result.match is not None and result.match["track_id"] == f"t{k}"
        assert result.match["offset_s"] == pytest.approx(12.0, abs=0.1)
        hits += result.neighbours[0].track_id == f"t{k}"
    assert hits >= 3  # the MFCC embedding alone finds most of them too


def test_audio_not_in_the_catalogue_is_no_match(model: Path, librosa_audio_dir: Path) -> None:
    rec = Recommender(model)
    for name in ("sorohanro_-_solo-trumpet-06", "198-209-0000", "pibble"):
        clip = _load(librosa_audio_dir / f"{name}.ogg", 8.0)
        result = rec.similar_to_audio(clip, sample_rate=SR, n=2)
        assert result.match is None and len(result.neighbours) == 2


def test_cli_query_by_example(model: Path, audio_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.wav"
    sf.write(clip, _noisy(_load(audio_dir / "t2.wav", 8.0, start=5.0), 20), SR)
    assert main(["similar", "--model", str(model), "--audio", str(clip), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["match"]["track_id"] == "t2"
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    assert main(["similar", "--model", str(model), "--audio", str(not_audio)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicrec: error:") and "notes.wav" in err


def test_add_tracks_and_duplicates(model: Path, audio_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    target = tmp_path / "model"
    shutil.copytree(model, target)
    copy = tmp_path / "same_as_t1.wav"
    shutil.copy(audio_dir / "t1.wav", copy)
    assert main(["add-tracks", str(target), str(copy), "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    assert "added 1 tracks" in capsys.readouterr().out
    rec = Recommender(target)
    assert "same_as_t1" in rec.tracks and len(rec.fingerprints) == 7
    assert rec.similar("same_as_t1", n=1, alpha=1.0)[0].track_id == "t1"
    assert main(["duplicates", str(target), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert [sorted(g["track_ids"]) for g in groups] == [["same_as_t1", "t1"]]
    assert groups[0]["offsets_s"][1] == pytest.approx(0.0, abs=0.05)


def test_embed_then_build_with_logs_then_evaluate(audio_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI chain a user runs: embed once, build a hybrid from the vectors, evaluate."""
    vectors = tmp_path / "vectors.parquet"
    assert main(["embed", str(audio_dir), "--model", "mfcc", "--out", str(vectors),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"t{t}", int(rng.integers(1, 5)))
            for u in range(40) for t in range(6) if (t + u) % 3 != 0]
    plays = tmp_path / "plays.csv"
    plays.write_text("user,track,plays\n" + "".join(f"{u},{t},{p}\n" for u, t, p in rows))
    model = tmp_path / "hybrid"
    assert main(["build", "--interactions", str(plays), "--content-vectors", str(vectors),
                 "--out", str(model), "--factors", "4", "--iterations", "5"]) == 0
    rec = Recommender(model)
    assert rec.kind == "hybrid" and int(rec.has_content.sum()) == 6
    assert len(rec.recommend("u1", n=2)) == 2
    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["evaluate", "--interactions", str(plays), "--content", str(model),
                 "--models", "popularity,content,hybrid", "--k", "2", "--min-history", "3",
                 "--report", str(report)]) == 0
    payload = json.loads((report / "report.json").read_text())
    names = {m["name"] for m in payload["models"]}
    assert names == {"popularity", "content", "hybrid"}
