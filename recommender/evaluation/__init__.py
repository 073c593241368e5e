"""Offline evaluation: protocols, metrics, baselines, significance and reports.

>>> from musicrec.recommender.evaluation import evaluate, write_report
>>> result = evaluate(log, models=["popularity", "als"])  # doctest: +SKIP
>>> write_report(result, "reports/hetrec")  # doctest: +SKIP
"""

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
from musicrec.recommender.registry import MODELS, available_models, create_model

__all__ = [
    "DEFAULT_KS", "DEFAULT_MODELS", "MODELS", "EvaluationResult", "ModelResult",
    "PairedComparison", "available_models",
    "bootstrap_ci", "bootstrap_indices", "create_model", "evaluate",
    "paired_comparison", "parse_ks", "rank_top", "ranking_overlap",
    "load_report", "validate_report", "write_report",
]
