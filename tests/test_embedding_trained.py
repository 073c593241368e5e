"""The embedder trained on a catalogue (COLA-style, no labels): training is seeded and
deterministic, the folder is safetensors + manifest, ``trained:DIR`` loads it, it learns
to tell tracks apart, and bad folders are named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrec.cli import main
from musicrec.embedding.registry import get_embedder
from musicrec.embedding.trained import TrainedEmbedder, train_embedder
from musicrec.errors import ModelFormatError, ParameterError

SR = 16000


def _track(freq: float, rng: np.random.Generator, seconds: float = 8.0) -> np.ndarray:
    """A tone at ``freq`` with its octave, pulsing at a track-specific rate, over noise."""
    t = np.arange(int(seconds * SR)) / SR
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * (freq / 200) * t)
    wave = pulse * (np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(4 * np.pi * freq * t))
    return (0.2 * wave + 0.02 * rng.normal(size=len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cat")
    rng = np.random.default_rng(0)
    rows = ["track_id,audio_path"]
    for i, freq in enumerate([220, 330, 495, 740, 1110, 1665]):
        sf.write(root / f"t{i}.wav", _track(freq, rng), SR)
        rows.append(f"t{i},t{i}.wav")
    (root / "short.wav").write_bytes(b"")
    sf.write(root / "tiny.wav", _track(300, rng, seconds=1.5), SR)
    rows += ["empty,short.wav", "tiny,tiny.wav"]
    (root / "catalog.csv").write_text("\n".join(rows) + "\n")
    return root / "catalog.csv"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: training is deterministic for a given thread count, and faster
    than two on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emb") / "emb"
    return train_embedder(catalog, out, hidden=16, layers=1, window_seconds=1.0,
                          train_windows=4, epochs=6, batch_size=6, learning_rate=3e-3,
                          seed=0, show_progress=False)


def test_folder_holds_safetensors_and_a_manifest(trained: Path) -> None:
    from safetensors.torch import load_file

    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["format"] == "musicrec-embedder" and manifest["arch"] == "gru"
    assert manifest["dim"] == 32 and manifest["files"] == ["model.safetensors"]
    training = manifest["training"]
    assert training["tracks"] == 6 and training["seed"] == 0 and len(training["loss"]) == 6
    assert [f["track_id"] for f in training["failures"]] == ["empty", "tiny"]
    assert "shorter than two 1-s windows" in training["failures"][1]["reason"]
    assert all(np.isfinite(training["loss"])) and training["torch_threads"] == 1
    state = load_file(str(trained / "model.safetensors"))
    assert state["encoder.feature_mean"].shape == (64,) and "bilinear" in state


def test_training_is_deterministic_and_seeded(catalog: Path, trained: Path,
                                              tmp_path: Path) -> None:
    opts = {"hidden": 16, "layers": 1, "window_seconds": 1.0, "train_windows": 4,
            "epochs": 6, "batch_size": 6, "learning_rate": 3e-3, "show_progress": False}
    again = train_embedder(catalog, tmp_path / "again", seed=0, **opts)
    assert (again / "model.safetensors").read_bytes() == (trained / "model.safetensors"
                                                          ).read_bytes()
    other = train_embedder(catalog, tmp_path / "other", seed=1, **opts)
    assert (other / "model.safetensors").read_bytes() != (trained / "model.safetensors"
                                                          ).read_bytes()


def test_trained_embedder_tells_its_tracks_apart(catalog: Path, trained: Path) -> None:
    """Two other excerpts of each training track: the nearest of each is the other one."""
    emb = get_embedder(f"trained:{trained}", window_seconds=1.0, n_windows=1)
    assert isinstance(emb, TrainedEmbedder)
    assert (emb.dim, emb.sample_rate, emb.name) == (32, SR, "trained:emb")
    waves = [sf.read(catalog.parent / f"t{i}.wav", dtype="float32")[0] for i in range(6)]
    first = emb.embed([w[int(0.5 * SR):int(2.5 * SR)] for w in waves])
    second = emb.embed([w[int(5.5 * SR):int(7.5 * SR)] for w in waves])
    assert (np.argmax(first @ second.T, axis=1) == np.arange(6)).all()


@pytest.fixture(scope="module")
def trained_cnn(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emb") / "cnn"
    return train_embedder(catalog, out, arch="cnn", hidden=16, layers=3, window_seconds=1.0,
                          train_windows=4, epochs=6, batch_size=6, learning_rate=3e-3,
                          seed=0, show_progress=False)


def test_cnn_tower_is_saved_loaded_and_tells_its_tracks_apart(catalog: Path,
                                                              trained_cnn: Path) -> None:
    manifest = json.loads((trained_cnn / "manifest.json").read_text())
    assert (manifest["arch"], manifest["config"], manifest["dim"]) == (
        "cnn", {"hidden": 16, "layers": 3}, 32)
    assert manifest["cf_target"] is None
    emb = get_embedder(f"trained:{trained_cnn}", window_seconds=1.0, n_windows=1)
    assert emb.dim == 32
    waves = [sf.read(catalog.parent / f"t{i}.wav", dtype="float32")[0] for i in range(6)]
    first = emb.embed([w[int(0.5 * SR):int(2.5 * SR)] for w in waves])
    second = emb.embed([w[int(5.5 * SR):int(7.5 * SR)] for w in waves])
    assert (np.argmax(first @ second.T, axis=1) == np.arange(6)).all()
    with pytest.raises(ParameterError, match="64 mel bands allow at most 6 CNN blocks"):
        train_embedder(catalog, catalog.parent / "x", arch="cnn", layers=7)


def test_cf_target_is_learnt_where_tracks_have_cf_vectors(catalog: Path,
                                                          tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ids = ["t0", "t1", "t2", "t3", "t4", "not-in-catalogue"]  # t5 has no CF vector
    vectors = rng.normal(scale=3.0, size=(6, 4)).astype(np.float32)
    opts = dict(hidden=8, layers=1, window_seconds=1.0, train_windows=3, epochs=12,
                batch_size=6, learning_rate=1e-2, seed=0, show_progress=False)
    out = train_embedder(catalog, tmp_path / "cf", cf_vectors=(ids, vectors), **opts)
    target = json.loads((out / "manifest.json").read_text())["cf_target"]
    rms = float(np.sqrt(np.mean(vectors[:5] ** 2)))
    assert (target["tracks"], target["dim"], target["weight"]) == (5, 4, 1.0)
    assert target["rms"] == pytest.approx(rms, rel=1e-5)
    assert len(target["loss"]) == 12 and target["loss"][-1] < 0.5 * target["loss"][0]
    # the CF head is not part of the embedder: it loads and embeds like any other
    assert get_embedder(f"trained:{out}").dim == 16
    plain = train_embedder(catalog, tmp_path / "plain", **opts)
    assert (plain / "model.safetensors").read_bytes() != (out / "model.safetensors"
                                                          ).read_bytes()
    with pytest.raises(ParameterError, match=r"none of their 1 track ids is a usable track"):
        train_embedder(catalog, tmp_path / "x", cf_vectors=(["tiny"], vectors[:1]), **opts)
    with pytest.raises(ParameterError, match=r"2 track ids and vectors of shape \(6, 4\)"):
        train_embedder(catalog, tmp_path / "x", cf_vectors=(["t0", "t1"], vectors), **opts)
    bad = vectors.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParameterError, match="cf_vectors hold NaN"):
        train_embedder(catalog, tmp_path / "x", cf_vectors=(ids, bad), **opts)
    with pytest.raises(ParameterError, match="cf_weight=-1 must be at least 0"):
        train_embedder(catalog, tmp_path / "x", cf_vectors=(ids, vectors), cf_weight=-1,
                       **opts)


def test_bad_folders_are_named(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"is not a trained embedder \(no manifest.json\)"):
        get_embedder(f"trained:{tmp_path}")
    with pytest.raises(ParameterError, match="names no folder after 'trained:'"):
        get_embedder("trained:")
    with pytest.raises(ParameterError, match=r"does not take option\(s\) \['layer'\]"):
        get_embedder(f"trained:{trained}", layer=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((trained / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="manifest lists model.safetensors, which is "
                       "missing"):
        TrainedEmbedder(folder=broken)
    data = (trained / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=r"model.safetensors: not a readable "
                       "safetensors file"):
        TrainedEmbedder(folder=broken)
    (broken / "manifest.json").write_text(json.dumps({**manifest, "format_version": 9}))
    with pytest.raises(ModelFormatError, match="format version 9 is not supported"):
        TrainedEmbedder(folder=broken)
    (broken / "manifest.json").write_text("{")
    with pytest.raises(ModelFormatError, match="corrupt manifest"):
        TrainedEmbedder(folder=broken)


def test_training_parameters_are_checked(catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"arch='rnn' must be one of \['gru', 'cnn'\]"):
        train_embedder(catalog, tmp_path / "x", arch="rnn")
    with pytest.raises(ParameterError, match="batch_size=1 must be at least 2"):
        train_embedder(catalog, tmp_path / "x", batch_size=1)
    one = tmp_path / "one.csv"
    one.write_text(f"track_id,audio_path\nt0,{catalog.parent / 't0.wav'}\n")
    with pytest.raises(ParameterError, match=r"one.csv: 1 usable track\(s\); contrastive "
                       r"training needs at least 2 \(0 failed\)"):
        train_embedder(one, tmp_path / "x", show_progress=False)


def test_cli_trains_and_reports(catalog: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["train-embedder", "--catalog", str(catalog), "--out", str(out), "--hidden",
                 "8", "--layers", "1", "--window-seconds", "1", "--train-windows", "3",
                 "--epochs", "2", "--batch-size", "4", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "trained a GRU embedder on 6 tracks (2 not used)" in text
    assert f"use it with --embedder trained:{out}" in text
    assert json.loads((out / "manifest.json").read_text())["training"]["seed"] == 3
    assert main(["train-embedder", "--catalog", str(tmp_path / "none.csv"), "--out",
                 str(tmp_path / "y")]) == 2
    with pytest.raises(SystemExit, match="invalid choice: 'rnn'"):
        main(["train-embedder", "--catalog", str(catalog), "--out", "z", "--arch", "rnn"])


def test_cli_trains_a_cnn_on_a_models_cf_vectors(catalog: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    plays = tmp_path / "plays.csv"
    rows = ["user_id,track_id,plays"] + [f"u{u},t{(u + k) % 6},{1 + k}" for u in range(12)
                                         for k in range(3)]
    plays.write_text("\n".join(rows) + "\n")
    assert main(["build", "--interactions", str(plays), "--out", str(tmp_path / "m"),
                 "--factors", "4", "--iterations", "3"]) == 0
    capsys.readouterr()
    out = tmp_path / "cnn"
    assert main(["train-embedder", "--catalog", str(catalog), "--out", str(out), "--arch",
                 "cnn", "--hidden", "8", "--layers", "2", "--window-seconds", "1",
                 "--train-windows", "3", "--epochs", "2", "--batch-size", "6",
                 "--cf-model", str(tmp_path / "m"), "--cf-weight", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "trained a CNN embedder on 6 tracks (2 not used)" in text
    assert "CF target: 6 tracks with a CF vector (4-d)" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cf_target"]["weight"] == 0.5 and manifest["arch"] == "cnn"
    assert main(["train-embedder", "--catalog", str(catalog), "--out", str(tmp_path / "y"),
                 "--cf-model", str(tmp_path / "nothing")]) == 2
