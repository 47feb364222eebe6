"""Amortised explanation: a small student network per (task, model), trained once to imitate an
expensive teacher explainer, then explaining any input in one forward pass of its own.

Following FastSHAP (Jethani et al., "FastSHAP: Real-Time Shapley Value Estimation", ICLR 2022)
and CXPlain (Schwab & Karlen, "CXPlain: Causal Explanations for Model Interpretation under
Uncertainty", NeurIPS 2019), in the setting Chuang et al. survey as amortised explanation
("Efficient XAI Techniques: A Taxonomic Survey", 2023; their CoRTX learns the student
contrastively): the student is fitted to the teacher's attributions on training samples by
regression, as the survey's "learning to explain with supervision" branch does, and what the
board then measures is how much of the teacher's quality survives at a student's cost.

**Training, on first use for a (task, model).** ``n_train`` samples of the task's ``train``
split (never the evaluated ``test`` split) are drawn under ``seed``, each explained for its
label or, with probability 1/2, a class drawn uniformly (``training_targets``: the student
explains every class, as FastSHAP's does). The teacher (default: the registered
``integrated_gradients``, 32 Gauss-Legendre steps; ``teacher`` and ``teacher_params`` choose
another registered method) explains them in one batched call. The student is fitted by Adam in
seeded mini-batches of ``batch_size`` for ``epochs`` epochs, learning rate ``lr`` decayed to 0
on a cosine (so the last steps do not jitter the fit), to the teacher's scores divided by their
root mean square (so one learning rate suits every task's logit scale; the scale is stored in
the student and multiplied back). The loss is the mean squared error over valid features, not a
rank loss: metrics that sum attributions (infidelity, completeness-style checks) and signed
scores need the teacher's values, not only its order, and with MSE a teacher that the student
can represent is reproduced exactly (``tests/test_methods_amortised.py``).

**Cost.** Training costs the teacher's passes on ``n_train`` samples (IG: ``32 x n_train``
forward + backward) plus the student's fit, once per (task, model): measured on a shared 2-core
CPU with one torch thread, 4-13 CPU seconds per built-in image and text task and on
graph/ba-2motifs and graph/tree-cycles, 52 on graph/ba-shapes (256 computation subgraphs make a
large union), 6.5 on image/mnist. The passes are counted where
the training happens, inside the first explanation or re-explanation that needs the student:
a run that trains shows them in that record's cost, a run that finds the student cached does
not. Explaining then costs no model pass at all: the student reads the task's gradient input
(pixels and their removal baseline, word embeddings) or its graph, never the model's outputs.

**Which model the student explains.** A student is trained for the model it is given: the cache
key is ``task.fingerprint(model)`` (the model's parameters as loaded), with this module's code
hash and parameters and the teacher's code hash. A randomised model (MPRT's cascade) therefore
gets a new student trained on the randomised model's teacher attributions: honest, since an
explanation of model M must be a function of M, but each cascade step costs one training. The
alternative, keeping the original model's student, would make every re-explanation on a
randomised model identical by construction, so MPRT would measure the cache, not the method.

**Students, per modality** (each outputs one map per class; the target's map is the answer):

- image: a stride-2 3x3 convolution over the pixels and their difference from the removal
  baseline (``GradientSpec.inputs - baselines``), two more at half resolution, upsampled back,
  plus a learnt per-position map: a per-class "gradient" ``G`` on the pixel grid. The score is
  ``sum_c (x - b)_c G_c``, IG's own form (``x - b`` times the path-averaged gradient), so a
  linear model's IG ``(x - b) w`` is exactly representable (``G = w`` in the position map).
- text: the same form over the word embeddings and their difference from the ``[MASK]``
  baseline, with ``G`` from two width-5 1-D convolutions along the sequence (the attention mask
  an input channel).
- graph: node features (plus a marker on the explained node of node tasks) through three rounds
  of PyG ``GraphConv`` message passing, then an MLP on each edge's endpoint states gives the
  edge's per-class score.

Everything is batched in torch: one teacher call over the training batch, mini-batch student
steps, one student forward per explained batch. Students are cached in memory (per explainer)
and on disk under ``cache_dir()/students`` (written atomically), so a second construction, a
second run or a second process does not retrain.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GraphConv

from xaiboard.benchmark.atomic import atomic_write
from xaiboard.benchmark.paths import cache_dir
from xaiboard.benchmark.registry import METHODS
from xaiboard.benchmark.task import Task

from .base import Explainer

Features = tuple[Tensor, ...]


class Student(nn.Module):
    """Inputs -> per-class scores. ``encode`` reads what the student sees from a batch (detached);
    ``forward`` maps it to the scores of ``targets``, ``[B, *F]`` in the task's feature space."""

    #: whether training may cut the encoded batch into mini-batches by rows (not a graph union)
    batchable: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    @staticmethod
    @abstractmethod
    def encode(task: Task, model: nn.Module, inputs: Any) -> Features:
        """The student's input tensors for a batch of the task."""

    @abstractmethod
    def forward(self, features: Features, targets: Tensor) -> Tensor:
        """Scores ``[B, *F]`` (in units of ``scale``) of class ``targets[b]`` for sample ``b``."""


