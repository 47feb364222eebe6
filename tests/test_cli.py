"""The ``xaiboard`` CLI, driven in-process with click's CliRunner and a plugin file."""

import json
import textwrap
import warnings

import pytest
import torch
from click.testing import CliRunner

from xaiboard.benchmark import cli
from xaiboard.benchmark.record import RecordError, ResultRecord
from xaiboard.benchmark.store import ResultStore
from xaiboard.tasks.weights import weights_from

PLUGIN = '''
import torch
from toy_task import ToyModel, ToyTask
from xaiboard.benchmark.metric import Metric
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS
from xaiboard.methods.base import Explainer
from xaiboard.tasks.custom import TrainedModel


class WeightedToy(ToyTask):
    name = "toy/weighted"
    weights_stem = "toy_weighted"
    recipe = {"epochs": 0}


class HubToy(ToyTask):
    name = "toy/hub"
    tier = "hub"


class TrainedToy(TrainedModel, ToyTask):
    """the toy task, its linear layer scaled by the recipe"""

    name = "toy/trained"
    recipe = {"scale": 2.0}

    def build_model(self):
        return ToyModel()

    def train_model(self, seed=0, device="cpu"):
        model = ToyTask.model(self, device)
        with torch.no_grad():
            model.fc.weight.mul_(self.recipe["scale"])
        return model, 1.0


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
TASKS.register("toy/trained")(TrainedToy)
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


def test_suites_split_built_in_from_hub_tasks_and_leave_out_plugin_tasks(plugin):
    """A plugin's tasks join no suite, whatever their tier (``toy/linear`` says built-in)."""
    invoke(["list", "tasks", "--plugin", plugin])  # registers the plugin's tasks in this process
    default, full = cli.suite_tasks("default"), cli.suite_tasks("full")
    assert "image/shapes" in default and "text/sst2" in full and "text/sst2" not in default
    assert set(default) < set(full) and not {"toy/linear", "toy/hub", "toy/trained"} & set(full)
    assert all(cli.TASKS.factory(name).tier == "hub" for name in set(full) - set(default))


def test_without_tasks_a_plugin_run_takes_the_plugin_tasks(plugin, tmp_path):
    """``run --plugin my_task.py`` runs the plugin's tasks, not the suite beside them; a plugin
    that registers no task (a method) leaves the suite's tasks in place; ``--tasks`` wins."""
    methods_only = tmp_path / "methods_only.py"
    methods_only.write_text("from xaiboard.benchmark.registry import METHODS\n")
    cli._load_registries([plugin, methods_only])
    assert cli.chosen_tasks(None, "default", [plugin, methods_only]) == ["toy/hub", "toy/linear", "toy/trained", "toy/weighted"]
    assert cli.chosen_tasks(None, "full", [methods_only]) == cli.suite_tasks("full")
    assert cli.chosen_tasks("image/shapes", "default", [plugin]) == ["image/shapes"]


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


def test_split_is_recorded_and_a_run_on_another_split_recomputes(plugin, env, tmp_path):
    """``--split`` reaches the record and the keys of resume and of the explanation cache (the
    toy task draws the same samples for every split, so only the keys can tell them apart)."""
    args = ["run", "--plugin", plugin, "--tasks", "toy/linear", "--methods", "test-cli-magnitude",
            "--metrics", "test-cli-top1", "--n", "4", "--quiet"]  # fmt: skip
    store = ResultStore(tmp_path / "results")
    assert invoke(args, env).exit_code == 0
    assert store.find("toy/linear", "test-cli-magnitude", "test-cli-top1").split == "test"
    assert invoke([*args, "--split", "train"], env).exit_code == 0
    record = store.find("toy/linear", "test-cli-magnitude", "test-cli-top1")
    assert record.split == "train" and len(list((tmp_path / "cache").rglob("*.pt"))) == 2

    written = json.loads(store.path("toy/linear", "test-cli-magnitude", "test-cli-top1").read_text())
    del written["split"]  # as records written before the field existed
    assert ResultRecord.from_dict(written).split == "test"
    with pytest.raises(RecordError, match="field 'split' has type int"):
        ResultRecord.from_dict({**written, "split": 3}, "f.json")


def test_run_loads_the_weights_train_model_wrote(plugin, env, tmp_path):
    """``train-model --out DIR`` then ``run --weights DIR`` (or the one file) evaluates those weights."""
    args = ["run", "--plugin", plugin, "--tasks", "toy/trained", "--methods", "test-cli-magnitude",
            "--metrics", "test-cli-top1", "--n", "4", "--quiet"]  # fmt: skip
    untrained = CliRunner().invoke(cli.main, args, env=env)
    assert untrained.exit_code == 1
    assert "no weights for toy/trained: train them with `xaiboard train-model toy/trained --plugin FILE" in untrained.output

    out = tmp_path / "weights"
    assert invoke(["train-model", "toy/trained", "--plugin", plugin, "--out", str(out)]).exit_code == 0
    file = out / "toy_trained.safetensors"
    task = cli.TASKS.create("toy/trained")
    with weights_from({"toy_trained": file}):
        trained = task.model()
    assert torch.equal(trained.fc.weight, 2 * cli.TASKS.create("toy/linear").model().fc.weight)
    for weights, results in ((out, "from-dir"), (file, "from-file")):
        ran = invoke([*args, "--weights", str(weights), "--results-dir", str(tmp_path / results)], env)
        assert ran.exit_code == 0, ran.output
        record = ResultStore(tmp_path / results).find("toy/trained", "test-cli-magnitude", "test-cli-top1")
        assert record.status == "ok" and record.task_fingerprint == task.fingerprint(trained)

    wrong = CliRunner().invoke(cli.main, [*args[:4], "toy/linear", *args[5:], "--weights", str(out)], env=env)
    assert wrong.exit_code == 2 and f"{out} has no toy_linear.safetensors, the weights of toy/linear" in wrong.output
    two = CliRunner().invoke(cli.main, [*args[:4], "toy/linear,toy/trained", *args[5:], "--weights", str(file)], env=env)
    assert two.exit_code == 2 and "a single weights file fits one task; this run has 2" in two.output


CAPTUM_METHOD = '''
from captum.attr import DeepLift
from xaiboard.benchmark.registry import METHODS
from xaiboard.methods.base import Explainer


