"""Building on Ray: the same model directory as the local path, on a local 2-CPU runtime."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray")

from musicrec.data.logs import ListeningLog  # noqa: E402
from musicrec.embedding.distributed import ray_runtime  # noqa: E402
from musicrec.errors import ParameterError  # noqa: E402
from musicrec.recommender.cf import CFModel  # noqa: E402
from musicrec.recommender.distributed import build_with_ray  # noqa: E402
from musicrec.recommender.facade import Recommender  # noqa: E402
from musicrec.recommender.pipeline import build_model_dir  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    with ray_runtime(num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def world() -> tuple[ListeningLog, list[str], np.ndarray]:
    rng = np.random.default_rng(7)
    rows = [(f"u{u}", f"t{t:02d}", int(rng.integers(1, 5)))
            for u in range(60) for t in rng.choice(40, size=8, replace=False)]
    log = ListeningLog.from_frame(pd.DataFrame(rows, columns=["user", "track", "plays"]),
                                  weight_col="plays")
    ids = [f"t{t:02d}" for t in range(50)]  # 10 tracks have content but no plays
    return log, ids, rng.standard_normal((50, 12)).astype(np.float32)


def _manifest(path: Path) -> dict[str, Any]:
    manifest = json.loads((path / "manifest.json").read_text())
    return {k: v for k, v in manifest.items() if k not in ("created",)}


def test_ray_build_writes_the_local_model_directory(ray_local: Any, world: Any,
                                                    tmp_path: Path) -> None:
    log, ids, content = world
    kwargs = {"log": log, "content_ids": ids, "content": content,
              "content_source": {"vectors": "synthetic"}, "n_trees": 5}
    local = build_model_dir(tmp_path / "local", cf_model=CFModel(factors=8, iterations=5,
                                                                  random_state=3), **kwargs)
    remote = build_with_ray(tmp_path / "ray", cf_model=CFModel(factors=8, iterations=5,
                                                                random_state=3), **kwargs)
    assert remote == tmp_path / "ray"
    assert _manifest(remote) == _manifest(local)
    assert _manifest(remote)["kind"] == "hybrid"
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*")) == \
        sorted(p.relative_to(local).as_posix() for p in local.rglob("*"))
    for name in ("items.npy", "content.npy", "mapping.npy", "evidence.npy"):
        np.testing.assert_allclose(np.load(remote / name), np.load(local / name), atol=1e-5)
    a, b = Recommender(local), Recommender(remote)
    assert [r.track_id for r in a.recommend("u1", n=5)] == \
        [r.track_id for r in b.recommend("u1", n=5)]
    assert [r.track_id for r in b.similar("t45", n=3)] == \
        [r.track_id for r in a.similar("t45", n=3)]


def test_content_only_build_and_the_cpu_fallback(ray_local: Any, world: Any,
                                                 tmp_path: Path) -> None:
    log, ids, content = world
    out = build_with_ray(tmp_path / "content", content_ids=ids, content=content, n_trees=3)
    assert _manifest(out)["kind"] == "content" and _manifest(out)["counts"]["tracks"] == 50
    with pytest.raises(ParameterError, match="use_gpu='yes'"):
        build_with_ray(tmp_path / "x", content_ids=ids, content=content, use_gpu="yes")
    with pytest.raises(ParameterError, match="logs, content vectors, or both"):
        build_with_ray(tmp_path / "x")
    # asking for the GPU where implicit has no CUDA trains the same model on the CPU
    gpu = CFModel(factors=4, iterations=3, random_state=1, use_gpu=True).fit(log)
    cpu = CFModel(factors=4, iterations=3, random_state=1).fit(log)
    np.testing.assert_allclose(gpu.item_factors_, cpu.item_factors_, atol=1e-6)


def test_cli_ray_build_decodes_once_and_writes_the_local_fingerprints(
        ray_local: Any, librosa_audio_dir: Path, tmp_path: Path) -> None:
    """``build --engine ray`` fingerprints on the actors, from the decode that embeds each
    track: the same vectors and the same fingerprint index, file for file, as locally."""
    from musicrec.cli import main
    from musicrec.embedding.fingerprint import FingerprintIndex, fingerprint

    folder = tmp_path / "rec"
    folder.mkdir()
    names = ["147793__setuniman__sweet-waltz-0i-22mi.hq.ogg", "198-209-0000.hq.ogg"]
    for name in names:
        shutil.copy(librosa_audio_dir / name, folder / name)
    out = {}
    for engine in ("local", "ray"):
        out[engine] = tmp_path / engine
        assert main(["build", "--catalog", str(folder), "--embedder", "mfcc", "--cache-dir",
                     str(tmp_path / f"cache-{engine}"), "--out", str(out[engine]),
                     "--engine", engine]) == 0
    np.testing.assert_allclose(np.load(out["ray"] / "content.npy"),
                               np.load(out["local"] / "content.npy"), atol=1e-6)
    files = sorted(p.name for p in (out["local"] / "fingerprints").iterdir())
    assert sorted(p.name for p in (out["ray"] / "fingerprints").iterdir()) == files
    for name in files:
        a, b = out["local"] / "fingerprints" / name, out["ray"] / "fingerprints" / name
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(a), np.load(b))
    index = FingerprintIndex.load(out["ray"] / "fingerprints")
    for name in names:
        stored, alone = index.track_fingerprint(name.removesuffix(".ogg")), fingerprint(
            folder / name)
        assert sorted(zip(stored.hashes, stored.times, strict=True)) == sorted(
            zip(alone.hashes, alone.times, strict=True))