class GradientFormStudent(Student):
    """Score = ``sum over channels of (x - b) * G_target``: IG's form, with the "gradient" ``G``
    predicted from ``x`` and ``x - b`` by a convolutional ``trunk``.

    A feature equal to its removal baseline scores 0, as it does under every removal-based
    teacher (IG, DeepLIFT, GradientSHAP, occlusion, KernelSHAP: removing it changes nothing).
    A free per-feature offset on top was tried first and dropped: the teacher's exact zeros
    where ``x = b`` (a zero background) become the offset's noise, which ranks them at random.

    ``channel_dim`` is the axis of the gradient input that the task pools over (image: the
    colour channels, ``ImageTask.pool``; text: the embedding, ``TextTask.pool``).
    """

    channel_dim: int

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.channels, self.classes = channels, classes

    def forward(self, features: Features, targets: Tensor) -> Tensor:
        delta = features[1]
        maps = self.maps(features)  # [B, K, C, *grid]
        gradient = maps[torch.arange(len(targets), device=targets.device), targets]
        return (delta.movedim(self.channel_dim, 1) * gradient).sum(1)

    @abstractmethod
    def maps(self, features: Features) -> Tensor:
        """``[B, K, C, *grid]``: per class, ``G`` on the ``C`` channels."""


class ImageStudent(GradientFormStudent):
    """A stride-2 3x3 convolution on ``[x, x - b]``, two 3x3 convolutions at half resolution,
    maps upsampled (bilinear) to the full grid, plus a learnt per-position map (initially 0).

    Half resolution because the maps are the smooth part (path-averaged gradients); the product
    with ``x - b`` restores pixel detail. It quarters the trunk's cost, which dominates training.
    """

    channel_dim = 1

    def __init__(self, channels: int, grid: tuple[int, int], classes: int, hidden: int) -> None:
        super().__init__(channels, classes)
        out = classes * channels
        self.trunk = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, out, 1),
        )
        self.position = nn.Parameter(torch.zeros(out, *grid))
        zero_last(self.trunk)

    @staticmethod
    def encode(task: Task, model: nn.Module, inputs: Any) -> Features:
        spec = task.gradient_spec(model, inputs)
        return spec.inputs.detach(), (spec.inputs - spec.baselines).detach()

    def maps(self, features: Features) -> Tensor:
        x, delta = features
        coarse = self.trunk(torch.cat([x, delta], dim=1))
        out = F.interpolate(coarse, size=x.shape[2:], mode="bilinear", align_corners=False) + self.position
        return out.view(x.shape[0], self.classes, self.channels, *x.shape[2:])


class TextStudent(GradientFormStudent):
    """Two width-5 1-D convolutions along the tokens on ``[e, e - b, attention mask]``."""

    channel_dim = 2

    def __init__(self, channels: int, classes: int, hidden: int) -> None:
        super().__init__(channels, classes)
        self.trunk = nn.Sequential(
            nn.Conv1d(2 * channels + 1, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, classes * channels, 1),
        )
        zero_last(self.trunk)

    @staticmethod
    def encode(task: Task, model: nn.Module, inputs: Any) -> Features:
        spec = task.gradient_spec(model, inputs)
        (mask,) = spec.additional_args
        return spec.inputs.detach(), (spec.inputs - spec.baselines).detach(), mask.to(spec.inputs.dtype)

    def maps(self, features: Features) -> Tensor:
        embeds, delta, mask = features
        out = self.trunk(torch.cat([embeds, delta, mask.unsqueeze(-1)], dim=-1).transpose(1, 2))
        batch, length = embeds.shape[:2]
        return out.view(batch, self.classes, self.channels, length)


