"""Precomputed explanations: export samples, explain them from the files alone, read them back.

The "outside" explainers below read only the exported files (numpy / safetensors), never the
harness, as a user in another framework would.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from torch import Tensor, nn

import xaiboard.tasks  # noqa: F401  (register the built-in tasks)
from xaiboard.benchmark.precomputed import (
    PrecomputedError,
    PrecomputedExplainer,
    export_samples,
    load_explanations,
    precomputed_setting,
    precomputed_tasks,
    task_folder,
)
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task import Task
from xaiboard.methods.base import Explainer

N, SEED = 8, 3  # under seed 3 the first 2 graph samples are not the largest (BA-Shapes v3: 40 vs 42 edges)
IMAGE, GRAPH = "image/shapes", "graph/ba-shapes"
DOC = Path(__file__).resolve().parents[1] / "docs" / "precomputed.md"


# ---- explaining outside the harness: the exported files only ---------------------------------
def read_samples(folder: Path, fmt: str) -> dict[str, np.ndarray]:
    if fmt == "npz":
        with np.load(folder / "samples.npz") as data:
            return dict(data)
    return safetensors.numpy.load_file(folder / "samples.safetensors")


def image_scores(samples: dict[str, np.ndarray]) -> np.ndarray:
    """Per-pixel input magnitude, summed over channels."""
    return np.abs(samples["inputs"]).sum(axis=1)


def graph_scores(samples: dict[str, np.ndarray]) -> np.ndarray:
    """Each edge scored by its source node's in-degree, placed in its sample's slot."""
    src, dst = samples["inputs.edge_index"]
    degree = np.bincount(dst, minlength=samples["inputs.x"].shape[0]).astype(np.float32)
    scores = np.zeros(samples["valid"].shape, dtype=np.float32)
    scores[samples["inputs.edge_sample"], samples["inputs.edge_slot"]] = degree[src]
    return scores


SCORES = {IMAGE: image_scores, GRAPH: graph_scores}
FORMAT = {IMAGE: "npz", GRAPH: "safetensors"}  # one task each way


def write(folder: Path, fmt: str, ids: np.ndarray, explanations: np.ndarray) -> Path:
    path = folder / f"explanations.{fmt}"
    if fmt == "npz":
        np.savez(path, ids=ids, explanations=explanations)
    else:
        safetensors.numpy.save_file({"ids": ids, "explanations": explanations}, path)
    return path


def shuffled(ids: np.ndarray, explanations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(1).permutation(len(ids))
    assert (order != np.arange(len(ids))).any()
    return ids[order], explanations[order]


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    return {name: TASKS.create(name) for name in (IMAGE, GRAPH)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tasks) -> Path:
    """An export of both tasks, samples only."""
    root = tmp_path_factory.mktemp("exported")
    for task in tasks.values():
        assert export_samples(task, N, SEED, root) == root / task_folder(task.name)
    return root


@pytest.fixture(scope="module")
def explained(tmp_path_factory, exported) -> tuple[Path, dict[str, np.ndarray]]:
    """A copy of the export with explanations in shuffled order, and the explanations in export order."""
    root = tmp_path_factory.mktemp("explained") / "precomputed"
    shutil.copytree(exported, root)
    written = {}
    for name, scores in SCORES.items():
        folder = root / task_folder(name)
        samples = read_samples(folder, FORMAT[name])
        written[name] = scores(samples)
        write(folder, FORMAT[name], *shuffled(samples["ids"], written[name]))
    return root, written


def one_task_folder(tmp_path: Path, exported: Path, name: str) -> Path:
    """A precomputed folder holding only ``name``'s meta.json, for an explanations file under test."""
    folder = tmp_path / "precomputed" / task_folder(name)
    folder.mkdir(parents=True)
    shutil.copy(exported / task_folder(name) / "meta.json", folder)
    return folder


def batch_of(task: Task, n: int = N, seed: int = SEED):
    return task.samples("test", n, seed)


