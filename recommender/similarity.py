"""The "listeners also played" half of similar tracks and the radio, from the chosen model.

Similar tracks and the radio score a track ``j`` against a seed ``s`` by
``sim(s, j) = α · cos(c_s, c_j) + (1 − α) · cf(s, j)``. Without a chosen model (a model
directory built with ``--cf hybrid``, or before ``served/`` existed) ``cf`` is the cosine
of the tracks' CF vectors (``similar_cf.npy``: ALS factors, the content prediction for a
track without plays). With one (``build --cf auto``), :class:`ChosenSimilarity` gives
``cf(s, ·)`` from the model that won on validation, each part its own way:

* item-kNN and RP3beta: the seed's stored top-K neighbour list (row ``s`` of their sparse
  item-item matrix, read straight from its mmap'd CSR arrays); other tracks get 0;
* EASE: row ``s`` of its item-item weights ``B`` (how much playing ``s`` predicts ``j``);
* ALS, BPR and the hybrid: the cosine of their own track vectors (the hybrid's CF-space
  vectors: its own for tracks with plays, the content prediction otherwise);
* a blend ``w · first + (1 − w) · second``: the same weights over its members' rows.

**One scale.** Each member's row is divided by its largest value over the other tracks,
then clipped below at −1: the seed's best neighbour scores 1 in every model, as the
closest track's cosine nearly does, and the CF part stays on a cosine's range whatever the
model. Without this, α would mean something different per model: RP3beta's entries are
random-walk probabilities of order 1e-3 and EASE's weights of order 1e-2, so content would
decide every α > 0. The rule was not tuned; ``benchmarks/bench_similar.py`` checks it
(``--unscaled``) and compares the result with the factor cosine on held-out plays (the
README's *Similar tracks from the chosen model*).

**Seeds the chosen model cannot place.** A seed with no row (no plays, added later by
``add-tracks``, dropped by EASE above ``max_items``, or whose neighbour list is empty) keeps
the factor cosine of ``similar_cf.npy``, as without a chosen model. Tracks the chosen model
does not know get ``cf = 0`` and reach the results through content (α > 0).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from musicrec.errors import CapabilityError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.cf import CFModel
from musicrec.recommender.hybrid import HybridModel
from musicrec.recommender.served import ServedModel


class ChosenSimilarity:
    """``cf(s, ·)`` of the model chosen on validation (see the module docstring).

    Parameters
    ----------
    served : ServedModel
        A fitted (or loaded) chosen model; its tracks are the model directory's first
        ``served.n_items_`` tracks.
    """

    def __init__(self, served: ServedModel) -> None:
        self.parts: list[tuple[RecommenderBase, float]] = served.parts()
        self.n_items = int(served.n_items_)

    def row(self, seed: int) -> np.ndarray | None:
        """``cf(seed, j)`` for every track ``j`` the chosen model knows.

        Returns
        -------
        np.ndarray [shape=(n_items,), dtype=float32] or None
            Each member's row scaled so that its best other track scores 1 (clipped below
            at −1), blended by the members' weights (renormalised over the members that
            place the seed); None when no member places the seed.
        """
        if not 0 <= seed < self.n_items:
            return None
        total: np.ndarray | None = None
        weights = 0.0
        for member, weight in self.parts:
            part = self._member_row(member, seed)
            if part is None:
                continue
            total = weight * part if total is None else total + weight * part
            weights += weight
        if total is None:
            return None
        return (total / weights).astype(np.float32) if weights != 1.0 else total

    def _member_row(self, member: RecommenderBase, seed: int) -> np.ndarray | None:
        similarity = getattr(member, "similarity_", None)
        if sp.issparse(similarity):  # item-kNN, RP3beta: the stored top-K list, as is
            csr: sp.csr_matrix = similarity
            lo, hi = int(csr.indptr[seed]), int(csr.indptr[seed + 1])
            values = np.asarray(csr.data[lo:hi], dtype=np.float32)
            if hi == lo or values.max() <= 0:
                return None
            row = np.zeros(self.n_items, dtype=np.float32)
            row[np.asarray(csr.indices[lo:hi])] = values
            return _scaled(row, seed)
        if isinstance(member, CFModel | HybridModel):
            unit = member.unit_cf() if isinstance(member, HybridModel) else \
                member.unit_vectors()
            if not unit[seed].any():
                return None
            return _scaled(unit @ unit[seed], seed)
        try:  # EASE (and any other model with a track-to-track similarity)
            row = np.asarray(member._similar_scores(np.array([seed], dtype=np.int64))[0],
                             dtype=np.float32)
        except CapabilityError:  # popularity, random: no similarity to offer
            return None
        return _scaled(np.where(np.isfinite(row), row, 0.0).astype(np.float32), seed)


def _scaled(row: np.ndarray, seed: int) -> np.ndarray | None:
    """``row / max over the other tracks``, clipped below at −1; None without a positive
    entry (the member has nothing to say about this seed)."""
    own = row[seed]
    row[seed] = -np.inf
    top = float(row.max()) if len(row) > 1 else 0.0
    row[seed] = own
    if not top > 0:
        return None
    scaled = np.maximum(row / np.float32(top), np.float32(-1.0))
    scaled[seed] = 1.0  # a track is as close to itself as to anything
    return scaled
