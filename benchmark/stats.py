"""Per-sample scores -> the summary a leaderboard cell shows: mean with a bootstrap CI.

A mean over 64 samples is not a ranking: two methods whose intervals overlap are tied. The
interval is a bootstrap confidence interval of the mean (``scipy.stats.bootstrap``), BCa by
default (Efron, 1987, "Better Bootstrap Confidence Intervals", JASA 82(397)), because metric
scores are often skewed and bounded. BCa is undefined when every resample has the same mean
(e.g. constant scores); the percentile interval is used then, which is ``[mean, mean]`` for
constant scores.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import bootstrap, permutation_test
from torch import Tensor

from .record import Summary


def summarize(
    scores: Tensor | np.ndarray,
    seed: int,
    confidence: float = 0.95,
    n_resamples: int = 2000,
) -> Summary:
    """Mean, median, std and bootstrap CI of the mean of the finite scores.

    Non-finite scores (a metric undefined for a sample) are excluded and counted in ``n_nan``.
    One finite score gives the degenerate interval ``[x, x]`` and ``std = 0``; none is an error.
    """
    values = _as_array(scores)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"all {values.size} scores are NaN/inf")
    mean = float(finite.mean())
    low, high = _confidence_interval(finite, seed, confidence, n_resamples)
    return Summary(
        mean=mean,
        median=float(np.median(finite)),
        std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        ci_low=low,
        ci_high=high,
        n=int(finite.size),
        n_nan=int(values.size - finite.size),
        confidence=confidence,
    )


def _as_array(scores: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu().double().numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def _confidence_interval(values: np.ndarray, seed: int, confidence: float, n_resamples: int) -> tuple[float, float]:
    if values.size == 1:
        return float(values[0]), float(values[0])
    low, high = _bootstrap(values, "BCa", seed, confidence, n_resamples)
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = _bootstrap(values, "percentile", seed, confidence, n_resamples)
    return float(low), float(high)


def _bootstrap(values: np.ndarray, method: str, seed: int, confidence: float, n_resamples: int) -> tuple[float, float]:
    with warnings.catch_warnings():
        # scipy warns and returns NaN when BCa's acceleration is undefined (constant scores);
        # the caller detects the NaN and falls back to the percentile interval.
        warnings.simplefilter("ignore")
        result = bootstrap(
            (values,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method=method,
            rng=np.random.default_rng(seed),
        )
    return result.confidence_interval.low, result.confidence_interval.high


def paired_permutation_pvalue(
    scores: Tensor | np.ndarray,
    reference: Tensor | np.ndarray,
    direction: str,
    seed: int,
    n_resamples: int = 9999,
    two_sided: bool = False,
) -> float:
    """One-sided p-value that ``scores`` beat ``reference`` on the same samples (paired test);
    with ``two_sided``, the p-value that they differ in either direction (the board's Compare
    page, where neither method is the reference).

    The question "does this method beat random attributions on this metric?" is a paired one:
    both were scored on the same samples, so the test permutes *within* pairs, randomly swapping
    the two scores of a sample (``scipy.stats.permutation_test``, ``permutation_type="samples"``),
    with the mean paired difference as statistic (Good, 2005, "Permutation, Parametric and
    Bootstrap Tests of Hypotheses", ch. 3). ``direction`` is the metric's ("higher" or "lower"
    is better); the alternative is that the method is better. Pairs where either score is
    NaN/inf are dropped. With fewer than 2^n pairs exhaustive permutation is used (scipy decides).
    """
    a, b = _as_array(scores), _as_array(reference)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.size} vs {b.size}")
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.sum() < 2:
        raise ValueError("fewer than 2 finite pairs")
    result = permutation_test(
        (a[finite], b[finite]),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided" if two_sided else "greater" if direction == "higher" else "less",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)
