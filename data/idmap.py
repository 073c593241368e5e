"""Maps between raw string ids and dense integer indices.

Raw ids (``user_id``, ``track_id``) are whatever strings the user's data holds; dense
indices (``*_idx``) are the rows of matrices. :class:`IdMap` is the only place that
converts between them, and it is saved with every model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from musicrec.errors import (
    ModelFormatError,
    ParameterError,
    UnknownIdError,
    UnknownTrackError,
    UnknownUserError,
)

_ERRORS: dict[str, type[UnknownIdError]] = {
    "user": UnknownUserError,
    "track": UnknownTrackError,
}


class IdMap:
    """An ordered bijection ``raw id <-> dense index``.

    Parameters
    ----------
    ids : sequence of str
        The raw ids, in index order. They must be unique.
    kind : {"user", "track"}
        What the ids name; an unknown id raises :class:`UnknownUserError` or
        :class:`UnknownTrackError` accordingly.

    Examples
    --------
    >>> users = IdMap(["u7", "u2"], kind="user")
    >>> users.to_idx("u2")
    1
    >>> users.to_id(0)
    'u7'
    """

    def __init__(self, ids: Iterable[str], *, kind: str) -> None:
        if kind not in _ERRORS:
            raise ParameterError(f"kind={kind!r} must be one of {sorted(_ERRORS)}")
        self.kind = kind
        self._ids = np.asarray([str(i) for i in ids], dtype=object)
        self._index = {raw: idx for idx, raw in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            dup = pd.Series(self._ids).loc[pd.Series(self._ids).duplicated()].iloc[0]
            raise ParameterError(f"{kind} id {dup!r} appears more than once")

    @classmethod
    def from_values(
        cls, values: Sequence[str] | np.ndarray, *, kind: str
    ) -> tuple[IdMap, np.ndarray]:
        """Build a map over the distinct values, sorted, and return it with the codes.

        Returns
        -------
        idmap : IdMap
        codes : np.ndarray [shape=(len(values),), dtype=int32]
            ``codes[i]`` is the index of ``values[i]``.
        """
        codes, uniques = pd.factorize(pd.Series(values, dtype=object).astype(str), sort=True)
        return cls(uniques, kind=kind), codes.astype(np.int32)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        return raw_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdMap)
            and self.kind == other.kind
            and len(self) == len(other)
            and bool(np.all(self._ids == other._ids))
        )

    def __hash__(self) -> int:  # pragma: no cover - maps are not used as keys
        return hash((self.kind, len(self)))

    def __repr__(self) -> str:
        return f"IdMap(kind={self.kind!r}, n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """np.ndarray [shape=(n,), dtype=object]: the raw ids in index order."""
        return self._ids

    def to_idx(self, raw_id: str) -> int:
        """The dense index of one raw id; raises the kind's ``Unknown*Error``."""
        try:
            return self._index[raw_id]
        except (KeyError, TypeError):
            raise _ERRORS[self.kind](raw_id) from None

    def to_idx_many(self, raw_ids: Iterable[str]) -> np.ndarray:
        """Dense indices of many raw ids, as int64; the first unknown one raises."""
        return np.fromiter((self.to_idx(r) for r in raw_ids), dtype=np.int64)

    def to_id(self, idx: int) -> str:
        """The raw id at a dense index."""
        if not 0 <= int(idx) < len(self._ids):
            raise ParameterError(f"{self.kind} index {idx} is out of range 0..{len(self) - 1}")
        return str(self._ids[int(idx)])

    def to_ids(self, idx: np.ndarray | Sequence[int]) -> list[str]:
        """Raw ids of many dense indices."""
        return [str(x) for x in self._ids[np.asarray(idx, dtype=np.int64)]]

    def extend(self, raw_ids: Iterable[str]) -> IdMap:
        """A new map with ``raw_ids`` appended after the existing ids (which keep their index)."""
        new = [str(r) for r in raw_ids if str(r) not in self._index]
        return IdMap([*self._ids, *dict.fromkeys(new)], kind=self.kind)

    def to_array(self) -> np.ndarray:
        """The ids as a fixed-width unicode array, storable with ``allow_pickle=False``."""
        if len(self._ids) == 0:
            return np.zeros(0, dtype="<U1")
        return self._ids.astype(str)

    @classmethod
    def from_array(cls, array: np.ndarray, *, kind: str) -> IdMap:
        """Rebuild a map saved with :meth:`to_array`."""
        if array.ndim != 1 or array.dtype.kind != "U":
            raise ModelFormatError(
                f"a {kind} id map must be a 1-d unicode array, got {array.dtype} {array.shape}"
            )
        return cls(array.tolist(), kind=kind)
