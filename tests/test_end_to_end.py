"""End to end: the default suite through the CLI, and the committed baseline results.

``test_default_suite_small`` runs every built-in task x method x metric through
``xaiboard run`` on a few samples (the full suite, n = 64, is the README's second set-up
command and takes minutes). The ``committed`` tests read the baseline results under
``submissions/`` — the numbers the leaderboard shows — and check the claims we make about
them, so a regenerated board that breaks a claim fails CI.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import xaiboard.benchmark.metrics  # noqa: F401  (registers the built-in metrics)
import xaiboard.methods  # noqa: F401
import xaiboard.tasks  # noqa: F401
from xaiboard.benchmark.cli import suite_tasks
from xaiboard.benchmark.paths import submissions_dir
from xaiboard.benchmark.registry import METHODS, METRICS, TASKS
from xaiboard.benchmark.store import ResultStore
from xaiboard.benchmark.task_check_record import read_checks

from mirror_graph import tu_data_root

DEFAULT_TASKS = suite_tasks("default")
#: hub tasks whose baselines are committed too (computed from the offline mirrors the tests use)
COMMITTED_HUB_TASKS = ["image/mnist", "graph/mutagenicity", "text/sst2"]
COMMITTED_TASKS = DEFAULT_TASKS + COMMITTED_HUB_TASKS
#: the default tier: what `xaiboard run` evaluates and the committed board holds (full-tier
#: methods run with --suite full; the README says why they are not committed yet)
BUILTIN_METHODS = [
    m for m in METHODS.names() if METHODS.factory(m).__module__.startswith("xaiboard.") and METHODS.factory(m).tier == "default"
]
#: the default suite's metrics (smooth MPRT, full tier, is not committed: see the README)
BUILTIN_METRICS = [m for m in METRICS.names()
                   if METRICS.factory(m).__module__.startswith("xaiboard.") and getattr(METRICS.factory(m), "tier", "default") == "default"]  # fmt: skip
GROUND_TRUTH_TASKS = [t for t in COMMITTED_TASKS if TASKS.factory(t).has_ground_truth]
#: (task, method) pairs allowed to be recorded as not applicable: none since GOAt covers the
#: v3 graph tasks' 4-layer GINs (before, it was exact for at most 3 layers)
NOT_APPLICABLE: set[tuple[str, str]] = set()
#: ground-truth tasks whose committed task check must pass (issue 13), with the priors that flag
#: each, the best first (none: not flagged; version 2 of the graph tasks was flagged by the cycle
#: prior, see ``tests/test_task_graph_v2.py``)
CHECKED_TASKS = {"image/shapes": (), "graph/ba-shapes": (), "graph/tree-cycles": (), "graph/ba-2motifs": ()}


def methods_of(task: str) -> set[str]:
    modality = TASKS.factory(task).modality
    return {m for m in BUILTIN_METHODS if modality in METHODS.factory(m).modalities}


def metrics_of(task: str) -> set[str]:
    instance = TASKS.create(task)
    return {m for m in BUILTIN_METRICS if METRICS.create(m).applies_to(instance) is None}


@pytest.mark.slow
def test_default_suite_small(tmp_path):
    """The README's second set-up command, in a fresh process as a user types it, on 6 samples."""
    env = {**os.environ, "XAIBOARD_RESULTS": str(tmp_path / "results"), "XAIBOARD_CACHE": str(tmp_path / "c")}
    command = [sys.executable, "-m", "xaiboard.benchmark.cli", "run", "--n", "6", "--device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gt_auroc" in result.stdout and "image/shapes" in result.stdout
    records, errors = ResultStore(tmp_path / "results").records()
    assert not errors
    assert [(r.task, r.method, r.metric, r.error) for r in records if r.status == "error"] == []
    not_applicable = {(r.task, r.method) for r in records if r.status == "not-applicable"}
    assert not_applicable <= NOT_APPLICABLE, not_applicable
    expected = {(t, m, k) for t in DEFAULT_TASKS for m in methods_of(t) for k in metrics_of(t)}
    assert {r.key for r in records} == expected


def _committed() -> dict[tuple[str, str, str], float]:
    records, errors = ResultStore(submissions_dir()).records()
    assert not errors, errors
    return {r.key: r.summary.mean for r in records if r.status == "ok"}


@pytest.fixture(scope="module")
def committed() -> dict[tuple[str, str, str], float]:
    return _committed()


@pytest.mark.parametrize("task", COMMITTED_TASKS)
def test_committed_suite_is_complete(committed, task):
    """Every committed task has an ok record for each of its (method, metric) pairs (or a
    not-applicable one where GOAt cannot apply), n >= 64 (or every test sample there is)."""
    records, _ = ResultStore(submissions_dir()).records()
    ours = [r for r in records if r.task == task]
    assert {(r.method, r.metric) for r in ours} == {(m, k) for m in methods_of(task) for k in metrics_of(task)}
    assert all(r.status == "ok" or (r.status == "not-applicable" and (task, r.method) in NOT_APPLICABLE) for r in ours)
    sizes = {r.n_samples for r in ours if r.status == "ok"}
    assert len(sizes) == 1
    if min(sizes) < 64:  # the node tasks evaluate every positive test hub: 40 each
        assert min(sizes) == len(TASKS.create(task).samples("test", 64, 0))


def test_committed_cards_say_what_each_method_is():
    """Every committed method has a valid card matching its class; the controls are marked, and
    exactly one is the random reference the board tests every method against."""
    cards, errors = ResultStore(submissions_dir()).cards()
    assert not errors, errors
    methods = {r.method for r in ResultStore(submissions_dir()).records()[0]}
    assert set(cards) == methods
    for name, card in cards.items():
        explainer = METHODS.create(name)
        assert (card.kind, card.control, card.code_hash) == ("baseline", explainer.control, explainer.code_hash())
    assert [name for name, card in cards.items() if card.control_kind == "random"] == ["random"]


@pytest.mark.parametrize("task", COMMITTED_TASKS)
def test_committed_results_are_current(task, tmp_path_factory, monkeypatch):
    """The committed numbers were computed by the code in this checkout: the task's fingerprint
    (code, removal, model parameters), every method's and metric's code hash. Editing one of them
    without regenerating (``xaiboard run --force --results-dir submissions``) fails here."""
    if task == "graph/mutagenicity":  # its model's input width comes from the data: the offline copy
        monkeypatch.setenv("XAIBOARD_DATA", str(tu_data_root(tmp_path_factory)))
    instance = TASKS.create(task)
    fingerprint = instance.fingerprint(instance.model("cpu"))
    metrics = {name: METRICS.create(name).code_hash() for name in metrics_of(task)}
    methods = {name: METHODS.create(name).code_hash() for name in methods_of(task)}
    records = [r for r in ResultStore(submissions_dir()).records()[0] if r.task == task]
    stale = [
        r.key for r in records
        if (r.task_fingerprint, r.metric_hash, r.method_hash) != (fingerprint, metrics[r.metric], methods[r.method])
    ]
    assert records and not stale, stale[:5]


@pytest.mark.parametrize("task", GROUND_TRUTH_TASKS)
def test_committed_ground_truth_claims(committed, task):
    """A gradient method finds the planted evidence (saliency or integrated gradients, as issue
    13 states it: on `graph/ba-2motifs` v2 integrated gradients scores chance, saliency 0.77); the
    random control scores chance."""
    random_auroc = committed[(task, "random", "gt_auroc")]
    assert abs(random_auroc - 0.5) <= 0.05
    best = max(committed[(task, method, "gt_auroc")] for method in ("saliency", "integrated_gradients"))
    assert best >= random_auroc + 0.15


@pytest.mark.parametrize("task", CHECKED_TASKS)
def test_committed_task_checks_are_current_and_pass(task):
    """The committed ``xaiboard task check`` record (``submissions/_tasks/``) was computed with this
    checkout's task code and model, and it passes: removing the ground truth drops the target
    probability at least twice as much as removing as many random features. Exactly the expected
    priors exceed the flag threshold (``CHECKED_TASKS``; see ``tests/test_task_graph_v3.py``).
    Retraining a model without regenerating the record (``xaiboard task check TASK --results-dir
    submissions``) fails here."""
    checks, problems = read_checks(submissions_dir())
    assert not problems, problems
    record, instance = checks[task], TASKS.create(task)
    assert record["task_fingerprint"] == instance.fingerprint(instance.model("cpu"))
    assert (record["seed"], record["n_samples"]) == (0, len(instance.samples("test", 64, 0)))
    assert record["faithfulness"]["passed"], record["faithfulness"]
    flagging = CHECKED_TASKS[task]
    assert record["flagged"] == bool(flagging) and (not flagging or record["best_prior"]["prior"] == flagging[0])
    above = [p["prior"] for p in record["priors"] if p["auroc"] is not None and max(p["auroc"], 1 - p["auroc"]) > record["flag_threshold"]]
    assert sorted(above) == sorted(flagging), record["priors"]


@pytest.mark.parametrize("task", COMMITTED_TASKS)
def test_committed_sanity_claims(committed, task):
    """The model-independent control fails MPRT (similarity ~1); saliency's similarity is lower,
    with non-overlapping 95% CIs (on graph/ba-shapes only slightly: with constant node features
    a GCN's edge gradients are mostly fixed by the graph's structure, whatever its weights)."""
    records, _ = ResultStore(submissions_dir()).records()
    mprt = {r.method: r.summary for r in records if r.task == task and r.metric == "mprt"}
    assert mprt["input_magnitude"].mean >= 0.9
    assert mprt["saliency"].ci_high < mprt["input_magnitude"].ci_low


@pytest.mark.parametrize("task", COMMITTED_TASKS)
def test_leaderboard_renders_committed_results(task, monkeypatch):
    """The Streamlit app shows every committed metric of the task, ranked, with CIs."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("XAIBOARD_SUBMISSIONS", raising=False)
    app = submissions_dir().parent / "leaderboard" / "app.py"
    # AppTest insists on a timeout; an hour is no limit a correct render comes near under any load
    at = AppTest.from_file(str(app), default_timeout=3600).run().switch_page("views/task.py").run()
    at.sidebar.selectbox(key="task").set_value(task).run()
    at.toggle(key="details").set_value(True).run()
    assert not at.exception
    tables = [frame.value for frame in at.dataframe if "95% CI" in frame.value.columns]
    assert len(tables) == len(metrics_of(task))
    for table in tables:
        assert set(table["method"]) == methods_of(task)
        scored = ~table["method"].map(lambda method: (task, method) in NOT_APPLICABLE)
        assert table.loc[scored, "95% CI"].str.match(r"^\[.+, .+\]$").all()
        assert table["control"].sum() == 2
    assert not at.error


def test_committed_digit_grid_claims(committed):
    """DiFull: the model's outputs for a cell depend on that cell only, so gradient methods put
    all positive attribution inside the target cell (exactly: their gradient outside is 0), while
    Grad-CAM, which upsamples a coarse map over the whole grid, leaks across the boundary; the
    model-free controls spread theirs over the four cells (a quarter each)."""
    share = {m: v for (t, m, k), v in committed.items() if t == "image/digit-grid" and k == "grid_pointing_game"}
    for method in ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion"):
        assert share[method] == pytest.approx(1.0, abs=1e-6), method
    assert share["gradcam"] < 0.9
    for control in ("random", "input_magnitude"):
        assert share[control] == pytest.approx(0.25, abs=0.03), control
