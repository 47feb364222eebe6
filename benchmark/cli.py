"""The ``xaiboard`` command line: run the benchmark, list what is registered, train a task's
model, open the leaderboard.

Bring your own task, method or metric: write a Python file that registers it
(``@METHODS.register("my-method")`` on an ``Explainer`` subclass, likewise ``TASKS`` and
``METRICS``) and pass it with ``--plugin FILE.py`` to ``run``, ``list`` or ``train-model``,
e.g. ``xaiboard run --plugin my_method.py --methods my-method``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import click
import pandas as pd
from tqdm.contrib.logging import logging_redirect_tqdm

from .cache import ExplanationCache
from .device import resolve_device
from .environment import versions
from .paths import submissions_dir
from .registry import METHODS, METRICS, TASKS, Registry
from .runner import results_table, run
from .store import ResultStore

PLUGIN = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Python file that registers extra tasks/methods/metrics (repeatable).",
)
SUITES = ("default", "full")
DEVICE = click.option(
    "--device",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cpu", "cuda"]),
    help="auto = CUDA when torch sees a GPU, else CPU.",
)


@click.group(help="xaiboard: benchmark explanation methods and show them on a leaderboard.")
def main() -> None:
    pass


@main.command("run", help="Evaluate methods on tasks with metrics; write result records and print a table.")
@click.option(
    "--suite",
    type=click.Choice(SUITES),
    default="default",
    show_default=True,
    help="default = the built-in tasks (offline); full = also the hub tasks (downloads data). Ignored with --tasks.",
)
@click.option("--tasks", help="Comma-separated task names (overrides --suite).")
@click.option("--methods", help="Comma-separated method names (default: every registered method).")
@click.option("--metrics", help="Comma-separated metric names (default: every registered metric).")
@click.option("--n", default=64, show_default=True, type=click.IntRange(min=1), help="Samples per task.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for sample choice and randomness.")
@DEVICE
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where result records go (default: the repository's submissions/, or $XAIBOARD_SUBMISSIONS).",
)
@click.option("--quiet", is_flag=True, help="No progress bars or skip notes.")
@click.option("--force", is_flag=True, help="Recompute every pair, ignoring stored results and cached explanations.")
@PLUGIN
def run_command(
    suite: str,
    tasks: str | None,
    methods: str | None,
    metrics: str | None,
    n: int,
    seed: int,
    device: str,
    results_dir: Path | None,
    quiet: bool,
    force: bool,
    plugins: Sequence[Path],
) -> None:
    _load_registries(plugins)
    task_names = _names(TASKS, tasks, "--tasks") if tasks else suite_tasks(suite)
    method_names = _names(METHODS, methods, "--methods")
    metric_names = _names(METRICS, metrics, "--metrics")
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    with logging_redirect_tqdm():
        records = run(
            task_names,
            method_names,
            metric_names,
            n=n,
            seed=seed,
            device=_device(device),
            store=ResultStore(results_dir),
            cache=ExplanationCache(),
            progress=not quiet,
            force=force,
        )
    table = results_table(records)
    click.echo(table.to_string() if not table.empty else "no results (nothing applicable)")
    errors = Counter(r.error.splitlines()[0] for r in records if r.status == "error")
    if errors:
        click.echo(f"{errors.total()} error record(s); their files hold the tracebacks:", err=True)
        for message, count in errors.most_common():
            click.echo(f"  {count} x {message}", err=True)


@main.command("list", help="List registered tasks, methods or metrics with their metadata.")
@click.argument("kind", type=click.Choice(["tasks", "methods", "metrics"]))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown"]),
    default="text",
    show_default=True,
    help="markdown writes a table for the docs (docs/metrics.md is generated so).",
)
@PLUGIN
def list_command(kind: str, fmt: str, plugins: Sequence[Path]) -> None:
    _load_registries(plugins)
    rows = {"tasks": _task_rows, "methods": _method_rows, "metrics": _metric_rows}[kind]()
    if not rows:
        click.echo(f"no {kind} registered")
    else:
        click.echo(_markdown(pd.DataFrame(rows)) if fmt == "markdown" else _left_aligned(pd.DataFrame(rows)))


@main.command("train-model", help="Train TASK's model by its recipe and save the weights with their card.")
@click.argument("task_name", metavar="TASK")
@click.option("--seed", default=0, show_default=True, type=int, help="Training seed.")
@DEVICE
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the weights (default: the package's tasks/weights/).",
)
@PLUGIN
def train_model_command(task_name: str, seed: int, device: str, out: Path | None, plugins: Sequence[Path]) -> None:
    from xaiboard.tasks.weights import save_weights

    _load_registries(plugins)
    task = TASKS.create(_names(TASKS, task_name, "TASK")[0])
    start = time.perf_counter()
    model, accuracy = task.train_model(seed, _device(device))
    meta = {
        "task": task.name,
        "task_version": task.version,
        "seed": seed,
        "recipe": task.recipe,
        "test_accuracy": accuracy,
        "versions": versions(),
        "seconds": round(time.perf_counter() - start, 1),
        **task.weights_card(),
    }
    path = save_weights(model, task.weights_stem, meta, out)
    click.echo(f"{task.name}: test accuracy {accuracy:.4f}; weights written to {path}")


@main.group("task", help="Inspect one task.")
def task_group() -> None:
    pass


@task_group.command("show", help="Print TASK's card: data, model and accuracy, features, removal, ground truth.")
@click.argument("task_name", metavar="TASK")
@PLUGIN
def task_show_command(task_name: str, plugins: Sequence[Path]) -> None:
    from xaiboard.tasks.weights import weights_meta

    _load_registries(plugins)
    task = TASKS.create(_names(TASKS, task_name, "TASK")[0])
    training = weights_meta(task.weights_stem)
    fields = {
        "name": task.name,
        "version": task.version,
        "modality": task.modality,
        "tier": task.tier,
        "classes": task.num_classes,
        **{k: v for k, v in asdict(task.card).items() if v not in (None, "")},
        "training": ", ".join(f"{k}={training[k]}" for k in ("seed", "seconds") if k in training) or "no weights card",
        "recipe": ", ".join(f"{k}={v}" for k, v in task.recipe.items()),
    }
    if task.card.test_accuracy is not None:
        fields["test_accuracy"] = f"{task.card.test_accuracy:.4f}"
    width = max(map(len, fields))
    for key, value in fields.items():
        click.echo(f"{key.ljust(width)}  {value}")


@main.command("leaderboard", help="Open the Streamlit leaderboard over a results folder.")
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The submissions folder to show (default: the repository's submissions/).",
)
def leaderboard_command(results_dir: Path | None) -> None:
    import xaiboard.leaderboard

    app = Path(xaiboard.leaderboard.__file__).parent / "app.py"
    env = {**os.environ, "XAIBOARD_SUBMISSIONS": str(results_dir or submissions_dir())}
    # no usage statistics: the board is often run offline, and it is nobody's business
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--browser.gatherUsageStats", "false"]
    completed = subprocess.run(command, env=env, check=False)
    sys.exit(completed.returncode)


def _load_registries(plugins: Sequence[Path]) -> None:
    """Import the built-ins (they register on import) and each plugin file once per process."""
    import xaiboard.benchmark.metrics  # noqa: F401
    import xaiboard.methods  # noqa: F401
    import xaiboard.tasks  # noqa: F401

    for path in plugins:
        path = path.resolve()
        name = "xaiboard_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise click.ClickException(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc


def suite_tasks(suite: str) -> list[str]:
    """The registered tasks of a suite: ``default`` = built-in tier, ``full`` = every task."""
    return [name for name in TASKS.names() if suite == "full" or getattr(TASKS.factory(name), "tier", "built-in") == "built-in"]


def _names(registry: Registry, given: str | None, option: str) -> list[str]:
    """The comma-separated names, all registered (default: every registered name)."""
    if not given:
        return registry.names()
    names = [name.strip() for name in given.split(",") if name.strip()]
    unknown = [name for name in names if name not in registry]
    if unknown:
        known = ", ".join(registry.names()) or "none"
        raise click.BadParameter(f"unknown {registry.kind} {unknown[0]!r}; known: {known}", param_hint=option)
    return names


def _device(name: str):
    try:
        return resolve_device(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None


def _left_aligned(frame: pd.DataFrame) -> str:
    """The frame as text with left-aligned columns (names and descriptions read better so)."""
    text = frame.map(str)
    formatters = {column: _ljust(int(text[column].str.len().max())) for column in text}
    return text.to_string(index=False, justify="left", formatters=formatters)


def _markdown(frame: pd.DataFrame) -> str:
    """The frame as a GitHub-flavoured markdown table (no extra dependency such as tabulate)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(value).replace("|", "\\|") for value in row) + " |")
    return "\n".join(lines)


