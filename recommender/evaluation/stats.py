"""Paired statistics over per-user metric values: bootstrap intervals and significance tests.

Two models evaluated on the same test users give two arrays ``a`` and ``b`` of per-user
values. Their difference ``d = a - b`` is summarised by its mean, a percentile bootstrap
95 % interval (users resampled with replacement, ``numpy.random.default_rng(seed)``, the
same resamples for every metric and model), the Wilcoxon signed-rank test and the paired
t-test (``scipy.stats``, two-sided).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from musicrec.errors import ParameterError


def bootstrap_indices(n: int, *, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``[n_resamples, n]`` row indices drawn with replacement (seeded)."""
    if n < 1:
        raise ParameterError(f"cannot bootstrap {n} users")
    if n_resamples < 1:
        raise ParameterError(f"n_resamples={n_resamples} must be a positive integer")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_ci(
    values: np.ndarray, *, indices: np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs ignored)."""
    if not 0 < confidence < 1:
        raise ParameterError(f"confidence={confidence} must lie strictly between 0 and 1")
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).all():
        return float("nan"), float("nan")
    if np.isnan(values).any():
        ok = ~np.isnan(values)
        sums = np.where(ok, values, 0.0)[indices].sum(axis=1)
        means = sums / np.maximum(ok[indices].sum(axis=1), 1)
    else:
        means = values[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over paired per-user values."""

    mean_diff: float
    ci_low: float
    ci_high: float
    p_wilcoxon: float
    p_ttest: float
    n_users: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean_diff": self.mean_diff, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_wilcoxon": self.p_wilcoxon, "p_ttest": self.p_ttest,
                "n_users": self.n_users}


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    *,
    indices: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare two models' per-user values of one metric.

    Users where either value is NaN are dropped (the bootstrap indices, when given, must
    then be drawn over the remaining users). When every difference is zero the tests
    return p = 1.

    Examples
    --------
    >>> c = paired_comparison(np.array([1.0, 0.5, 0.0]), np.array([0.5, 0.5, 0.0]))
    >>> c.mean_diff
    0.16666666666666666
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ParameterError(f"paired values need equal 1-d shapes, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    d = (a - b)[ok]
    if len(d) == 0:
        nan = float("nan")
        return PairedComparison(nan, nan, nan, nan, nan, 0)
    if indices is None or indices.shape[1] != len(d):
        indices = bootstrap_indices(len(d), n_resamples=n_resamples, seed=seed)
    low, high = bootstrap_ci(d, indices=indices, confidence=confidence)
    if np.all(d == 0):
        p_w = p_t = 1.0
    else:
        with warnings.catch_warnings():
            # Small samples with ties make scipy fall back to the normal approximation and
            # say so; that is expected here, not an error.
            warnings.simplefilter("ignore")
            p_w = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
            if np.ptp(d) == 0:  # constant non-zero difference: the t statistic is infinite
                p_t = 0.0
            else:
                p_t = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedComparison(float(d.mean()), low, high, p_w, p_t, int(len(d)))
