"""The catalogue as a map: a 2-D layout of the tracks, one per space, for the web page.

Written at build time as ``layout.npz`` in the model directory (by
:func:`write_layouts`, called from the model writer) and read by the web page's map
endpoint (:func:`read_layouts`). A model directory without it (built before the map
existed) loads and serves as before; only the map is missing.

Two spaces:

``content``
    the tracks with audio vectors ("sounds like");
``cf``
    the tracks with plays, by their collaborative-filtering vectors ("listened to by the
    same people").

The method is t-SNE (scikit-learn, Barnes-Hut, cosine distance, PCA initialisation, a
fixed seed). A map is read for its neighbourhoods: "what lies near this track". t-SNE
keeps those; PCA keeps the two directions of largest variance and piles the rest on top
of each other. On the 400-track demo, the share of each track's 10 nearest tracks (by
cosine) that are also among its 10 nearest on the map is measured in the README
(``benchmarks/bench_map.py --layout-quality``). UMAP would do as well and scale better,
but it needs numba and llvmlite; t-SNE comes with scikit-learn, which librosa already
needs.

Above :data:`TSNE_SAMPLE` tracks, t-SNE runs on a random sample of that many, and every
other track is placed at the similarity-weighted mean of its :data:`PLACE_NEIGHBOURS`
nearest sampled tracks: the build stays in minutes at 100k tracks, and a track still
lands beside the tracks it resembles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musicrec.errors import ModelFormatError, ParameterError

if TYPE_CHECKING:
    from musicrec.recommender.hybrid import HybridModel

log = logging.getLogger(__name__)

#: The file in the model directory.
LAYOUT_FILE = "layout.npz"
#: The spaces a model directory may hold a layout of.
SPACES = ("content", "cf")
#: Most tracks t-SNE lays out itself; the others are placed by their neighbours.
TSNE_SAMPLE = 5000
#: Sampled neighbours that place a track outside the t-SNE sample.
PLACE_NEIGHBOURS = 5
#: Fewest tracks for t-SNE; fewer are laid out by PCA.
MIN_TSNE = 8


@dataclass(frozen=True)
class Layout:
    """One space's map: ``rows`` (indices into the model's track list) and their
    coordinates ``xy`` [shape=(len(rows), 2)], scaled into the unit square."""

    space: str
    method: str
    rows: np.ndarray
    xy: np.ndarray


def layout_2d(vectors: np.ndarray, *, method: str = "tsne", random_state: int = 0,
              sample: int = TSNE_SAMPLE) -> tuple[np.ndarray, str]:
    """Lay out ``vectors`` in 2-D, in the unit square (aspect kept, centred).

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, dim)]
        Compared by cosine: rows are normalised here (zero rows stay at the origin).
    method : {"tsne", "pca"}
        ``tsne`` falls back to PCA below :data:`MIN_TSNE` rows.
    random_state : int
        Seed of the sample and of t-SNE: the same input gives the same map.
    sample : int
        Most rows t-SNE lays out itself (see the module docstring).

    Returns
    -------
    xy : np.ndarray [shape=(n, 2), dtype=float32]
    method : str
        What was used: ``tsne``, ``tsne+placed`` (sampled), ``pca``, or ``single``.

    Examples
    --------
    >>> xy, how = layout_2d(np.eye(3, dtype=np.float32), method="pca")
    >>> xy.shape, how, bool(xy.min() >= 0 and xy.max() <= 1)
    ((3, 2), 'pca', True)
    """
    if method not in ("tsne", "pca"):
        raise ParameterError(f"method={method!r} must be 'tsne' or 'pca'")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < MIN_TSNE:
        raise ParameterError(f"sample={sample!r} must be an integer of at least {MIN_TSNE}")
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ParameterError(f"vectors must be 2-D, got shape {x.shape}")
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32), method
    if n == 1:
        return np.full((1, 2), 0.5, dtype=np.float32), "single"
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    if method == "pca" or n < MIN_TSNE:
        return _unit_square(_pca(x)), "pca"
    if n <= sample:
        return _unit_square(_tsne(x, random_state)), "tsne"
    rng = np.random.default_rng(random_state)
    picked = np.sort(rng.choice(n, sample, replace=False))
    xy = np.zeros((n, 2), dtype=np.float32)
    xy[picked] = _tsne(x[picked], random_state)
    rest = np.setdiff1d(np.arange(n), picked)
    xy[rest] = _place(x[rest], x[picked], xy[picked], rng)
    return _unit_square(xy), "tsne+placed"


def _pca(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = np.zeros((len(x), 2), dtype=np.float32)
    k = min(2, vt.shape[0])
    out[:, :k] = centred @ vt[:k].T
    return out


def _tsne(x: np.ndarray, random_state: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                random_state=random_state, n_jobs=1)
    # one OpenMP thread: on a busy machine, spinning gradient threads made a 60-track
    # layout take 18 s instead of 0.4 s
    with threadpool_limits(limits=1):
        return np.asarray(tsne.fit_transform(x.astype(np.float64)), dtype=np.float32)


def _place(x: np.ndarray, anchors: np.ndarray, anchor_xy: np.ndarray,
           rng: np.random.Generator, chunk: int = 4096) -> np.ndarray:
    """Each row of ``x`` at the similarity-weighted mean of its nearest ``anchors``."""
    k = min(PLACE_NEIGHBOURS, len(anchors))
    spread = float(np.std(anchor_xy)) * 0.01  # a little jitter: no two tracks on one pixel
    out = np.empty((len(x), 2), dtype=np.float32)
    for start in range(0, len(x), chunk):
        sims = x[start : start + chunk] @ anchors.T
        near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weight = np.maximum(np.take_along_axis(sims, near, axis=1), 0.0) + 1e-6
        weight /= weight.sum(axis=1, keepdims=True)
        out[start : start + chunk] = np.einsum("nk,nkd->nd", weight, anchor_xy[near])
    return out + rng.normal(0.0, spread, out.shape).astype(np.float32)


def _unit_square(xy: np.ndarray) -> np.ndarray:
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max())
    if span <= 0:
        return np.full(xy.shape, 0.5, dtype=np.float32)
    out = (xy - low) / span
    out += (1.0 - (high - low) / span) / 2  # centre the shorter side
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def write_layouts(folder: str | Path, spaces: dict[str, tuple[np.ndarray, np.ndarray]], *,
                  random_state: int = 0) -> dict[str, str]:
    """Lay out each space and save them all to ``folder / LAYOUT_FILE``.

    Parameters
    ----------
    folder : str or Path
        The model directory being written.
    spaces : dict
        ``space -> (rows, vectors)``: the tracks' indices in the model's track list and
        their vectors. Spaces with no rows are left out.

    Returns
    -------
    dict
        ``space -> method`` of what was written (empty, and no file, when no space has
        rows).
    """
    arrays: dict[str, np.ndarray] = {}
    methods: dict[str, str] = {}
    for space, (rows, vectors) in spaces.items():
        if space not in SPACES:
            raise ParameterError(f"space={space!r} must be one of {SPACES}")
        if len(rows) == 0:
            continue
        xy, method = layout_2d(vectors, random_state=random_state)
        arrays[f"{space}_rows"] = np.asarray(rows, dtype=np.int64)
        arrays[f"{space}_xy"] = xy
        arrays[f"{space}_method"] = np.array(method)
        methods[space] = method
        log.info("laid out %d tracks of the %s space (%s)", len(rows), space, method)
    if arrays:
        np.savez(Path(folder) / LAYOUT_FILE, **arrays)  # type: ignore[arg-type]
    return methods


def write_hybrid_layouts(folder: str | Path, hybrid: HybridModel, unit_cf: np.ndarray
                         ) -> dict[str, str]:
    """The layouts of a fitted :class:`~musicrec.recommender.hybrid.HybridModel` being
    written to ``folder``: content for the tracks with audio vectors, CF (``unit_cf``
    rows) for the tracks with plays."""
    spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if hybrid.has_content:
        rows = np.flatnonzero(hybrid.has_content_)
        spaces["content"] = (rows, np.asarray(hybrid.content_[rows]))
    if hybrid.has_cf:
        rows = np.flatnonzero(np.asarray(hybrid.evidence_) > 0)
        spaces["cf"] = (rows, np.asarray(unit_cf[rows]))
    return write_layouts(folder, spaces)


def read_layouts(model_dir: str | Path, n_tracks: int) -> dict[str, Layout]:
    """The layouts of a model directory (``{}`` when it has none, as older models)."""
    path = Path(model_dir) / LAYOUT_FILE
    if not path.exists():
        return {}
    out = {}
    with np.load(path, allow_pickle=False) as npz:
        for space in SPACES:
            if f"{space}_rows" not in npz:
                continue
            rows, xy = npz[f"{space}_rows"], npz[f"{space}_xy"]
            if xy.shape != (len(rows), 2) or (len(rows) and (
                    rows.min() < 0 or rows.max() >= n_tracks)):
                raise ModelFormatError(f"{path}: the {space} layout does not fit the model's "
                                       f"{n_tracks} tracks; rebuild the model")
            out[space] = Layout(space, str(npz[f"{space}_method"]), rows, xy)
    return out
