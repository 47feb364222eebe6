"""The Ray executor on a local 2-CPU Ray instance: the same records as a serial run, resume,
and workers that die (retried, then error records) without stopping the run."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import xaiboard.benchmark.metrics  # noqa: F401  (registers the metrics the suite names)
import xaiboard.methods  # noqa: F401
import xaiboard.tasks  # noqa: F401
from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.cli import main
from xaiboard.benchmark.registry import load_plugin
from xaiboard.benchmark.card import read_card
from xaiboard.benchmark.runner import run
from xaiboard.benchmark.sandbox import sandbox_unavailable
from xaiboard.benchmark.store import ResultStore

ray = pytest.importorskip("ray")

#: the small suite: 2 cheap built-in tasks x 3 methods x 5 metrics, 4 samples each
SUITE = [
    "--tasks", "graph/ba-shapes,image/digits",
    "--methods", "saliency,input_x_gradient,random",
    "--metrics", "deletion_auc,insertion_auc,complexity,sparseness,max_sensitivity",
    "--n", "4",
]
#: both runs compute the same float32 ops in the same order on one thread; 1e-6 absolute (the
#: issue's bar) is ~10x float32 round-off on these [0, 1]-scaled scores and far below any real change
TOLERANCE = 1e-6

#: methods that kill their own process: only ever run in a Ray worker, never in pytest's
#: process; a plugin module (shipped to workers by value) that registers nothing, so the
#: registries other tests list stay as they are
PLUGIN = '''
import os
import signal
from pathlib import Path

from xaiboard.methods.base import Explainer


class DiesOnce(Explainer):
    """SIGKILLs its process on the first call anywhere (a marker file remembers), then gives |x|."""

    name = "test-dies-once"

    def explain(self, model, inputs, targets, task):
        marker = Path(self.params["marker"])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return task.model_free_attribution(inputs)


class AlwaysDies(Explainer):
    """SIGKILLs its process on every call."""

    name = "test-always-dies"

    def explain(self, model, inputs, targets, task):
        os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the module; the executor joins it.

    Workers import what the driver pickles, including the test helpers' modules (``toy_task``),
    which pytest puts on the driver's ``sys.path`` only: the workers get the tests folder on
    their ``PYTHONPATH``.
    """
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def killers(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "killers.py"
    path.write_text(PLUGIN)
    return load_plugin(path)


def invoke(args: list[str], results, cache, monkeypatch) -> list:
    """``xaiboard run ARGS`` in this process; the records it left in ``results``."""
    monkeypatch.setenv("XAIBOARD_CACHE", str(cache))
    outcome = CliRunner().invoke(main, ["run", *args, "--results-dir", str(results), "--quiet"], catch_exceptions=False)
    assert outcome.exit_code in (0, 1), outcome.output
    records, errors = ResultStore(results).records()
    assert not errors
    return records


def keyed(records: list) -> dict:
    return {(r.task, r.method, r.metric): r for r in records}


@pytest.mark.slow
def test_ray_records_equal_serial_and_resume_computes_nothing(local_ray, tmp_path, monkeypatch):
    serial = keyed(invoke(SUITE, tmp_path / "serial", tmp_path / "cache-serial", monkeypatch))
    on_ray = keyed(invoke([*SUITE, "--executor", "ray"], tmp_path / "ray", tmp_path / "cache-ray", monkeypatch))
    assert len(serial) == 2 * 3 * 5
    assert on_ray.keys() == serial.keys()
    for key, record in serial.items():
        other = on_ray[key]
        assert other.status == record.status == "ok", (key, other.error)
        assert other.sample_ids == record.sample_ids and other.task_fingerprint == record.task_fingerprint
        assert other.method_hash == record.method_hash and other.metric_hash == record.metric_hash
        assert other.scores == pytest.approx(record.scores, abs=TOLERANCE, nan_ok=True), key
    files = sorted((tmp_path / "ray").glob("*/results/**/*.json"))  # cards are rewritten by every run, as in serial
    stamps = {path: path.stat().st_mtime_ns for path in files}
    again = keyed(invoke([*SUITE, "--executor", "ray"], tmp_path / "ray", tmp_path / "cache-ray", monkeypatch))
    assert {path: path.stat().st_mtime_ns for path in files} == stamps  # nothing recomputed or rewritten
    assert {k: r.created for k, r in again.items()} == {k: r.created for k, r in on_ray.items()}


@pytest.mark.slow
def test_killed_worker_is_retried_and_a_method_that_always_dies_becomes_error_records(local_ray, killers, tmp_path):
    from xaiboard.benchmark.distributed import RayExecutor

    marker = tmp_path / "died-once"
    methods = [killers.DiesOnce(marker=str(marker)), killers.AlwaysDies(), "input_magnitude"]
    store = ResultStore(tmp_path / "results")
    records = run(["image/digits"], methods, ["complexity", "sparseness"], n=4, store=store, device="cpu",
                  cache=ExplanationCache(tmp_path / "cache"), progress=False, executor=RayExecutor(max_retries=1))
    by_method = {}
    for record in records:
        by_method.setdefault(record.method, []).append(record)
    assert marker.exists()  # the first attempt did die
    assert [r.status for r in by_method["test-dies-once"]] == ["ok", "ok"]
    assert [r.status for r in by_method["input_magnitude"]] == ["ok", "ok"]
    died = by_method["test-always-dies"]
    assert [r.status for r in died] == ["error", "error"]
    assert "its worker died 2 time(s)" in died[0].error
    stored, errors = store.records()
    assert not errors and len(stored) == 6  # the driver wrote every record, errors included


#: a submitted method: |gradient| of the target logit, pooled to the task's features
SUBMISSION = '''
import torch

from xaiboard.methods.base import Explainer


class GradMagnitude(Explainer):
    name = "grad-magnitude"
    modalities = frozenset({"image"})
    description = "absolute gradient"

    def explain(self, model, inputs, targets, task):
        x = inputs.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
        return task.pool(grad.abs(), inputs)
'''


@pytest.mark.slow
def test_submit_runs_its_sandboxed_method_in_ray_workers(local_ray, tmp_path, monkeypatch):
    source = tmp_path / "grad_magnitude.py"
    source.write_text(SUBMISSION)
    monkeypatch.setenv("XAIBOARD_CACHE", str(tmp_path / "cache"))
    args = ["submit", str(source), "--name", "grad-ray", "--tasks", "image/digits", "--metrics", "complexity,sparseness",
            "--n", "4", "--results-dir", str(tmp_path / "board"), "--executor", "ray", "--quiet"]
    unconfined = ["--unsafe-no-sandbox"] if sandbox_unavailable() else []
    outcome = CliRunner().invoke(main, [*args, *unconfined], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    card = read_card(tmp_path / "board" / "grad-ray" / "method.json")
    records, errors = ResultStore(tmp_path / "board").records()
    assert not errors and [r.status for r in records] == ["ok", "ok"]
    assert {r.method_hash for r in records} == {card.code_hash}  # the worker hashed the same file


def test_serial_run_does_not_import_ray(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from click.testing import CliRunner
        from xaiboard.benchmark.cli import main
        result = CliRunner().invoke(main, ["run", "--tasks", "image/digits", "--methods", "random",
            "--metrics", "complexity", "--n", "2", "--quiet", "--results-dir", {str(tmp_path / "r")!r}])
        assert result.exit_code == 0, result.output
        print("ray imported:", "ray" in sys.modules)
        """
    )
    env = {**os.environ, "XAIBOARD_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "ray imported: False" in done.stdout
