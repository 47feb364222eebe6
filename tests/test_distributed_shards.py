"""``--shard-samples``: which metrics are sharded, and that merged shards are the serial records
whatever the shard boundaries (in this process, through the workers' own steps); on a local
2-CPU Ray instance: a sharded run equals a serial one and resumes, a shard whose worker dies is
retried, and ``reproduce --executor ray`` gives the serial rows."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import xaiboard.benchmark.metrics  # noqa: F401  (registers the metrics)
import xaiboard.methods  # noqa: F401
import xaiboard.tasks  # noqa: F401
from xaiboard.benchmark import shards
from xaiboard.benchmark.cache import ExplanationCache
from xaiboard.benchmark.cli import main
from xaiboard.benchmark.record import ResultRecord
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS, load_plugin
from xaiboard.benchmark.reproductions.base import Measured, merged_cell
from xaiboard.benchmark.runner import Run, run
from xaiboard.benchmark.store import ResultStore

#: both sides compute the same float32 ops on the same rows, in batches of different sizes; 1e-6
#: absolute is ~10x float32 round-off on these scores and far below any real change
TOLERANCE = 1e-6
#: one method that explains each sample on its own (the re-running metrics shard for it) and
#: one that does not (they run unsharded), on an image and a graph task (edge slots cropped)
TASK_NAMES = ["image/digits", "graph/ba-shapes"]
METHOD_NAMES = ["saliency", "random"]
METRIC_NAMES = ["deletion_auc", "abpc", "complexity", "gt_auroc", "mprt", "class_sensitivity", "max_sensitivity", "cost_passes"]
N = 5
#: --shard-reruns: a shard's re-explanation differs from the batch's by float round-off (~2e-7
#: on these maps), which a rank correlation turns into a swapped near tie, a step of ~1e-5 in a
#: 64-pixel, 4-layer MPRT (seen here: 2.1e-6, one sample at shard size 1); 1e-4 allows a few such
#: steps and no real change (another randomisation or explanation moves MPRT by > 1e-2)
RERUN_TOLERANCE = 1e-4

#: plugin metrics (shipped to Ray workers by value; not registered, so other tests' registries
#: stay as they are): one that SIGKILLs its process on its first call anywhere, one on every call
PLUGIN = '''
import os
import signal
from pathlib import Path

from xaiboard.benchmark.metric import Metric


class DiesOnce(Metric):
    """Sum of |attribution| per sample, after SIGKILLing its process on the first call anywhere."""

    name = "test-dies-once"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, float("inf"))
    shard_exact = True
    defaults = {"marker": ""}

    def compute(self, ctx):
        marker = Path(self.params["marker"])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return ctx.explanation.abs().flatten(1).sum(1)


class AlwaysDies(DiesOnce):
    name = "test-always-dies"

    def compute(self, ctx):
        os.kill(os.getpid(), signal.SIGKILL)
'''


def job_for(tmp_path: Path, name: str) -> Run:
    return Run(n=N, seed=0, device=torch.device("cpu"), store=ResultStore(tmp_path / name),
               cache=ExplanationCache(tmp_path / f"cache-{name}"), progress=False, device_name="cpu")


def sharded_records(job: Run, size: int, reruns: bool = False) -> list[ResultRecord]:
    """Every pair's sharded metrics through the steps a Ray run takes, in this process."""
    worker = replace(job, store=None)
    records = []
    for name in TASK_NAMES:
        plan = job.plan(TASKS.create(name), [METHODS.create(m) for m in METHOD_NAMES], [METRICS.create(m) for m in METRIC_NAMES])
        for work in plan.todo:
            sharded, _ = shards.split(work, reruns)
            explained = shards.explain_pair(worker, work)
            work = replace(work, metrics=sharded)
            parts = [shards.shard_pair(worker, work, explained, a, b) for a, b in shards.spans(N, size)]
            records += shards.merge(job, work, explained, parts)
    return records


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    """The serial run's records, by key."""
    root = tmp_path_factory.mktemp("serial")
    records = run(TASK_NAMES, METHOD_NAMES, METRIC_NAMES, n=N, store=ResultStore(root / "results"),
                  cache=ExplanationCache(root / "cache"), device="cpu", progress=False)
    return {r.key: r for r in records}


