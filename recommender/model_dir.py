"""The model directory: one folder holding everything a model needs, with a manifest.

A directory is written into a temporary sibling and renamed into place, so a crash never
leaves a half-written model where a server would load it. ``manifest.json`` is written
last and records the format version, package versions, counts and data fingerprints.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from musicrec.errors import ModelFormatError

MANIFEST = "manifest.json"
FORMAT = "musicrec-model"
FORMAT_VERSION = 1


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
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        manifest = write(tmp)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
            **manifest,
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
    return manifest
