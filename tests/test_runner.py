"""The runner on the toy task: failures become error records, runs resume, caches are hit."""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.metric import Metric, MetricContext
from xaiboard.benchmark.runner import results_table, run
from xaiboard.benchmark.store import ResultStore
from xaiboard.methods.base import Explainer

N = 16


class Counted(Explainer):
    """Counts its calls; attribution = the input's magnitude (model-free)."""

    name = "test-magnitude"

    def __init__(self, **params):
        super().__init__(**params)
        self.calls = 0

    def explain(self, model, inputs, targets, task):
        self.calls += 1
        return task.model_free_attribution(inputs)


class Gradient(Counted):
    """Gradient x input of the target logit: one forward and one backward pass per sample."""

    name = "test-gradient"

    def explain(self, model, inputs, targets, task):
        self.calls += 1
        x = inputs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
        return task.pool(grad * inputs, inputs)


class Raises(Counted):
    name = "test-raises"

    def explain(self, model, inputs, targets, task):
        self.calls += 1
        raise RuntimeError("planted failure")


class ReturnsNaN(Counted):
    name = "test-nan"

    def explain(self, model, inputs, targets, task):
        attribution = super().explain(model, inputs, targets, task)
        attribution[3, 0, 0] = math.nan
        return attribution


class WrongShape(Counted):
    name = "test-shape"

    def explain(self, model, inputs, targets, task):
        return super().explain(model, inputs, targets, task)[:, :3]


class Top1InGroundTruth(Metric):
    """1 if the most important feature lies inside the ground-truth mask."""

    name = "test-top1-in-gt"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 1.0)
    needs_ground_truth = True

    def __init__(self, **params):
        super().__init__(**params)
        self.calls = 0

    def compute(self, ctx: MetricContext):
        self.calls += 1
        top = ctx.explanation.flatten(1).argmax(dim=1, keepdim=True)
        return ctx.batch.ground_truth.flatten(1).gather(1, top).squeeze(1).float()


class KeepTop(Metric):
    """Target probability when only the top-k features are kept (through the removal engine)."""

    name = "test-keep-top"
    family = "faithfulness"
    direction = "higher"
    value_range = (0.0, 1.0)
    defaults = {"k": 4}

    def compute(self, ctx: MetricContext):
        keep = top_k_mask(ctx.explanation, self.params["k"])
        return ctx.engine.scores(ctx.batch.inputs, keep[:, None], ctx.batch.targets)[:, 0]


class Rerun(Metric):
    """Re-explains the same inputs: 0 for a deterministic explainer (exercises ctx.explain)."""

    name = "test-rerun"
    family = "robustness"
    direction = "lower"
    value_range = (0.0, math.inf)
    needs_explainer = True

    def compute(self, ctx: MetricContext):
        again = ctx.explain(ctx.model, ctx.batch.inputs, ctx.batch.targets)
        return (again - ctx.explanation).abs().flatten(1).amax(dim=1)


class Broken(Metric):
    name = "test-broken"
    family = "sanity"
    direction = "higher"
    value_range = (0.0, 1.0)

    def compute(self, ctx: MetricContext):
        raise ZeroDivisionError("planted metric failure")


def top_k_mask(explanation, k):
    flat = explanation.flatten(1)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)
    return mask.view_as(explanation)


def run_toy(task, methods, metrics, root: Path, store="results", **kwargs):
    kwargs = {"n": N, "seed": 0, "device": "cpu", "progress": False, **kwargs}
    return run([task], methods, metrics, store=ResultStore(root / store), cache=ExplanationCache(root / "cache"), **kwargs)


