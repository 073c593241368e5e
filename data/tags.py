"""Content vectors from tags: TF-IDF over the tags listeners gave each track, then SVD.

This turns any (user, track, tag) table into per-track content vectors, so the hybrid
blend can be proven on real listeners when no audio exists (HetRec 2K has tags, not
audio).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec.data.idmap import IdMap
from musicrec.errors import ParameterError


def tag_vectors(
    assignments: pd.DataFrame,
    tracks: IdMap,
    *,
    dim: int = 64,
    exclude_pairs: pd.DataFrame | None = None,
    min_count: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF + truncated SVD tag vectors for ``tracks``.

    Parameters
    ----------
    assignments : pd.DataFrame
        Columns ``user``, ``track``, ``tag``.
    tracks : IdMap
        The tracks to describe, in the order of the output rows.
    dim : int
        SVD dimension.
    exclude_pairs : pd.DataFrame, optional
        ``user, track`` pairs whose tag assignments are dropped first (e.g. held-out
        pairs, whose own tags would leak the answer).
    min_count : int
        Tags used on fewer tracks are ignored.

    Returns
    -------
    vectors : np.ndarray [shape=(len(tracks), dim), dtype=float32]
        L2-normalised; rows of tracks without tags are zero.
    has_tags : np.ndarray [shape=(len(tracks),), dtype=bool]
    """
    frame = assignments[["user", "track", "tag"]].astype(str)
    if exclude_pairs is not None and len(exclude_pairs):
        drop = pd.MultiIndex.from_frame(exclude_pairs[["user", "track"]].astype(str))
        keys = pd.MultiIndex.from_frame(frame[["user", "track"]])
        frame = frame[~keys.isin(drop)]
    frame = frame[frame["track"].isin(set(tracks))]
    counts = frame.groupby(["track", "tag"]).size().reset_index(name="n")
    tag_tracks = counts.groupby("tag")["track"].nunique()
    keep_tags = tag_tracks[tag_tracks >= min_count].index
    counts = counts[counts["tag"].isin(keep_tags)]
    if counts.empty:
        raise ParameterError("no tag is used on at least min_count tracks")
    tag_map = {t: i for i, t in enumerate(sorted(keep_tags))}
    rows = tracks.to_idx_many(counts["track"])
    cols = counts["tag"].map(tag_map).to_numpy()
    tf = sp.csr_matrix((np.log1p(counts["n"].to_numpy(dtype=np.float64)), (rows, cols)),
                       shape=(len(tracks), len(tag_map)))
    df = np.bincount(cols, minlength=len(tag_map))
    has_tags = np.asarray(tf.getnnz(axis=1) > 0)
    idf = np.log((1 + has_tags.sum()) / (1 + df)) + 1.0
    tfidf = tf @ sp.diags(idf)
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1))).ravel()
    tfidf = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ tfidf
    k = min(dim, min(tfidf.shape) - 1)
    from scipy.sparse.linalg import svds

    v0 = np.random.default_rng(seed).standard_normal(min(tfidf.shape))
    u, s, _ = svds(tfidf, k=k, v0=v0)
    order = np.argsort(-s)
    vectors = (u[:, order] * s[order]).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return vectors, has_tags
