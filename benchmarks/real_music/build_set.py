"""Build the real-music benchmark set from seven Debian game-data packages.

    nice -n 10 .venv/bin/python benchmarks/real_music/build_set.py [--cache DIR]

Each package is fetched with ``apt-get download`` (after one ``apt-get update``) into
``DIR/debs`` and unpacked with ``dpkg-deb -x`` into ``DIR/root/<package>`` (no root
install; ``DIR`` defaults to ``$MUSICREC_CACHE/real_music`` or
``~/.cache/musicrec/real_music``). Nothing is written inside the repository.

The label of a track is its package (one soundtrack: one composer or team, one style).
A track is an audio file with a folder named like ``*music*`` on its path (this keeps
megaglest's tileset ambiences, supertux's ``speech/`` and every ``sounds/`` folder out),
at least ``--min-seconds`` long; files with the same content (sha256) are kept once.
OpenClonk's packed C4Group archives (``*.ocg``/``*.ocd``/``*.ocf``, see ``c4group.py``)
are opened and their ``*music*`` audio extracted to ``DIR/extracted``. librosa's
recordings (``../shared/datasets/librosa-audio``, ``*.hq.ogg``, the same length rule) join
as the group ``librosa``: distractors in every ranking, never queries (they are unrelated
recordings, not one soundtrack).

Writes ``DIR/catalog.csv`` (``track_id, audio_path, label, query, duration_s, sha256,
source``; ``audio_path`` relative to ``DIR``, a musicrec catalogue) and ``DIR/summary.json``
(counts per source, what each rule dropped, and each package's licence lines from its
``/usr/share/doc/<package>/copyright``), and prints the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_embed import AUDIO, recordings  # noqa: E402
from c4group import MAGIC, C4GroupError, read_group  # noqa: E402

from musicrec.embedding.audio import AUDIO_EXTENSIONS  # noqa: E402
from musicrec.embedding.base import resolve_cache_dir  # noqa: E402

#: The set is defined by exactly these packages, so its numbers stay comparable.
PACKAGES = ("hedgewars-data", "widelands-data", "freedroidrpg-data", "supertux-data",
            "lincity-ng-data", "openclonk-data", "megaglest-data")
LIBROSA_LABEL = "librosa"


def fetch(packages: tuple[str, ...], cache: Path) -> dict[str, Path]:
    """The ``.deb`` of each package in ``cache/debs``, downloaded when missing."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)

    def found(pkg: str) -> Path | None:
        hits = sorted(debs.glob(f"{pkg}_*.deb"))
        return hits[-1] if hits else None

    missing = [p for p in packages if found(p) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        for pkg in missing:
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True)
    out = {}
    for pkg in packages:
        deb = found(pkg)
        if deb is None:
            raise SystemExit(f"apt-get download {pkg} left no {pkg}_*.deb in {debs}")
        out[pkg] = deb
    return out


def unpack(pkg: str, deb: Path, cache: Path) -> Path:
    """``dpkg-deb -x deb cache/root/pkg`` once (a stamp names the .deb it came from)."""
    root = cache / "root" / pkg
    stamp = root / ".unpacked-from"
    if not (stamp.is_file() and stamp.read_text() == deb.name):
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        stamp.write_text(deb.name)
    return root


def is_music_path(rel: str) -> bool:
    """Whether a folder on ``rel`` (not the file name) names music."""
    return any("music" in part.lower() for part in rel.split("/")[:-1])


def is_audio(name: str) -> bool:
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS


def candidates(pkg: str, root: Path, cache: Path, counts: dict) -> list[tuple[Path, str]]:
    """``(file, source description)`` of every music-folder audio file of a package,
    C4Group contents extracted to ``cache/extracted/pkg``."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if is_audio(path.name):
            if is_music_path(rel):
                out.append((path, rel))
            else:
                counts["audio_outside_music_folders"] += 1
            continue
        with open(path, "rb") as f:
            if f.read(2) != MAGIC:
                continue
        counts["c4groups"] += 1
        try:
            for inner, blob in read_group(path):
                if not is_audio(inner):
                    continue
                counts["c4group_audio_files"] += 1
                if not is_music_path(f"{rel}/{inner}"):
                    continue
                target = cache / "extracted" / pkg / rel / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
                counts["c4group_music_files"] += 1
                out.append((target, f"{rel}:{inner}"))
        except C4GroupError as exc:
            counts["c4group_errors"].append(str(exc))
    return out


def _field(paragraph: str, name: str) -> str:
    """A DEP-5 field's value, continuation lines joined."""
    match = re.search(rf"^{name}:(.*(?:\n[ \t].*)*)", paragraph, flags=re.M)
    return " ".join(match.group(1).split()) if match else ""


