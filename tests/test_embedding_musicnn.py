"""musicnn in torch: the checkpoint reader, the preprocessing, and agreement with the
original TensorFlow code (reference numbers from benchmarks/musicnn_tf_reference.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("musicnn", reason="musicnn weights not installed (make install)")

from musicrec.embedding.musicnn import (  # noqa: E402
    LOG_MEL_MAX,
    MODELS,
    MSD_LABELS,
    MTT_LABELS,
    N_MELS,
    PATCH_FRAMES,
    MusicnnEmbedder,
    MusicnnNet,
    checkpoint_prefix,
    load_network,
    log_mel,
    patches,
    read_tf_checkpoint,
    read_tf_index,
    weight_names,
)
from musicrec.embedding.registry import get_embedder  # noqa: E402
from musicrec.errors import ModelFormatError, ParameterError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "musicnn_reference.json").read_text())
AUDIO = ROOT.parent / "shared" / "datasets" / "librosa-audio"
sys.path.insert(0, str(ROOT / "benchmarks"))
from musicnn_tf_reference import RAGTIME, synthetic  # noqa: E402


def _inputs() -> dict[str, np.ndarray]:
    out = {"synthetic": synthetic()}
    if (AUDIO / RAGTIME).exists():
        from musicrec.embedding.audio import load_audio

        out["ragtime"] = load_audio(AUDIO / RAGTIME, sample_rate=16000,
                                    window_seconds=None).windows[0]
    return out


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return _inputs()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_port_matches_tensorflow(name: str, inputs: dict[str, np.ndarray]) -> None:
    """Tags (mean over 3-s patches) and the first patch's features equal TensorFlow's."""
    import torch

    emb = get_embedder(name, window_seconds=600, n_windows=1)
    assert emb.dim == (200 if "vgg" not in name else 256)
    assert len(emb.tag_names) == 50
    if "ragtime" not in inputs:
        pytest.skip(f"{AUDIO} is absent: only the synthetic input is compared")
    for key, wave in inputs.items():
        ref = REFERENCE["inputs"][key][name]
        assert len(wave) == REFERENCE["inputs"][key]["samples"]
        cut = patches(log_mel(wave))
        assert len(cut) == ref["patches"]
        _, tags = emb._embed_windows_tagged([wave])
        np.testing.assert_allclose(tags[0], ref["tags"], atol=2e-5)
        with torch.inference_mode():
            feats, logits = emb._net(torch.from_numpy(cut[:1]))
        np.testing.assert_allclose(feats[0].numpy(), ref["first_patch_features"], atol=3e-4)
        np.testing.assert_allclose(torch.sigmoid(logits[0]).numpy(), ref["first_patch_tags"],
                                   atol=2e-5)


def test_reference_tags_make_sense() -> None:
    """The TF reference itself: the ragtime piano recording is tagged piano by MTT."""
    if "ragtime" not in REFERENCE["inputs"]:
        pytest.fail("reference lacks the ragtime input")
    tags = np.array(REFERENCE["inputs"]["ragtime"]["musicnn-mtt"]["tags"])
    assert MTT_LABELS[int(np.argmax(tags))] == "piano"
    assert tags[MTT_LABELS.index("piano")] == pytest.approx(0.776, abs=1e-3)


def test_index_entries_and_dtypes() -> None:
    prefix = checkpoint_prefix("musicnn-mtt")
    entries = read_tf_index(prefix + ".index")
    assert entries["dense/kernel"].shape == (1506, 200)
    assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert entries["dense_1/bias"].shape == (50,)
    assert entries["beta1_power"].shape == ()
    assert all(e.dtype == np.float32 for e in entries.values())
    weights = read_tf_checkpoint(prefix, ["dense_1/bias", "batch_normalization/gamma"])
    assert weights["dense_1/bias"].dtype == np.float32 and weights["dense_1/bias"].shape == (50,)
    # the data file holds the tensors back to back, each where its entry says
    assert entries["batch_normalization/beta"].offset == 0
    assert entries["batch_normalization/beta/Adam"].offset == 4


def test_checkpoint_errors_name_the_file_and_tensor(tmp_path: Path) -> None:
    src = Path(checkpoint_prefix("musicnn-msd"))
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(src / suffix, tmp_path / suffix)
    prefix = str(tmp_path) + "/"
    data = tmp_path / ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(9_000_000)
    with pytest.raises(ModelFormatError, match=r"truncated: tensor 'dense_1/kernel' ends at "
                       r"byte 9385596, the file has 9000000"):
        load_network(prefix, "musicnn")
    with pytest.raises(ModelFormatError, match=r"no tensor named 'nope'"):
        read_tf_checkpoint(prefix, ["nope"])
    (tmp_path / ".index").write_bytes(b"not an index" * 10)
    with pytest.raises(ModelFormatError, match=r"\.index: not a TensorFlow checkpoint index"):
        read_tf_index(tmp_path / ".index")
    with pytest.raises(ModelFormatError, match="cannot read the checkpoint index"):
        read_tf_index(tmp_path / "missing.index")
    with pytest.raises(ParameterError, match="arch='resnet' must be"):
        load_network(prefix, "resnet")


def test_preprocessing_is_float32_and_does_not_overflow() -> None:
    """numpy 2 keeps ``10000 * float16`` in float16: inputs above 6.55 became inf and every
    track got the same tags. Here loud and quiet inputs stay finite and differ."""
    import librosa

    t = np.arange(16000 * 3) / 16000
    loud = (0.99 * np.sign(np.sin(2 * np.pi * 110 * t))).astype(np.float32)
    quiet = (0.01 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    spec = log_mel(loud)
    assert spec.dtype == np.float32 and spec.shape == (1 + len(loud) // 256, N_MELS)
    assert np.all(np.isfinite(spec)) and spec.max() > np.log10(10000 * 6.55 + 1)
    mel = librosa.feature.melspectrogram(y=loud, sr=16000, hop_length=256, n_fft=512,
                                         n_mels=96).T
    expected = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)
    np.testing.assert_allclose(spec, expected, rtol=1e-3, atol=1e-3)
    emb = MusicnnEmbedder(model="musicnn-mtt")
    _, tags = emb._embed_windows_tagged([loud, quiet])
    assert np.abs(tags[0] - tags[1]).max() > 0.05


def test_front_end_takes_the_maximum_before_relu_and_batch_norm() -> None:
    """conv, max over frequency, ReLU, batch norm (filters negated where the batch norm
    scale is negative: 170 of MSD's 204 timbral channels) equals the original order."""
    import torch
    import torch.nn.functional as F

    weights = read_tf_checkpoint(checkpoint_prefix("musicnn-msd"), weight_names("musicnn"))
    net = MusicnnNet(weights, dead_below=-1.0)
    conv = net.front[0]
    assert int((conv.sign < 0).sum()) == 170
    kernel = torch.from_numpy(np.ascontiguousarray(
        weights["conv2d/kernel"].transpose(3, 2, 0, 1)))
    bias = torch.from_numpy(weights["conv2d/bias"])
    gamma, beta = weights["batch_normalization_1/gamma"], weights["batch_normalization_1/beta"]
    mean = weights["batch_normalization_1/moving_mean"]
    var = weights["batch_normalization_1/moving_variance"]
    x = torch.from_numpy(np.random.default_rng(0).uniform(-2, 2, (2, 1, 187, 96))
                         .astype(np.float32))
    y = F.relu(F.conv2d(F.pad(x, (0, 0, 3, 3)), kernel, bias)).numpy()
    expected = ((y - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3)
                * gamma[:, None, None] + beta[:, None, None]).max(axis=3)
    np.testing.assert_allclose(conv(x).numpy(), expected, atol=2e-5, rtol=1e-5)


def test_dead_filters_are_skipped_within_float_rounding(inputs: dict[str, np.ndarray]) -> None:
    """Training left most front-end filters near zero: skipping them leaves MSD 64 of its
    561 filters and MTT 318, and the same features and logits as computing all of them, on
    real audio and at the ends of log_mel's range."""
    import torch

    msd = read_tf_checkpoint(checkpoint_prefix("musicnn-msd"), weight_names("musicnn"))
    pruned, full = MusicnnNet(msd), MusicnnNet(msd, dead_below=-1.0)
    assert pruned.live == (23, 14, 3, 7, 17) and full.live == (204, 204, 51, 51, 51)
    assert load_network(checkpoint_prefix("musicnn-mtt"), "musicnn").live == (116, 81, 38, 36,
                                                                                47)
    rng = np.random.default_rng(0)
    cases = [patches(log_mel(wave)) for wave in inputs.values()] + [
        rng.uniform(0, LOG_MEL_MAX, (2, PATCH_FRAMES, N_MELS)).astype(np.float32),
        np.zeros((1, PATCH_FRAMES, N_MELS), np.float32),
        np.full((1, PATCH_FRAMES, N_MELS), LOG_MEL_MAX, np.float32)]
    dead = np.ones(561, dtype=bool)
    dead[pruned.live_channels.numpy()] = False
    assert dead.sum() == 561 - 64
    for x in cases:
        with torch.inference_mode():
            batch = torch.from_numpy(x)
            (features, logits), (all_features, all_logits) = pruned(batch), full(batch)
            normed = full.bn_in(batch.unsqueeze(1), dim=1)
            channels = torch.cat([conv(normed) for conv in full.front], dim=1).numpy()
        # a skipped channel is its constant, within the bound it was skipped under
        constant = pruned.constant.numpy()[dead][None, :, None]
        assert np.abs(channels[:, dead] - constant).max() <= 1e-6
        np.testing.assert_allclose(features.numpy(), all_features.numpy(), atol=2e-5,
                                   rtol=1e-5)
        np.testing.assert_allclose(logits.numpy(), all_logits.numpy(), atol=2e-5, rtol=1e-5)


def test_networks_refuse_inputs_outside_log_mel_range() -> None:
    """The bound behind skipping a filter holds for log_mel's values only, which never
    exceed LOG_MEL_MAX, however loud the audio."""
    import torch

    t = np.arange(16000 * 3) / 16000
    clipped = (1000 * np.sign(np.sin(2 * np.pi * 110 * t))).astype(np.float32)
    top = float(log_mel(clipped).max())
    assert top == pytest.approx(np.log10(10000 * 65504 + 1), abs=1e-4) and top < LOG_MEL_MAX
    net = MusicnnEmbedder(model="musicnn-msd")._net
    bad = torch.zeros(1, PATCH_FRAMES, N_MELS)
    bad[0, 5, 7] = -0.5
    with pytest.raises(ParameterError, match=r"musicnn takes log_mel\(\) spectrograms, with "
                       r"values in \[0, 8.82\]; got values in \[-0.5, 0\]"):
        net(bad)
    with pytest.raises(ParameterError, match=r"got values in \[0, 20\]"):
        net(torch.full((1, PATCH_FRAMES, N_MELS), 20.0) * (bad == 0))


def test_patches_cut_and_repeat_pad() -> None:
    spec = np.arange(400 * N_MELS, dtype=np.float32).reshape(400, N_MELS)
    cut = patches(spec)
    assert cut.shape == (2, PATCH_FRAMES, N_MELS)  # 26 trailing frames left out
    np.testing.assert_array_equal(cut[1, 0], spec[PATCH_FRAMES])
    short = patches(spec[:50])
    assert short.shape == (1, PATCH_FRAMES, N_MELS)
    np.testing.assert_array_equal(short[0, 50], spec[0])  # repeated from the start
    np.testing.assert_array_equal(short[0, 186], spec[186 % 50])


def test_embedder_vectors_tags_and_options() -> None:
    emb = get_embedder("musicnn-mtt", n_windows=2)
    assert emb.id.startswith("musicnn-mtt@tf-041f3935e981#")
    assert emb.id != get_embedder("musicnn-mtt").id != get_embedder("musicnn-msd").id
    from musicrec.embedding.audio import decode_waveform

    wave = synthetic()

    decoded = decode_waveform(wave, source_rate=16000, sample_rate=16000,
                              window_seconds=emb.window_seconds, n_windows=emb.n_windows)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vectors, tags = emb.embed_decoded_tagged([decoded, decoded])
        assert torch.get_num_threads() == 2  # one thread while embedding, then restored
    finally:
        torch.set_num_threads(threads)
    assert emb.num_threads == 1 and get_embedder("musicnn").n_windows == 4
    assert vectors.shape == (2, 200) and tags.shape == (2, 50)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a track's tags are the mean of its windows' tags
    _, per_window = emb._embed_windows_tagged(decoded.windows)
    np.testing.assert_allclose(tags[0], per_window.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(emb.embed_decoded([decoded]), vectors[:1], atol=1e-6)
    with pytest.raises(ParameterError, match=r"musicnn-mtt does not take option\(s\) "
                       r"\['layer'\]"):
        get_embedder("musicnn-mtt", layer=2)
    with pytest.raises(ParameterError, match="window_seconds=0 must be in"):
        get_embedder("musicnn-msd", window_seconds=0)
    with pytest.raises(ParameterError, match=r"model='musicnn-big' is not known"):
        get_embedder("musicnn-big")
    with pytest.raises(ParameterError, match=r"model='musicnn-big' must be one of \[.*"
                       r"'musicnn-mtt-vgg', 'musicnn'\]"):
        MusicnnEmbedder(model="musicnn-big")


def test_parallel_forward_passes_give_the_same_vectors_and_tags() -> None:
    from musicrec.embedding.audio import decode_waveform

    one = get_embedder("musicnn", n_windows=3, workers=1)
    three = get_embedder("musicnn", n_windows=3, workers=3)
    assert one.id == three.id  # workers do not change a vector, so not the cache entry
    tracks = [decode_waveform(synthetic() * scale, source_rate=16000, sample_rate=16000,
                              window_seconds=3.0, n_windows=3) for scale in (1.0, 0.3)]
    vectors, tags = three.embed_decoded_tagged(tracks)
    expected_vectors, expected_tags = one.embed_decoded_tagged(tracks)
    np.testing.assert_array_equal(vectors, expected_vectors)
    np.testing.assert_array_equal(tags, expected_tags)
    with pytest.raises(ParameterError, match="workers=0 must be at least 1"):
        get_embedder("musicnn", workers=0)


def test_batched_patches_give_the_vectors_and_tags_to_float_rounding() -> None:
    """The default batches a track's 4 patches in one forward pass (cheaper); one at a
    time, or a ragged last batch, gives the same vectors and tags up to float rounding,
    so the cache entry (the id) does not depend on it."""
    from musicrec.embedding.audio import decode_waveform

    default = get_embedder("musicnn")
    assert default.batch_size == 4
    tracks = [decode_waveform(synthetic() * scale, source_rate=16000, sample_rate=16000,
                              window_seconds=3.0, n_windows=4) for scale in (1.0, 0.3)]
    vectors, tags = default.embed_decoded_tagged(tracks)
    for batch_size in (1, 3):
        other = get_embedder("musicnn", batch_size=batch_size)
        assert other.id == default.id
        got_vectors, got_tags = other.embed_decoded_tagged(tracks)
        np.testing.assert_allclose(got_vectors, vectors, atol=1e-5)
        np.testing.assert_allclose(got_tags, tags, atol=1e-5)
    with pytest.raises(ParameterError, match="batch_size=0 must be at least 1"):
        get_embedder("musicnn", batch_size=0)


def test_combined_tagger_has_msd_vectors_and_both_tag_lists() -> None:
    from musicrec.embedding.audio import decode_waveform

    both = get_embedder("musicnn", n_windows=2)
    msd = get_embedder("musicnn-msd", n_windows=2)
    mtt = get_embedder("musicnn-mtt", n_windows=2)
    assert both.id.startswith("musicnn@tf-8579734ee638+tf-041f3935e981#")
    # 50 + 50 names, 8 of them in both lists (guitar, rock, pop, electronic, ...)
    names = list(both.tag_names)
    assert both.dim == 200 and len(names) == 92 == len(set(MSD_LABELS) | set(MTT_LABELS))
    assert names[:50] == list(MSD_LABELS)
    decoded = decode_waveform(synthetic(), source_rate=16000, sample_rate=16000,
                              window_seconds=3.0, n_windows=2)
    vectors, tags = both.embed_decoded_tagged([decoded])
    msd_vectors, msd_tags = msd.embed_decoded_tagged([decoded])
    _, mtt_tags = mtt.embed_decoded_tagged([decoded])
    np.testing.assert_allclose(vectors, msd_vectors, atol=1e-6)
    for name in ("jazz", "piano", "guitar", "rock"):
        parts = [t[0, labels.index(name)] for t, labels in
                 ((msd_tags, MSD_LABELS), (mtt_tags, MTT_LABELS)) if name in labels]
        assert tags[0, names.index(name)] == pytest.approx(np.mean(parts), abs=1e-6), name
    assert len([n for n in names if n in MSD_LABELS and n in MTT_LABELS]) == 8


def test_tags_go_through_the_cache_and_the_output_file(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import soundfile as sf

    from musicrec.embedding.batch import EmbeddingCache, embed_paths, write_embeddings
    from musicrec.embedding.musicnn import SAMPLE_RATE

    t = np.arange(SAMPLE_RATE * 4) / SAMPLE_RATE
    paths = []
    for k, freq in enumerate((220.0, 1760.0)):
        paths.append(tmp_path / f"a{k}.wav")
        sf.write(paths[-1], (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32),
                 SAMPLE_RATE)
    emb = get_embedder("musicnn-mtt", n_windows=2)
    first = embed_paths(paths, embedder=emb, cache_dir=tmp_path / "cache",
                        show_progress=False)
    assert first.n_embedded == 2 and first.tags is not None and first.tags.shape == (2, 50)
    assert first.tag_names == list(MTT_LABELS)
    again = embed_paths(paths, embedder=emb, cache_dir=tmp_path / "cache", show_progress=False)
    assert again.n_cached == 2 and again.n_embedded == 0
    np.testing.assert_array_equal(again.tags, first.tags)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    # an entry written without tags (as the Ray engine writes) is embedded again
    from musicrec.storage import file_sha256

    cache = EmbeddingCache(tmp_path / "cache", emb)
    cache.put(file_sha256(paths[0]), first.vectors[0], False)
    assert cache.get_tags(file_sha256(paths[0])) is None
    third = embed_paths(paths, embedder=emb, cache_dir=tmp_path / "cache", show_progress=False)
    assert (third.n_cached, third.n_embedded) == (1, 1)
    np.testing.assert_allclose(third.tags, first.tags, atol=1e-6)
    out = write_embeddings(first, tmp_path / "vectors.parquet")[0]
    table = pq.read_table(out)
    assert json.loads(table.schema.metadata[b"musicrec.tag_names"]) == list(MTT_LABELS)
    np.testing.assert_allclose(np.stack(table.column("tags").to_pylist()), first.tags)
    write_embeddings(first, tmp_path / "vectors.npy")
    meta = json.loads((tmp_path / "vectors.ids.json").read_text())
    assert meta["tag_names"][0] == "guitar"
    np.testing.assert_allclose(meta["tags"], first.tags, atol=1e-6)
