"""Shared fixtures: a seeded rng, paths to the shared datasets, tiny logs."""

from __future__ import annotations

import os
from collections.abc import Callable
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


# -- In CI nothing may be skipped: a skip there means a missing dataset or dependency. ----
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _SKIPPED and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("CI") and _SKIPPED:
        terminalreporter.write_line(
            f"CI: {len(_SKIPPED)} test(s) skipped; in CI every test must run:", red=True)
        for line in _SKIPPED:
            terminalreporter.write_line(f"  {line}", red=True)


# -- Log readers: a format's log and its plain-CSV equivalent must give the same model. ---
def assert_same_model(a, b) -> None:  # type: ignore[no-untyped-def]
    """Two ListeningLogs hold the same data and train the same CF model (fixed seed)."""
    from musicrec.recommender.cf import CFModel

    assert list(a.users) == list(b.users)
    assert list(a.tracks) == list(b.tracks)
    for name in ("user_idx", "track_idx", "plays", "timestamp"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        if left is not None:
            np.testing.assert_array_equal(left, right, err_msg=name)
    assert a.fingerprint() == b.fingerprint()
    fa = CFModel(factors=4, iterations=3, random_state=7, show_progress=False).fit(a)
    fb = CFModel(factors=4, iterations=3, random_state=7, show_progress=False).fit(b)
    np.testing.assert_array_equal(fa.user_factors_, fb.user_factors_)
    np.testing.assert_array_equal(fa.item_factors_, fb.item_factors_)


@pytest.fixture
def same_model():  # type: ignore[no-untyped-def]
    return assert_same_model


# -- PANN checkpoints with random weights. ----------------------------------------------
def random_cnn14_state(seed: int = 0) -> dict:
    """A CNN14 state dict with random weights and batch-norm statistics, plus the front-end
    constants an official PANN checkpoint carries (which the loader must ignore)."""
    import torch

    from musicrec.embedding.pann import Cnn14

    torch.manual_seed(seed)
    state = Cnn14().state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand_like(value)
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn_like(value)
    state["logmel_extractor.melW"] = torch.zeros(513, 64)
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(513, 1, 1024)
    return state


@pytest.fixture(scope="session")
def cnn14_state() -> Callable[..., dict]:
    """:func:`random_cnn14_state`, for tests that need more than one checkpoint."""
    return random_cnn14_state


@pytest.fixture(scope="session")
def pann_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CNN14 checkpoint saved the way the official ones are."""
    import torch

    path = tmp_path_factory.mktemp("pann") / "cnn14.pth"
    torch.save({"model": random_cnn14_state(), "iteration": 0}, path)
    return path
