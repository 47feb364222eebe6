"""Precomputed explanations: scoring a method that cannot run inside the harness.

Some methods live in another framework or need a model too large for the benchmark machine.
For them xaiboard exports the exact evaluation samples (:func:`export_samples`: what
``task.samples("test", n, seed)`` returns, which is what the runner evaluates) as plain
tensor files; the user explains them elsewhere and writes ``explanations.safetensors`` or
``explanations.npz`` (``ids`` ``[N]``, ``explanations`` ``[N, *F]``) into the same folder;
:class:`PrecomputedExplainer` then serves those explanations to the runner by sample id.
``docs/precomputed.md`` describes the format for users.

Ids alone do not identify a sample: generated tasks number their samples ``0..n-1`` whatever
the seed. ``meta.json`` therefore also stores a per-sample fingerprint of the inputs
(:func:`fingerprints`), and loading refuses explanations made for other samples than the ones
being scored, instead of silently scoring them against the wrong inputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn
from torch_geometric.data.data import BaseData

from xaiboard.methods.base import Explainer

from .atomic import atomic_write, atomic_write_text
from .task import Batch, Task

FORMAT = "xaiboard-precomputed/1"
META = "meta.json"
EXPLANATION_FILES = ("explanations.safetensors", "explanations.npz")
#: relative tolerance of the fingerprint check: a GPU run's float sums differ from a CPU export's
FINGERPRINT_RTOL = 1e-5

#: one-line meanings of the exported tensors, written into ``meta.json``
MEANINGS = {
    "ids": "sample id: explanations are matched to samples by it",
    "targets": "the class to explain for each sample",
    "valid": "True on the feature slots a sample really has; explanations are read there only",
    "inputs": "the model's input batch, as the task's model takes it (images: [B, C, H, W] pixels)",
    "inputs.input_ids": "token ids, padded to the task's max_length",
    "inputs.attention_mask": "1 on real tokens, 0 on padding",
    "inputs.x": "node features of every sample's graph, stored sample by sample",
    "inputs.edge_index": "edges (source, target) as indices into inputs.x, stored sample by sample",
    "inputs.edge_sample": "the sample each edge belongs to",
    "inputs.edge_slot": "each edge's feature slot in its sample: explanations[edge_sample[e], edge_slot[e]] scores edge e",
    "inputs.center": "each sample's explained node, an index into inputs.x (graph classification: its first node)",
    "inputs.node_sample": "the sample each node belongs to",
    "inputs.node_id": "each node's id in the task's graph (graph classification: within its own graph)",
}


class PrecomputedError(ValueError):
    """A precomputed folder or file that cannot be used; the message is one line naming the
    file and, where one is at fault, the field."""


def _error(path: Path, field: str, problem: str) -> PrecomputedError:
    return PrecomputedError(f"{path}: field {field!r} {problem}")


def _first(values: Tensor, k: int = 5) -> str:
    """The first ``k`` values, for an error message."""
    shown = ", ".join(str(v) for v in values[:k].tolist())
    return shown + (", ..." if values.numel() > k else "")


def task_folder(task_name: str) -> str:
    """The task's folder name in an export: ``"image/shapes"`` -> ``"image__shapes"``, one path component."""
    folder = task_name.replace("/", "__")
    if folder in ("", ".", "..") or Path(folder).name != folder:
        raise ValueError(f"task name {task_name!r} cannot name a folder")
    return folder


# ---- export ---------------------------------------------------------------------------------
def flat_inputs(inputs: Any) -> dict[str, Tensor]:
    """The model inputs as flat name -> tensor entries, since tensor files hold no structure:
    ``inputs`` for a tensor, ``inputs.<field>`` per tensor attribute of a dataclass or PyG data
    object (attributes that are ``None`` are left out)."""
    if isinstance(inputs, Tensor):
        return {"inputs": inputs}
    if is_dataclass(inputs):
        items = [(f.name, getattr(inputs, f.name)) for f in fields(inputs)]
    elif isinstance(inputs, BaseData):
        items = list(inputs.to_dict().items())
    else:
        raise TypeError(f"cannot export inputs of type {type(inputs).__name__}: expected a tensor, dataclass or PyG data")
    return {f"inputs.{name}": value for name, value in items if isinstance(value, Tensor)}


def fingerprints(task: Task, batch: Batch) -> Tensor:
    """A float64 checksum ``[B]`` of each sample's inputs: its model-free attribution (which
    depends on that sample's inputs only, not on the batch around it) summed over its valid
    slots with weights ``1 + frac(i * golden ratio)`` of the flat slot index ``i``, so that
    reordered features change it too. Compared with a relative tolerance, so an export made on
    a CPU matches a run on a GPU."""
    with torch.no_grad():
        scores = task.model_free_attribution(batch.inputs).double().cpu() * batch.valid.cpu()
    flat = scores.flatten(1)
    weights = 1.0 + (torch.arange(flat.shape[1], dtype=torch.float64) * 0.6180339887498949) % 1.0
    return flat @ weights


