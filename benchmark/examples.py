"""Example explanations: what a method said about a few fixed samples of a task, stored beside its
records so that the board can draw them over the inputs.

One file per (task, method), ``<root>/<method>/results/<task>/examples.npz`` (``ResultStore.
examples_path``), holding the first ``EXAMPLE_COUNT`` samples of the evaluation batch (the same
samples for every method, since every method of a run is evaluated on the same batch): the
method's scores over the task's features, and what is needed to draw the inputs (images in
``[0, 1]`` display form, token strings, graph structure with the explained node), plus the
ground truth where the task has one. The file is self-contained rather than sharing one inputs
file per task: ``xaiboard submit`` publishes only the method's own folder, and a method folder
copied to another board keeps its pictures.

Why ``.npz`` and not JSON: the store reads every ``*.json`` under ``results/`` as a record, so an
examples file there could never be mistaken for one (and does not enter the board's content
hash, so refreshing pictures never makes the precomputed statistics stale); images and heatmaps
are float arrays, which ``.npz`` keeps exact and compact where JSON would spell out every digit;
and loading with ``allow_pickle=False`` refuses object arrays, so a file from a submitter is only
ever data, never code. Strings (tokens, hashes) are fixed-width unicode arrays, which load
without pickle.

A file records the task (version, fingerprint), the method's code hash, the seed and the sample
ids it was made for, so a run rewrites it when any of them changed. ``read_examples`` checks
every field and reports a bad file as one line naming the file and the field.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write

EXAMPLES_FILE = "examples.npz"
#: samples drawn per task: enough to see what a method does, few enough to store for every method
EXAMPLE_COUNT = 4
FORMAT = 1
#: a file holding more than this (uncompressed) is refused before it is decompressed
MAX_BYTES = 32 * 2**20
MAX_SAMPLES = 16
#: what a file says about itself, and what a run compares to decide whether it is current
META_TEXT = ("task", "task_version", "task_fingerprint", "modality", "method", "method_hash", "created")
META_INT = ("format", "seed", "batch_size")
#: per array field: the allowed dtype kinds and number of dimensions (``None``: the feature space's)
COMMON = {"sample_ids": ("iu", 1), "targets": ("iu", 1), "valid": ("b", None), "scores": ("f", None)}
BY_MODALITY: dict[str, dict[str, tuple[str, int]]] = {
    "image": {"images": ("f", 4)},
    "text": {"tokens": ("U", 2)},
    "graph": {"edge_index": ("iu", 2), "edge_sample": ("iu", 1), "edge_slot": ("iu", 1), "node_counts": ("iu", 1),
              "center": ("i", 1)},
}  # fmt: skip
#: the feature space's number of dimensions per modality (image: H x W, text: L, graph: E_max)
FEATURE_DIMS = {"image": 2, "text": 1, "graph": 1}


class ExampleError(ValueError):
    """One line naming the examples file and the field that is wrong."""


@dataclass(frozen=True)
class Examples:
    """A checked examples file: its metadata (``META_TEXT`` and ``META_INT``) and its arrays."""

    path: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def modality(self) -> str:
        return self.meta["modality"]

    @property
    def sample_ids(self) -> list[int]:
        return self.arrays["sample_ids"].tolist()

    def __len__(self) -> int:
        return len(self.arrays["sample_ids"])


def write_examples(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write one examples file atomically; ``meta`` gets ``format`` and ``created`` added.

    The result is read back through ``check`` first, so the runner never publishes a file the
    board would refuse.
    """
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fields = {**{k: np.asarray(v) for k, v in {**meta, "format": FORMAT, "created": created}.items()}, **arrays}
    check(str(path), fields)
    return atomic_write(path, lambda f: np.savez_compressed(f, **fields))


def read_examples(path: Path | str, data: bytes | None = None) -> Examples:
    """The checked examples in ``path`` (or in ``data``, the bytes read from ``path``); an
    ``ExampleError`` naming the file and field when anything is wrong."""
    source = io.BytesIO(data) if data is not None else path
    try:
        with np.load(source, allow_pickle=False) as npz:
            total = sum(info.file_size for info in npz.zip.infolist())
            if total > MAX_BYTES:
                raise ExampleError(f"{path}: holds {total} bytes uncompressed, more than {MAX_BYTES}")
            fields = {name: npz[name] for name in npz.files}
    except ExampleError:
        raise
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise ExampleError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from None
    return check(str(path), fields)


def is_current(path: Path, expected: dict[str, Any]) -> bool:
    """Whether ``path`` is a good examples file whose metadata and ``sample_ids`` are ``expected``'s."""
    if not path.exists():
        return False
    try:
        examples = read_examples(path)
    except ExampleError:
        return False
    found = {**examples.meta, "sample_ids": examples.sample_ids}
    return all(found.get(key) == value for key, value in expected.items())


