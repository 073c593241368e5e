"""The model directory: one folder holding everything a model needs, with a manifest.

A directory is written into a temporary sibling and renamed into place, so a crash never
leaves a half-written model where a server would load it; siblings left by a build that
was killed are removed by the next build. ``manifest.json`` is written last and records
the format version, package versions, counts, data fingerprints, and the size and sha256
of every file.

Checks, from cheap to thorough:

* :func:`read_manifest` (every load) compares each file's size with the manifest: a
  truncated array is refused before it is mmap'd;
* :class:`FileWatch` (a server, at most once a second) notices a file changed on disk
  since it was loaded, so the server answers 503 instead of crashing on it;
* :func:`verify_model_dir` (``musicrec verify``, server start and reload) compares every
  sha256 and refuses arrays that hold NaN or infinite values.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from musicrec.embedding.base import file_sha256
from musicrec.errors import ModelFormatError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "musicrec-model"
#: 2: the manifest records every file's size and sha256 (``checksums``).
FORMAT_VERSION = 2
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>[0-9]+)-[0-9]+$")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("musicrec", "numpy", "scipy", "implicit", "annoy", "torch", "transformers",
                 "librosa", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_model_dir(
    out: str | Path, write: Callable[[Path], dict[str, Any]], *, force: bool = True
) -> Path:
    """Create ``out`` atomically.

    ``write(tmp_dir)`` fills a temporary sibling folder and returns the manifest's
    content; the manifest is then written and the folder renamed to ``out``. An existing
    musicrec model at ``out`` is replaced; any other existing non-empty folder is refused.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ModelFormatError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ModelFormatError(
            f"{out}: exists, is not empty and is not a musicrec model; choose another --out"
        )
    if out.is_dir() and (out / MANIFEST).exists() and not force:
        raise ModelFormatError(f"{out}: a model exists already")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        manifest = write(tmp)
        for name in _files(tmp):
            _check_finite(tmp, name)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
            **manifest,
            "checksums": {name: {"bytes": (tmp / name).stat().st_size,
                                 "sha256": file_sha256(tmp / name)} for name in _files(tmp)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.rename(out, trash)
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The validated manifest of a model directory."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFormatError(f"{model_dir}: model directory not found")
    path = model_dir / MANIFEST
    if not path.exists():
        raise ModelFormatError(f"{model_dir}: not a musicrec model (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not a musicrec model manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format version {version!r} is not supported (this musicrec reads "
            f"version {FORMAT_VERSION}); rebuild the model"
        )
    for name in manifest.get("files", []):
        if not (model_dir / name).exists():
            raise ModelFormatError(f"{model_dir}: manifest lists {name}, which is missing")
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or not checksums:
        raise ModelFormatError(f"{path}: records no file checksums; rebuild the model")
    for name, recorded in checksums.items():
        file = model_dir / name
        try:
            size = file.stat().st_size
        except OSError:
            raise ModelFormatError(f"{model_dir}: {name} is missing") from None
        if size != recorded.get("bytes"):
            raise ModelFormatError(f"{model_dir}: {name} has {size} bytes, the manifest "
                                   f"records {recorded.get('bytes')}: the file was changed "
                                   "after the build; rebuild the model")
    return manifest


def verify_model_dir(model_dir: str | Path) -> dict[str, Any]:
    """Check every file of a model directory against its manifest, thoroughly.

    Sizes and sha256 must match the manifest and ``.npy`` arrays of floats must be finite.
    This reads every byte: seconds per GB.

    Returns
    -------
    dict
        ``{"files": n, "bytes": total}`` of what was checked.

    Raises
    ------
    ModelFormatError
        Naming every file that fails, and why.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    problems = []
    total = 0
    for name, recorded in manifest["checksums"].items():
        total += int(recorded["bytes"])
        if file_sha256(model_dir / name) != recorded.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest's")
            continue
        try:
            _check_finite(model_dir, name)
        except ModelFormatError as exc:
            problems.append(str(exc).removeprefix(f"{model_dir}: "))
    if problems:
        raise ModelFormatError(f"{model_dir}: {len(problems)} damaged file(s): "
                               + "; ".join(problems) + "; rebuild the model")
    return {"files": len(manifest["checksums"]), "bytes": total}


class FileWatch:
    """Notices when the files of a loaded model directory change on disk.

    A server mmaps the arrays: a file truncated under it crashes the process that reads
    it (SIGBUS), and one rewritten in place changes its answers. The watch holds each
    file open and :meth:`problem` compares its size and modification time with those at
    load, at most once per ``interval`` seconds. A directory replaced by a new build (a
    rename) is not a change: the loaded files stay intact until a reload.
    """

    def __init__(self, model_dir: str | Path, manifest: dict[str, Any], *,
                 interval: float = 1.0) -> None:
        self.model_dir = Path(model_dir)
        self.names = sorted(manifest["checksums"])
        self.interval = interval
        self._fds: list[int] = []
        try:
            for name in self.names:
                self._fds.append(os.open(self.model_dir / name, os.O_RDONLY))
        except OSError as exc:
            self.close()
            raise ModelFormatError(f"{self.model_dir}: cannot open {name} ({exc})") from None
        self._seen = self._stats()
        self._checked = time.monotonic()
        self._problem: str | None = None

    def _stats(self) -> list[tuple[int, int]]:
        return [(st.st_size, st.st_mtime_ns) for st in map(os.fstat, self._fds)]

    def problem(self) -> str | None:
        """None while the files are as loaded, else what changed (it stays changed)."""
        if self._problem is None and time.monotonic() - self._checked >= self.interval:
            self._checked = time.monotonic()
            for name, seen, now in zip(self.names, self._seen, self._stats(), strict=True):
                if seen != now:
                    self._problem = (f"{name} changed on disk after the model was loaded; "
                                     "rebuild or restore it, then reload")
                    log.error("model directory %s: %s", self.model_dir, self._problem)
                    break
        return self._problem

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def __del__(self) -> None:
        self.close()


def remove_stale_siblings(out: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``out`` that builds killed mid-way left behind.

    A sibling belongs to the process whose id its name carries; those of a process that
    is still running (a build in progress) are kept.
    """
    out = Path(out)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for sibling in out.parent.iterdir():
        match = _SIBLING.match(sibling.name)
        if match is None or match["name"] != out.name or not sibling.is_dir():
            continue
        if _running(int(match["pid"])):
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
        log.warning("removed %s, left by a build that did not finish", sibling)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _files(root: Path) -> list[str]:
    """Every file below ``root`` but the manifest, as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def _check_finite(model_dir: Path, name: str) -> None:
    """Refuse a ``.npy`` array of floats that holds NaN or infinite values."""
    if not name.endswith(".npy"):
        return
    try:
        array = np.load(model_dir / name, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{model_dir}: {name} cannot be read ({exc})") from None
    if array.dtype.kind not in "fc":
        return
    step = max(1, (1 << 22) // max(1, array.itemsize * int(np.prod(array.shape[1:]))))
    bad = sum(int(np.count_nonzero(~np.isfinite(array[i:i + step])))
              for i in range(0, len(array), step)) if array.ndim else int(
                  not np.isfinite(array))
    if bad:
        raise ModelFormatError(f"{model_dir}: {name} holds {bad} NaN or infinite value(s)")