def assert_same(record: ResultRecord, expected: ResultRecord, tolerance: float, same_ci: bool = True) -> None:
    """Same samples, scores, mean and (``same_ci``) bootstrap CI, details and explanation passes."""
    assert record.status == expected.status == "ok", (record.key, record.error)
    assert record.sample_ids == expected.sample_ids and record.n_samples == N
    assert record.scores == pytest.approx(expected.scores, abs=tolerance, nan_ok=True), record.key
    assert record.summary.mean == pytest.approx(expected.summary.mean, abs=tolerance), record.key
    if same_ci:
        assert (record.summary.ci_low, record.summary.ci_high) == pytest.approx(
            (expected.summary.ci_low, expected.summary.ci_high), abs=tolerance), record.key
    assert record.details == pytest.approx(expected.details, abs=tolerance)
    # the whole batch's explanation cost per sample, counted again (so its seconds differ)
    assert {k: v for k, v in record.cost.items() if k != "seconds"} == {k: v for k, v in expected.cost.items() if k != "seconds"}


def test_merged_shards_equal_the_serial_records_whatever_the_boundaries(serial, tmp_path):
    for size in (1, 2, 3):
        merged = {r.key: r for r in sharded_records(job_for(tmp_path, f"shards-{size}"), size)}
        # sharded: the metrics that neither draw noise over the batch nor re-run the method
        assert {(t, m) for t, m, _ in merged} == {(t, m) for t in TASK_NAMES for m in METHOD_NAMES}
        assert {k[2] for k in merged} == {"deletion_auc", "abpc", "complexity", "gt_auroc"}
        for key, record in merged.items():
            assert_same(record, serial[key], TOLERANCE)
        stored, errors = ResultStore(tmp_path / f"shards-{size}").records()
        assert not errors and {r.key for r in stored} == set(merged)  # the driver's store holds them


def test_shard_reruns_shards_mprt_and_class_sensitivity_for_a_per_sample_method_only(serial, tmp_path):
    for size in (1, 2):
        merged = {r.key: r for r in sharded_records(job_for(tmp_path, f"reruns-{size}"), size, reruns=True)}
        assert {k[2] for k in merged if k[1] == "saliency"} == {"deletion_auc", "abpc", "complexity", "gt_auroc", "mprt",
                                                                 "class_sensitivity"}
        assert {k[2] for k in merged if k[1] == "random"} == {"deletion_auc", "abpc", "complexity", "gt_auroc"}
        for key, record in merged.items():
            if key[2] in shards.SEPARABLE_RERUNS:
                # BCa on 5 scores is a quantile among few distinct resample means: a score moved
                # by 2e-6 can reorder two of them and move a bound by ~3e-3, so the CI is not compared
                assert_same(record, serial[key], RERUN_TOLERANCE, same_ci=False)
            else:
                assert_same(record, serial[key], TOLERANCE)


def test_every_built_in_metric_is_sharded_or_has_a_stated_reason():
    decided = shards.SEPARABLE | shards.SEPARABLE_RERUNS | set(shards.REASONS)
    # other test modules register their own metrics in the same process: only xaiboard's count
    built_in = {m for m in METRICS.names() if METRICS.factory(m).__module__.startswith("xaiboard.")}
    assert len(built_in) > 30 and built_in <= decided
    assert not shards.SEPARABLE & set(shards.REASONS) and not shards.SEPARABLE_RERUNS & set(shards.REASONS)
    assert set(shards.PER_SAMPLE_METHODS) <= set(METHODS.names())


