"""Committed model weights: safetensors files plus a JSON card of how they were made.

Each built-in task trains its model by a recipe in this package (``xaiboard train-model``);
the result is saved as ``weights/<stem>.safetensors`` with ``weights/<stem>.json`` recording
the seed, the recipe's hyperparameters, the test accuracy and the package versions, so that a
reader can check that the committed file is what the recipe produces.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"


def weights_path(stem: str, directory: Path | None = None) -> Path:
    return (directory or WEIGHTS_DIR) / f"{stem}.safetensors"


def save_weights(model: nn.Module, stem: str, meta: dict[str, Any], directory: Path | None = None) -> Path:
    """Write the weights and their card atomically (temp file + rename)."""
    directory = directory or WEIGHTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    target = weights_path(stem, directory)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    save_file(state, str(tmp_path))
    tmp_path.chmod(0o644)  # NamedTemporaryFile creates 0600; weights are meant to be shared
    os.replace(tmp_path, target)
    card = directory / f"{stem}.json"
    tmp_card = card.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_card, card)
    return target


def load_weights(model: nn.Module, stem: str, directory: Path | None = None) -> nn.Module:
    path = weights_path(stem, directory)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no committed weights; run `xaiboard train-model` for this task")
    model.load_state_dict(load_file(str(path)))
    return model


def weights_meta(stem: str, directory: Path | None = None) -> dict[str, Any]:
    """The training card of committed weights (empty if there is none yet)."""
    card = (directory or WEIGHTS_DIR) / f"{stem}.json"
    return json.loads(card.read_text()) if card.exists() else {}


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` intra-op threads (training recipes pin it: float sums, and so
    the trained weights, depend on it), then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
