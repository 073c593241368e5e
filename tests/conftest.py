"""Shared fixtures: a seeded rng, paths to the shared datasets, tiny logs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MUSICREC_SHARED", ROOT.parent / "shared" / "datasets"))


def shared_path(name: str) -> Path:
    """A folder of ``../shared/datasets``: CI fails without it, elsewhere the test skips."""
    path = SHARED / name
    if not path.exists():
        message = f"shared dataset {path} is missing (see ../shared/datasets/README.md)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def hetrec_dir() -> Path:
    return shared_path("hetrec2011-lastfm-2k")


@pytest.fixture(scope="session")
def librosa_audio_dir() -> Path:
    return shared_path("librosa-audio")


@pytest.fixture
def tiny_log_csv(tmp_path: Path) -> Path:
    frame = pd.DataFrame({
        "user": ["a", "a", "b", "b", "c", "a"],
        "track": ["t1", "t2", "t2", "t3", "t1", "t1"],
        "plays": [3, 1, 2, 5, 1, 2],
        "timestamp": ["2024-01-01T10:00:00", "2024-01-02T10:00:00", "2024-01-03T10:00:00",
                      "2024-01-04T10:00:00", "2024-01-05T10:00:00", "2024-01-06T10:00:00"],
    })
    path = tmp_path / "plays.csv"
    frame.to_csv(path, index=False)
    return path