class GraphStudent(Student):
    """Node features and an explained-node marker -> three ``GraphConv`` rounds -> per-edge MLP
    on ``[h_source, h_target]`` -> one score per class, placed in the edge's feature slot."""

    batchable = False

    def __init__(self, node_features: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [GraphConv(node_features + 1, hidden), GraphConv(hidden, hidden), GraphConv(hidden, hidden)]
        )
        self.edge_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    @staticmethod
    def encode(task: Task, model: nn.Module, inputs: Any) -> Features:
        call = task.graph_call(model, inputs)
        marker = torch.zeros(call.x.shape[0], 1, dtype=call.x.dtype, device=call.x.device)
        if call.task_level == "node":
            marker[call.index] = 1.0
        width = torch.tensor(task.valid_features(inputs).shape[1])  # E_max of the batch
        return torch.cat([call.x, marker], dim=1).detach(), call.edge_index, call.edge_slot, width

    def forward(self, features: Features, targets: Tensor) -> Tensor:
        x, edge_index, edge_slot, width = features
        h = x
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index))
        sample, slot = edge_slot.unbind(dim=1)
        per_class = self.edge_head(torch.cat([h[edge_index[0]], h[edge_index[1]]], dim=1))
        scores = per_class.new_zeros(len(targets), int(width))
        scores[sample, slot] = per_class.gather(1, targets[sample].unsqueeze(1)).squeeze(1)
        return scores


def zero_last(trunk: nn.Sequential) -> None:
    """Start the trunk's output layer at 0, so training starts from "every map 0" and the maps
    grow only where the teacher asks for them (a random start adds noise the fit must undo)."""
    nn.init.zeros_(trunk[-1].weight)
    nn.init.zeros_(trunk[-1].bias)


STUDENTS: dict[str, type[Student]] = {"image": ImageStudent, "text": TextStudent, "graph": GraphStudent}


def build_student(task: Task, features: Features, hidden: int) -> Student:
    """The task's modality's student, sized from an encoded batch."""
    x = features[0]
    if task.modality == "image":
        return ImageStudent(x.shape[1], tuple(x.shape[2:]), task.num_classes, hidden)
    if task.modality == "text":
        return TextStudent(x.shape[-1], task.num_classes, hidden)
    return GraphStudent(x.shape[1] - 1, task.num_classes, hidden)


