"""Training pipelines that turn data into a model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musicrec.data.catalog import TrackCatalog
from musicrec.data.logs import ListeningLog
from musicrec.recommender.cf import CFModel
from musicrec.recommender.model_dir import read_manifest, write_model_dir


def train_cf_model_dir(
    log: ListeningLog,
    out: str | Path,
    *,
    catalog: TrackCatalog | None = None,
    model: CFModel | None = None,
) -> Path:
    """Fit a :class:`CFModel` on ``log`` and write a CF-only model directory to ``out``."""
    model = (model or CFModel()).fit(log)
    if catalog is None:
        catalog = TrackCatalog.from_ids(log.tracks.ids)

    def write(tmp: Path) -> dict[str, Any]:
        model.save(tmp / "cf.npz")
        catalog.save(tmp / "catalog.parquet")
        return {
            "kind": "cf",
            "files": ["cf.npz", "catalog.parquet"],
            "cf": {**model.get_params(), "seed": model.seed_},
            "counts": {"users": log.n_users, "tracks": log.n_tracks, "interactions": len(log),
                       "plays": float(log.plays.sum())},
            "data": {"interactions": {"source": log.report.source,
                                      "sha256": log.fingerprint(),
                                      "rows_read": log.report.rows_read,
                                      "rows_skipped": log.report.rows_skipped,
                                      "duplicates_merged": log.report.duplicates_merged}},
        }

    return write_model_dir(out, write)


def load_cf_model_dir(model_dir: str | Path) -> tuple[CFModel, TrackCatalog, dict[str, Any]]:
    """The CF model, catalogue and manifest of a model directory."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    model = CFModel.load(model_dir / "cf.npz")
    catalog = TrackCatalog.load(model_dir / "catalog.parquet")
    return model, catalog, manifest
