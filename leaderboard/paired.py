"""Two methods on the same samples: per metric, the paired difference of their per-sample scores
and the paired test's p-value (the board's Compare page).

The statistics are the board's own: the paired permutation test of ``benchmark.stats`` that the
ranked tables use against the random control, here two-sided (neither method is the
reference), and the board's rule for which two records may be paired at all
(``aggregate._comparable``: same task version, seed and sample count, at least two pairs with
both scores finite), plus the same sample ids. The p-values are not corrected for the number of metrics compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.stats import paired_permutation_pvalue
from xaiboard.leaderboard.aggregate import _comparable

P_COLUMN = "p (paired, two-sided)"


def paired_differences(
    a: str,
    b: str,
    records: dict[str, dict[str, ResultRecord]],
    families: dict[str, list[str]],
    directions: dict[str, str],
) -> pd.DataFrame:
    """One row per metric (``families`` order): both methods' means over the samples where both
    are finite, the mean difference ``a - b``, the number of pairs, the p-value and which method
    is better by the metric's direction; a pair that cannot be tested says why in ``note``.

    ``records``: per method, its records by metric; ``directions``: per metric ("higher" or
    "lower" is better), as the board checked them.
    """
    rows = [
        _row(a, b, records.get(a, {}).get(metric), records.get(b, {}).get(metric), directions.get(metric, ""))
        | {"family": family, "metric": metric}
        for family, metrics in families.items()
        for metric in metrics
    ]
    columns = ["family", "metric", "direction", f"mean {a}", f"mean {b}", f"difference ({a} - {b})", "pairs",
               P_COLUMN, "better", "note"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _row(a: str, b: str, first: ResultRecord | None, second: ResultRecord | None, direction: str) -> dict:
    empty = {"direction": direction, f"mean {a}": np.nan, f"mean {b}": np.nan, f"difference ({a} - {b})": np.nan,
             "pairs": 0, P_COLUMN: np.nan, "better": ""}  # fmt: skip
    note = _untestable(first, second, direction)
    if note:
        return empty | {"note": note}
    x, y = np.asarray(first.scores, dtype=float), np.asarray(second.scores, dtype=float)
    both = np.isfinite(x) & np.isfinite(y)
    difference = float((x[both] - y[both]).mean())
    p = paired_permutation_pvalue(x, y, direction, seed=first.seed, two_sided=True)
    better = "" if difference == 0 else a if (difference > 0) == (direction == "higher") else b
    return empty | {f"mean {a}": float(x[both].mean()), f"mean {b}": float(y[both].mean()),
                    f"difference ({a} - {b})": difference, "pairs": int(both.sum()), P_COLUMN: p, "better": better,
                    "note": ""}  # fmt: skip


def _untestable(first: ResultRecord | None, second: ResultRecord | None, direction: str) -> str:
    """Why two records cannot be paired ("" when they can)."""
    if first is None or second is None:
        return "no result for one of the methods"
    if first.status != "ok" or second.status != "ok":
        return f"not both ok ({first.status}, {second.status})"
    if direction not in ("higher", "lower"):
        return "the metric's direction is unknown"
    if first.sample_ids != second.sample_ids or not _comparable(first, second):
        return "not scored on the same samples (task version, seed or sample count differ), or fewer than 2 finite pairs"
    return ""