def test_failing_methods_and_metrics_become_error_records(toy_task, tmp_path):
    methods = [Counted(), Gradient(), Raises(), ReturnsNaN(), WrongShape()]
    metrics = [Top1InGroundTruth(), KeepTop(), Rerun(), Broken()]
    records = run_toy(toy_task, methods, metrics, tmp_path)
    by_key = {(r.method, r.metric): r for r in records}
    assert len(by_key) == len(records) == 20

    failures = {
        "test-raises": "explaining toy/linear with test-raises failed: RuntimeError: planted failure",
        "test-nan": "test-nan returned NaN/inf attributions in 1 of 16 samples",
        "test-shape": "test-shape returned shape (16, 3, 4), expected (16, 4, 4)",
    }
    for method, message in failures.items():
        for metric in metrics:
            record = by_key[(method, metric.name)]
            assert record.status == "error" and message in record.error
            assert "Traceback" in record.traceback
    for method in ("test-magnitude", "test-gradient"):
        broken = by_key[(method, "test-broken")]
        assert broken.status == "error" and "ZeroDivisionError: planted metric failure" in broken.error

    batch = toy_task.samples("test", N, 0)
    model = toy_task.model()
    magnitude = batch.inputs.abs().sum(dim=1)
    in_gt = batch.ground_truth.flatten(1).gather(1, magnitude.flatten(1).argmax(1, keepdim=True)).squeeze(1)
    assert in_gt[batch.labels == 1].all()  # the planted bright block always wins for class 1
    top1 = by_key[("test-magnitude", "test-top1-in-gt")]
    assert top1.status == "ok" and top1.scores == in_gt.double().tolist()
    assert top1.summary.mean == in_gt.double().mean().item()

    kept = batch.inputs * top_k_mask(magnitude, 4)[:, None]
    expected = model(kept).softmax(-1).gather(1, batch.targets[:, None]).squeeze(1).detach()
    keep = by_key[("test-magnitude", "test-keep-top")]
    assert torch.allclose(torch.tensor(keep.scores, dtype=torch.float64), expected.double(), atol=1e-6)  # float32 forward
    assert keep.metric_params == {"k": 4} and keep.removal == "zero" and keep.n_samples == N

    assert by_key[("test-gradient", "test-rerun")].summary.mean == 0.0
    gradient_cost = by_key[("test-gradient", "test-keep-top")].cost
    assert (gradient_cost["forward_passes"], gradient_cost["backward_passes"]) == (1.0, 1.0)
    assert methods[1].calls == 2  # explained once, re-explained once by test-rerun

    stored, errors = ResultStore(tmp_path / "results").records()
    assert errors == [] and len(stored) == 20
    table = results_table(records)
    assert table.loc[("toy/linear", "test-raises"), "test-keep-top"] == "ERROR"
    assert table.loc[("toy/linear", "test-magnitude"), "test-top1-in-gt"].startswith(f"{top1.summary.mean:.3g} [")


class Vandal(Gradient):
    """Leaves the model changed behind it: zeroed weights and training mode."""

    name = "test-vandal"

    def explain(self, model, inputs, targets, task):
        attribution = super().explain(model, inputs, targets, task)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        model.train()
        return attribution


def test_a_method_cannot_change_the_model_another_method_sees(toy_task, tmp_path):
    """Each pair gets its own copy of the model: a method that runs after one that wrecked its
    model object scores exactly as when it runs alone."""
    metrics = [KeepTop(), Rerun()]
    alone = run_toy(toy_task, [Gradient()], metrics, tmp_path / "alone")
    after = run_toy(toy_task, [Vandal(), Gradient()], metrics, tmp_path / "after")
    scores = {(r.method, r.metric): r.scores for r in after}
    assert all(r.status == "ok" for r in alone + after)
    assert [scores[("test-gradient", r.metric)] for r in alone] == [r.scores for r in alone]


def test_rerun_skips_finished_pairs_and_retries_errors(toy_task, tmp_path):
    done, failing, metric = Counted(), Raises(), Top1InGroundTruth()
    run_toy(toy_task, [done, failing], [metric], tmp_path)
    path = ResultStore(tmp_path / "results").path("toy/linear", "test-magnitude", "test-top1-in-gt")
    written = path.stat().st_mtime_ns
    records = run_toy(toy_task, [done, failing], [metric], tmp_path)
    assert (done.calls, failing.calls, metric.calls) == (1, 2, 1)
    assert path.stat().st_mtime_ns == written
    assert [r.status for r in records] == ["ok", "error"]
    run_toy(toy_task, [done], [metric], tmp_path, n=N + 1)  # another n is another result
    assert metric.calls == 2


def test_adding_a_metric_computes_only_that_metric(toy_task, tmp_path):
    method, first, second = Counted(), Top1InGroundTruth(), KeepTop()
    run_toy(toy_task, [method], [first], tmp_path)
    records = run_toy(toy_task, [method], [first, second], tmp_path)
    assert first.calls == 1 and method.calls == 1  # the explanation comes from the cache
    assert sorted(r.metric for r in records) == sorted([first.name, second.name])
    assert all(r.status == "ok" for r in records)


def test_force_recomputes_stored_results_and_cached_explanations(toy_task, tmp_path):
    method, metric = Counted(), Top1InGroundTruth()
    first = run_toy(toy_task, [method], [metric], tmp_path)
    again = run_toy(toy_task, [method], [metric], tmp_path, force=True)
    assert (method.calls, metric.calls) == (2, 2)
    assert again[0].scores == first[0].scores and again[0].created >= first[0].created


