"""The scorer protocol and the registry of models that :func:`evaluate` can run.

Every model the runner evaluates is a *scorer*: it is fitted on the training log (and,
when it needs them, on content vectors) and then scores every track for a batch of
users. The built-in baselines register themselves here; other modules add their own
with :func:`register_model` (the hybrid module registers ``content`` and ``hybrid``).

Examples
--------
>>> from musicrec.recommender.evaluation import register_model
>>> register_model("mine", lambda **params: MyScorer(**params))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from musicrec.data.logs import ListeningLog
from musicrec.errors import ParameterError


@runtime_checkable
class Scorer(Protocol):
    """What every evaluated model implements.

    ``fit`` learns from the training log only; ``score`` returns a dense
    ``[len(user_idx), n_tracks]`` array, higher is better (the runner excludes each
    user's training tracks itself).
    """

    name: str

    def fit(self, train: ListeningLog, *, content: np.ndarray | None = None) -> Scorer: ...

    def score(self, user_idx: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what it needs."""

    name: str
    factory: Callable[..., Scorer]
    requires_content: bool = False
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}

#: Models provided by modules that register them on import, by the module's name.
PLUGINS: dict[str, str] = {
    "content": "musicrec.recommender.hybrid",
    "hybrid": "musicrec.recommender.hybrid",
}


def register_model(
    name: str,
    factory: Callable[..., Scorer],
    *,
    requires_content: bool = False,
    description: str = "",
    replace: bool = False,
) -> None:
    """Make a model available to :func:`evaluate` and the ``evaluate`` command.

    Parameters
    ----------
    name : str
        The name used in ``--models`` (lower case, no commas).
    factory : callable
        Called with the model's keyword hyper-parameters; returns an unfitted scorer.
    requires_content : bool
        The model needs content vectors; running it without them is an error.
    description : str
        One line shown by ``musicrec evaluate --list-models``.
    replace : bool
        Allow replacing an existing registration.
    """
    if not name or "," in name or name != name.strip():
        raise ParameterError(f"model name {name!r} must be non-empty, without commas")
    if name in _REGISTRY and not replace:
        raise ParameterError(f"model {name!r} is already registered (pass replace=True)")
    _REGISTRY[name] = ModelSpec(name, factory, requires_content, description)


def unregister_model(name: str) -> None:
    """Remove a registration (tests use it to clean up)."""
    _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    for module in sorted(set(PLUGINS.values())):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_models() -> list[str]:
    """The names of every registered model (built-ins and plugins that are installed)."""
    _ensure_builtins()
    _load_plugins()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registration of ``name``; an unknown or unavailable name raises ParameterError."""
    _ensure_builtins()
    if name not in _REGISTRY and name in PLUGINS:
        _load_plugins()
    if name not in _REGISTRY:
        if name in PLUGINS:
            raise ParameterError(
                f"model {name!r} is not available: it is registered by {PLUGINS[name]}, "
                f"which is not installed or did not register it; available models: "
                f"{', '.join(available_models())}")
        raise ParameterError(
            f"unknown model {name!r}; available models: {', '.join(available_models())}")
    return _REGISTRY[name]


def create_model(name: str, **params: Any) -> Scorer:
    """An unfitted scorer of the registered model ``name``."""
    spec = get_spec(name)
    try:
        model = spec.factory(**params)
    except TypeError as exc:
        raise ParameterError(f"bad parameters {params} for model {name!r}: {exc}") from None
    model.name = name
    return model


def _ensure_builtins() -> None:
    if "popularity" in _REGISTRY:
        return
    from musicrec.recommender import baselines

    for name, factory, description in (
        ("random", baselines.RandomScorer, "uniformly random scores (seeded)"),
        ("popularity", baselines.PopularityScorer, "tracks by number of training listeners"),
        ("als", baselines.ALSScorer, "implicit ALS matrix factorisation (CFModel)"),
        ("bpr", baselines.BPRScorer, "implicit BPR matrix factorisation (CFModel)"),
        ("itemknn", baselines.ItemKNNScorer, "item-kNN, shrunk cosine, K=100"),
        ("rp3beta", baselines.RP3betaScorer, "RP3beta random walks (Paudel et al. 2016)"),
        ("ease", baselines.EASEScorer, "EASE, dense closed form (Steck 2019)"),
    ):
        _REGISTRY.setdefault(name, ModelSpec(name, factory, False, description))