# ---- the export --------------------------------------------------------------------------------
def test_task_folder_is_one_component():
    assert task_folder("image/shapes") == "image__shapes"
    assert task_folder("graph/ba-shapes") == "graph__ba-shapes"


@pytest.mark.parametrize("name", [IMAGE, GRAPH])
def test_export_holds_the_evaluated_samples_in_both_formats(exported, tasks, name):
    folder = exported / task_folder(name)
    npz, st = read_samples(folder, "npz"), read_samples(folder, "safetensors")
    assert npz.keys() == st.keys()
    for key in npz:
        np.testing.assert_array_equal(npz[key], st[key])
    batch = batch_of(tasks[name])
    np.testing.assert_array_equal(st["ids"], batch.ids.numpy())
    np.testing.assert_array_equal(st["targets"], batch.targets.numpy())
    np.testing.assert_array_equal(st["valid"], batch.valid.numpy())
    assert st["ids"].dtype == st["targets"].dtype == np.int64 and st["valid"].dtype == bool
    assert not any("ground" in key or "label" in key for key in st)  # explainers never see ground truth
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["task"] == name and meta["version"] == tasks[name].version and meta["modality"] == name.split("/")[0]
    assert (meta["seed"], meta["n"], meta["n_samples"]) == (SEED, N, N)
    assert meta["feature_shape"] == list(batch.valid.shape[1:])
    assert meta["xaiboard_version"]
    assert set(meta["tensors"]) == set(st)
    for key, described in meta["tensors"].items():
        assert described["shape"] == list(st[key].shape) and described["meaning"]


def test_image_inputs_are_the_model_inputs(exported, tasks):
    samples = read_samples(exported / task_folder(IMAGE), "npz")
    np.testing.assert_array_equal(samples["inputs"], batch_of(tasks[IMAGE]).inputs.numpy())


def test_graph_arrays_rebuild_each_sample_and_the_valid_mask(exported):
    """Per-sample edge counts, the slot layout and the node-to-sample mapping, from the files alone."""
    s = read_samples(exported / task_folder(GRAPH), "safetensors")
    rebuilt = np.zeros_like(s["valid"])
    rebuilt[s["inputs.edge_sample"], s["inputs.edge_slot"]] = True
    np.testing.assert_array_equal(rebuilt, s["valid"])
    np.testing.assert_array_equal(np.bincount(s["inputs.edge_sample"], minlength=N), s["valid"].sum(1))
    src, dst = s["inputs.edge_index"]
    np.testing.assert_array_equal(s["inputs.node_sample"][src], s["inputs.edge_sample"])  # no edge crosses samples
    np.testing.assert_array_equal(s["inputs.node_sample"][dst], s["inputs.edge_sample"])
    np.testing.assert_array_equal(s["inputs.node_sample"][s["inputs.center"]], np.arange(N))
    np.testing.assert_array_equal(s["inputs.node_id"][s["inputs.center"]], s["ids"])  # the explained nodes


# ---- reading explanations back -----------------------------------------------------------------
@pytest.mark.parametrize("name", [IMAGE, GRAPH])
def test_explanations_come_back_in_batch_order(explained, tasks, name):
    root, written = explained
    batch = batch_of(tasks[name])
    loaded = load_explanations(root, tasks[name], batch)
    assert loaded.dtype == torch.float32 and loaded.shape == batch.valid.shape
    assert torch.equal(loaded, torch.from_numpy(written[name]))


def test_a_smaller_graph_batch_gets_its_rows_and_width(explained, tasks):
    """A run on the first 2 exported samples: their rows, cut to their own largest edge count."""
    root, written = explained
    batch = batch_of(tasks[GRAPH], n=2)
    assert batch.valid.shape[1] < written[GRAPH].shape[1]
    loaded = load_explanations(root, tasks[GRAPH], batch)
    assert torch.equal(loaded, torch.from_numpy(written[GRAPH][:2, : batch.valid.shape[1]]))


