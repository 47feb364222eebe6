"""Numeric precision of the model passes: float32 (the default, and the committed board's) or
bfloat16 autocast.

Under ``bf16`` every model pass of a (task, method) pair, the explanation's and the metrics',
runs inside ``torch.autocast(dtype=torch.bfloat16)``: matrix products and convolutions in
bfloat16, the rest as autocast leaves it. That is several times faster where the hardware
multiplies bfloat16 natively (GPUs since Ampere; CPUs with AMX or AVX512-BF16: MiniLM's
forward ran 3.3x faster on this project's Xeon, see docs/performance.md) and changes every
number by bfloat16's ~3 significant digits, so:

- each record carries its ``precision``, and it is part of the resume key and of the
  explanation cache's key: a bf16 result never stands in for a float32 one, nor back;
- the model's outputs are cast back to float32 (a forward hook on the model), so that the
  metrics' own arithmetic (softmax, score drops, correlations) runs in float32 as it always
  does; only the passes are approximate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .record import PRECISIONS

#: device types whose autocast takes bfloat16
AUTOCAST_DEVICES = ("cpu", "cuda")


def check_precision(precision: str, device: torch.device) -> None:
    """One-line ``ValueError`` for a precision this device cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "bf16" and device.type not in AUTOCAST_DEVICES:
        raise ValueError(f"bf16 autocast runs on {' and '.join(AUTOCAST_DEVICES)}, not on {device.type}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bfloat16 support: use --precision fp32")


@contextlib.contextmanager
def model_passes(model: nn.Module, device: torch.device, precision: str) -> Iterator[None]:
    """Run the block's passes of ``model`` (and of copies made inside it, which keep the hook)
    at ``precision``; float32 is a no-op."""
    if precision == "fp32":
        yield
        return
    handle = model.register_forward_hook(_float_output)
    try:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    finally:
        handle.remove()


def float32_passes(model: nn.Module) -> contextlib.AbstractContextManager:
    """Autocast off for a block, on ``model``'s device: a method whose hooks or exact sums need
    one dtype (Captum's DeepLIFT, GOAt) runs its own passes in float32 inside a bf16 run, while
    the metrics' removal passes around it stay bf16."""
    device = next(model.parameters(), torch.empty(0)).device
    if device.type not in AUTOCAST_DEVICES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def _float_output(_module: nn.Module, _args: Any, output: Any) -> Any:
    """The model's floating-point output as float32 (differentiable); other outputs unchanged."""
    if isinstance(output, Tensor) and output.is_floating_point() and output.dtype != torch.float32:
        return output.float()
    return None