def _describe(tensors: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    fallback = "an attribute of the task's model inputs"
    return {
        key: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "meaning": MEANINGS.get(key, fallback)}
        for key, t in tensors.items()
    }


def _meta(task: Task, n: int, seed: int, batch: Batch, tensors: dict[str, Tensor]) -> dict[str, Any]:
    feature_shape = list(batch.valid.shape[1:])
    return {
        "format": FORMAT,
        "task": task.name,
        "version": task.version,
        "modality": task.modality,
        "removal": task.removal_name,
        "seed": seed,
        "n": n,
        "n_samples": len(batch),
        "feature_shape": feature_shape,
        "model": task.card.model,
        "weights": f"tasks/weights/{task.weights_stem}.safetensors" if task.weights_stem else "brought by the task",
        "tensors": _describe(tensors),
        "explanations": f"write explanations.safetensors or explanations.npz into this folder: 'ids' [N] integer and "
        f"'explanations' [N, {', '.join(map(str, feature_shape))}] float, higher = more important",
        "ids": batch.ids.tolist(),
        "fingerprints": fingerprints(task, batch).tolist(),
        "xaiboard_version": version("xaiboard"),
    }


def _layout(value: Any, depth: int = 2, indent: str = "") -> str:
    """JSON with objects expanded ``depth`` levels deep and everything deeper on one line, so that
    ``meta.json`` reads as one line per field and per tensor."""
    if not isinstance(value, dict) or depth == 0:
        return json.dumps(value)
    inner = indent + " "
    items = ",\n".join(f"{inner}{json.dumps(key)}: {_layout(item, depth - 1, inner)}" for key, item in value.items())
    return "{\n" + items + "\n" + indent + "}"


def export_samples(task: Task, n: int, seed: int, out: Path) -> Path:
    """Write the evaluation samples of ``task`` (exactly ``task.samples("test", n, seed)``, what
    the runner evaluates) to ``out/<task folder>/`` and return that folder.

    The same tensors go to ``samples.safetensors`` and ``samples.npz`` (numpy users need
    nothing else), with ``meta.json`` describing them. Ground truth is not exported: explainers
    never see it.
    """
    batch = task.samples("test", n, seed)
    if batch.ids is None:
        raise PrecomputedError(f"{task.name}: its samples carry no ids, so explanations could not be matched to them")
    tensors = {"ids": batch.ids.long(), "targets": batch.targets.long(), "valid": batch.valid, **flat_inputs(batch.inputs)}
    tensors = {key: t.detach().cpu().contiguous() for key, t in tensors.items()}
    folder = Path(out) / task_folder(task.name)
    atomic_write(folder / "samples.safetensors", lambda f: f.write(save(tensors)))
    atomic_write(folder / "samples.npz", lambda f: np.savez(f, **{key: t.numpy() for key, t in tensors.items()}))
    atomic_write_text(folder / META, _layout(_meta(task, n, seed, batch, tensors)) + "\n")
    return folder


