"""The sandbox runs a submitted method in a confined worker, and the harness survives it.

One probe submission does what a control file says (fail, sleep, allocate, write outside its
scratch, ...) before returning an input gradient, so one worker serves many cases. The 10 s
time budget below is the feature under test, not a test timeout.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from xaiboard.benchmark import sandbox
from xaiboard.benchmark.precision import model_passes
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.sandbox import (
    BudgetExceeded,
    MemoryCapExceeded,
    MethodRaised,
    SandboxedExplainer,
    SandboxPolicy,
    SandboxUnavailable,
    SubmissionError,
    WorkerDied,
    sandbox_unavailable,
)
from xaiboard.benchmark.worker import SUBMISSION_MODULE

needs_landlock = pytest.mark.skipif(sandbox_unavailable() is not None, reason=f"no Landlock: {sandbox_unavailable()}")

# The worker runs the same float32 kernels on byte-identical weights with the parent's thread
# count, so results agree to the bit here; 1e-6 (the attributions average 0.1) only allows
# for a kernel that splits a sum differently.
TOL = 1e-6

PROBE = '''
import json
import os
import time
from pathlib import Path

import torch

from xaiboard.methods.base import Explainer


class Probe(Explainer):
    """Obeys the control file, then returns |d logit / d x| summed over channels."""

    name = "probe"
    modalities = frozenset({"image"})
    description = "a test double"

    def __init__(self, control: str) -> None:
        super().__init__(control=control)

    def explain(self, model, inputs, targets, task):
        order = json.loads(Path(self.params["control"]).read_text())
        getattr(self, "_" + order["mode"])(order.get("path"))
        x = inputs.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
        attribution = grad.abs().sum(1)
        return attribution + order.get("noise", 0.0) * torch.rand(attribution.shape)

    def _gradient(self, path):
        pass

    def _raise(self, path):
        raise ValueError("the probe was told to fail")

    def _sleep(self, path):
        time.sleep(600)

    def _exit(self, path):
        os._exit(3)

    def _allocate(self, path):
        torch.empty(4 * 2**30).fill_(1.0)  # 16 GB

    def _write(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("overwritten")

    def _delete(self, path):
        os.remove(path)

    def _scratch(self, path):
        Path("note.txt").write_text("mine")
        assert Path("note.txt").read_text() == "mine"
'''


@pytest.fixture(scope="module")
def shapes():
    import xaiboard.tasks  # noqa: F401  (registers image/shapes)

    task = TASKS.create("image/shapes")
    return task, task.model("cpu"), task.samples("test", 4, 0)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sandbox")
    (folder / "probe.py").write_text(PROBE)
    return folder


@pytest.fixture(scope="module")
def reference(workdir):
    """The probe imported in-process (from a copy, so the submission file itself never is)."""
    copy_path = workdir / "probe_reference.py"
    copy_path.write_text(PROBE)
    spec = importlib.util.spec_from_file_location("probe_reference", copy_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    control = workdir / "reference.json"
    return Controlled(module.Probe(control=str(control)), control)


class Controlled:
    """An explainer and the control file that tells the probe what to do on each call."""

    def __init__(self, explainer, control: Path) -> None:
        self.explainer, self.control = explainer, control

    def __call__(self, mode: str, model, batch, task, **order) -> torch.Tensor:
        self.control.write_text(json.dumps({"mode": mode, **order}))
        return self.explainer.explain(model, batch.inputs, batch.targets, task)


def sandboxed(workdir: Path, label: str, policy: SandboxPolicy) -> Controlled:
    control = workdir / f"{label}.json"
    explainer = SandboxedExplainer(workdir / "probe.py", None, policy, params={"control": str(control)})
    return Controlled(explainer, control)


@pytest.fixture(scope="module")
def probe(workdir):
    """A worker with a small memory cap and the default time budget, shared by most tests."""
    controlled = sandboxed(workdir, "probe", SandboxPolicy(memory_mb=3000))
    yield controlled
    controlled.explainer.close()


@pytest.fixture(scope="module")
def timed(workdir):
    """A worker with a 10 s time budget: its tests kill it, and it must come back. 10 s is far
    below the probe's 600 s sleep and far above a 4-image gradient on a loaded machine."""
    controlled = sandboxed(workdir, "timed", SandboxPolicy(time_budget_s=10, memory_mb=3000))
    yield controlled
    controlled.explainer.close()


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_unavailable_sandbox_is_refused_unless_unsafe(monkeypatch, workdir):
    monkeypatch.setattr(sandbox, "sandbox_unavailable", lambda: "kernel too old")
    with pytest.raises(SandboxUnavailable, match="^no sandbox: kernel too old; pass --unsafe-no-sandbox"):
        SandboxedExplainer(workdir / "probe.py", None, SandboxPolicy())


@needs_landlock
def test_proxy_reports_the_submission_without_importing_it(probe, workdir):
    explainer = probe.explainer
    assert (explainer.name, explainer.modalities, explainer.description) == ("probe", frozenset({"image"}), "a test double")
    assert explainer.params == {"control": str(probe.control)} and explainer.control is False
    blob = (workdir / "probe.py").read_bytes() + json.dumps(explainer.params, sort_keys=True).encode()
    assert explainer.code_hash() == hashlib.sha256(blob).hexdigest()[:12]
    assert SUBMISSION_MODULE not in sys.modules
    assert all(getattr(m, "__file__", None) != str(workdir / "probe.py") for m in list(sys.modules.values()))


