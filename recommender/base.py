"""The one interface of every recommender model, used by evaluation and serving alike.

Modelled on implicit's ``RecommenderBase`` and scikit-learn's estimators:

* ``__init__`` only stores keyword hyper-parameters; :meth:`RecommenderBase.get_params`
  reads their names from ``__init__``'s signature, here, once for every model;
* :meth:`~RecommenderBase.fit` takes the ``users x tracks`` play matrix (a CSR matrix, or
  a :class:`~musicrec.data.logs.ListeningLog`, whose id maps the model then keeps as
  ``users_`` / ``tracks_``; a matrix's ids are its indices as strings) and, for models
  that need them, per-track content vectors; learned state ends in ``_``;
* :meth:`~RecommenderBase.scores` gives dense scores for users (what the evaluation runner
  ranks), :meth:`~RecommenderBase.recommend` the top ``n`` tracks of one user or of many
  (a batch answers exactly as single calls do), :meth:`~RecommenderBase.similar_items`
  the top ``n`` neighbours of tracks;
* :meth:`~RecommenderBase.save` / :meth:`~RecommenderBase.load` write and read a folder:
  ``model.json`` (name, parameters, scalars) and one ``.npy`` file per array (a CSR
  matrix as three), never pickle, loaded with ``mmap_mode="r"``. The learned state is
  found generically: every attribute ending in ``_`` that holds an array, a sparse
  matrix, an :class:`~musicrec.data.idmap.IdMap`, a nested model, a number, a string or
  ``None``.

A subclass implements ``_fit(user_items, content)`` and ``_scores(rows, user_items)`` and,
where it has a notion of track-to-track similarity, ``_similar_scores(items)``.

Examples
--------
>>> model = ItemKNNModel(k=50).fit(user_items)  # doctest: +SKIP
>>> ids, scores = model.recommend(3, n=10)  # doctest: +SKIP
>>> ids, scores = model.recommend(np.arange(100), n=10)  # [100, 10] each  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import scipy.sparse as sp

from musicrec.data.idmap import IdMap
from musicrec.data.logs import ListeningLog
from musicrec.errors import CapabilityError, ModelFormatError, NotFittedError, ParameterError
from musicrec.recommender._rank import top_n
from musicrec.storage import read_format_json

FORMAT = "musicrec-recommender"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"

Model = TypeVar("Model", bound="RecommenderBase")


class RecommenderBase:
    """The interface every model implements (see the module docstring).

    Class attributes
    ----------------
    name : str
        The model's name in the registry, the reports and the manifest.
    requires_content : bool
        ``fit`` needs content vectors.
    description : str
        One line for ``musicrec evaluate --list-models``.
    """

    name: ClassVar[str] = "base"
    requires_content: ClassVar[bool] = False
    description: ClassVar[str] = ""
    #: ``_scores`` reads only the plays it is given, never which user they belong to, so
    #: a listener outside the training data is scored the same way (item-item models)
    scores_from_plays: ClassVar[bool] = False

    # -- hyper-parameters (scikit-learn style) -----------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The keyword hyper-parameters of ``__init__``, in signature order."""
        names = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise TypeError(f"{cls.__name__}.__init__ must take keyword parameters only "
                                f"(found {p})")
            names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, by name, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self: Model, **params: Any) -> Model:
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise ParameterError(f"{unknown[0]!r} is not a parameter of model {self.name!r}; "
                                 f"its parameters: {self.param_names()}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def clone(self: Model) -> Model:
        """An unfitted copy with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- training ----------------------------------------------------------------------
    def fit(self: Model, user_items: sp.spmatrix | ListeningLog, *,
            content: np.ndarray | None = None) -> Model:
        """Learn from the ``[n_users, n_tracks]`` play matrix (and content vectors).

        Parameters
        ----------
        user_items : scipy.sparse matrix [shape=(n_users, n_tracks)] or ListeningLog
            Play counts; a log also gives the model its id maps (``users_``, ``tracks_``).
        content : np.ndarray [shape=(n_tracks, dim)], optional
            Content vectors by track index (zero rows: no content).

        Returns
        -------
        self
        """
        if isinstance(user_items, ListeningLog):
            matrix = user_items.to_csr()
            self.users_, self.tracks_ = user_items.users, user_items.tracks
        else:
            if not sp.issparse(user_items):
                raise ParameterError("user_items must be a scipy sparse matrix or a "
                                     f"ListeningLog, not {type(user_items).__name__}")
            matrix = sp.csr_matrix(user_items, dtype=np.float32)
            # a bare matrix names its users and tracks by their indices
            self.users_ = IdMap(map(str, range(matrix.shape[0])), kind="user")
            self.tracks_ = IdMap(map(str, range(matrix.shape[1])), kind="track")
        if matrix.nnz == 0:
            raise ParameterError(f"cannot fit {self.name!r} on an empty play matrix")
        if content is not None:
            content = np.asarray(content, dtype=np.float32)
            if content.ndim != 2 or content.shape[0] != matrix.shape[1]:
                raise ParameterError(f"content must have shape (n_tracks={matrix.shape[1]}, "
                                     f"dim), got {content.shape}")
            if not np.isfinite(content).all():
                raise ParameterError("content vectors must be finite")
        elif self.requires_content:
            raise ParameterError(f"model {self.name!r} needs content vectors")
        self.n_users_ = int(matrix.shape[0])
        self.n_items_ = int(matrix.shape[1])
        self.user_items_ = matrix
        self._fit(matrix, content)
        return self

    def _fit(self, user_items: sp.csr_matrix, content: np.ndarray | None) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"model {self.name!r} is not fitted yet; call fit() or "
                                 "load()")

    # -- scoring -----------------------------------------------------------------------
    def _rows(self, userids: Any) -> np.ndarray:
        self._check_fitted()
        rows = np.atleast_1d(np.asarray(userids))
        if rows.ndim != 1 or not (rows.dtype.kind in "iu" or len(rows) == 0):
            raise ParameterError("userids must be a user index or a 1-d array of them")
        rows = rows.astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_users_):
            raise ParameterError(
                f"userids must be indices in 0..{self.n_users_ - 1}; got {rows.min()}"
                f"..{rows.max()}")
        return rows

    def _user_rows(self, rows: np.ndarray, user_items: sp.spmatrix | None) -> sp.csr_matrix:
        """The play rows of ``rows``: from ``user_items`` (one row per user) if given,
        else from the training matrix."""
        if user_items is None:
            if len(rows) == 1:  # one user: a slice of the CSR arrays, not fancy indexing
                plays = self.user_items_
                lo, hi = plays.indptr[rows[0]], plays.indptr[rows[0] + 1]
                return sp.csr_matrix((plays.data[lo:hi], plays.indices[lo:hi],
                                      np.array([0, hi - lo])), shape=(1, self.n_items_))
            return self.user_items_[rows]
        matrix = sp.csr_matrix(user_items, dtype=np.float32)
        if matrix.shape != (len(rows), self.n_items_):
            raise ParameterError(f"user_items must have shape ({len(rows)}, {self.n_items_}) "
                                 f"(one row per user), got {matrix.shape}")
        return matrix

    def scores(self, userids: Any, user_items: sp.spmatrix | None = None) -> np.ndarray:
        """Scores of every track for users, higher is better.

        Parameters
        ----------
        userids : int or np.ndarray [shape=(n,), dtype=int]
        user_items : scipy.sparse matrix [shape=(n, n_tracks)], optional
            The users' plays, one row per user; default: their training rows.

        Returns
        -------
        np.ndarray [shape=(n, n_tracks), dtype=float32]
            Training tracks are *not* excluded here (see :meth:`recommend`).
        """
        rows = self._rows(userids)
        out = np.asarray(self._scores(rows, self._user_rows(rows, user_items)),
                         dtype=np.float32)
        if out.shape != (len(rows), self.n_items_):
            raise AssertionError(f"{self.name} scored shape {out.shape}")
        return out

    def _scores(self, rows: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def scores_new(self, user_items: sp.spmatrix) -> np.ndarray:
        """Scores of every track for listeners who are not in the training data.

        Item-item models score their plays through their neighbour matrix exactly as a
        known user's; factor models first fold the plays into a user vector.

        Parameters
        ----------
        user_items : scipy.sparse matrix [shape=(m, n_tracks)]
            The listeners' plays, one row each.

        Returns
        -------
        np.ndarray [shape=(m, n_tracks), dtype=float32]
            Played tracks are *not* excluded here.

        Raises
        ------
        CapabilityError
            The model cannot score a listener it was not trained on (random).
        """
        self._check_fitted()
        if not sp.issparse(user_items):
            raise ParameterError("user_items must be a scipy sparse matrix, not "
                                 f"{type(user_items).__name__}")
        matrix = sp.csr_matrix(user_items, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_items_:
            raise ParameterError(f"user_items must have {self.n_items_} columns (one per "
                                 f"track), got shape {matrix.shape}")
        out = np.asarray(self._new_scores(matrix), dtype=np.float32)
        if out.shape != matrix.shape:
            raise AssertionError(f"{self.name} scored shape {out.shape}")
        return out

    def _new_scores(self, user_items: sp.csr_matrix) -> np.ndarray:
        if not self.scores_from_plays:
            raise CapabilityError(f"model {self.name!r} cannot score a listener who is not "
                                  "in its training data")
        return self._scores(np.full(user_items.shape[0], -1, dtype=np.int64), user_items)

    def recommend(
        self,
        userids: Any,
        user_items: sp.spmatrix | None = None,
        *,
        n: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best tracks (indices) and their scores, best first.

        One user (an int) gives two ``[n]`` arrays; an array of users two ``[len, n]``
        arrays, padded with -1 and -inf where fewer than ``n`` tracks remain. A batch
        answers exactly as single calls do. Ties go to the lower track index.

        Parameters
        ----------
        userids : int or np.ndarray [shape=(m,), dtype=int]
        user_items : scipy.sparse matrix [shape=(m, n_tracks)], optional
            The users' plays; default: their training rows.
        n : int
        filter_already_liked_items : bool
            Never return a track in the user's plays.
        filter_items : np.ndarray [dtype=int], optional
            Track indices never returned.
        """
        _check_n(n)
        single = np.ndim(userids) == 0
        rows = self._rows(userids)
        plays = self._user_rows(rows, user_items)
        ids = np.full((len(rows), n), -1, dtype=np.int64)
        values = np.full((len(rows), n), -np.inf, dtype=np.float32)
        extra = (np.zeros(0, np.int64) if filter_items is None
                 else np.asarray(filter_items, dtype=np.int64))
        for i, row in enumerate(rows):
            # one user at a time, so a batch is bit-identical to single calls
            scores = np.asarray(self._scores(row[None], plays[i]), dtype=np.float32)[0]
            exclude = extra
            if filter_already_liked_items:
                exclude = np.concatenate([plays.indices[plays.indptr[i]:plays.indptr[i + 1]],
                                          extra])
            best = top_n(scores, n, exclude)
            ids[i, : len(best)] = best
            values[i, : len(best)] = scores[best]
        return (ids[0], values[0]) if single else (ids, values)

    # -- similar items -------------------------------------------------------------------
    def similar_items(self, itemids: Any, *, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` tracks most similar to each track (never itself), best first.

        One track (an int) gives two ``[n]`` arrays, many give ``[len, n]`` arrays (padded
        with -1 / -inf). A model without track similarity raises
        :class:`~musicrec.errors.CapabilityError`.
        """
        self._check_fitted()
        _check_n(n)
        single = np.ndim(itemids) == 0
        items = np.atleast_1d(np.asarray(itemids))
        if items.ndim != 1 or (len(items) and items.dtype.kind not in "iu"):
            raise ParameterError("itemids must be a track index or a 1-d array of them")
        items = items.astype(np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items_):
            raise ParameterError(f"itemids must be indices in 0..{self.n_items_ - 1}")
        ids = np.full((len(items), n), -1, dtype=np.int64)
        values = np.full((len(items), n), -np.inf, dtype=np.float32)
        for i, item in enumerate(items):
            scores = np.asarray(self._similar_scores(item[None]), dtype=np.float32)[0]
            best = top_n(scores, n, item[None])
            ids[i, : len(best)] = best
            values[i, : len(best)] = scores[best]
        return (ids[0], values[0]) if single else (ids, values)

    def _similar_scores(self, items: np.ndarray) -> np.ndarray:
        raise CapabilityError(f"model {self.name!r} has no track-to-track similarity")

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the fitted model into ``directory`` (created; files in it are replaced).

        ``model.json`` holds the name, the parameters and the scalar state; each array is
        one ``.npy`` (``allow_pickle=False``), a CSR matrix three, a nested model a
        sub-folder.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {}
        for key, value in sorted(vars(self).items()):
            if not key.endswith("_") or key.startswith("_"):
                continue
            state[key] = _save_value(directory, key.rstrip("_"), value, owner=self.name)
        params = self.get_params()
        try:
            json.dumps(params)
        except TypeError as exc:
            raise ParameterError(f"model {self.name!r}: parameters must be JSON values to "
                                 f"save ({exc})") from None
        (directory / MODEL_JSON).write_text(json.dumps(
            {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.name,
             "params": params, "state": state}, indent=1, sort_keys=True))
        return directory

    @classmethod
    def load(cls: type[Model], directory: str | Path, *, mmap: bool = True) -> Model:
        """Read a model written by :meth:`save` (arrays mmap'd read-only with ``mmap``).

        Called on :class:`RecommenderBase`, it loads whichever registered model the folder
        holds; on a model class, the folder must hold that model.
        """
        directory = Path(directory)
        path = directory / MODEL_JSON
        meta = read_format_json(path, fmt=FORMAT, version=FORMAT_VERSION,
                                what="a saved musicrec model")
        model_cls = _class_for(cls, str(meta.get("model")), path)
        try:
            model = model_cls(**meta["params"])
        except TypeError as exc:
            raise ModelFormatError(f"{path}: parameters do not fit {model_cls.__name__} "
                                   f"({exc})") from None
        for key, spec in meta["state"].items():
            setattr(model, key, _load_value(directory, spec, mmap=mmap))
        model._loaded()
        return model

    def _loaded(self) -> None:
        """Hook run after :meth:`load` (caches that are not saved)."""


def _check_n(n: int) -> None:
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
        raise ParameterError(f"n={n!r} must be a positive integer")


def _class_for(cls: type[Model], name: str, path: Path) -> type[Model]:
    if cls.name == name:
        return cls
    from musicrec.recommender.registry import MODELS  # below us at run time only

    found = MODELS.get(name)
    if found is None or not issubclass(found, cls):
        raise ModelFormatError(f"{path}: holds model {name!r}, not a {cls.__name__}")
    return found


def _save_value(directory: Path, name: str, value: Any, *, owner: str) -> dict[str, Any]:
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    if isinstance(value, np.generic):
        return {"value": value.item()}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            value = value.astype(str)
        np.save(directory / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
        return {"array": f"{name}.npy"}
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        for part in ("indptr", "indices", "data"):
            np.save(directory / f"{name}.{part}.npy", getattr(csr, part), allow_pickle=False)
        return {"csr": name, "shape": list(csr.shape)}
    if isinstance(value, IdMap):
        np.save(directory / f"{name}.ids.npy", value.to_array(), allow_pickle=False)
        return {"ids": f"{name}.ids.npy", "kind": value.kind}
    if isinstance(value, RecommenderBase):
        value.save(directory / name)
        return {"model": name}
    raise TypeError(f"model {owner!r}: cannot save {name}_ of type {type(value).__name__}")


def _load_value(directory: Path, spec: dict[str, Any], *, mmap: bool) -> Any:
    mode: Literal["r"] | None = "r" if mmap else None
    try:
        if "value" in spec:
            return spec["value"]
        if "array" in spec:
            return np.load(directory / spec["array"], mmap_mode=mode, allow_pickle=False)
        if "csr" in spec:
            name = spec["csr"]
            parts = [np.load(directory / f"{name}.{p}.npy", mmap_mode=mode, allow_pickle=False)
                     for p in ("data", "indices", "indptr")]
            return sp.csr_matrix(tuple(parts), shape=tuple(spec["shape"]), copy=False)
        if "ids" in spec:
            return IdMap.from_array(np.load(directory / spec["ids"], allow_pickle=False),
                                    kind=spec["kind"])
        if "model" in spec:
            return RecommenderBase.load(directory / spec["model"], mmap=mmap)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{directory}: incomplete or corrupt saved model ({exc})"
                               ) from None
    raise ModelFormatError(f"{directory}: unknown state entry {spec}")
