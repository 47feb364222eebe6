"""The ``xaiboard`` command line: run the benchmark, list what is registered, train a task's
model, open the leaderboard.

Bring your own task, method or metric: write a Python file that registers it
(``@METHODS.register("my-method")`` on an ``Explainer`` subclass, likewise ``TASKS`` and
``METRICS``) and pass it with ``--plugin FILE.py`` to ``run``, ``list`` or ``train-model``,
e.g. ``xaiboard run --plugin my_method.py --methods my-method``. Tasks from a plugin file join
no suite: without ``--tasks``, a run with plugin files that register tasks evaluates exactly
those tasks (``xaiboard run --plugin my_task.py``), and the suite's tasks otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import click
import pandas as pd
from tqdm.contrib.logging import logging_redirect_tqdm

from . import bench as benchmod
from .cache import ExplanationCache
from .atomic import read_json
from .card import CARD_FILE, CardError, MethodCard
from .device import resolve_device
from .environment import versions
from .precision import check_precision
from . import paths
from .record import PRECISIONS
from .registry import METHODS, METRICS, TASKS, Registry, load_plugin, plugin_names
from .runner import results_table, run
from .sandbox import SandboxPolicy
from .store import ResultStore

PLUGIN = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Python file that registers extra tasks/methods/metrics (repeatable). Its tasks join no suite "
    "(run and submit without --tasks evaluate them, and only them).",
)
SUITES = ("default", "full")
QUICK_REPEATS = 3
DEVICE = click.option(
    "--device",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cpu", "cuda"]),
    help="auto = CUDA when torch sees a GPU, else CPU.",
)
EXECUTOR_OPTIONS = (
    click.option(
        "--executor",
        type=click.Choice(["serial", "ray"]),
        default="serial",
        show_default=True,
        help="serial = every pair in this process; ray = each (task, method, seed) pair (reproduce: each seed) as a Ray task "
        '(pip install -e ".[ray]"); only this process writes results either way.',
    ),
    click.option(
        "--address",
        help="With --executor ray: auto = the running cluster (ray start --head), ray://HOST:PORT = Ray Client; "
        "default: a Ray instance started on this machine.",
    ),
    click.option(
        "--worker-threads",
        default=1,
        show_default=True,
        type=click.IntRange(min=1),
        help="With --executor ray: torch threads, and Ray CPUs, per pair.",
    ),
    click.option(
        "--max-retries",
        default=2,
        show_default=True,
        type=click.IntRange(min=0),
        help="With --executor ray: retries of a pair whose worker died, before it becomes error records.",
    ),
)


SHARD_OPTIONS = (
    click.option(
        "--shard-samples",
        type=click.IntRange(min=1),
        help="With --executor ray: split a pair with more samples than this into shards of at most this many, one Ray "
        "task each (the explanation is computed once; metrics whose per-sample scores depend on the batch, or that "
        "re-run the method, run unsharded); the records equal a serial run's.",
    ),
    click.option(
        "--shard-reruns",
        is_flag=True,
        help="With --shard-samples: shard MPRT, efficient MPRT and class sensitivity too, for methods that explain each "
        "sample on its own; equal to a serial run's up to float round-off, which can swap a near tie in their ranks.",
    ),
)


def shard_options(command):
    """``--shard-samples`` and ``--shard-reruns`` (``run`` and ``submit``)."""
    for option in reversed(SHARD_OPTIONS):
        command = option(command)
    return command


def executor_options(command):
    """The ``--executor`` options that ``run``, ``submit`` and ``reproduce`` share."""
    for option in reversed(EXECUTOR_OPTIONS):
        command = option(command)
    return command


@click.group(help="xaiboard: benchmark explanation methods and show them on a leaderboard.")
def main() -> None:
    pass


@main.command("run", help="Evaluate methods on tasks with metrics; write result records and print a table.")
@click.option(
    "--suite",
    type=click.Choice(SUITES),
    default="default",
    show_default=True,
    help="default = the built-in tasks (offline) and the default-tier methods; full = also the hub tasks "
    "(downloads data) and the full-tier methods (LIME, KernelSHAP, RISE: slow on a CPU). "
    "--tasks and --methods override its tasks and its methods.",
)
@click.option(
    "--tasks",
    help="Comma-separated task names (overrides --suite's tasks). Default: the tasks the --plugin files register, "
    "if they register any, else the suite's.",
)
@click.option("--methods", help="Comma-separated method names (overrides --suite's methods).")
@click.option("--metrics", help="Comma-separated metric names (default: the suite's metrics: every registered metric but, in the default suite, the full-tier ones).")
@click.option("--n", default=64, show_default=True, type=click.IntRange(min=1), help="Samples per task.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for sample choice and randomness.")
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="The tasks' split to evaluate, recorded in every record (every built-in task has train and test; "
    "image/shapes also val, text/movie-rationales validation). "
    "A results folder keeps one record per (task, method, metric): give each split its own --results-dir.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    help="Model weights to use instead of the committed ones: a folder written by `xaiboard train-model TASK --out DIR` "
    "(each task loads DIR/<its weights stem>.safetensors), or one .safetensors file when one task runs.",
)
@DEVICE
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="The model passes' precision: bf16 = bfloat16 autocast, several times faster on GPUs and on CPUs with "
    "AMX or AVX512-BF16, every number approximate to ~3 digits. Recorded in every record; bf16 and fp32 "
    "results never stand in for each other. The committed board is fp32.",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where result records go (default: ./results, or $XAIBOARD_RESULTS). "
    "The committed board is written only when you pass --results-dir submissions.",
)
@click.option("--quiet", is_flag=True, help="No progress bars, skip notes or library warnings (Captum, PyTorch, ...).")
@click.option("--force", is_flag=True, help="Recompute every pair, ignoring stored results and cached explanations.")
@executor_options
@shard_options
@PLUGIN
def run_command(
    suite: str,
    tasks: str | None,
    methods: str | None,
    metrics: str | None,
    n: int,
    seed: int,
    split: str,
    weights: Path | None,
    device: str,
    precision: str,
    results_dir: Path | None,
    quiet: bool,
    force: bool,
    executor: str,
    address: str | None,
    worker_threads: int,
    max_retries: int,
    shard_samples: int | None,
    shard_reruns: bool,
    plugins: Sequence[Path],
) -> None:
    _load_registries(plugins)
    chosen = _executor(executor, address, worker_threads, max_retries, shard_samples, shard_reruns)
    task_names = chosen_tasks(tasks, suite, plugins)
    method_names = _names(METHODS, methods, "--methods") if methods else suite_methods(suite)
    metric_names = _names(METRICS, metrics, "--metrics") if metrics else suite_metrics(suite)
    if weights is not None:
        check_weights(weights, task_names)
    chosen_device = _device(device)
    try:
        check_precision(precision, chosen_device)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--precision") from None
    store = ResultStore(writable_results_dir(results_dir or paths.results_dir()))
    _log_to_console(quiet)
    with logging_redirect_tqdm():
        records = run(
            task_names,
            method_names,
            metric_names,
            n=n,
            seed=seed,
            device=chosen_device,
            store=store,
            cache=ExplanationCache(),
            progress=not quiet,
            force=force,
            executor=chosen,
            split=split,
            weights=weights,
            precision=precision,
        )
    table = results_table(records)
    click.echo(table.to_string() if not table.empty else "no results (nothing applicable)")
    click.echo(f"results: {store.root}")
    click.echo(board_build_line(store.root))
    _exit_on_errors(records)


@main.command("submit", help="Validate, run and publish one method: FILE.py[:Class] in a sandbox, or --precomputed explanations.")
@click.argument("source", required=False, metavar="FILE.py[:Class]")
@click.option("--name", required=True, help="The method's name on the board (one path component).")
@click.option("--precomputed", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of explanations for exported samples (see xaiboard export-samples) instead of code.")
@click.option("--suite", type=click.Choice(SUITES), default="default", show_default=True,
              help="Tasks to run on, as in `run` (ignored with --tasks).")
@click.option("--tasks", help="Comma-separated task names (overrides --suite). Default: the tasks the --plugin files "
              "register, if they register any, else the suite's.")
@click.option("--metrics", help="Comma-separated metric names (default: the suite's metrics: every registered metric but, in the default suite, the full-tier ones).")
@click.option("--n", default=64, show_default=True, type=click.IntRange(min=1),
              help="Samples per task (with --precomputed: the export's).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed for sample choice and randomness (with --precomputed: the export's).")
@DEVICE
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The board to publish to (default: the repository's submissions/, or $XAIBOARD_SUBMISSIONS).")
@click.option("--overwrite", is_flag=True, help="Replace an existing submission (or a baseline) of the same name.")
@click.option("--card", "card_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A method card JSON (description, authors, paper, url, licence); flags below override it.")
@click.option("--description", help="One or two sentences on what the method does.")
@click.option("--authors", help="Who made the method.")
@click.option("--paper", help="The paper (citation or title).")
@click.option("--url", help="Where to read more (paper or code).")
@click.option("--licence", help="The method code's licence.")
@click.option("--time-budget", default=SandboxPolicy.time_budget_s, show_default=True, type=click.FloatRange(min=0.1),
              help="Wall-time budget in seconds for one explain call (one task batch) in the worker.")
@click.option("--memory-mb", default=SandboxPolicy.memory_mb, show_default=True, type=click.IntRange(min=256),
              help="Address-space cap of the worker process in MiB (RLIMIT_AS).")
@click.option("--unsafe-no-sandbox", is_flag=True,
              help="Run without Landlock where the kernel lacks it (time and memory limits still apply).")
@click.option("--quiet", is_flag=True, help="No progress bars, skip notes or library warnings.")
@executor_options
@shard_options
@PLUGIN
def submit_command(source: str | None, name: str, precomputed: Path | None, suite: str, tasks: str | None,
                   metrics: str | None, n: int, seed: int, device: str, results_dir: Path | None, overwrite: bool,
                   card_file: Path | None, time_budget: float, memory_mb: int, unsafe_no_sandbox: bool, quiet: bool,
                   executor: str, address: str | None, worker_threads: int, max_retries: int,
                   shard_samples: int | None, shard_reruns: bool, plugins: Sequence[Path],
                   **card_fields: str | None) -> None:
    from .submit import SubmissionRejected, check_name

    _load_registries(plugins)
    if (source is None) == (precomputed is None):
        raise click.UsageError("give either FILE.py[:Class] or --precomputed DIR")
    chosen = _executor(executor, address, worker_threads, max_retries, shard_samples, shard_reruns)
    root = writable_results_dir(results_dir or paths.submissions_dir())
    _log_to_console(quiet)
    try:
        check_name(name, root, METHODS.names(), overwrite)
        records = _submit(source, name, precomputed, tasks, suite, metrics, n, seed, _device(device), root, overwrite,
                          _card(card_file, name, card_fields), SandboxPolicy(time_budget, memory_mb, unsafe_no_sandbox),
                          plugins, quiet, chosen)
    except SubmissionRejected as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"published {name}: card {root / name / CARD_FILE}, records under {root / name / 'results'}")
    click.echo(rank_summary(root, name))
    click.echo(board_build_line(root))
    _exit_on_errors(records)


def _submit(source, name, precomputed, tasks, suite, metrics, n, seed, device, root, overwrite, card, policy, plugins, quiet,
            executor):
    """The submit pipeline (``benchmark/submit.py``); every refusal is a ``SubmissionRejected``."""
    from .precomputed import PrecomputedError, PrecomputedExplainer, precomputed_setting
    from .sandbox import SandboxedExplainer, SubmissionError
    from .submit import SubmissionRejected, run_and_publish, smoke_check, submission_card

    metric_names = _names(METRICS, metrics, "--metrics") if metrics else suite_metrics(suite)
    try:
        if precomputed is not None:
            explainer, kind = PrecomputedExplainer(precomputed, name), "precomputed"
            task_names, n, seed = precomputed_setting(precomputed, tasks and _names(TASKS, tasks, "--tasks"))
        else:
            path, _, class_name = source.partition(":")
            explainer = SandboxedExplainer(Path(path), class_name or None, policy, plugins, name=name)
            kind, task_names = "submission", chosen_tasks(tasks, suite, plugins)
    except (SubmissionError, PrecomputedError, OSError) as exc:
        raise SubmissionRejected(str(exc).splitlines()[0]) from None
    with contextlib.closing(explainer):
        claimed = [task for task in map(TASKS.create, task_names) if explainer.supports(task)]
        if not claimed:
            raise SubmissionRejected(f"{name} supports {sorted(explainer.modalities)}: none of the tasks {task_names} is one")
        smoke_check(explainer, claimed, device, seed)
        card = submission_card(card, explainer, kind)
        with logging_redirect_tqdm():
            return run_and_publish(explainer, card, claimed, metric_names, root, n, seed, device, progress=not quiet,
                                   executor=executor)


def rank_summary(root: Path, method: str) -> str:
    """``method``'s mean rank group per task and metric family, beside every other method's
    (lower is better; ``*`` marks controls, ``>`` the submitted method)."""
    from xaiboard.leaderboard.aggregate import standings

    frame = standings(root, method)
    if frame.empty:
        return f"{method} has no ranked results"
    marks = ["> " if m == method else "* " if control else "  " for m, control in zip(frame["method"], frame["is_control"])]
    frame = frame.assign(method=[mark + name for mark, name in zip(marks, frame["method"])]).drop(columns="is_control")
    lines = ["mean rank group per family (lower is better; > this submission, * control):"]
    for task, block in frame.groupby("task", sort=True):
        lines += [f"{task}:", block.drop(columns="task").round(2).to_string(index=False, na_rep="-")]
    return "\n".join(lines)


def _card(card_file: Path | None, name: str, flags: dict[str, str | None]) -> MethodCard:
    """The submitter's card: ``--card`` JSON, then the flags; the harness fills in the rest."""
    try:
        data = read_json(card_file, CardError) if card_file is not None else {}
        if not isinstance(data, dict):
            raise CardError(f"{card_file}: expected a JSON object")
        data = {**data, **{k: v for k, v in flags.items() if v is not None}, "name": name}
        return MethodCard.from_dict(data, str(card_file or "card flags"))
    except CardError as exc:
        raise click.BadParameter(str(exc), param_hint="--card") from None


