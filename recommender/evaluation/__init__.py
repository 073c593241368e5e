"""Offline evaluation: protocols, metrics, baselines, significance and reports.

>>> from musicrec.recommender.evaluation import evaluate, write_report
>>> result = evaluate(log, models=["popularity", "als"])  # doctest: +SKIP
>>> write_report(result, "reports/hetrec")  # doctest: +SKIP
"""

from musicrec.recommender.evaluation.registry import (
    PLUGINS,
    ModelSpec,
    Scorer,
    available_models,
    create_model,
    get_spec,
    register_model,
    unregister_model,
)
from musicrec.recommender.evaluation.report import load_report, validate_report, write_report
from musicrec.recommender.evaluation.runner import (
    DEFAULT_KS,
    DEFAULT_MODELS,
    EvaluationResult,
    ModelResult,
    evaluate,
    parse_ks,
    rank_top,
)
from musicrec.recommender.evaluation.stats import (
    PairedComparison,
    bootstrap_ci,
    bootstrap_indices,
    paired_comparison,
)
from musicrec.recommender.metrics import ranking_overlap

__all__ = [
    "DEFAULT_KS", "DEFAULT_MODELS", "PLUGINS", "EvaluationResult", "ModelResult",
    "ModelSpec", "PairedComparison", "Scorer", "available_models",
    "bootstrap_ci", "bootstrap_indices", "create_model", "evaluate", "get_spec",
    "paired_comparison", "parse_ks", "rank_top", "ranking_overlap", "register_model",
    "unregister_model", "load_report", "validate_report", "write_report",
]