def test_explanations_of_other_samples_with_the_same_ids_are_refused(explained, tasks):
    """image/shapes numbers its samples 0..n-1 under every seed: the fingerprints tell them apart."""
    root, _ = explained
    other = batch_of(tasks[IMAGE], seed=SEED + 1)
    assert torch.equal(other.ids, batch_of(tasks[IMAGE]).ids)
    with pytest.raises(PrecomputedError) as error:
        load_explanations(root, tasks[IMAGE], other)
    assert_one_line(error, root / task_folder(IMAGE) / "meta.json", "fingerprints")


def assert_one_line(error: pytest.ExceptionInfo, path: Path, field: str | None) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    if field is not None:
        assert f"field {field!r}" in message


def _drop_last(ids, x):
    return ids[:-1], x[:-1]


def _narrow(ids, x):
    return ids, x[:, : x.shape[1] - 1]


def _nan_on_valid(ids, x):
    x = x.copy()
    x[(2, 0, 0) if x.ndim == 3 else (2, 0)] = np.nan  # slot 0 is valid in every sample
    return ids, x


def _ints(ids, x):
    return ids, x.astype(np.int64)


def _duplicate(ids, x):
    ids = ids.copy()
    ids[1] = ids[0]
    return ids, x


@pytest.mark.parametrize("name", [IMAGE, GRAPH])
@pytest.mark.parametrize(
    ("damage", "field", "says"),
    [
        (_drop_last, "ids", r"lacks 1 of the 8 samples being scored \(first missing ids: -?\d+\)"),
        (_narrow, "explanations", r"has shape \[8, \d+(, \d+)?\]; expected \[N, \d+(, \d+)?\]"),
        (_nan_on_valid, "explanations", r"NaN/inf on valid features in 1 of 8 samples \(first ids: -?\d+\)"),
        (_ints, "explanations", r"has dtype int64; expected floats"),
        (_duplicate, "ids", r"has 1 duplicate ids"),
    ],
)
def test_bad_explanations_give_one_line_naming_file_and_field(tmp_path, exported, tasks, name, damage, field, says):
    folder = one_task_folder(tmp_path, exported, name)
    samples = read_samples(exported / task_folder(name), FORMAT[name])
    path = write(folder, FORMAT[name], *damage(samples["ids"], SCORES[name](samples)))
    with pytest.raises(PrecomputedError) as error:
        load_explanations(folder.parent, tasks[name], batch_of(tasks[name]))
    assert_one_line(error, path, field)
    assert re.search(says, str(error.value)), str(error.value)


def test_missing_file_and_missing_field(tmp_path, exported, tasks):
    folder = one_task_folder(tmp_path, exported, IMAGE)
    with pytest.raises(PrecomputedError) as error:
        load_explanations(folder.parent, tasks[IMAGE], batch_of(tasks[IMAGE]))
    assert_one_line(error, folder, None)
    assert "explanations.safetensors or explanations.npz" in str(error.value)
    path = folder / "explanations.npz"
    np.savez(path, ids=np.arange(N))
    with pytest.raises(PrecomputedError) as error:
        load_explanations(folder.parent, tasks[IMAGE], batch_of(tasks[IMAGE]))
    assert_one_line(error, path, "explanations")
    assert "is missing (found: ids)" in str(error.value)


def test_invalid_slots_may_hold_anything(tmp_path, exported, tasks):
    """Padding edge slots are not read: NaN there is fine and comes back as 0."""
    folder = one_task_folder(tmp_path, exported, GRAPH)
    samples = read_samples(exported / task_folder(GRAPH), "npz")
    scores = np.where(samples["valid"], graph_scores(samples), np.nan).astype(np.float32)
    write(folder, "npz", samples["ids"], scores)
    loaded = load_explanations(folder.parent, tasks[GRAPH], batch_of(tasks[GRAPH]))
    assert torch.equal(loaded, torch.from_numpy(np.nan_to_num(scores, nan=0.0)))