@main.command("export-samples", help="Write TASK's evaluation samples for explaining them outside the harness.")
@click.argument("task_name", metavar="TASK")
@click.option("--n", default=64, show_default=True, type=click.IntRange(min=1), help="Samples (as `run --n`).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed (as `run --seed`).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write to.")
@PLUGIN
def export_samples_command(task_name: str, n: int, seed: int, out: Path, plugins: Sequence[Path]) -> None:
    from .precomputed import export_samples

    _load_registries(plugins)
    task = TASKS.create(_names(TASKS, task_name, "TASK")[0])
    folder = export_samples(task, n, seed, out)
    click.echo(f"{task.name}: samples written to {folder} (format: docs/precomputed.md)")


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
    try:
        model, accuracy = task.train_model(seed, _device(device))
    except NotImplementedError as exc:
        raise click.ClickException(str(exc)) from None
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


@task_group.command(
    "check",
    help="Can TASK's ground truth be found without its model (shortcut scores of model-free priors), and does "
    "its model read it (ground-truth removal vs as many random features)? Prints both; writes a record.",
)
@click.argument("task_name", metavar="TASK")
@click.option("-n", "--n", default=64, show_default=True, type=click.IntRange(min=1), help="Test samples (as `run --n`).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the samples and the random feature draws.")
@DEVICE
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the record goes, under _tasks/ (default: ./results, or $XAIBOARD_RESULTS).")
@PLUGIN
def task_check_command(task_name: str, n: int, seed: int, device: str, results_dir: Path | None,
                       plugins: Sequence[Path]) -> None:
    from .task_check import check_task, write_check
    from .task_check_record import report

    _load_registries(plugins)
    task = TASKS.create(_names(TASKS, task_name, "TASK")[0])
    root = writable_results_dir(results_dir or paths.results_dir())
    record = check_task(task, n, seed, _device(device))
    click.echo(report(record.to_dict()))
    click.echo(f"record: {write_check(root, record)}")


