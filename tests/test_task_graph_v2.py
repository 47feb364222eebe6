"""Version 2 of the generated graph tasks: the shortcuts of version 1 closed (issue 13).

``graph/ba-shapes`` and ``graph/tree-cycles`` hang distractor motifs on every base node, so
neither closeness to the explained node nor node degree finds the ground truth; every graph of
``graph/ba-2motifs`` has the same node and edge counts in both classes. Version 1 stays loadable
as ``NAME@1`` (archived: in no suite). Generic graph-task checks (removal identities,
determinism, an end-to-end run) are in ``test_task_graph.py``.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from sklearn.metrics import roc_auc_score

from xaiboard.benchmark.cli import suite_tasks
from xaiboard.benchmark.registry import TASKS
from xaiboard.benchmark.task_check import check_task
from xaiboard.tasks.ba_shapes import AnchoredMotifTask
from xaiboard.tasks.graph import GraphInputs
from xaiboard.tasks.weights import weights_meta

NODE_TASKS = ("graph/ba-shapes", "graph/tree-cycles")
V2_TASKS = (*NODE_TASKS, "graph/ba-2motifs")
#: the issue's bar: a model-free prior above it finds the ground truth without the model
PRIOR_BAR = 0.65
#: test accuracy of the committed weights: the issue's 0.95 (ba-shapes: 76 of its 80 test base nodes)
ACCURACY_FLOOR = 0.95
#: saliency's ground-truth AUROC where the faithfulness check passes (the issue's bar)
SALIENCY_FLOOR = 0.85


@pytest.fixture(scope="module", params=V2_TASKS)
def v2(request):
    """A version-2 task, its committed model and 32 test samples (seed 0)."""
    task = TASKS.create(request.param)
    return task, task.model(), task.samples("test", 32, seed=0)


@pytest.fixture(scope="module", params=NODE_TASKS)
def node_task(request) -> AnchoredMotifTask:
    return TASKS.create(request.param)


def mean_auroc(scores: torch.Tensor, batch) -> float:
    rows = zip(scores.detach(), batch.ground_truth, batch.valid)
    return sum(roc_auc_score(g[v].numpy(), s[v].numpy()) for s, g, v in rows) / len(batch)


def degree_prior(task, inputs: GraphInputs) -> torch.Tensor:
    """Edge-endpoint degree: ``(deg(u) deg(v))^-1/2``, light edges first (motif nodes have degree 2-3)."""
    src, dst = inputs.edge_index
    degree = torch.bincount(dst, minlength=inputs.x.shape[0]).float().clamp(min=1)
    return task.to_slots((degree[src] * degree[dst]).rsqrt(), inputs)


def distance_prior(task, inputs: GraphInputs) -> torch.Tensor:
    """Hop distance of an edge to the explained node (its nearer endpoint's), near edges first."""
    src, dst = inputs.edge_index
    hops = torch.full_like(inputs.node_sample, task.num_hops + 2)
    hops[inputs.center] = 0
    for _ in range(task.num_hops + 2):
        hops = hops.scatter_reduce(0, src, hops[dst] + 1, reduce="amin")
    return task.to_slots(-torch.minimum(hops[src], hops[dst]).float(), inputs)


def test_version_2_is_the_default_and_version_1_is_archived():
    default, full = suite_tasks("default"), suite_tasks("full")
    for name in V2_TASKS:
        current, archived = TASKS.create(name), TASKS.create(f"{name}@1")
        assert (current.version, current.tier, current.name) == ("2", "built-in", name)
        assert (archived.version, archived.tier, archived.name) == ("1", "archived", f"{name}@1")
        assert name in default and f"{name}@1" not in full
        assert current.weights_stem != archived.weights_stem
        assert weights_meta(current.weights_stem)["task_version"] == "2"


def test_model_free_priors_do_not_find_the_truth(v2):
    """Input magnitude (the task's model-free control), endpoint degree and, on node tasks, hop
    distance score at most 0.65 ground-truth AUROC (version 1: up to 0.998)."""
    task, _, batch = v2
    priors = {"input_magnitude": task.model_free_attribution(batch.inputs), "degree": degree_prior(task, batch.inputs)}
    if task.name in NODE_TASKS:
        priors["distance"] = distance_prior(task, batch.inputs)
    for name, scores in priors.items():
        assert mean_auroc(scores, batch) <= PRIOR_BAR, name


def test_committed_weights_accuracy(v2):
    task, model, _ = v2
    assert task.card.test_accuracy == weights_meta(task.weights_stem)["test_accuracy"]
    # accuracies are float32 means: 76/80 is stored as 0.9499999881, so compare with a round-off margin
    assert task.card.test_accuracy >= ACCURACY_FLOOR - 1e-6


def test_saliency_reads_the_model_to_find_the_truth(v2):
    task, model, batch = v2
    spec = task.gradient_spec(model, batch.inputs)
    saliency = Saliency(spec.forward).attribute(
        spec.inputs.clone().requires_grad_(), target=batch.targets, additional_forward_args=spec.additional_args
    )
    assert mean_auroc(saliency.abs(), batch) >= SALIENCY_FLOOR


#: the priors known to find the v2 graph tasks' motifs (next tests)
KNOWN_FLAGS = ("cycle", "triangle")


@pytest.fixture(scope="module", params=V2_TASKS)
def board_check(request):
    """``xaiboard task check`` of a version-2 task at the board's settings (n = 64, seed 0)."""
    return check_task(TASKS.create(request.param), n=64, seed=0)


def test_the_task_check_passes_as_the_board_runs_it(board_check):
    """``xaiboard task check`` at the board's settings (n = 64, seed 0, 8 random draws): no
    model-free prior but the cycle and triangle priors (next test) exceeds 0.65, and removing the
    ground truth drops the target probability at least twice as much as removing as many random
    edges of the sample outside it (issue 13).
    Drawn among all edges, the random edges hit the motif in 80-97% of draws, and all three tasks
    failed; drawn outside it, ba-shapes still failed (0.73 against 0.62) until its GIN was
    trained with DropEdge."""
    faithful = board_check.faithfulness
    reach = {score.prior: score.reach for score in board_check.priors}
    assert all(value is None or value <= PRIOR_BAR for prior, value in reach.items() if prior not in KNOWN_FLAGS), reach
    assert faithful.passed, f"ground-truth drop {faithful.gt_drop:.3f}, random drop {faithful.random_drop:.3f}"


def test_the_cycle_prior_finds_the_motifs_planted_in_trees_and_the_board_flags_it(board_check):
    """A known shortcut, kept visible rather than hidden: the base graphs are trees, so the motifs
    are their only cycles and "edges on a cycle" finds them without the model (0.87 BA-Shapes, 0.92
    Tree-Cycles, 1.00 BA-2Motifs at n = 64). Distractor motifs keep it below 1 on the node tasks.
    The triangle prior finds BA-2Motifs' house and bowtie too (0.84: both carry triangles), but
    not BA-Shapes' houses (0.64: the house's square edges hold no triangle)."""
    assert board_check.flagged and board_check.best_prior.prior == "cycle"
    assert board_check.best_prior.auroc > 0.8


def test_every_base_node_carries_distractors(node_task):
    """Distractors hang on every base node, positive or not; a positive node carries exactly one
    target motif, and its label says so."""
    data, n = node_task.data, node_task.base_nodes
    hung = data.motif[data.edge_index[1]][data.edge_index[0] < n]
    anchor = data.edge_index[0][data.edge_index[0] < n][hung >= 0]
    hung = hung[hung >= 0]
    first_target = n * node_task.distractors  # motif ids: distractors, then targets, then second distractors
    is_target = (hung >= first_target) & (hung < first_target + n // 2)
    distractors = torch.bincount(anchor[~is_target], minlength=n)
    targets = torch.bincount(anchor[is_target], minlength=n)
    assert (distractors >= node_task.distractors).all() and int((distractors > node_task.distractors).sum()) == n // 4
    assert targets.max() == 1 and torch.equal(targets, data.y[:n])
    assert int(targets.sum()) == n // 2


def test_ground_truth_is_the_target_motif_and_its_joining_edge(node_task):
    batch = node_task.samples("test", 16, seed=0)
    inputs, data = batch.inputs, node_task.data
    src, dst = inputs.node_id[inputs.edge_index]
    on_gt = batch.ground_truth[inputs.edge_sample, inputs.edge_slot]
    own = data.target[batch.ids][inputs.edge_sample]
    center = batch.ids[inputs.edge_sample]
    assert (batch.labels == 1).all() and (own >= 0).all()
    in_own = ((data.motif[src] == own) | (src == center)) & ((data.motif[dst] == own) | (dst == center))
    assert torch.equal(on_gt, in_own)
    joining = on_gt & ((src == center) | (dst == center))
    assert torch.equal(torch.bincount(inputs.edge_sample[joining], minlength=len(batch)), torch.full((len(batch),), 2))


def test_ba_2motifs_classes_have_equal_edge_counts():
    """House and bowtie: 5 nodes, 6 edges each, on the same BA tree graph by graph (version 1's
    five-cycle had one edge fewer)."""
    task = TASKS.create("graph/ba-2motifs")
    counts, labels = task.graphs.edge_counts(), task.dataset.y
    assert torch.equal(counts[labels == 0], counts[labels == 1])
    assert torch.equal(task.graphs.node_counts()[labels == 0], task.graphs.node_counts()[labels == 1])
    motif_edges = torch.bincount(task.graphs.edge_sample[task.dataset.edge_mask.bool()], minlength=len(labels))
    assert (motif_edges == 12).all()


#: How far a retrained model's test accuracy may fall from the committed one's. One point
#: absorbs float round-off on the CPU that trained the committed model. BA-Shapes v2's
#: 4,000 full-graph epochs amplify the round-off of other CPUs' kernels into other weights: the
#: previous recipe's model (95.0%, AMD EPYC) retrained to 92.5% on an Intel Xeon with torch's
#: AVX-512 or AVX2 kernels and to 93.75% with its default ones (2026-12-02), i.e. 2 of its 80
#: test nodes. The current model (98.75%) was trained on the Xeon; the margin stays.
CROSS_CPU_TOLERANCE = {"graph/ba-shapes": 0.03}


@pytest.mark.slow  # 1-2 minutes per task on a loaded 2-core machine
@pytest.mark.parametrize("name", V2_TASKS)
def test_recipe_reproduces_the_committed_accuracy(name):
    task = TASKS.create(name)
    _, accuracy = task.train_model(seed=0)
    committed = weights_meta(task.weights_stem)["test_accuracy"]
    assert accuracy == pytest.approx(committed, abs=CROSS_CPU_TOLERANCE.get(name, 0.01))