def test_task_that_cannot_load_gives_error_records(toy_task, tmp_path, monkeypatch):
    def missing_weights(device="cpu"):
        raise FileNotFoundError("toy.safetensors: no committed weights")

    monkeypatch.setattr(toy_task, "model", missing_weights)
    method = Counted()
    records = run_toy(toy_task, [method, Gradient()], [KeepTop()], tmp_path)
    assert [r.status for r in records] == ["error", "error"] and method.calls == 0
    assert "failed: FileNotFoundError: toy.safetensors: no committed weights" in records[0].error


def test_cache_hit_avoids_explaining(toy_task, tmp_path):
    method = Gradient()
    first = run_toy(toy_task, [method], [KeepTop()], tmp_path, store="a")
    second = run_toy(toy_task, [method], [KeepTop()], tmp_path, store="b")
    assert method.calls == 1
    assert second[0].scores == first[0].scores and second[0].cost == first[0].cost
    run_toy(toy_task, [method], [KeepTop()], tmp_path, store="c", seed=1)
    assert method.calls == 2
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2


KILLED_RUN = '''
import os, sys
from pathlib import Path

from toy_task import ToyTask
from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.metric import Metric
from xaiboard.benchmark.runner import run
from xaiboard.benchmark.store import ResultStore
from xaiboard.methods.base import Explainer

ROOT = Path(sys.argv[1])


def note(line):
    with open(ROOT / "calls.log", "a") as log:
        log.write(line + "\\n")


class Logged(Explainer):
    def explain(self, model, inputs, targets, task):
        note("explain " + self.name)
        if self.name == "second" and os.environ.get("CRASH"):
            os._exit(1)  # killed like a SIGKILL'd process: no cleanup, no exception handling
        return task.model_free_attribution(inputs)


class First(Logged):
    name = "first"


class Second(Logged):
    name = "second"


class MeanAttribution(Metric):
    name = "mean-attribution"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 16.0)

    def compute(self, ctx):
        note("metric")
        return ctx.explanation.flatten(1).mean(dim=1)


store, cache = ResultStore(ROOT / "results"), ExplanationCache(ROOT / "cache")
run([ToyTask()], [First(), Second()], [MeanAttribution()], n=8, device="cpu", store=store, cache=cache, progress=False)
'''


@pytest.mark.slow  # two fresh interpreters; importing xaiboard.methods (PyG) alone takes ~7 s on 2 cores
def test_killed_run_resumes_without_recomputing(tmp_path):
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    command = [sys.executable, str(script), str(tmp_path)]
    crashed = subprocess.run(command, env={**env, "CRASH": "1"}, capture_output=True, text=True)
    assert crashed.returncode == 1, crashed.stderr
    store = ResultStore(tmp_path / "results")
    first = store.path("toy/linear", "first", "mean-attribution")
    assert first.exists() and not store.path("toy/linear", "second", "mean-attribution").exists()
    written = first.stat().st_mtime_ns

    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    calls = (tmp_path / "calls.log").read_text().split("\n")[:-1]
    assert calls == ["explain first", "metric", "explain second", "explain second", "metric"]
    assert first.stat().st_mtime_ns == written
    records, errors = store.records()
    assert errors == [] and sorted(r.method for r in records if r.status == "ok") == ["first", "second"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_every_record_carries_its_metrics_own_passes(toy_task, tmp_path):
    """metric_cost counts exactly the metric's own rows: KeepTop is one forward per sample, Rerun
    one forward and one backward per sample (a gradient re-explanation), MPRT one of each per
    randomised layer (through deep copies of the model), and the ground-truth metric none."""
    from xaiboard.benchmark.metrics.randomisation import MPRT, randomisable_layers

    metrics = [KeepTop(), Rerun(), MPRT(), Top1InGroundTruth()]
    records = {r.metric: r for r in run_toy(toy_task, [Gradient()], metrics, tmp_path)}
    layers = len(randomisable_layers(toy_task.model(torch.device("cpu"))))
    expected = {"test-keep-top": (N, 0), "test-rerun": (N, N), "mprt": (layers * N, layers * N), "test-top1-in-gt": (0, 0)}
    for name, (forward, backward) in expected.items():
        spent = records[name].metric_cost
        assert (spent["forward_passes"], spent["backward_passes"]) == (forward, backward), name
        assert spent["seconds"] >= 0
    assert layers >= 2


def test_failed_metric_records_what_it_spent_before_failing(toy_task, tmp_path):
    records = run_toy(toy_task, [Gradient()], [Broken()], tmp_path)
    assert records[0].status == "error"
    spent = records[0].metric_cost
    assert spent["forward_passes"] == spent["backward_passes"] == 0 and spent["seconds"] >= 0