def test_unsharded_reasons_known_answers(tmp_path):
    saliency, rand = METHODS.create("saliency"), METHODS.create("random")
    assert shards.unsharded_reason(METRICS.create("mprt"), saliency) == shards.RERUN
    assert shards.unsharded_reason(METRICS.create("mprt"), saliency, reruns=True) is None
    assert "re-runs random" in shards.unsharded_reason(METRICS.create("mprt"), rand, reruns=True)
    assert shards.unsharded_reason(METRICS.create("max_sensitivity"), saliency) == shards.BATCH_DRAWS
    assert shards.unsharded_reason(METRICS.create("cost_seconds"), saliency) == shards.BATCH_COST
    plugin = load_plugin(write_plugin(tmp_path))
    assert shards.unsharded_reason(plugin.DiesOnce(), saliency) is None  # declared shard_exact
    assert "shard_exact" in shards.unsharded_reason(type("Plain", (plugin.DiesOnce,), {"shard_exact": False})(), saliency)


def test_spans_are_contiguous_and_at_most_the_shard_size():
    assert shards.spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert shards.spans(4, 4) == [(0, 4)]


def test_details_merge_by_size_weighted_mean_min_and_max():
    parts = [ResultRecord(task="t", task_version="1", method="m", method_hash="h", metric="mprt", family="sanity",
                          direction="lower", status="ok", seed=0, n_samples=4, removal="r", device="cpu", scores=scores,
                          details={"excluded_share": mean, "excluded_share_min": low, "excluded_share_max": high})
             for scores, mean, low, high in (([0.0, 0.0, 0.0], 0.2, 0.1, 0.3), ([0.0], 0.6, 0.6, 0.6))]
    merged = shards.merged_details(parts)
    # (3 * 0.2 + 1 * 0.6) / 4 = 0.3; the tolerance is float64 round-off, far below any wrong weighting
    assert merged == pytest.approx({"excluded_share": 0.3, "excluded_share_min": 0.1, "excluded_share_max": 0.6}, abs=1e-12)


def test_reproduction_default_merge_concatenates_values_and_keeps_shared_evidence():
    cells = [Measured([1.0], True, {"k": [1, 2]}), Measured([2.0], False, {"k": [1, 2]})]
    assert merged_cell(cells) == Measured([1.0, 2.0], False, {"k": [1, 2]})
    differing = [Measured([1.0], None, {"k": 1}), Measured([2.0], None, {"k": 2})]
    assert merged_cell(differing) == Measured([1.0, 2.0], None, {"per_seed": [{"k": 1}, {"k": 2}]})
    reasoned = [Measured([1.0], False, reason="off on this model"), Measured([2.0], False, reason="off on this model")]
    assert merged_cell(reasoned).reason == "off on this model"  # the verdict shows it, as after a serial run