@main.command(
    "bench",
    help="Time the metrics Quantus also implements: ours vs Quantus on identical inputs (values checked equal), "
    "vs the pass floor, and all matching metrics through one context (the suite line).",
)
@click.option(
    "--tasks",
    default=",".join(benchmod.TASK_NAMES),
    show_default=True,
    help="Comma-separated task names (any modality: Quantus sees non-image tasks through feature codes).",
)
@click.option("--metrics", default=",".join(benchmod.CASES), show_default=True, help="Comma-separated metric names.")
@click.option("--n", "sizes", default=",".join(map(str, benchmod.SIZES)), show_default=True, help="Comma-separated sample counts N.")
@click.option("--repeats", default=benchmod.REPEATS, show_default=True, type=click.IntRange(min=1), help="Interleaved repetitions per (metric, N).")
@click.option("--quick", is_flag=True, help=f"N = 64 only and {QUICK_REPEATS} repetitions (for CI); overrides --n and --repeats.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for samples and the metrics' random draws.")
@DEVICE
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="torch intra-op threads for both sides (default: torch's). On a loaded CPU, 1 avoids oversubscription.",
)
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table as markdown to FILE.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_command(
    tasks: str,
    metrics: str,
    sizes: str,
    repeats: int,
    quick: bool,
    seed: int,
    device: str,
    threads: int | None,
    markdown: Path | None,
    quiet: bool,
) -> None:
    import torch

    _load_registries(())
    if quick:
        sizes, repeats = "64", QUICK_REPEATS
    if threads is not None:
        torch.set_num_threads(threads)
    chosen = _device(device)
    try:
        table = benchmod.bench(
            _names(TASKS, tasks, "--tasks"),
            [int(n) for n in sizes.split(",")],
            [m.strip() for m in metrics.split(",")],
            repeats=repeats,
            seed=seed,
            device=chosen,
            progress=not quiet,
        )
    except (benchmod.MissingQuantus, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"device {chosen}, torch {torch.__version__} with {torch.get_num_threads()} intra-op threads, seed {seed}")
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if markdown is not None:
        markdown.write_text(_markdown(table.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)) + "\n")
        click.echo(f"markdown: {markdown}")


