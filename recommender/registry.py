"""Every recommender model by name: one explicit table, used by evaluation and serving.

Each value is a :class:`~musicrec.recommender.base.RecommenderBase` subclass; its
hyper-parameters are its constructor's keywords.

Examples
--------
>>> model = create_model("itemknn", k=50).fit(log)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from musicrec.errors import ParameterError
from musicrec.recommender.base import RecommenderBase
from musicrec.recommender.baselines import (
    EASEModel,
    ItemKNNModel,
    PopularityModel,
    RandomModel,
    RP3betaModel,
)
from musicrec.recommender.cf import BPRModel, CFModel
from musicrec.recommender.hybrid import ContentModel, HybridModel
from musicrec.recommender.served import ServedModel

MODELS: dict[str, type[RecommenderBase]] = {
    "random": RandomModel,
    "popularity": PopularityModel,
    "als": CFModel,
    "bpr": BPRModel,
    "itemknn": ItemKNNModel,
    "rp3beta": RP3betaModel,
    "ease": EASEModel,
    "content": ContentModel,
    "hybrid": HybridModel,
    "served": ServedModel,
}


def available_models() -> list[str]:
    """The names of every model, sorted."""
    return sorted(MODELS)


def model_class(name: str) -> type[RecommenderBase]:
    """The class of model ``name``; an unknown name raises ParameterError listing them."""
    try:
        return MODELS[name]
    except KeyError:
        raise ParameterError(f"unknown model {name!r}; available models: "
                             f"{', '.join(available_models())}") from None


def create_model(name: str, **params: Any) -> RecommenderBase:
    """An unfitted model ``name`` with hyper-parameters ``params``."""
    cls = model_class(name)
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ParameterError(f"bad parameters {params} for model {name!r}: {unknown[0]!r} is "
                             f"not one of {cls.param_names()}")
    return cls(**params)
