"""Bootstrap summaries: the interval brackets the mean, degenerate and NaN cases are exact."""

import math

import numpy as np
import pytest
import torch

from scipy.stats import ttest_rel

from xaiboard.benchmark.stats import paired_permutation_pvalue, summarize


def test_summary_values_and_ci_contains_mean():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.05, 0.6, 0.3, 0.55])
    summary = summarize(scores, seed=0)
    values = scores.double().numpy()
    assert summary.mean == pytest.approx(values.mean(), rel=1e-12)
    assert summary.median == pytest.approx(np.median(values), rel=1e-12)
    assert summary.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert summary.ci_low < summary.mean < summary.ci_high
    # The 95% CI of a mean of 10 values spread over [0.05, 0.9] is well inside that range.
    assert 0.05 < summary.ci_low and summary.ci_high < 0.9
    assert (summary.n, summary.n_nan, summary.confidence) == (10, 0, 0.95)


def test_ci_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    small = summarize(rng.normal(size=16), seed=0)
    large = summarize(rng.normal(size=1024), seed=0)
    assert large.ci_high - large.ci_low < (small.ci_high - small.ci_low) / 4


def test_constant_scores_give_point_interval():
    summary = summarize(np.full(32, 0.25), seed=0)
    assert (summary.mean, summary.ci_low, summary.ci_high, summary.std) == (0.25, 0.25, 0.25, 0.0)


def test_nan_scores_are_excluded_and_counted():
    summary = summarize(torch.tensor([1.0, math.nan, 3.0, math.inf, 2.0]), seed=0)
    assert (summary.mean, summary.median, summary.n, summary.n_nan) == (2.0, 2.0, 3, 2)


def test_single_score_and_all_nan():
    summary = summarize([0.7], seed=0)
    assert (summary.ci_low, summary.ci_high, summary.std, summary.n) == (0.7, 0.7, 0.0, 1)
    with pytest.raises(ValueError, match="all 3 scores are NaN"):
        summarize(np.full(3, np.nan), seed=0)


def test_same_seed_same_interval_other_seed_differs():
    scores = np.random.default_rng(2).exponential(size=50)
    first, again, other = summarize(scores, seed=3), summarize(scores, seed=3), summarize(scores, seed=4)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


def test_permutation_pvalue_is_exact_for_few_pairs():
    """Five pairs, all differences positive: of the 2^5 within-pair swaps only the observed one
    has a mean difference this large, so the exhaustive one-sided p-value is exactly 1/32."""
    method = np.array([0.9, 0.8, 0.7, 0.95, 0.6])
    random = np.array([0.5, 0.4, 0.6, 0.5, 0.1])
    assert paired_permutation_pvalue(method, random, "higher", seed=0) == pytest.approx(1 / 32, abs=1e-12)
    assert paired_permutation_pvalue(method, random, "lower", seed=0) == pytest.approx(1.0, abs=1e-12)


def test_permutation_pvalue_matches_paired_t_test_on_normal_data():
    """For normal differences the permutation test and the paired t-test agree closely; the
    tolerance 0.03 covers Monte Carlo error (sd <= 0.005 at 9,999 resamples) and the t
    approximation at n = 64."""
    rng = np.random.default_rng(3)
    random = rng.normal(size=64)
    method = random + 0.15 + rng.normal(size=64)
    expected = ttest_rel(method, random, alternative="greater").pvalue
    assert 0.02 < expected < 0.5
    assert paired_permutation_pvalue(method, random, "higher", seed=0) == pytest.approx(expected, abs=0.03)


def test_permutation_pvalue_drops_nan_pairs_and_checks_lengths():
    method = np.array([0.9, np.nan, 0.7, 0.95, 0.6, 0.8])
    random = np.array([0.5, 0.4, 0.6, 0.5, 0.1, np.inf])
    assert paired_permutation_pvalue(method, random, "higher", seed=0) == pytest.approx(1 / 16, abs=1e-12)
    with pytest.raises(ValueError, match="differ in length"):
        paired_permutation_pvalue(method[:3], random, "higher", seed=0)