# ---- reading ----------------------------------------------------------------------------------
def _read_meta(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise PrecomputedError(f"{path}: missing; keep the meta.json that the export wrote next to the explanations")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrecomputedError(f"{path}: unreadable: {exc}") from exc
    if not isinstance(meta, dict):
        raise PrecomputedError(f"{path}: not a JSON object")
    for key in required:
        if key not in meta:
            raise _error(path, key, "is missing")
    return meta


def _explanation_file(folder: Path) -> Path:
    found = [folder / name for name in EXPLANATION_FILES if (folder / name).is_file()]
    if not found:
        raise PrecomputedError(f"{folder}: no {' or '.join(EXPLANATION_FILES)}")
    if len(found) > 1:
        raise PrecomputedError(f"{folder}: both {' and '.join(EXPLANATION_FILES)}; keep one")
    return found[0]


def _read_fields(path: Path, names: tuple[str, ...]) -> dict[str, Tensor]:
    """Tensors ``names`` of a ``.safetensors`` or ``.npz`` file (safetensors read through torch,
    so that bfloat16 works; npz with pickles refused)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                found = {name: data[name] for name in names if name in data.files}
                available = data.files
        else:
            with safe_open(path, framework="pt") as data:
                found = {name: data.get_tensor(name) for name in names if name in data.keys()}
                available = list(data.keys())
    except Exception as exc:  # a corrupt file raises zipfile, safetensors or OS errors alike
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PrecomputedError(f"{path}: unreadable: {reason}") from exc
    for name in names:
        if name not in found:
            raise _error(path, name, f"is missing (found: {', '.join(available) or 'nothing'})")
    return {name: _as_tensor(path, name, value) for name, value in found.items()}


def _as_tensor(path: Path, name: str, value: Tensor | np.ndarray) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if value.dtype.kind not in "biuf":
        raise _error(path, name, f"has dtype {value.dtype}; expected numbers")
    return torch.from_numpy(value)


def _positions(path: Path, field: str, ids: Tensor, wanted: Tensor) -> Tensor:
    """Index into ``ids`` of each of ``wanted``; raises naming the ids that are absent."""
    order = ids.argsort()
    sorted_ids = ids[order]
    at = torch.searchsorted(sorted_ids, wanted).clamp(max=max(ids.numel() - 1, 0))
    present = sorted_ids[at] == wanted if ids.numel() else torch.zeros_like(wanted, dtype=torch.bool)
    if not bool(present.all()):
        missing = wanted[~present]
        raise _error(
            path,
            field,
            f"lacks {missing.numel()} of the {wanted.numel()} samples being scored (first missing ids: {_first(missing)})",
        )
    return order[at]


def _checked_ids(path: Path, ids: Tensor, rows: int) -> Tensor:
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise _error(path, "ids", f"has dtype {str(ids.dtype).removeprefix('torch.')}; expected integers")
    if ids.dim() != 1:
        raise _error(path, "ids", f"has shape {list(ids.shape)}; expected [N]")
    if ids.numel() != rows:
        raise _error(path, "ids", f"has {ids.numel()} entries but 'explanations' has {rows} rows")
    unique, counts = ids.long().unique(return_counts=True)
    if bool((counts > 1).any()):
        duplicates = unique[counts > 1]
        raise _error(path, "ids", f"has {duplicates.numel()} duplicate ids (first: {_first(duplicates)})")
    return ids.long()


def _fitted(path: Path, explanations: Tensor, task: Task, valid: Tensor) -> Tensor:
    """``explanations`` cut to ``valid``'s feature shape.

    Graphs pad edge slots to the largest sample in a batch, so explanations written for all
    exported samples may be wider than a batch of some of them; any width from the batch's own
    up to the task's largest (``task.feature_shape``) is accepted, the extra slots being padding.
    """
    have, need, most = tuple(explanations.shape[1:]), tuple(valid.shape[1:]), tuple(task.feature_shape)
    if len(have) != len(need) or any(h < n or h > max(n, m) for h, n, m in zip(have, need, most)):
        expected = ", ".join(["N", *map(str, need)])
        problem = f"has shape {list(explanations.shape)}; expected [{expected}] (valid.shape[1:] per sample)"
        raise _error(path, "explanations", problem)
    return explanations[(slice(None), *(slice(0, n) for n in need))]


def load_explanations(folder: Path, task: Task, batch: Batch) -> Tensor:
    """The explanations for ``batch``, ordered like ``batch.ids``, from
    ``folder/<task folder>/explanations.{safetensors,npz}``; float32 on ``batch``'s device, 0 on
    slots outside ``batch.valid``.

    Raises :class:`PrecomputedError` (one line naming the file and field) on: a missing file or
    field, ids that do not cover ``batch.ids`` or repeat, a shape that is not ``[N, *F]`` for the
    batch's feature shape ``F``, a non-float dtype, NaN/inf on a valid feature, and explanations
    exported for another task version or for other samples with the same ids (another seed).
    """
    task_dir = Path(folder) / task_folder(task.name)
    path = _explanation_file(task_dir)
    if batch.ids is None:
        raise PrecomputedError(f"{task.name}: its batches carry no sample ids to match precomputed explanations by")
    data = _read_fields(path, ("ids", "explanations"))
    explanations = data["explanations"]
    if not explanations.is_floating_point():
        raise _error(path, "explanations", f"has dtype {str(explanations.dtype).removeprefix('torch.')}; expected floats")
    if explanations.dim() == 0:
        raise _error(path, "explanations", "is a scalar; expected [N, *features]")
    ids = _checked_ids(path, data["ids"], explanations.shape[0])
    wanted = batch.ids.detach().cpu().long()
    picked = _fitted(path, explanations[_positions(path, "ids", ids, wanted)], task, batch.valid)
    valid = batch.valid.cpu()
    bad = (~torch.isfinite(picked) & valid).flatten(1).any(1)
    if bool(bad.any()):
        problem = f"has NaN/inf on valid features in {int(bad.sum())} of {len(batch)} samples (first ids: {_first(wanted[bad])})"
        raise _error(path, "explanations", problem)
    _check_samples(task_dir / META, task, batch)
    return torch.where(valid, picked.float(), 0.0).to(batch.valid.device)


def _check_samples(path: Path, task: Task, batch: Batch) -> None:
    """Raise unless ``meta.json`` exported this task's version and, for every id in ``batch``,
    a sample with the same inputs (fingerprint)."""
    meta = _read_meta(path, ("task", "version", "seed", "ids", "fingerprints"))
    if meta["task"] != task.name or str(meta["version"]) != str(task.version):
        found = f"{meta['task']}@{meta['version']}"
        scored = f"{task.name}@{task.version}"
        raise _error(path, "version", f"says the samples are {found}, but {scored} is being scored; export again")
    wanted = batch.ids.detach().cpu().long()
    rows = _positions(path, "ids", torch.tensor(meta["ids"], dtype=torch.long), wanted)
    exported = torch.tensor(meta["fingerprints"], dtype=torch.float64)[rows]
    differ = ~torch.isclose(exported, fingerprints(task, batch), rtol=FINGERPRINT_RTOL, atol=1e-9)
    if bool(differ.any()):
        raise _error(
            path,
            "fingerprints",
            f"shows {int(differ.sum())} of the {len(batch)} samples being scored differ from the exported samples "
            f"with the same ids (first ids: {_first(wanted[differ])}); the export used seed {meta['seed']}: "
            "score with it or export again",
        )


def _metas(folder: Path) -> dict[str, dict[str, Any]]:
    """Task name -> ``meta.json`` of each task folder in ``folder``; every folder must hold an
    explanations file, so that a misnamed file is reported instead of its task silently skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrecomputedError(f"{folder}: not a folder")
    if (folder / META).exists():
        raise PrecomputedError(f"{folder}: one task's folder; pass the folder that contains it")
    metas = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta = _read_meta(sub / META, ("task", "modality"))
        if task_folder(str(meta["task"])) != sub.name:
            raise _error(sub / META, "task", f"is {meta['task']!r}, whose folder is {task_folder(str(meta['task']))!r}")
        _explanation_file(sub)
        metas[meta["task"]] = meta
    if not metas:
        raise PrecomputedError(f"{folder}: no task folders (each holds meta.json and an explanations file)")
    return metas


def precomputed_tasks(folder: Path) -> list[str]:
    """Names of the tasks a precomputed folder has explanations for (from each task folder's ``meta.json``)."""
    return sorted(_metas(folder))


def precomputed_setting(folder: Path, tasks: list[str] | None = None) -> tuple[list[str], int, int]:
    """The tasks to score (``tasks``, default every one present) and the ``n`` and ``seed`` they
    were exported with: scoring with these evaluates exactly the exported samples. One run has
    one ``n`` and ``seed``, so the chosen tasks must share them."""
    metas = _metas(folder)
    chosen = list(tasks) if tasks else sorted(metas)
    absent = [name for name in chosen if name not in metas]
    if absent:
        raise PrecomputedError(f"{folder}: no explanations for {', '.join(absent)} (present: {', '.join(sorted(metas))})")
    first = chosen[0]
    for name in chosen[1:]:
        for key in ("n", "seed"):
            if metas[name].get(key) != metas[first].get(key):
                problem = f"is {metas[name].get(key)} but {metas[first].get(key)} for {first}"
                path = Path(folder) / task_folder(name) / META
                raise _error(path, key, f"{problem}; export every task with the same --n and --seed")
    return chosen, int(metas[first]["n"]), int(metas[first]["seed"])


class PrecomputedExplainer(Explainer):
    """Explanations read from files; cannot be re-run."""

    rerunnable: ClassVar[bool] = False
    description: ClassVar[str] = "explanations computed outside xaiboard and read from files"

    def __init__(self, folder: Path, name: str) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.name = name
        metas = _metas(self.folder)
        self.tasks = frozenset(metas)
        self.modalities = frozenset(meta["modality"] for meta in metas.values())

    def supports(self, task: Task) -> bool:
        return task.name in self.tasks

    def explain_batch(self, model: nn.Module, batch: Batch, task: Task) -> Tensor:
        return load_explanations(self.folder, task, batch)

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        raise NotImplementedError("precomputed explanations cannot be re-run on new inputs")

    def code_hash(self) -> str:
        """sha256 of the explanation files (path and bytes, sorted by path): new explanations
        invalidate cached ones and stored results, as new code does for other methods."""
        digest = hashlib.sha256()
        for path in sorted(_explanation_file(self.folder / task_folder(name)) for name in self.tasks):
            digest.update(path.relative_to(self.folder).as_posix().encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]