def _ljust(width: int):
    return lambda value: value.ljust(width)


def _task_rows() -> list[dict]:
    rows = []
    for name in TASKS.names():
        task = TASKS.create(name)
        card = {k: v for k, v in asdict(task.card).items() if k != "removal"}
        if card["test_accuracy"] is not None:
            card["test_accuracy"] = round(card["test_accuracy"], 4)
        rows.append(
            {"name": name, "version": task.version, "modality": task.modality, "tier": task.tier,
             "removal": task.removal_name, **card}
        )
    return rows


def _method_rows() -> list[dict]:
    rows = []
    for name in METHODS.names():
        method = METHODS.create(name)
        modalities = ",".join(sorted(method.modalities))
        rows.append({"name": name, "modalities": modalities, "control": method.control, "description": method.description})
    return rows


def _metric_rows() -> list[dict]:
    rows = []
    for name in METRICS.names():
        metric = METRICS.create(name)
        rows.append(
            {
                "name": name,
                "family": metric.family,
                "direction": metric.direction,
                "range": list(metric.value_range),
                "modalities": ",".join(sorted(metric.modalities)),
                "needs_gt": metric.needs_ground_truth,
                "needs_explainer": metric.needs_explainer,
                "defaults": metric.params,
                "reference": metric.reference,
                "checked_against": metric.checked_against,
                "deviation": metric.deviation,
            }
        )
    return rows


if __name__ == "__main__":
    main()