def same_evidence(a, b) -> bool:
    """Equal evidence, numbers to float64 round-off (np.mean over one seed, then over all)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_evidence(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], str):
        return list(a) == list(b)
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", ["sanity-checks", "fastdnx-bashapes", "graphxai-benzene", "gnnexplainer-table1",
                                  "pgexplainer-auc", "robust-fidelity"])
def test_merging_seeds_measured_apart_gives_measure_of_all_seeds(name, tmp_path, monkeypatch):
    """What ``reproduce --executor ray`` merges (``measure([seed])`` per seed) equals one
    ``measure(seeds)``: cells in the same order, values, claims and evidence (quick sizes, the
    graph ones cut further as their own tests cut them)."""
    from xaiboard.benchmark.reproductions import REPRODUCTIONS
    from xaiboard.benchmark.reproductions import fastdnx_bashapes as fdx
    from xaiboard.benchmark.reproductions import gnnexplainer_table1 as table1
    from xaiboard.benchmark.reproductions import robust_fidelity as rfid

    monkeypatch.setattr(rfid, "DATASETS", {"BA-2Motifs": "graph/ba-2motifs@1"})
    monkeypatch.setattr(rfid, "GRID", (0.0, 0.5))
    monkeypatch.setattr(rfid, "QUICK_SAMPLES", 4)
    monkeypatch.setattr(rfid, "QUICK_DRAWS", 2)
    monkeypatch.setattr(fdx, "QUICK_NODES", 5)
    monkeypatch.setattr(fdx, "QUICK_EPOCHS", 5)
    monkeypatch.setattr(table1, "METHODS_UNDER_TEST", {"gradient": table1.gradient})
    monkeypatch.setattr(table1, "QUICK_NODES", 2)
    monkeypatch.setattr(table1, "QUICK_EPOCHS", 20)
    repro = REPRODUCTIONS.create(name)
    if repro.unavailable():
        pytest.skip(repro.unavailable())
    whole = repro.measure([0, 1], True, False, tmp_path / "whole")
    merged = repro.merge([repro.measure([seed], True, False, tmp_path / "apart") for seed in (0, 1)], True, tmp_path / "merged")
    assert list(merged) == list(whole)
    for key, cell in whole.items():
        # the same computations in the same process: equal but for float64 summation order
        assert merged[key].values == pytest.approx(cell.values, abs=1e-12, nan_ok=True), key
        assert merged[key].holds == cell.holds, key
        assert same_evidence(merged[key].evidence, cell.evidence), key


@pytest.mark.parametrize(("options", "message"), [(["--shard-samples", "1"], "--shard-samples needs --executor ray"),
                                                  (["--shard-reruns"], "--shard-reruns needs --shard-samples")])
def test_shard_options_say_what_they_need(options, message, tmp_path):
    outcome = CliRunner().invoke(main, ["run", "--tasks", "image/digits", "--methods", "random", "--metrics", "complexity",
                                        "--n", "2", *options, "--results-dir", str(tmp_path)])
    assert outcome.exit_code == 2 and message in outcome.output
    assert not list(tmp_path.iterdir())  # refused before anything ran


def write_plugin(tmp_path: Path) -> Path:
    path = tmp_path / "shard_killers.py"
    path.write_text(PLUGIN)
    return path


# ---- on Ray ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the module (as tests/test_distributed.py)."""
    ray = pytest.importorskip("ray")
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def invoke(args: list[str], results: Path, cache: Path, monkeypatch) -> dict:
    """``xaiboard run ARGS`` in this process; the records it left in ``results``, by key."""
    monkeypatch.setenv("XAIBOARD_CACHE", str(cache))
    outcome = CliRunner().invoke(main, ["run", *args, "--results-dir", str(results), "--quiet"], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    records, errors = ResultStore(results).records()
    assert not errors
    return {r.key: r for r in records}


@pytest.mark.slow
def test_sharded_ray_run_equals_serial_and_resumes_computing_nothing(local_ray, tmp_path, monkeypatch):
    suite = ["--tasks", ",".join(TASK_NAMES), "--methods", ",".join(METHOD_NAMES), "--metrics", ",".join(METRIC_NAMES),
             "--n", str(N)]
    serial = invoke(suite, tmp_path / "serial", tmp_path / "cache-serial", monkeypatch)
    sharded_args = [*suite, "--executor", "ray", "--shard-samples", "2"]
    on_ray = invoke(sharded_args, tmp_path / "ray", tmp_path / "cache-ray", monkeypatch)
    assert on_ray.keys() == serial.keys() and len(serial) >= len(TASK_NAMES) * len(METHOD_NAMES) * (len(METRIC_NAMES) - 1)
    for key, record in serial.items():
        other = on_ray[key]
        assert other.status == record.status == "ok", (key, other.error)
        assert other.sample_ids == record.sample_ids and other.method_hash == record.method_hash
        assert other.scores == pytest.approx(record.scores, abs=TOLERANCE, nan_ok=True), key
        assert (other.summary.ci_low, other.summary.ci_high) == pytest.approx(
            (record.summary.ci_low, record.summary.ci_high), abs=TOLERANCE), key
    files = sorted((tmp_path / "ray").glob("*/results/**/*.json"))
    stamps = {path: path.stat().st_mtime_ns for path in files}
    again = invoke(sharded_args, tmp_path / "ray", tmp_path / "cache-ray", monkeypatch)
    assert {path: path.stat().st_mtime_ns for path in files} == stamps  # nothing recomputed or rewritten
    assert {k: r.created for k, r in again.items()} == {k: r.created for k, r in on_ray.items()}


@pytest.mark.slow
def test_a_killed_shard_is_retried_and_one_that_always_dies_fails_only_the_sharded_metrics(local_ray, tmp_path):
    from xaiboard.benchmark.distributed import RayExecutor

    plugin = load_plugin(write_plugin(tmp_path))
    marker = tmp_path / "died-once"

    def sharded_run(metrics: list, name: str) -> dict:
        records = run(["image/digits"], ["input_magnitude"], metrics, n=4, store=ResultStore(tmp_path / name), device="cpu",
                      cache=ExplanationCache(tmp_path / f"cache-{name}"), progress=False,
                      executor=RayExecutor(max_retries=1, shard_samples=2))
        return {r.metric: r for r in records}

    retried = sharded_run([plugin.DiesOnce(marker=str(marker)), "complexity"], "once")
    assert marker.exists()  # a shard's first attempt did die
    assert [retried[m].status for m in ("test-dies-once", "complexity")] == ["ok", "ok"]
    serial = run(["image/digits"], ["input_magnitude"], [plugin.DiesOnce(marker=str(marker))], n=4, device="cpu",
                 store=ResultStore(tmp_path / "serial"), cache=ExplanationCache(tmp_path / "cache-serial"), progress=False)
    assert retried["test-dies-once"].scores == pytest.approx(serial[0].scores, abs=TOLERANCE)

    died = sharded_run([plugin.AlwaysDies(), "complexity", "cost_passes"], "always")
    assert [died[m].status for m in ("test-always-dies", "complexity", "cost_passes")] == ["error", "error", "ok"]
    assert "(shard of samples" in died["complexity"].error and "its worker died 2 time(s)" in died["complexity"].error
    stored, errors = ResultStore(tmp_path / "always").records()
    assert not errors and len(stored) == 3  # the driver wrote every record, errors included


@pytest.mark.slow
def test_reproduce_on_ray_gives_the_serial_rows(local_ray, tmp_path):
    """The cheapest reproduction (``reproduce list``; ~1 s a seed at --quick), 2 seeds."""
    def reproduce(*extra: str) -> dict:
        root = tmp_path / ("ray" if extra else "serial")
        args = ["reproduce", "sanity-checks", "--quick", "--seeds", "2", "--quiet", "--results-dir", str(root), *extra]
        outcome = CliRunner().invoke(main, args, catch_exceptions=False)
        assert outcome.exit_code == 0, outcome.output
        assert (root / "reproductions" / "sanity-checks.png").stat().st_size > 0  # drawn from the merged curves
        return json.loads((root / "reproductions" / "sanity-checks.json").read_text())

    serial, on_ray = reproduce(), reproduce("--executor", "ray")
    assert serial["seeds"] == on_ray["seeds"] == 2 and len(on_ray["rows"]) == len(serial["rows"])
    for ours, theirs in zip(on_ray["rows"], serial["rows"]):
        assert {k: v for k, v in ours.items() if k not in ("values", "evidence", "ours_mean", "ours_std", "difference")} == {
            k: v for k, v in theirs.items() if k not in ("values", "evidence", "ours_mean", "ours_std", "difference")}
        # the same float32 model on the same images in another process: round-off at most
        assert ours["values"] == pytest.approx(theirs["values"], abs=TOLERANCE)
        curve, expected = ours["evidence"].get("curve"), theirs["evidence"].get("curve")
        assert (curve is None) == (expected is None)
        if curve is not None:
            assert curve["layers"] == expected["layers"]
            for name in ("spearman_abs", "ssim"):
                np.testing.assert_allclose(curve[name], expected[name], atol=TOLERANCE, rtol=0)