@METHODS.register("amortised_ig")
class AmortisedExplainer(Explainer):
    """A student network trained per (task, model) to imitate ``teacher`` (Integrated Gradients).

    Pinned: ``n_train=256`` training samples, ``epochs=50`` epochs of mini-batches of 32 (400
    Adam steps) at ``lr=3e-2`` (cosine-decayed), ``hidden=32`` channels. Chosen on image/digits
    and image/digit-grid and the toy task: 3e-3 and 1e-2 left the per-position map short of its
    target (Adam moves a parameter ~``lr`` per step) and fitted worse on held-out samples;
    fewer epochs fitted worse (on image/digits, 16 channels: held-out Spearman with IG 0.27 at
    20 epochs, 0.45 at 100), more cost proportionally more seconds. Agreement with IG per task
    is in the README.

    Tier ``full``: one training is cheap (seconds), but MPRT trains a new student for every
    randomised layer (module docstring): measured, ``xaiboard run`` of MPRT on 16 image/digits
    samples for this method and ``integrated_gradients`` took 43 CPU seconds (5 students), and
    graph/ba-shapes trains each of its students in ~50.
    """

    name = "amortised_ig"
    family = "amortised"
    cost_class = "trained per task"
    passes = "no model pass (one student forward); training: {n_train} teacher explanations once per task and model"
    tier = "full"
    paper = "Jethani et al., FastSHAP: Real-Time Shapley Value Estimation, ICLR 2022 (amortised explanation, here of Integrated Gradients)"
    description = (
        "A student CNN/GNN trained per task and model to imitate Integrated Gradients on 256 train samples "
        "(MSE, Adam, 400 steps); one student forward per explanation, the teacher's passes spent once in training"
    )

    def __init__(
        self,
        n_train: int = 256,
        epochs: int = 50,
        batch_size: int = 32,
        lr: float = 3e-2,
        hidden: int = 32,
        seed: int = 0,
        teacher: str = "integrated_gradients",
        teacher_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            n_train=n_train, epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden, seed=seed, teacher=teacher,
            teacher_params=teacher_params or {},
        )
        self.students: dict[str, Student] = {}

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        student = self.student(model, task)
        with torch.no_grad():
            scores = student(student.encode(task, model, inputs), targets) * student.scale
        return scores.where(task.valid_features(inputs), 0.0)

    def teacher(self) -> Explainer:
        return METHODS.create(self.params["teacher"], **self.params["teacher_params"])

    def student_key(self, model: nn.Module, task: Task) -> str:
        """What the student depends on: the task and model as loaded, this code and its
        parameters, and the teacher's code and parameters."""
        key = {
            "task": task.name,
            "task_version": task.version,
            "task_fingerprint": task.fingerprint(model),
            "method_hash": self.code_hash(),
            "teacher_hash": self.teacher().code_hash(),
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]

    def student(self, model: nn.Module, task: Task) -> Student:
        """From memory, else from the disk cache, else trained (and then cached in both)."""
        key = self.student_key(model, task)
        if key not in self.students:
            path = cache_dir() / "students" / task.name / self.name / f"{key}.pt"
            with torch.inference_mode(False):  # a re-explanation may come from inside inference mode
                student = self.load(path, model, task) or self.train(model, task, path)
            self.students[key] = student.to(_device(model))
        return self.students[key]

    def load(self, path: Path, model: nn.Module, task: Task) -> Student | None:
        """The student stored at ``path``, or ``None`` if absent or unreadable (then retrained)."""
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            example = task.samples("train", 1, self.params["seed"]).inputs
            student = build_student(task, STUDENTS[task.modality].encode(task, model, example), self.params["hidden"])
            student.load_state_dict(state)
            return student.eval()
        except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError):
            return None

    def train(self, model: nn.Module, task: Task, path: Path) -> Student:
        """Teacher attributions on the train samples, then the fit; stored at ``path``."""
        p = self.params
        device = _device(model)
        with torch.enable_grad(), torch.random.fork_rng(devices=_cuda(device)):
            batch = task.samples("train", p["n_train"], p["seed"]).to(device)
            targets = training_targets(batch.targets, task.num_classes, p["seed"])
            teacher = self.teacher().explain(model, batch.inputs, targets, task).detach()
            features = STUDENTS[task.modality].encode(task, model, batch.inputs)
            torch.manual_seed(p["seed"])
            student = build_student(task, features, p["hidden"]).to(device)
            fit(student, features, targets, teacher, batch.valid, p)
        atomic_write(path, lambda f: torch.save({k: v.cpu() for k, v in student.state_dict().items()}, f))
        return student.eval()


def training_targets(labels: Tensor, classes: int, seed: int) -> Tensor:
    """The class each training sample is explained for: its label with probability 1/2, else a
    class drawn uniformly. Half the teacher's budget goes where the board evaluates (the label:
    ground-truth and faithfulness metrics), half keeps every class's map trained (the
    class-sensitivity metric asks for others)."""
    generator = torch.Generator().manual_seed(seed)
    other = torch.randint(classes, labels.shape, generator=generator)
    keep = torch.rand(labels.shape, generator=generator) < 0.5
    return torch.where(keep, labels.cpu(), other).to(labels.device)


def fit(student: Student, features: Features, targets: Tensor, teacher: Tensor, valid: Tensor, params: dict[str, Any]) -> None:
    """Adam on the mean squared error over valid features, against the teacher's scores divided
    by their root mean square (stored as ``student.scale``), in seeded mini-batches of
    ``batch_size`` samples, learning rate cosine-decayed to 0 over all steps. A graph student
    takes as many steps, each on the whole training union (cutting a union into mini-batches
    would mean rebuilding it; it is small)."""
    scale = teacher[valid].pow(2).mean().sqrt().clamp_min(1e-12)
    student.scale.fill_(scale)
    goal, n = teacher / scale, len(targets)
    steps = params["epochs"] * math.ceil(n / params["batch_size"])
    optimiser = torch.optim.Adam(student.parameters(), lr=params["lr"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(params["seed"])
    every = torch.arange(n, device=targets.device)
    for _ in range(params["epochs"]):
        for rows in torch.randperm(n, generator=generator).to(targets.device).split(params["batch_size"]):
            rows = rows if student.batchable else every
            part = tuple(f[rows] for f in features) if student.batchable else features
            error = (student(part, targets[rows]) - goal[rows]).pow(2)
            loss = error[valid[rows]].mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _cuda(device: torch.device) -> list[torch.device]:
    return [device] if device.type == "cuda" else []
