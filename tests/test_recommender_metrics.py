"""Every metric against values computed by hand on tiny cases (arithmetic in comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicrec.errors import ParameterError
from musicrec.recommender import metrics as M
from musicrec.recommender.evaluation.stats import bootstrap_ci, paired_comparison

# One user; ranked list [5, 3, 7, 1], relevant {3, 1, 9}: hits at ranks 2 and 4.
RANKED = np.array([5, 3, 7, 1])
RELEVANT = {3, 1, 9}


def test_precision_recall_hit_mrr_by_hand() -> None:
    assert M.precision_at_k(RANKED, RELEVANT, 4) == pytest.approx(2 / 4)
    assert M.precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)
    assert M.recall_at_k(RANKED, RELEVANT, 4) == pytest.approx(2 / 3)
    assert M.recall_at_k(RANKED, RELEVANT, 1) == 0.0
    assert M.hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0
    assert M.hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0
    assert M.mrr_at_k(RANKED, RELEVANT, 4) == pytest.approx(1 / 2)  # first hit at rank 2
    assert M.mrr_at_k(RANKED, RELEVANT, 1) == 0.0


def test_ndcg_by_hand() -> None:
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    # IDCG (3 relevant, k=4: 3 hits at the top) = 1 + 1/log2(3) + 1/2 = 2.13093
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / 2
    assert M.ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(dcg / idcg)
    assert M.ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(0.49819, abs=1e-5)
    # k=2: DCG = 1/log2(3) = 0.63093, IDCG = 1 + 0.63093 = 1.63093 -> 0.38685
    assert M.ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.38685, abs=1e-5)


def test_average_precision_by_hand() -> None:
    # hits at ranks 2 and 4: precision@2 = 1/2, precision@4 = 2/4; / min(4, 3) = 3
    assert M.ap_at_k(RANKED, RELEVANT, 4) == pytest.approx((0.5 + 0.5) / 3)
    # k = 2: (1/2) / min(2, 3) = 0.25
    assert M.ap_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.25)
    assert M.ap_at_k(RANKED, {42}, 4) == 0.0


def test_vectorised_metrics_equal_the_per_user_functions(rng: np.random.Generator) -> None:
    ranked = np.array([rng.permutation(30)[:10] for _ in range(25)])
    ranked[3, 7:] = -1  # padding
    relevant = [rng.choice(30, size=int(rng.integers(1, 8)), replace=False) for _ in range(25)]
    values = M.per_user_metrics(ranked, relevant, [1, 5, 10])
    for name, fn in M.ACCURACY_METRICS.items():
        for k in (1, 5, 10):
            expected = [fn(row, rel, k) for row, rel in zip(ranked, relevant, strict=True)]
            np.testing.assert_allclose(values[f"{name}@{k}"], expected, err_msg=name)


def test_hits_matrix_and_padding() -> None:
    hits = M.hits_matrix(np.array([[5, 3, -1], [0, 1, 2]]), [{3, 1, 9}, {2}])
    np.testing.assert_array_equal(hits, [[False, True, False], [False, False, True]])


def test_metric_errors_name_the_bad_value() -> None:
    with pytest.raises(ParameterError, match="k=0 must be a positive integer"):
        M.ndcg_at_k(RANKED, RELEVANT, 0)
    with pytest.raises(ParameterError, match="no relevant items"):
        M.recall_at_k(RANKED, set(), 3)
    with pytest.raises(ParameterError, match="k=5 exceeds the 4 ranked items"):
        M.per_user_metrics(RANKED[None, :], [RELEVANT], [5])


def test_coverage_by_hand() -> None:
    # lists [0, 1] and [1, 2] over 10 tracks cover {0, 1, 2}: 3 / 10
    assert M.catalog_coverage(np.array([[0, 1, 5], [1, 2, 6]]), 2, n_items=10) == 0.3
    # k=3 adds 5 and 6: 5 / 10
    assert M.catalog_coverage(np.array([[0, 1, 5], [1, 2, 6]]), 3, n_items=10) == 0.5


def test_novelty_by_hand() -> None:
    # 3 users; listeners per track [3, 1, 0]; p = (l + 1) / 4 = [1, 0.5, 0.25]
    # self-information -log2 p = [0, 1, 2]
    info = M.self_information(np.array([3, 1, 0]), 3)
    np.testing.assert_allclose(info, [0.0, 1.0, 2.0])
    # user lists [0, 1] -> (0 + 1) / 2 = 0.5; [2, 1] -> (2 + 1) / 2 = 1.5; [2, -1] -> 2
    novelty = M.novelty(np.array([[0, 1], [2, 1], [2, -1]]), 2, item_information=info)
    np.testing.assert_allclose(novelty, [0.5, 1.5, 2.0])


def test_popularity_percentile_and_bias_by_hand() -> None:
    # listeners [5, 1, 1, 9]: average ranks [3, 1.5, 1.5, 4]; percentile 100 (r - 1) / 3
    pct = M.popularity_percentile(np.array([5, 1, 1, 9]))
    np.testing.assert_allclose(pct, [200 / 3, 50 / 3, 50 / 3, 100.0])
    # lists [3, 0] -> (100 + 66.67) / 2 = 83.33; [1, 2] -> 16.67
    bias = M.popularity_bias(np.array([[3, 0], [1, 2]]), 2, item_percentile=pct)
    np.testing.assert_allclose(bias, [250 / 3, 50 / 3])


def test_intra_list_diversity_by_hand() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    # list [0, 1]: cos = 0 -> diversity 1
    # list [0, 2]: cos = 1/sqrt(2) = 0.70711 -> 0.29289
    # list [0, 1, 2]: cos pairs 0, 0.70711, 0.70711 -> mean 0.47140 -> 0.52860
    # list [0, 3]: the zero vector is left out -> one usable track -> NaN
    ranked = np.array([[0, 1, -1], [0, 2, -1], [0, 1, 2], [0, 3, -1]])
    div = M.intra_list_diversity(ranked, 3, vectors=vectors)
    np.testing.assert_allclose(div[:3], [1.0, 1 - 1 / math.sqrt(2),
                                         1 - 2 / (3 * math.sqrt(2))])
    assert np.isnan(div[3])


def test_ranking_overlap_by_hand() -> None:
    # {1, 2, 3} vs {3, 9, 1}: 2 of 3 shared; at k=1: 1 vs 3 -> 0
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 9, 1], [4, 5, 6]])
    np.testing.assert_allclose(M.ranking_overlap(a, b, 3), [2 / 3, 1.0])
    np.testing.assert_allclose(M.ranking_overlap(a, b, 1), [0.0, 1.0])
    with pytest.raises(ParameterError, match="k=4 must lie in 1..3"):
        M.ranking_overlap(a, b, 4)


def test_paired_comparison_by_hand() -> None:
    d = np.array([0.1, 0.2, -0.15, 0.3, 0.0, 0.4])
    a, b = d, np.zeros(6)
    # mean = 0.85 / 6 = 0.141667
    cmp = paired_comparison(a, b, n_resamples=2000, seed=0)
    assert cmp.mean_diff == pytest.approx(0.85 / 6)
    assert cmp.ci_low < 0.85 / 6 < cmp.ci_high
    assert cmp.n_users == 6
    # sd = 0.201039; t = 0.141667 / (0.201039 / sqrt(6)) = 1.72609, df 5 -> p = 0.1449
    assert cmp.p_ttest == pytest.approx(0.1449, abs=1e-4)
    # Wilcoxon drops the zero; |d| ranks 0.1->1, 0.15->2, 0.2->3, 0.3->4, 0.4->5; W- = 2.
    # Of the 2^5 = 32 sign patterns, 3 have W- <= 2 ({}, {1}, {2}): p = 2 * 3 / 32 = 0.1875
    assert cmp.p_wilcoxon == pytest.approx(0.1875)
    same = paired_comparison(a, a)
    assert (same.mean_diff, same.p_wilcoxon, same.p_ttest) == (0.0, 1.0, 1.0)


def test_bootstrap_is_seeded_and_brackets_the_mean(rng: np.random.Generator) -> None:
    from musicrec.recommender.evaluation.stats import bootstrap_indices

    values = rng.random(200)
    one = bootstrap_ci(values, indices=bootstrap_indices(200, seed=3))
    two = bootstrap_ci(values, indices=bootstrap_indices(200, seed=3))
    assert one == two
    assert one[0] < values.mean() < one[1]
    # the 95 % interval of a mean of 200 U(0,1) values is about +-1.96 * 0.2887 / sqrt(200)
    assert one[1] - one[0] == pytest.approx(2 * 1.96 * 0.2887 / math.sqrt(200), rel=0.2)
