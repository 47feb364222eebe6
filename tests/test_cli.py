"""The ``xaiboard`` CLI, driven in-process with click's CliRunner and a plugin file."""

import json
import textwrap

import pytest
from click.testing import CliRunner

from xaiboard.benchmark import cli
from xaiboard.benchmark.store import ResultStore

PLUGIN = '''
from toy_task import ToyTask
from xaiboard.benchmark.metric import Metric
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS
from xaiboard.methods.base import Explainer


class WeightedToy(ToyTask):
    name = "toy/weighted"
    weights_stem = "toy_weighted"
    recipe = {"epochs": 0}


class HubToy(ToyTask):
    name = "toy/hub"
    tier = "hub"


class Magnitude(Explainer):
    name = "test-cli-magnitude"
    modalities = frozenset({"image"})
    control = True
    description = "input magnitude, for CLI tests"

    def explain(self, model, inputs, targets, task):
        return task.model_free_attribution(inputs)


class InGroundTruth(Metric):
    name = "test-cli-top1"
    family = "user_proxy"
    direction = "higher"
    value_range = (0.0, 1.0)
    needs_ground_truth = True
    defaults = {"k": 1}
    reference = "test only"

    def compute(self, ctx):
        top = ctx.explanation.flatten(1).argmax(dim=1, keepdim=True)
        return ctx.batch.ground_truth.flatten(1).gather(1, top).squeeze(1).float()


TASKS.register("toy/linear")(ToyTask)
TASKS.register("toy/weighted")(WeightedToy)
TASKS.register("toy/hub")(HubToy)
METHODS.register("test-cli-magnitude")(Magnitude)
METRICS.register("test-cli-top1")(InGroundTruth)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """One plugin file per test session: registering the same names twice is an error."""
    path = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    path.write_text(textwrap.dedent(PLUGIN))
    return str(path)


@pytest.fixture
def env(tmp_path):
    return {
        "XAIBOARD_SUBMISSIONS": str(tmp_path / "submissions"),
        "XAIBOARD_RESULTS": str(tmp_path / "results"),
        "XAIBOARD_CACHE": str(tmp_path / "cache"),
    }


def invoke(args, env=None):
    return CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["submit"], ["export-samples"], ["bench"], ["list"], ["train-model"], ["leaderboard"], ["task", "show"], ["reproduce"],
     ["scaling"]],
)
def test_every_command_has_help(command):
    result = invoke([*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and len(result.output.splitlines()) > 4


def test_list(plugin):
    tasks = invoke(["list", "tasks", "--plugin", plugin]).output
    toy = next(line for line in tasks.splitlines() if line.startswith("toy/linear"))
    assert toy.split()[:5] == ["toy/linear", "1", "image", "built-in", "zero"] and "planted block" in toy
    methods = invoke(["list", "methods", "--plugin", plugin]).output
    assert "test-cli-magnitude" in methods and "input magnitude, for CLI tests" in methods
    ig = next(line for line in methods.splitlines() if line.startswith("integrated_gradients "))
    assert ig.split()[1:3] == ["gradient", "graph,image,text"] and "k passes" in ig and "32 forward + backward" in ig
    assert "Sundararajan et al." in ig
    metrics = invoke(["list", "metrics", "--plugin", plugin]).output
    row = next(line for line in metrics.splitlines() if line.startswith("test-cli-top1"))
    assert row.split()[:3] == ["test-cli-top1", "user_proxy", "higher"] and "{'k': 1}" in row and "test only" in row


def test_run_writes_records_and_prints_table(plugin, env, tmp_path):
    args = ["run", "--plugin", plugin, "--tasks", "toy/linear", "--methods", "test-cli-magnitude"]
    result = invoke([*args, "--metrics", "test-cli-top1", "--n", "8", "--device", "cpu", "--quiet"], env)
    assert result.exit_code == 0, result.output
    record = ResultStore(tmp_path / "results").find("toy/linear", "test-cli-magnitude", "test-cli-top1")
    assert record.status == "ok" and record.n_samples == 8 and record.metric_params == {"k": 1}
    assert not (tmp_path / "submissions").exists()  # a plain run never touches the committed board
    card = ResultStore(tmp_path / "results").card("test-cli-magnitude")
    assert card.control and card.description == "input magnitude, for CLI tests" and card.kind == "baseline"
    cell = f"{record.summary.mean:.3g} [{record.summary.ci_low:.3g}, {record.summary.ci_high:.3g}]"
    table_row = next(line for line in result.output.splitlines() if "test-cli-magnitude" in line)
    assert table_row.split()[:2] == ["toy/linear", "test-cli-magnitude"] and cell in table_row
    assert list((tmp_path / "cache").rglob("*.pt"))
    board = tmp_path / "results" / "_board-tables.json"
    assert f"board statistics: {board} (1 task(s) recomputed)" in result.output.splitlines() and board.exists()

    elsewhere = tmp_path / "elsewhere"
    result = invoke([*args, "--metrics", "test-cli-top1", "--n", "8", "--quiet", "--results-dir", str(elsewhere)], env)
    assert result.exit_code == 0 and ResultStore(elsewhere).find("toy/linear", "test-cli-magnitude", "test-cli-top1")


def test_unwritable_results_folder_is_a_one_line_error_before_any_work(plugin, env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli.main, ["run", "--plugin", plugin, "--tasks", "toy/linear", "--results-dir", str(blocker / "results")], env=env)
    assert result.exit_code == 1 and not (tmp_path / "cache").exists()
    assert result.output.strip().splitlines() == [f"Error: results folder {blocker / 'results'} cannot be written: Not a directory"]


def test_error_records_make_a_non_zero_exit_after_the_table(plugin, env, tmp_path):
    raising = tmp_path / "raising.py"
    raising.write_text(textwrap.dedent('''
        from xaiboard.benchmark.registry import METHODS
        from xaiboard.methods.base import Explainer

        @METHODS.register("test-cli-raises")
        class Raises(Explainer):
            name = "test-cli-raises"

            def explain(self, model, inputs, targets, task):
                raise RuntimeError("planted")
    '''))
    args = ["run", "--plugin", plugin, "--plugin", str(raising), "--tasks", "toy/linear", "--n", "4", "--quiet",
            "--methods", "test-cli-raises,test-cli-magnitude", "--metrics", "test-cli-top1"]
    result = CliRunner().invoke(cli.main, args, env=env)
    assert result.exit_code == 1
    assert "ERROR" in result.output and "1 x explaining toy/linear with test-cli-raises failed: RuntimeError: planted" in result.output
    assert ResultStore(tmp_path / "results").find("toy/linear", "test-cli-magnitude", "test-cli-top1").status == "ok"


def test_unknown_name_is_a_one_line_error(plugin, env):
    result = CliRunner().invoke(cli.main, ["run", "--plugin", plugin, "--methods", "nope"], env=env)
    assert result.exit_code == 2
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for --methods: unknown method 'nope'; known:")
    assert "test-cli-magnitude" in error


def test_suites_split_built_in_from_hub_tasks(plugin):
    invoke(["list", "tasks", "--plugin", plugin])  # registers the plugin's tasks in this process
    default, full = cli.suite_tasks("default"), cli.suite_tasks("full")
    assert "toy/linear" in default and "toy/hub" not in default
    assert set(default) < set(full) and "toy/hub" in full
    assert all(cli.TASKS.factory(name).tier == "hub" for name in set(full) - set(default))


def test_suites_split_method_tiers(plugin):
    """``--suite default`` leaves out the full-tier methods (and keeps a plugin's, default tier)."""
    invoke(["list", "methods", "--plugin", plugin])
    default, full = cli.suite_methods("default"), cli.suite_methods("full")
    assert {"lime", "kernel_shap", "rise"} <= set(full) - set(default)
    assert "saliency" in default and "test-cli-magnitude" in default
    assert all(cli.METHODS.factory(name).tier == "full" for name in set(full) - set(default))


def test_task_show_prints_the_card(plugin):
    result = invoke(["task", "show", "toy/hub", "--plugin", plugin])
    lines = dict(line.split(None, 1) for line in result.output.strip().splitlines() if len(line.split(None, 1)) == 2)
    assert lines["name"] == "toy/hub" and lines["tier"] == "hub" and lines["modality"] == "image"
    assert lines["ground_truth"] == "planted block" and lines["removal"] == "zero"
    missing = CliRunner().invoke(cli.main, ["task", "show", "toy/nope", "--plugin", plugin])
    assert missing.exit_code == 2 and "unknown task 'toy/nope'" in missing.output


def test_train_model_saves_weights_and_card(plugin, tmp_path):
    result = invoke(["train-model", "toy/weighted", "--plugin", plugin, "--seed", "3", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 0 and "test accuracy 1.0000" in result.output
    card = json.loads((tmp_path / "toy_weighted.json").read_text())
    assert (card["seed"], card["recipe"], card["test_accuracy"]) == (3, {"epochs": 0}, 1.0)
    assert card["versions"]["torch"].startswith("2.13") and (tmp_path / "toy_weighted.safetensors").exists()


def test_leaderboard_starts_streamlit_on_the_results(monkeypatch, tmp_path):
    calls = []

    def fake_run(argv, env, check):
        calls.append((argv, env))
        return type("Completed", (), {"returncode": 0})()

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    result = invoke(["leaderboard", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0
    (argv, env), = calls
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("leaderboard/app.py")
    assert env["XAIBOARD_SUBMISSIONS"] == str(tmp_path)