@main.command("scaling", help="Estimate a suite's wall time on N workers from the per-pair costs in its records.")
@click.option("--results-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The records to read (default: the repository's submissions/).")
@click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=1), help="Seeds per pair.")
@click.option("--workers", default="1,2,4,8,16,32,64,128", show_default=True, help="Comma-separated worker counts.")
@click.option("--overhead-s", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds added to every pair (a worker loading its task and model).")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1), help="Longest pairs to list.")
@click.option("--extrapolate", "extra",
              help="METHOD=FORWARD_PASSES,... per sample for methods without records, e.g. lime=256,rise=500: "
              "estimated per task from its random and occlusion pairs (see benchmark/scaling.py).")
def scaling_command(results_dir: Path | None, seeds: int, workers: str, overhead_s: float, top: int,
                    extra: str | None) -> None:
    from .scaling import by_task, estimate, extrapolate, pair_costs

    store = ResultStore(results_dir or paths.submissions_dir())
    records, errors = store.records()
    pairs = pair_costs(records)
    if not pairs:
        first = f" ({len(errors)} unreadable, e.g. {errors[0]})" if errors else ""
        raise click.ClickException(f"no readable records under {store.root}{first}")
    counts = [int(n) for n in workers.split(",")]
    click.echo(f"{len(records)} records ({len(errors)} unreadable) in {len(pairs)} (task, method) pairs under {store.root}")
    if extra:
        passes = {name.strip(): float(value) for name, _, value in (item.partition("=") for item in extra.split(","))}
        estimated = extrapolate(pairs, passes)
        click.echo(f"plus {len(estimated)} extrapolated pairs of {', '.join(passes)}")
        pairs = sorted([*pairs, *estimated], key=lambda p: p.seconds, reverse=True)
    click.echo("\nper task (seconds of one seed):\n" + _markdown(by_task(pairs).round(1)))
    longest = pd.DataFrame([{"task": p.task, "method": p.method, "explain_s": p.explain_s, "metrics_s": p.metrics_s,
                             "seconds": p.seconds} for p in pairs[:top]])
    click.echo(f"\nlongest pairs (the critical path):\n{_markdown(longest.round(1))}")
    table = estimate(pairs, counts, seeds, overhead_s).round(3)
    click.echo(f"\n{seeds} seed(s), {overhead_s:g} s overhead per pair:\n{_markdown(table)}")


@main.command("leaderboard", help="Open the Streamlit leaderboard over a results folder.")
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The submissions folder to show (default: the repository's submissions/).",
)
@click.option("--port", type=click.IntRange(1, 65535), help="The port to serve on (default: Streamlit's, 8501).")
@click.option("--address", help="The address to listen on, e.g. 0.0.0.0 to serve others (default: Streamlit's).")
def leaderboard_command(results_dir: Path | None, port: int | None, address: str | None) -> None:
    env = {**os.environ, "XAIBOARD_SUBMISSIONS": str(results_dir or paths.submissions_dir())}
    completed = subprocess.run(leaderboard_argv(port, address), env=env, check=False)
    sys.exit(completed.returncode)


def leaderboard_argv(port: int | None, address: str | None) -> list[str]:
    """The ``streamlit run`` command line of the app: viewer toolbar (no Deploy or developer
    items), no usage statistics (the board is often run offline, and it is nobody's business)."""
    import xaiboard.leaderboard

    app = Path(xaiboard.leaderboard.__file__).parent / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer"]  # fmt: skip
    if port is not None:
        command += ["--server.port", str(port)]
    if address is not None:
        command += ["--server.address", address]
    return command


@main.group("board", help="The leaderboard's precomputed statistics.")
def board_group() -> None:
    pass


@board_group.command("build", help="Precompute the board's tables (ranks, rank groups, p-values) beside the records.")
@click.option(
    "--results-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The results folder (default: the repository's submissions/, or $XAIBOARD_SUBMISSIONS).",
)
def board_build_command(results_dir: Path | None) -> None:
    click.echo(board_build_line(writable_results_dir(results_dir or paths.submissions_dir())))


@board_group.command("export", help="Write the board as static HTML pages and CSV files (opens without a server).")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--results-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The results folder (default: the repository's submissions/, or $XAIBOARD_SUBMISSIONS).",
)
def board_export_command(out: Path, results_dir: Path | None) -> None:
    from xaiboard.leaderboard.export import export
    from xaiboard.leaderboard.tables import load

    tables, notice = load(results_dir or paths.submissions_dir())
    if notice:
        click.echo(notice)
    written = export(tables, out)
    click.echo(f"board export: {out / 'index.html'} ({len(written)} files)")


def board_build_line(root: Path) -> str:
    """Build the board's tables over ``root`` (only tasks whose records changed are recomputed),
    with the registered tasks' cards, and say where they went."""
    from xaiboard.leaderboard.tables import build, content_keys

    path, recomputed = build(root, registered_task_cards(content_keys(root).tasks))
    return f"board statistics: {path} ({recomputed} task(s) recomputed)"


def registered_task_cards(names: Sequence[str]) -> dict[str, dict]:
    """The cards of the registered tasks among ``names`` (the app cannot import tasks, so the
    board stores them); a task whose card cannot be made here (e.g. hub data not cached) is left out."""
    _load_registries(())
    cards = {}
    for name in (n for n in names if n in TASKS):
        try:
            cards[name] = asdict(TASKS.create(name).card)
        except Exception as exc:  # noqa: BLE001  (a missing card must not stop the build)
            logging.getLogger(__name__).warning("no card for task %s: %s: %s", name, type(exc).__name__, exc)
    return cards


@main.command("reproduce", help="Rerun a published table on our harness: `reproduce list`, or `reproduce NAME`.")
@click.argument("name", metavar="NAME|list")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds to average over (default: the reproduction's).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the record goes, under reproductions/ (default: ./results, or $XAIBOARD_RESULTS).")
@click.option("--quick", is_flag=True, help="A tiny size (one seed unless --seeds, few samples): checks the table, not the numbers.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@executor_options
def reproduce_command(name: str, seeds: int | None, results_dir: Path | None, quick: bool, quiet: bool, executor: str,
                      address: str | None, worker_threads: int, max_retries: int) -> None:
    from .reproductions import REPRODUCTIONS, format_rows, run_reproduction
    from .reproductions.base import SeedFailed

    if name == "list":
        frame = pd.DataFrame(
            [{"name": n, "paper": r.paper, "table": r.table, "seeds": r.default_seeds, "runs here": r().unavailable() or "yes"}
             for n, r in ((n, REPRODUCTIONS.factory(n)) for n in REPRODUCTIONS.names())]
        )
        click.echo(_left_aligned(frame))
        return
    try:
        repro = REPRODUCTIONS.create(name)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    if (why := repro.unavailable()) is not None:
        raise click.ClickException(f"{name} cannot run here: {why}")
    chosen = _executor(executor, address, worker_threads, max_retries)
    root = writable_results_dir(results_dir or paths.results_dir())
    try:
        record = run_reproduction(repro, seeds or (1 if quick else repro.default_seeds), quick, root, progress=not quiet,
                                  log=lambda line: click.echo(line, err=True), executor=chosen)
    except SeedFailed as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{repro.paper}, {repro.table}; {record['seeds']} seed(s), {record['seconds']:.0f} s")
    click.echo(format_rows(record["rows"]))
    click.echo(f"record: {root / 'reproductions' / (name + '.json')}")


def writable_results_dir(root: Path) -> Path:
    """``root``, created if needed, after checking a file can be written there (before any work)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise click.ClickException(f"results folder {root} cannot be written: {exc.strerror or exc}") from None
    return root


def _executor(name: str, address: str | None, threads: int, retries: int, shard_samples: int | None = None,
              shard_reruns: bool = False):
    """``None`` (the runner's serial executor) or a Ray executor; ray is imported only here."""
    if shard_reruns and shard_samples is None:
        raise click.BadParameter("--shard-reruns needs --shard-samples", param_hint="--shard-reruns")
    if name == "serial":
        if address is not None:
            raise click.BadParameter("--address needs --executor ray", param_hint="--address")
        if shard_samples is not None:
            raise click.BadParameter("--shard-samples needs --executor ray (a serial run has no workers to share a pair)",
                                     param_hint="--shard-samples")
        return None
    try:
        from .distributed import RayExecutor
    except ImportError as exc:
        raise click.ClickException(f'--executor ray needs the ray extra: pip install -e ".[ray]" ({exc})') from None
    return RayExecutor(address, threads, retries, shard_samples, shard_reruns)


def _log_to_console(quiet: bool) -> None:
    """Our log lines on the console (only warnings under ``quiet``); under ``quiet`` the
    libraries' Python warnings (Captum's, PyTorch's) are silenced too: they are about how a
    method calls a library, not about the results, and would bury the table."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    if quiet:
        warnings.simplefilter("ignore")


def _exit_on_errors(records: Sequence) -> None:
    """Summarise error records on stderr and exit 1 if there are any (after everything else ran)."""
    errors = Counter(r.error.splitlines()[0] for r in records if r.status == "error")
    if not errors:
        return
    click.echo(f"{errors.total()} error record(s); their files hold the tracebacks:", err=True)
    for message, count in errors.most_common():
        click.echo(f"  {count} x {message}", err=True)
    sys.exit(1)


def _load_registries(plugins: Sequence[Path]) -> None:
    """Import the built-ins (they register on import) and each plugin file once per process."""
    import xaiboard.benchmark.metrics  # noqa: F401
    import xaiboard.methods  # noqa: F401
    import xaiboard.tasks  # noqa: F401

    for path in plugins:
        try:
            load_plugin(path)
        except Exception as exc:
            raise click.ClickException(f"plugin {path.resolve()} failed to import: {type(exc).__name__}: {exc}") from exc


def suite_tasks(suite: str) -> list[str]:
    """The registered tasks of a suite: ``default`` = built-in tier, ``full`` = every task but the
    archived versions (an earlier version of a task, registered as ``NAME@VERSION`` so that its
    records stay reproducible, runs only when named with ``--tasks``). Tasks registered by a
    ``--plugin`` file are in no suite, whatever their tier says."""
    brought = set(plugin_names("task"))
    tiers = {name: getattr(TASKS.factory(name), "tier", "built-in") for name in TASKS.names() if name not in brought}
    return [name for name, tier in tiers.items() if tier != "archived" and (suite == "full" or tier == "built-in")]


def chosen_tasks(tasks: str | None, suite: str, plugins: Sequence[Path]) -> list[str]:
    """The tasks of a run: ``--tasks``; else the tasks the ``--plugin`` files register (but
    archived versions), so that ``run --plugin my_task.py`` runs one's own task, not the whole
    suite beside it; else the suite's."""
    if tasks:
        return _names(TASKS, tasks, "--tasks")
    brought = [name for name in plugin_names("task", plugins) if getattr(TASKS.factory(name), "tier", "") != "archived"]
    return brought or suite_tasks(suite)


def check_weights(path: Path, task_names: Sequence[str]) -> None:
    """``--weights`` holds weights for every task of the run (a single file: the run has one task)."""
    from xaiboard.tasks.weights import weights_in

    if path.is_file() and len(task_names) != 1:
        raise click.BadParameter(f"a single weights file fits one task; this run has {len(task_names)}", param_hint="--weights")
    for name in task_names:
        stem = getattr(TASKS.create(name), "weights_stem", "")
        if not stem:
            raise click.BadParameter(f"{name} brings its own model, which has no weights file to replace", param_hint="--weights")
        if stem not in weights_in(path, stem):
            raise click.BadParameter(f"{path} has no {stem}.safetensors, the weights of {name}", param_hint="--weights")


def suite_methods(suite: str) -> list[str]:
    """The registered methods of a suite: ``default`` = the default tier, ``full`` = every method."""
    return [name for name in METHODS.names() if suite == "full" or getattr(METHODS.factory(name), "tier", "default") == "default"]


def suite_metrics(suite: str) -> list[str]:
    """The registered metrics of a suite: ``default`` = every metric but the full-tier ones (costly
    on a CPU: smooth MPRT re-explains every batch ``10 (L + 1)`` times), ``full`` = every metric."""
    return [name for name in METRICS.names() if suite == "full" or getattr(METRICS.factory(name), "tier", "default") == "default"]


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
        rows.append(
            {"name": name, "family": method.family, "modalities": ",".join(sorted(method.modalities)),
             "cost_class": method.cost_class, "passes_per_sample": method.passes_per_sample(), "tier": method.tier,
             "control": method.control, "paper": method.paper, "description": method.description}
        )
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
