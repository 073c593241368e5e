"""Files on disk: content hashes, and folders written atomically with a manifest.

Below every layer (``data``, ``embedding``, ``recommender``, ``api``), so that each can
write a folder the same way: the model directory (:mod:`musicrec.recommender.model_dir`)
and a trained embedder (:mod:`musicrec.embedding.trained`) both use :func:`write_dir`.
"""

from __future__ import annotations

import hashlib
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

from musicrec.errors import ModelFormatError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>[0-9]+)-[0-9]+$")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a written folder depends on."""
    versions = {"python": platform.python_version()}
    for name in ("musicrec", "numpy", "scipy", "implicit", "annoy", "torch", "transformers",
                 "librosa", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def created_now() -> str:
    """The current UTC time, as manifests record it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_dir(
    out: str | Path,
    write: Callable[[Path], dict[str, Any]],
    *,
    base: dict[str, Any],
    force: bool = True,
) -> Path:
    """Create the folder ``out`` atomically, with a ``manifest.json`` written last.

    ``write(tmp_dir)`` fills a temporary sibling folder and returns the manifest's
    content, which is laid over ``base``; ``checksums`` (each file's size and sha256) is
    added, ``.npy`` arrays of floats must be finite, and the folder is renamed to ``out``.
    An existing folder with a manifest at ``out`` is replaced (unless ``force`` is false);
    any other existing non-empty folder is refused. Siblings left by a writer that was
    killed are removed first (:func:`remove_stale_siblings`).
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
            check_finite(tmp, name)
        manifest = {
            **base,
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


def read_format_json(path: Path, *, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The JSON object of a saved artefact's description file ``path``, checked to be of
    format ``fmt`` at ``version`` (``what`` names the artefact in errors, e.g. "a musicrec
    model").

    Raises
    ------
    ModelFormatError
        The file is missing, corrupt, of another format or of another version.
    """
    if not path.exists():
        raise ModelFormatError(f"{path.parent}: not {what} (no {path.name})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: corrupt {path.name} ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ModelFormatError(f"{path}: not {what}")
    found = meta.get("format_version")
    if found != version:
        raise ModelFormatError(f"{path}: model format version {found!r} is not supported "
                               f"(this musicrec reads version {version}); rebuild the model")
    return meta


def check_finite(model_dir: Path, name: str) -> None:
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