def check(path: str, fields: dict[str, np.ndarray]) -> Examples:
    """``fields`` as ``Examples`` if every field is there, typed and shaped right; else ``ExampleError``."""
    meta = {name: _scalar(path, fields, name, "U", str) for name in META_TEXT}
    meta.update({name: _scalar(path, fields, name, "iu", int) for name in META_INT})
    if meta["format"] != FORMAT:
        raise ExampleError(f"{path}: field 'format': {meta['format']} is not {FORMAT}, the format this board reads")
    modality = meta["modality"]
    if modality not in BY_MODALITY:
        raise ExampleError(f"{path}: field 'modality': {modality!r} is not one of {', '.join(BY_MODALITY)}")
    dims = 1 + FEATURE_DIMS[modality]
    wanted = {**{k: (kinds, ndim or dims) for k, (kinds, ndim) in COMMON.items()}, **BY_MODALITY[modality]}
    if "ground_truth" in fields:
        wanted["ground_truth"] = ("b", dims)
    arrays = {name: _array(path, fields, name, kinds, ndim) for name, (kinds, ndim) in wanted.items()}
    _check_shapes(path, arrays, modality)
    return Examples(path, meta, arrays)


def _scalar(path: str, fields: dict[str, np.ndarray], name: str, kinds: str, kind: type) -> Any:
    value = _array(path, fields, name, kinds, 0)
    return kind(value.item())


def _array(path: str, fields: dict[str, np.ndarray], name: str, kinds: str, ndim: int) -> np.ndarray:
    if name not in fields:
        raise ExampleError(f"{path}: field '{name}' is missing")
    value = fields[name]
    if value.dtype.kind not in kinds or value.ndim != ndim:
        raise ExampleError(f"{path}: field '{name}': expected {ndim} dimension(s) of kind {kinds!r}, "
                           f"found {value.ndim} of dtype {value.dtype}")  # fmt: skip
    return value


def _fail(path: str, name: str, what: str) -> None:
    raise ExampleError(f"{path}: field '{name}': {what}")


def _check_shapes(path: str, a: dict[str, np.ndarray], modality: str) -> None:
    """Every array agrees with the sample count and the feature space; scores are finite on valid features."""
    k, valid = len(a["sample_ids"]), a["valid"]
    if not 1 <= k <= MAX_SAMPLES:
        _fail(path, "sample_ids", f"{k} samples, expected 1 to {MAX_SAMPLES}")
    for name in ("targets", "valid"):
        if a[name].shape[0] != k:
            _fail(path, name, f"{a[name].shape[0]} rows for {k} samples")
    for name in ("scores", "ground_truth"):
        if name in a and a[name].shape != valid.shape:
            _fail(path, name, f"shape {a[name].shape} differs from 'valid' {valid.shape}")
    if not np.isfinite(a["scores"][valid]).all():
        _fail(path, "scores", "NaN or inf on a valid feature")
    {"image": _check_image, "text": _check_text, "graph": _check_graph}[modality](path, a)


def _check_image(path: str, a: dict[str, np.ndarray]) -> None:
    images = a["images"]
    if images.shape[:3] != a["valid"].shape or images.shape[3] not in (1, 3):
        _fail(path, "images", f"shape {images.shape}, expected {a['valid'].shape} x 1 or 3 channels")
    if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        _fail(path, "images", "values outside [0, 1]")


def _check_text(path: str, a: dict[str, np.ndarray]) -> None:
    if a["tokens"].shape != a["valid"].shape:
        _fail(path, "tokens", f"shape {a['tokens'].shape} differs from 'valid' {a['valid'].shape}")


def _check_graph(path: str, a: dict[str, np.ndarray]) -> None:
    """Edges name real nodes of their own sample and fill exactly that sample's valid slots."""
    k, valid = len(a["sample_ids"]), a["valid"]
    edges, sample, slot = a["edge_index"], a["edge_sample"], a["edge_slot"]
    count = edges.shape[1]
    if edges.shape[0] != 2 or sample.shape != (count,) or slot.shape != (count,):
        _fail(path, "edge_index", f"shape {edges.shape} with {sample.shape[0]} edge samples, {slot.shape[0]} slots")
    for name in ("node_counts", "center"):
        if a[name].shape != (k,):
            _fail(path, name, f"shape {a[name].shape}, expected ({k},)")
    if count and ((sample >= k).any() or (slot >= valid.shape[1]).any()):
        _fail(path, "edge_slot", "an edge names a sample or slot that does not exist")
    if count and ((edges < 0).any() or (edges >= a["node_counts"][sample]).any()):
        _fail(path, "edge_index", "an edge names a node outside its own sample")
    if ((a["center"] < -1) | (a["center"] >= a["node_counts"])).any():
        _fail(path, "center", "the explained node is not a node of its sample")
    filled = np.zeros_like(valid)
    filled[sample, slot] = True
    if not np.array_equal(filled, valid) or len({(s, f) for s, f in zip(sample.tolist(), slot.tolist())}) != count:
        _fail(path, "valid", "the valid slots are not exactly the edges' slots")
