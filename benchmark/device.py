"""Device choice and the removal engine's chunk size.

Chunk size is a measured, per-device choice, not "as large as fits": on a 2-core CPU a small
CNN ran ~3x faster in chunks of 64 rows than of 4,096 (cache-friendly), while a GPU wants
large chunks to fill its cores. ``XAIBOARD_CHUNK_ROWS`` overrides the default.
"""

from __future__ import annotations

import os

import torch

DEFAULT_CHUNK_ROWS = {"cpu": 256, "cuda": 8192, "mps": 2048}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def chunk_rows(device: torch.device) -> int:
    """How many model-ready rows the removal engine sends to the model at once."""
    override = os.environ.get("XAIBOARD_CHUNK_ROWS")
    if override:
        return int(override)
    return DEFAULT_CHUNK_ROWS.get(device.type, 1024)
