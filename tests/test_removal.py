"""The removal engine's end detection: which columns of a keep-mask stack keep every valid
feature, or none, for every sample (the rows it computes once per inputs)."""

from __future__ import annotations

import pytest
import torch
from xaiboard.benchmark.removal import Known


def brute_force_ends(valid: torch.Tensor, keep: torch.Tensor) -> list[str | None]:
    """Column by column, sample by sample: the definition the engine's batched check must meet."""
    ends: list[str | None] = []
    for k in range(keep.shape[1]):
        removes = any(bool((valid[b] & ~keep[b, k]).any()) for b in range(len(valid)))
        keeps = any(bool((valid[b] & keep[b, k]).any()) for b in range(len(valid)))
        ends.append(None if removes and keeps else "all-kept" if not removes else "none-kept")
    return ends


def mixed_stack(valid: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random columns, plus columns that are an end for the first sample only, for every sample
    (either end, with padding set either way), and for no sample."""
    batch, features = valid.shape
    keep = torch.rand(batch, 12, features, generator=generator) < 0.5
    keep[:, 0] = ~valid  # all removed, padding "kept": still the none-kept end
    keep[:, 1] = True  # all kept
    keep[:, 2] = valid  # all kept, padding removed: still the all-kept end
    keep[0, 3] = True  # the first sample keeps everything, the others are random
    keep[0, 4] = False
    keep[1:, 4] = True  # the first sample keeps nothing, every other sample everything
    keep[:, 5] = False
    return keep


@pytest.mark.parametrize("empty_first", [False, True])
def test_ends_equal_the_column_by_column_definition(empty_first: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    valid = torch.rand(5, 20, generator=generator) < 0.8
    valid[:, 0] = True
    if empty_first:  # a sample without valid features is an end of every column
        valid[0] = False
    keep = mixed_stack(valid, generator)
    ends = Known(None, (), valid).ends(keep)
    assert ends == brute_force_ends(valid, keep)
    assert ends[:3] == ["none-kept", "all-kept", "all-kept"] and ends[5] == "none-kept"
    assert ends[3] is None
    assert ends[4] == ("all-kept" if empty_first else None)  # then only the others' keeping counts
