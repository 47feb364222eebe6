"""bf16 autocast of the model passes: it really runs the passes in bfloat16, hands float32 to the
metrics, is recorded, and never lets a bf16 result stand in for a float32 one (or back)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from test_runner import Broken, Gradient, KeepTop, Raises, Rerun, run_toy
from xaiboard.benchmark.precision import check_precision, model_passes
from xaiboard.benchmark.record import RecordError, ResultRecord

CPU = torch.device("cpu")
#: bfloat16 keeps 8 significant bits: a product of two rounded operands is off by at most
#: ~2 * 2^-8 relative, and a sum of 32 such products by that much of the sum of their sizes
BF16_RELATIVE = 2 * 2**-8


def linear_and_input() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(32, 3), torch.randn(8, 32)


def test_bf16_rounds_the_passes_and_returns_float32() -> None:
    model, x = linear_and_input()
    exact = model(x)
    with model_passes(model, CPU, "bf16"):
        approximate = model(x)
    assert approximate.dtype == torch.float32
    bound = BF16_RELATIVE * (x.abs() @ model.weight.abs().T + model.bias.abs())
    assert ((approximate - exact).abs() <= bound).all()
    assert not torch.equal(approximate, exact)  # the matrix product really ran in bfloat16
    rounded = x.bfloat16().float() @ model.weight.bfloat16().float().T + model.bias.bfloat16().float()
    torch.testing.assert_close(approximate, rounded, atol=1e-2, rtol=0)  # bf16 output rounding: 2^-8 of ~2
    assert torch.equal(model(x), exact) and not model._forward_hooks  # the block leaves no trace


def test_fp32_changes_nothing() -> None:
    model, x = linear_and_input()
    exact = model(x)
    with model_passes(model, CPU, "fp32"):
        assert torch.equal(model(x), exact) and not model._forward_hooks


def test_gradients_flow_through_bf16_passes() -> None:
    model, x = linear_and_input()
    x.requires_grad_(True)
    with model_passes(model, CPU, "bf16"):
        (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    assert grad.dtype == torch.float32
    # d logit_0 / dx = w_0 for every row, up to bfloat16's rounding of w_0
    torch.testing.assert_close(grad, model.weight[0].expand_as(x), atol=BF16_RELATIVE * float(model.weight.detach().abs().max()), rtol=0)


@pytest.mark.parametrize(
    ("precision", "device", "message"),
    [("fp16", "cpu", "precision must be one of fp32, bf16; got 'fp16'"), ("bf16", "meta", "bf16 autocast runs on cpu and cuda, not on meta")],
)
def test_unusable_precisions_are_refused_in_one_line(precision: str, device: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_precision(precision, torch.device(device))


def test_runs_record_their_precision_and_never_reuse_the_other(toy_task, tmp_path) -> None:
    method, metrics = Gradient(), [KeepTop(), Rerun()]
    exact = run_toy(toy_task, [method], metrics, tmp_path)
    approximate = run_toy(toy_task, [method], metrics, tmp_path, precision="bf16")
    assert method.calls == 4  # explained (and re-explained) again: the fp32 cache did not serve bf16
    assert [r.precision for r in exact] == ["fp32", "fp32"] and [r.precision for r in approximate] == ["bf16", "bf16"]
    stored = json.loads(next((tmp_path / "results").rglob("test-keep-top*.json")).read_text())
    assert stored["precision"] == "bf16" and ResultRecord.from_dict(stored).precision == "bf16"
    keep_exact, keep_approximate = exact[0].scores, approximate[0].scores
    assert keep_exact != keep_approximate  # the passes were bf16 ...
    assert max(abs(a - b) for a, b in zip(keep_exact, keep_approximate)) < 0.05  # ... and close (probabilities)
    run_toy(toy_task, [method], metrics, tmp_path, precision="bf16")
    assert method.calls == 4  # a bf16 rerun resumes from the bf16 records
    run_toy(toy_task, [method], metrics, tmp_path)
    assert method.calls == 5  # and fp32 is recomputed from its cached explanation (re-explained once)


def test_a_record_with_an_unknown_precision_is_refused(toy_task, tmp_path) -> None:
    record = run_toy(toy_task, [Gradient()], [KeepTop()], tmp_path)[0].to_dict()
    with pytest.raises(RecordError, match="^r.json: field 'precision' must be one of fp32, bf16; got 'fp16'$"):
        ResultRecord.from_dict({**record, "precision": "fp16"}, "r.json")


def test_errors_under_bf16_say_so(toy_task, tmp_path) -> None:
    """A method or metric that fails only in bfloat16 (Captum's DeepLIFT hooks, GOAt's exact
    sums) is an error record whose message names the precision."""
    records = run_toy(toy_task, [Raises(), Gradient()], [Broken()], tmp_path, precision="bf16")
    assert [r.error for r in records] == [
        "explaining toy/linear with test-raises under bf16 autocast failed: RuntimeError: planted failure",
        "metric test-broken failed for test-gradient on toy/linear under bf16 autocast: ZeroDivisionError: planted metric failure",
    ]


@pytest.mark.parametrize(("task_name", "method_name"), [("image/digits", "deeplift"), ("graph/ba-2motifs", "goat")])
def test_methods_that_need_one_dtype_run_in_float32_inside_bf16(task_name: str, method_name: str) -> None:
    """Captum's DeepLIFT (its hooks) and GOAt (exact sums) switch autocast off for their own
    passes: inside a bf16 block they give their float32 explanation, bit for bit, instead of an
    error."""
    import xaiboard.methods  # noqa: F401  (registers the methods)
    import xaiboard.tasks  # noqa: F401  (registers the tasks)
    from xaiboard.benchmark.registry import METHODS, TASKS

    task, method = TASKS.create(task_name), METHODS.create(method_name)
    model, batch = task.model(), task.samples("test", 4, 0)
    exact = method.explain(model, batch.inputs, batch.targets, task)
    with model_passes(model, CPU, "bf16"):
        inside = method.explain(model, batch.inputs, batch.targets, task)
    assert torch.equal(inside, exact)
