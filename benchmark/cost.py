"""Counting what an explanation costs: model forward and backward passes, seconds, memory.

A "pass" is one sample through the model: a forward call on a batch of 64 rows counts 64
forward passes, and a backward through that output counts 64 backward passes. Counting rows
rather than calls makes batched and unbatched methods comparable. A graph model called with
a PyG ``batch`` vector (node -> graph copy) processes ``batch.max() + 1`` samples, however many
nodes their graphs have.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .record import METRIC_COST_FIELDS


@dataclass
class Cost:
    forward_passes: int = 0
    backward_passes: int = 0
    seconds: float = 0.0
    peak_memory_mb: float | None = None

    def per_sample(self, n: int) -> dict[str, float | None]:
        """The cost of one explanation, averaged over ``n`` explained samples."""
        n = max(n, 1)
        return {
            "forward_passes": self.forward_passes / n,
            "backward_passes": self.backward_passes / n,
            "seconds": self.seconds / n,
            "peak_memory_mb": self.peak_memory_mb,
        }

    def as_dict(self) -> dict:
        return asdict(self)

    def spent(self) -> dict[str, float]:
        """Seconds and passes in total, as a record's ``metric_cost`` holds them."""
        return {name: getattr(self, name) for name in METRIC_COST_FIELDS}

    def add_passes(self, other: Cost) -> None:
        """Add passes counted elsewhere (in a sandboxed worker, where this process's hooks
        cannot see the model); seconds stay this counter's own clock."""
        self.forward_passes += other.forward_passes
        self.backward_passes += other.backward_passes


def _rows(kwargs: dict[str, object], output: object) -> int:
    batch = kwargs.get("batch")
    if isinstance(batch, Tensor) and batch.numel():
        return int(batch.max()) + 1
    if isinstance(output, Tensor):
        return int(output.shape[0]) if output.dim() else 1
    return 0


@contextmanager
def count_passes(model: nn.Module, device: torch.device | None = None) -> Iterator[Cost]:
    """Count forward/backward rows through ``model`` and wall time while the block runs.

    Backward passes are counted by a hook on the model's output tensor, so they are seen
    however the gradient is requested (``autograd.grad``, ``.backward()``, Captum, PyG). The
    hook is copied with the model by ``copy.deepcopy``, so passes through a copy made inside
    the block (MPRT's randomised models) count too. On CUDA the clock stops after the device
    has finished the block's work.
    """
    cost = Cost()

    def on_forward(_module: nn.Module, _args: object, kwargs: dict[str, object], output: object) -> None:
        rows = _rows(kwargs, output)
        cost.forward_passes += rows
        if isinstance(output, Tensor) and output.requires_grad:
            output.register_hook(lambda _grad: _add_backward(cost, rows))

    handle = model.register_forward_hook(on_forward, with_kwargs=True)
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield cost
    finally:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        cost.seconds += time.perf_counter() - start
        handle.remove()
        if device is not None and device.type == "cuda":
            cost.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20


def _add_backward(cost: Cost, rows: int) -> None:
    cost.backward_passes += rows