def licence_lines(copyright_file: Path) -> list[str]:
    """The licence statements of a Debian copyright file: for a machine-readable (DEP-5) one,
    ``Files: ... -> License: <name>`` for the ``*`` stanza and any stanza naming music or
    sound; otherwise the lines of its ``License:`` section that name a licence."""
    if not copyright_file.is_file():
        return [f"{copyright_file} is missing"]
    text = copyright_file.read_text(errors="replace")
    stanzas = [(_field(par, "Files"), (_field(par, "License").split(" ") + ["?"])[0])
               for par in re.split(r"\n\s*\n", text) if re.search(r"^Files:", par, flags=re.M)]
    if stanzas:
        return [f"{files} -> {lic}" for files, lic in stanzas
                if files == "*" or re.search(r"music|sound", files, flags=re.I)]
    after = text.split("\nLicense:", 1)
    if len(after) < 2:
        return ["no License: field"]
    lines = [ln.strip() for ln in after[1].splitlines() if ln.strip()]
    return [ln for ln in lines if re.search(r"licensed under|creative commons|CC0", ln,
                                            flags=re.I)][:4]


def build(cache: Path, *, librosa_audio: Path | None, min_seconds: float) -> dict:
    import soundfile as sf

    debs = fetch(PACKAGES, cache)
    rows, seen, summary = [], {}, {"packages": {}, "min_seconds": min_seconds}
    sources: list[tuple[str, bool, list[tuple[Path, str]], dict]] = []
    for pkg in PACKAGES:
        root = unpack(pkg, debs[pkg], cache)
        counts: dict = {"deb": debs[pkg].name, "audio_outside_music_folders": 0,
                        "c4groups": 0, "c4group_audio_files": 0, "c4group_music_files": 0,
                        "c4group_errors": [],
                        "licence": licence_lines(root / "usr/share/doc" / pkg / "copyright")}
        sources.append((pkg, True, candidates(pkg, root, cache, counts), counts))
    if librosa_audio is not None:
        files = [(p, p.name) for p in recordings(librosa_audio)]
        sources.append((LIBROSA_LABEL, False, files,
                        {"licence": ["per recording, see its .txt: CC BY / CC BY-NC / CC0 / "
                                     "public domain"]}))
    for label, query, files, counts in sources:
        counts.update(music_files=len(files), too_short=0, undecodable=0, duplicates=[],
                      tracks=0, hours=0.0)
        for path, source in files:
            try:
                duration = sf.info(path).duration
            except Exception:  # noqa: BLE001 - counted, not hidden
                counts["undecodable"] += 1
                continue
            if duration < min_seconds:
                counts["too_short"] += 1
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                counts["duplicates"].append(f"{source} = {seen[digest]}")
                continue
            seen[digest] = f"{label}:{source}"
            counts["tracks"] += 1
            counts["hours"] += duration / 3600
            rows.append({"track_id": f"{label}/{len(rows):04d}-{Path(source).stem}",
                         "audio_path": os.path.relpath(path, cache), "label": label,
                         "query": query, "duration_s": round(duration, 2), "sha256": digest,
                         "source": source})
        counts["hours"] = round(counts["hours"], 3)
        summary["packages"][label] = counts
    import pandas as pd

    pd.DataFrame(rows).to_csv(cache / "catalog.csv", index=False)
    summary["tracks"] = len(rows)
    summary["queries"] = sum(r["query"] for r in rows)
    (cache / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, help="folder for the packages and the set (default "
                    "$MUSICREC_CACHE/real_music or ~/.cache/musicrec/real_music)")
    ap.add_argument("--librosa-audio", type=Path, default=AUDIO)
    ap.add_argument("--no-librosa", action="store_true", help="leave librosa's recordings out")
    ap.add_argument("--min-seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    cache = args.cache or resolve_cache_dir() / "real_music"
    cache.mkdir(parents=True, exist_ok=True)
    summary = build(cache, librosa_audio=None if args.no_librosa else args.librosa_audio,
                    min_seconds=args.min_seconds)
    print(f"| source | tracks | hours | music-folder files | < {args.min_seconds:g} s | "
          "duplicates | licence |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, c in summary["packages"].items():
        print(f"| {label} | {c['tracks']} | {c['hours']:.2f} | {c['music_files']} | "
              f"{c['too_short']} | {len(c['duplicates'])} | {'; '.join(c['licence'])} |")
    print(f"{summary['tracks']} tracks ({summary['queries']} queries) -> {cache}/catalog.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
