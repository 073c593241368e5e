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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from musicrec.errors import ModelFormatError
from musicrec.storage import (
    MANIFEST,
    check_finite,
    created_now,
    file_sha256,
    package_versions,
    write_dir,
)

log = logging.getLogger(__name__)

FORMAT = "musicrec-model"
#: 2: the manifest records every file's size and sha256 (``checksums``).
#: 3: the CF model is a folder, ``cf/``, written by ``RecommenderBase.save``.
FORMAT_VERSION = 3


def write_model_dir(
    out: str | Path, write: Callable[[Path], dict[str, Any]], *, force: bool = True
) -> Path:
    """Create the model directory ``out`` atomically (:func:`musicrec.storage.write_dir`).

    ``write(tmp_dir)`` fills a temporary sibling folder and returns the manifest's
    content; the format, package versions, creation time and every file's checksum are
    added. An existing musicrec model at ``out`` is replaced; any other existing
    non-empty folder is refused.
    """
    return write_dir(out, write, force=force, base={
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": created_now(), "versions": package_versions()})


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
            check_finite(model_dir, name)
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
