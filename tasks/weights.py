"""Committed model weights: safetensors files plus a JSON card of how they were made.

Each built-in task trains its model by a recipe in this package (``xaiboard train-model``);
the result is saved as ``weights/<stem>.safetensors`` with ``weights/<stem>.json`` recording
the seed, the recipe's hyperparameters, the test accuracy and the package versions, so that a
reader can check that the committed file is what the recipe produces.

Weights trained elsewhere (``xaiboard train-model TASK --out DIR``) are loaded in place of the
committed ones inside :func:`weights_from` (``xaiboard run --weights DIR``): every task loads
its weights through :func:`weights_path`, so no task needs to know where they came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: weights files that replace the committed ones, by stem (set by :func:`weights_from`)
_OVERRIDES: ContextVar[dict[str, Path]] = ContextVar("weights_overrides", default={})


def weights_path(stem: str, directory: Path | None = None) -> Path:
    """The weights file of ``stem``: in ``directory``, else the one :func:`weights_from` put in
    place, else the committed one."""
    if directory is None and stem in _OVERRIDES.get():
        return _OVERRIDES.get()[stem]
    return (directory or WEIGHTS_DIR) / f"{stem}.safetensors"


@contextmanager
def weights_from(files: dict[str, Path]) -> Iterator[None]:
    """Within the block, load the weights of each stem in ``files`` from that file (its card
    ``<file>.json`` beside it, as ``save_weights`` writes them) instead of the committed ones."""
    token = _OVERRIDES.set({**_OVERRIDES.get(), **files})
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def weights_in(path: Path, stem: str) -> dict[str, Path]:
    """The weights files ``path`` offers, by stem: a folder (as ``train-model --out`` writes
    it) offers every ``<stem>.safetensors`` in it, a single file is ``stem``'s weights.

    A folder may hold weights a task builds on (``text/movie-rationales`` loads ``text/sst2``'s
    encoder); those it lacks stay the committed ones.
    """
    if path.is_dir():
        return {file.stem: file for file in sorted(path.glob("*.safetensors"))}
    return {stem: path}


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
    card = weights_path(stem, directory).with_suffix(".json")
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
