"""What a result was computed with: package versions and the device, recorded in every result.

Numbers move with library versions (Captum's defaults, PyG's explainer) and with hardware
(float reductions on GPU), so a reader comparing two results needs both.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import torch

PACKAGES = ("torch", "captum", "torch_geometric", "transformers", "numpy", "xaiboard")


def versions() -> dict[str, str]:
    """Python and the versions of the packages that can change a result."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def describe_device(device: torch.device) -> str:
    """E.g. ``"cpu (2 threads)"`` or ``"cuda:0 (NVIDIA H200)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
