"""Example explanations stored at run time (``benchmark/examples.py``): a run writes them, a
resumed run fills in only the missing or stale ones without recomputing a metric, and a
hand-broken file is one line naming the file and the field."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
import torch
from test_runner import N, Counted, Gradient, KeepTop, run_toy
from toy_task import ToyTask

from xaiboard.benchmark.examples import EXAMPLE_COUNT, ExampleError, read_examples, write_examples
from xaiboard.benchmark.store import ResultStore
from xaiboard.benchmark.task import Batch
from xaiboard.leaderboard.tables import content_keys


def examples_of(root, method):
    return read_examples(ResultStore(root / "results").examples_path("toy/linear", method))


def record_bytes(root) -> dict[str, bytes]:
    """Every record file's bytes (they hold a creation time, so a recomputed record differs)."""
    return {str(p): p.read_bytes() for p in (root / "results").rglob("*.json")}


def test_a_run_stores_the_first_samples_explanations_beside_the_records(toy_task, tmp_path):
    records = run_toy(toy_task, [Counted(), Gradient()], [KeepTop()], tmp_path)
    batch = toy_task.samples("test", N, 0)
    first = batch.inputs[:EXAMPLE_COUNT]
    examples = examples_of(tmp_path, "test-magnitude")
    assert examples.sample_ids == records[0].sample_ids[:EXAMPLE_COUNT] == list(range(EXAMPLE_COUNT))
    assert examples.meta | {"created": ""} == {
        "task": "toy/linear", "task_version": "1", "task_fingerprint": records[0].task_fingerprint, "modality": "image",
        "method": "test-magnitude", "method_hash": Counted().code_hash(), "created": "", "format": 1, "seed": 0,
        "batch_size": N,
    }  # fmt: skip
    a = examples.arrays
    np.testing.assert_array_equal(a["scores"], first.abs().sum(1).numpy())  # the magnitude explainer, exactly
    np.testing.assert_array_equal(a["targets"], batch.targets[:EXAMPLE_COUNT].numpy())
    np.testing.assert_array_equal(a["ground_truth"], batch.ground_truth[:EXAMPLE_COUNT].numpy())
    low, high = first.amin(dim=(1, 2, 3), keepdim=True), first.amax(dim=(1, 2, 3), keepdim=True)
    display = ((first - low) / (high - low)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(a["images"], display, atol=1e-6)  # float32 rounding of the min-max scaling
    assert a["images"].min() == 0 and a["images"].max() == 1
    stored, errors = ResultStore(tmp_path / "results").records()
    assert errors == [] and len(stored) == 2  # the .npz files are never read as records


def test_a_resumed_run_explains_only_the_missing_examples(toy_task, tmp_path):
    run_toy(toy_task, [Counted(), Gradient()], [KeepTop()], tmp_path)
    missing = ResultStore(tmp_path / "results").examples_path("toy/linear", "test-gradient")
    kept = ResultStore(tmp_path / "results").examples_path("toy/linear", "test-magnitude")
    missing.unlink()
    before, kept_bytes = record_bytes(tmp_path), kept.read_bytes()
    magnitude, gradient = Counted(), Gradient()
    shutil.rmtree(tmp_path / "cache")  # nothing cached: the missing examples must be explained
    run_toy(toy_task, [magnitude, gradient], [KeepTop()], tmp_path)
    assert record_bytes(tmp_path) == before  # no metric recomputed
    assert kept.read_bytes() == kept_bytes and magnitude.calls == 0
    assert gradient.calls == 1  # just the example samples, not the batch
    examples = examples_of(tmp_path, "test-gradient")
    assert examples.meta["batch_size"] == EXAMPLE_COUNT and examples.meta["method_hash"] == gradient.code_hash()
    x = toy_task.samples("test", N, 0).inputs[:EXAMPLE_COUNT]
    expected = Gradient().explain(toy_task.model(), x, toy_task.samples("test", N, 0).targets[:EXAMPLE_COUNT], toy_task)
    np.testing.assert_allclose(examples.arrays["scores"], expected.detach().numpy(), rtol=1e-6)  # same float32 ops


def test_a_resumed_run_takes_missing_examples_from_the_cached_explanation(toy_task, tmp_path):
    run_toy(toy_task, [Gradient()], [KeepTop()], tmp_path)
    path = ResultStore(tmp_path / "results").examples_path("toy/linear", "test-gradient")
    original = examples_of(tmp_path, "test-gradient").arrays["scores"]
    path.unlink()
    again = Gradient()
    run_toy(toy_task, [again], [KeepTop()], tmp_path)
    assert again.calls == 0 and examples_of(tmp_path, "test-gradient").meta["batch_size"] == N
    np.testing.assert_array_equal(examples_of(tmp_path, "test-gradient").arrays["scores"], original)


class SplitToy(ToyTask):
    """The toy task with a train split that differs from its test split."""

    def samples(self, split: str, n: int, seed: int) -> Batch:
        return super().samples(split, n, seed + 1000 * (split == "train"))


def test_examples_under_another_split_are_that_splits_samples(tmp_path):
    """The examples' cache lookup carries the split: a train run after a test run (same cache,
    same seed and size) must not draw the test split's cached explanation over train samples."""
    task = SplitToy()
    run_toy(task, [Counted()], [KeepTop()], tmp_path)
    again = Counted()
    run_toy(task, [again], [KeepTop()], tmp_path, store="train-results", split="train")
    found = read_examples(ResultStore(tmp_path / "train-results").examples_path("toy/linear", "test-magnitude"))
    train, test = task.samples("train", N, 0).inputs, task.samples("test", N, 0).inputs
    assert not torch.equal(train[:EXAMPLE_COUNT], test[:EXAMPLE_COUNT]) and again.calls == 1
    np.testing.assert_array_equal(found.arrays["scores"], train[:EXAMPLE_COUNT].abs().sum(1).numpy())


def test_examples_of_other_method_code_are_rewritten_and_change_no_board_key(toy_task, tmp_path):
    run_toy(toy_task, [Counted()], [KeepTop()], tmp_path)
    path = ResultStore(tmp_path / "results").examples_path("toy/linear", "test-magnitude")
    found = read_examples(path)
    write_examples(path, {**found.meta, "method_hash": "0123456789ab"}, found.arrays)
    before, keys = record_bytes(tmp_path), content_keys(tmp_path / "results")
    run_toy(toy_task, [Counted()], [KeepTop()], tmp_path)
    assert read_examples(path).meta["method_hash"] == Counted().code_hash()
    assert record_bytes(tmp_path) == before
    assert content_keys(tmp_path / "results") == keys  # pictures never make the board's statistics stale


def _fields(path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


def _save(path, fields: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **fields)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: f.pop("scores"), "field 'scores' is missing"),
        (lambda f: f.update(images=f["images"][:, :2]), "field 'images': shape (4, 2, 4, 1), expected (4, 4, 4) x 1 or 3 channels"),
        (lambda f: f.update(images=f["images"] * 2), "field 'images': values outside [0, 1]"),
        (lambda f: f.update(scores=np.full_like(f["scores"], np.nan)), "field 'scores': NaN or inf on a valid feature"),
        (lambda f: f.update(targets=f["targets"][:2]), "field 'targets': 2 rows for 4 samples"),
        (lambda f: f.update(modality=np.asarray("audio")), "field 'modality': 'audio' is not one of image, text, graph"),
        (lambda f: f.update(seed=np.asarray("zero")), "field 'seed': expected 0 dimension(s) of kind 'iu', found 0 of dtype <U4"),
        (lambda f: f.update(tokens=np.array([object()])), "cannot read as .npz"),  # a pickled object array
    ],
)
def test_a_hand_broken_file_is_one_line_naming_the_file_and_field(toy_task, tmp_path, breakage, message):
    run_toy(toy_task, [Counted()], [KeepTop()], tmp_path)
    path = ResultStore(tmp_path / "results").examples_path("toy/linear", "test-magnitude")
    fields = _fields(path)
    breakage(fields)
    _save(path, fields)
    with pytest.raises(ExampleError) as caught:
        read_examples(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: ") and message in line and "\n" not in line


def test_a_truncated_or_foreign_file_is_one_line(tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ExampleError, match=r"truncated\.npz: cannot read as \.npz"):
        read_examples(truncated)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("scores.npy", b"\0" * (33 * 2**20))
    with pytest.raises(ExampleError, match=r"bomb\.npz: holds \d+ bytes uncompressed, more than"):
        read_examples(bomb)


def test_a_graph_file_whose_edges_leave_their_sample_is_refused(tmp_path):
    path = tmp_path / "graph.npz"
    meta = {"task": "graph/t", "task_version": "1", "task_fingerprint": "f", "modality": "graph", "method": "m",
            "method_hash": "h", "seed": 0, "batch_size": 1}  # fmt: skip
    arrays = {"sample_ids": np.array([7]), "targets": np.array([0]), "valid": np.array([[True, True]]),
              "scores": np.array([[0.5, 0.1]], dtype=np.float32), "edge_index": np.array([[0, 1], [1, 0]]),
              "edge_sample": np.array([0, 0]), "edge_slot": np.array([0, 1]), "node_counts": np.array([2]),
              "center": np.array([0])}  # fmt: skip
    write_examples(path, meta, arrays)
    assert read_examples(path).sample_ids == [7]
    with pytest.raises(ExampleError, match="field 'edge_index': an edge names a node outside its own sample"):
        write_examples(path, meta, {**arrays, "edge_index": torch.tensor([[0, 2], [1, 0]]).numpy()})