@METHODS.register("test-cli-raw-deeplift")
class RawDeepLift(Explainer):
    """Captum's DeepLift called as a researcher would, its warnings not silenced."""

    name = "test-cli-raw-deeplift"
    modalities = frozenset({"image"})

    def explain(self, model, inputs, targets, task):
        return task.pool(DeepLift(model).attribute(inputs, target=targets), inputs)
'''


def test_quiet_silences_library_warnings(plugin, env, tmp_path):
    """Captum warns on every DeepLift call; ``--quiet`` silences it (and every library warning)."""
    method = tmp_path / "raw_deeplift.py"
    method.write_text(CAPTUM_METHOD)
    args = ["run", "--plugin", plugin, "--plugin", str(method), "--tasks", "toy/linear", "--methods", "test-cli-raw-deeplift",
            "--metrics", "test-cli-top1", "--n", "4", "--force"]  # fmt: skip
    for quiet in (False, True):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert invoke(args + ["--quiet"] * quiet, env).exit_code == 0
        captum = [w for w in seen if "Setting forward, backward hooks" in str(w.message)]
        assert bool(captum) != quiet, (quiet, [str(w.message) for w in seen])


def test_train_model_on_a_task_that_brings_its_model_is_a_one_line_error(tmp_path):
    example = cli.Path(__file__).resolve().parents[1] / "examples" / "custom_task.py"  # the one file: imported once per process
    result = CliRunner().invoke(cli.main, ["train-model", "my/bars", "--plugin", str(example), "--out", str(tmp_path / "w")])
    assert result.exit_code == 1 and not (tmp_path / "w").exists()
    assert result.output.strip() == "Error: my/bars brings its own trained model: it has no recipe to train"


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


def test_default_suite_leaves_out_full_tier_metrics():
    """Smooth MPRT (10 (L + 1) re-explanations per batch) runs in the full suite or when named."""
    from xaiboard.benchmark.cli import suite_metrics

    assert "smooth_mprt" not in suite_metrics("default") and "efficient_mprt" in suite_metrics("default")
    assert "smooth_mprt" in suite_metrics("full")