@needs_landlock
def test_result_and_cost_match_the_method_run_in_process(probe, reference, shapes):
    task, model, batch = shapes
    out = probe("gradient", model, batch, task)
    torch.testing.assert_close(out, reference("gradient", model, batch, task), atol=TOL, rtol=0)
    assert out.shape == (4, 32, 32) and out.abs().sum() > 0
    # one forward over the 4 images and one backward through it, counted inside the worker
    assert (probe.explainer.last_cost.forward_passes, probe.explainer.last_cost.backward_passes) == (4, 4)


@needs_landlock
def test_worker_runs_under_the_callers_bf16_autocast(probe, reference, shapes):
    """``run --precision bf16`` reaches a sandboxed method: its passes run in bfloat16 in the
    worker, as the in-process method's do in the parent (same kernels: equal within TOL)."""
    task, model, batch = shapes
    exact = probe("gradient", model, batch, task)
    with model_passes(model, torch.device("cpu"), "bf16"):
        approximate = probe("gradient", model, batch, task)
        expected = reference("gradient", model, batch, task)
    torch.testing.assert_close(approximate, expected, atol=TOL, rtol=0)
    assert not torch.allclose(approximate, exact, atol=TOL, rtol=0)


@needs_landlock
def test_worker_randomness_follows_the_parents_seed(probe, shapes):
    task, model, batch = shapes
    torch.manual_seed(7)
    first = probe("gradient", model, batch, task, noise=1.0)
    torch.manual_seed(7)
    again = probe("gradient", model, batch, task, noise=1.0)
    other = probe("gradient", model, batch, task, noise=1.0)
    assert torch.equal(first, again) and not torch.equal(first, other)


@needs_landlock
def test_model_is_sent_once_and_again_after_an_in_place_change(probe, reference, shapes, monkeypatch):
    task, model, batch = shapes
    model = copy.deepcopy(model)
    dumps = []
    real_dump = sandbox._dump
    monkeypatch.setattr(sandbox, "_dump", lambda obj: dumps.append(type(obj).__name__) or real_dump(obj))
    before = probe("gradient", model, batch, task)
    probe("gradient", model, batch, task)
    assert dumps.count("tuple") == 2 and dumps.count(type(model).__name__) == 1
    torch.manual_seed(0)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    last.reset_parameters()  # in place, as the randomisation metrics do
    after = probe("gradient", model, batch, task)
    assert dumps.count(type(model).__name__) == 2
    torch.testing.assert_close(after, reference("gradient", model, batch, task), atol=TOL, rtol=0)
    assert not torch.allclose(after, before)


@needs_landlock
def test_method_that_raises(probe, shapes):
    task, model, batch = shapes
    with pytest.raises(MethodRaised, match="^probe raised ValueError: the probe was told to fail$") as error:
        probe("raise", model, batch, task)
    assert "_raise" in error.value.details
    assert probe("gradient", model, batch, task).shape == (4, 32, 32)


@needs_landlock
def test_allocation_past_the_cap(probe, shapes):
    task, model, batch = shapes
    with pytest.raises(MemoryCapExceeded, match="^probe exceeded its memory cap of 3000 MB$"):
        probe("allocate", model, batch, task)
    assert probe("gradient", model, batch, task).shape == (4, 32, 32)


@needs_landlock
@pytest.mark.parametrize(
    ("mode", "target"),
    [("write", "probe/new.json"), ("write", "probe/records/a.json"), ("delete", "probe/records/a.json")],
)
def test_writes_outside_the_scratch_dir_are_denied(probe, shapes, tmp_path, mode, target):
    task, model, batch = shapes
    results = tmp_path / "results"
    (results / "probe" / "records").mkdir(parents=True)
    (results / "probe" / "records" / "a.json").write_text('{"score": 1}')
    (results / "probe" / "method.json").write_text('{"name": "probe"}')
    before = digest(results)
    with pytest.raises(MethodRaised, match="^probe raised PermissionError"):
        probe(mode, model, batch, task, path=str(results / target))
    assert digest(results) == before


@needs_landlock
def test_writes_inside_the_scratch_dir_work(probe, shapes):
    task, model, batch = shapes
    assert probe("scratch", model, batch, task).shape == (4, 32, 32)


@needs_landlock
def test_time_budget_kills_the_worker_and_the_next_call_restarts_it(timed, reference, shapes):
    task, model, batch = shapes
    with pytest.raises(BudgetExceeded, match="^probe exceeded its time budget of 10 s$"):
        timed("sleep", model, batch, task)
    out = timed("gradient", model, batch, task)  # a fresh worker, sent the model again
    torch.testing.assert_close(out, reference("gradient", model, batch, task), atol=TOL, rtol=0)


@needs_landlock
def test_worker_that_exits_is_reported_and_replaced(timed, shapes):
    task, model, batch = shapes
    with pytest.raises(WorkerDied, match=r"^probe: the worker process died \(exit code 3\)$"):
        timed("exit", model, batch, task)
    assert timed("gradient", model, batch, task).shape == (4, 32, 32)


@needs_landlock
def test_file_with_two_explainers_needs_a_class_name(tmp_path):
    two = PROBE + "\n\nclass Other(Probe):\n    name = 'other'\n"
    (tmp_path / "two.py").write_text(two)
    with pytest.raises(SubmissionError, match=r"^two.py must define exactly one Explainer subclass \(found: Other, Probe\)"):
        SandboxedExplainer(tmp_path / "two.py", None, SandboxPolicy(), params={"control": "unused"})
