"""The model directory: checksums in the manifest, checks on load and on verify, finite
arrays, and the temporary siblings of killed builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from musicrec.cli import main
from musicrec.errors import ModelFormatError
from musicrec.recommender.model_dir import read_manifest, verify_model_dir, write_model_dir
from musicrec.storage import remove_stale_siblings


def _writer(content: np.ndarray) -> Any:
    def write(tmp: Path) -> dict[str, Any]:
        np.save(tmp / "content.npy", content, allow_pickle=False)
        (tmp / "index").mkdir()
        (tmp / "index" / "ids.txt").write_text("a\nb\n")
        return {"kind": "test", "files": ["content.npy"]}
    return write


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "m", _writer(np.eye(2, dtype=np.float32)))


def test_every_file_is_recorded_with_its_size_and_sha256(model: Path) -> None:
    import hashlib

    manifest = json.loads((model / "manifest.json").read_text())
    assert sorted(manifest["checksums"]) == ["content.npy", "index/ids.txt"]
    ids = manifest["checksums"]["index/ids.txt"]
    assert ids == {"bytes": 4, "sha256": hashlib.sha256(b"a\nb\n").hexdigest()}
    assert verify_model_dir(model) == {"files": 2, "bytes": 4 + (model / "content.npy").stat(
        ).st_size}


def test_a_truncated_file_is_refused_on_every_load(model: Path) -> None:
    size = (model / "content.npy").stat().st_size
    os.truncate(model / "content.npy", 100)
    with pytest.raises(ModelFormatError, match=f"content.npy has 100 bytes, the manifest "
                                               f"records {size}: the file was changed"):
        read_manifest(model)


def test_verify_names_each_damaged_file(model: Path) -> None:
    with open(model / "content.npy", "r+b") as f:  # same size, other values
        np.save(f, np.full((2, 2), 7, dtype=np.float32), allow_pickle=False)
    (model / "index" / "ids.txt").write_text("b\na\n")
    read_manifest(model)  # the sizes still match: only the hashes tell
    with pytest.raises(ModelFormatError, match=r"2 damaged file\(s\): content.npy: sha256 "
                                               r"differs from the manifest's; index/ids.txt: "
                                               r"sha256 differs"):
        verify_model_dir(model)


def test_non_finite_arrays_are_never_written(tmp_path: Path) -> None:
    bad = np.eye(3, dtype=np.float32)
    bad[1, 2], bad[2, 0] = np.nan, np.inf
    with pytest.raises(ModelFormatError, match=r"content.npy holds 2 NaN or infinite"):
        write_model_dir(tmp_path / "m", _writer(bad))
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_a_model_without_checksums_is_refused(model: Path) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    del manifest["checksums"]
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="records no file checksums; rebuild"):
        read_manifest(model)


def test_siblings_of_killed_builds_are_removed_but_not_a_running_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".m.tmp-{dead_pid}-123"
    stale_old = tmp_path / f".m.old-{dead_pid}-124"
    running = tmp_path / f".m.tmp-{os.getppid()}-125"
    other = tmp_path / f".other.tmp-{dead_pid}-126"
    for folder in (stale, stale_old, running, other):
        folder.mkdir()
        (folder / "x.npy").write_bytes(b"partial")
    with caplog.at_level("WARNING"):
        write_model_dir(tmp_path / "m", _writer(np.eye(2, dtype=np.float32)))
    assert not stale.exists() and not stale_old.exists()
    assert running.exists() and other.exists()
    assert f"removed {stale}, left by a build that did not finish" in caplog.text
    assert remove_stale_siblings(tmp_path / "m") == []


def test_verify_command(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(model)]) == 0
    assert "2 files" in capsys.readouterr().out
    os.truncate(model / "content.npy", 10)
    assert main(["verify", str(model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("musicrec: error: ") and "content.npy has 10 bytes" in err