# ---- the folder and the explainer --------------------------------------------------------------
def test_precomputed_tasks_and_setting(explained):
    root, _ = explained
    assert precomputed_tasks(root) == [GRAPH, IMAGE]
    assert precomputed_setting(root) == ([GRAPH, IMAGE], N, SEED)
    assert precomputed_setting(root, [IMAGE]) == ([IMAGE], N, SEED)
    with pytest.raises(PrecomputedError, match="no explanations for text/planted"):
        precomputed_setting(root, ["text/planted"])


def test_unrecognisable_folders_are_refused(tmp_path, explained):
    root, _ = explained
    copy = tmp_path / "precomputed"
    shutil.copytree(root, copy)
    with pytest.raises(PrecomputedError) as error:
        precomputed_tasks(copy / task_folder(IMAGE))
    assert "one task's folder" in str(error.value)
    (copy / "notes").mkdir()
    with pytest.raises(PrecomputedError) as error:
        precomputed_tasks(copy)
    assert_one_line(error, copy / "notes" / "meta.json", None)


def test_tasks_exported_with_different_seeds_cannot_share_a_run(tmp_path, explained, tasks):
    root, _ = explained
    copy = tmp_path / "precomputed"
    shutil.copytree(root, copy)
    export_samples(tasks[IMAGE], N, SEED + 1, copy)
    with pytest.raises(PrecomputedError) as error:
        precomputed_setting(copy)
    assert_one_line(error, copy / task_folder(IMAGE) / "meta.json", "seed")


def test_precomputed_explainer(tmp_path, explained, tasks):
    root, written = explained
    copy = tmp_path / "precomputed"
    shutil.copytree(root, copy)
    explainer = PrecomputedExplainer(copy, "my-method")
    assert explainer.name == "my-method" and not explainer.rerunnable
    assert explainer.modalities == {"image", "graph"}
    assert explainer.supports(tasks[IMAGE]) and not explainer.supports(TASKS.create("graph/tree-cycles"))
    model, batch = tasks[IMAGE].model(), batch_of(tasks[IMAGE])
    assert torch.equal(explainer.explain_batch(model, batch, tasks[IMAGE]), torch.from_numpy(written[IMAGE]))
    with pytest.raises(NotImplementedError, match="cannot be re-run"):
        explainer.explain(model, batch.inputs, batch.targets, tasks[IMAGE])
    before = explainer.code_hash()
    assert re.fullmatch(r"[0-9a-f]{12}", before) and explainer.code_hash() == before
    samples = read_samples(copy / task_folder(GRAPH), "safetensors")
    write(copy / task_folder(GRAPH), "safetensors", samples["ids"], graph_scores(samples) + 1.0)
    assert explainer.code_hash() != before


def test_explainers_are_rerunnable_and_explain_batches_through_explain_by_default(tasks):
    class Ones(Explainer):
        name = "ones"

        def explain(self, model: nn.Module, inputs, targets: Tensor, task: Task) -> Tensor:
            return torch.ones(task.valid_features(inputs).shape)

    batch = batch_of(tasks[IMAGE], n=2)
    assert Ones.rerunnable
    assert torch.equal(Ones().explain_batch(None, batch, tasks[IMAGE]), torch.ones(2, 32, 32))


def test_the_documented_example_writes_loadable_explanations(tmp_path, monkeypatch, exported, tasks):
    """docs/precomputed.md's worked example, run as written on a fresh export."""
    code = DOC.read_text().split("<!-- example:start -->\n```python\n")[1].split("```\n<!-- example:end -->")[0]
    shutil.copytree(exported, tmp_path / "precomputed")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})
    for name, task in tasks.items():
        loaded = load_explanations(tmp_path / "precomputed", task, batch_of(task))
        assert torch.isfinite(loaded).all() and loaded.abs().sum() > 0
    image = read_samples(exported / task_folder(IMAGE), "npz")
    assert torch.allclose(load_explanations(tmp_path / "precomputed", tasks[IMAGE], batch_of(tasks[IMAGE])),
                          torch.from_numpy(image_scores(image)))
