"""The one-entry cache shared metrics use: keyed by identity of objects and equality of values."""

import torch

from xaiboard.benchmark.metrics.last_batch import LastBatch


def test_recomputes_only_when_the_key_changes():
    calls = []
    cache = LastBatch()
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    batch = torch.zeros(3)
    assert cache.get((batch,), (0, "cpu"), compute) == 1
    assert cache.get((batch,), (0, "cpu"), compute) == 1  # same objects, same values: cached
    assert cache.get((batch.clone(),), (0, "cpu"), compute) == 2  # an equal but other tensor
    assert cache.get((batch,), (1, "cpu"), compute) == 3  # another seed
    assert cache.get((batch,), (1, "cpu"), compute) == 3
    assert cache.get((batch,), (0, "cpu"), compute) == 4  # one entry only: the first key was evicted
    assert len(calls) == 4
