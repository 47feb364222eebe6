"""The task interface: a dataset, a trained model, a feature space and a removal operator.

Every metric in xaiboard is written once against this interface. A task says *what* an
attribution scores (its feature space: pixels, tokens, edges) and *how* a feature is removed
(its missingness model), and the harness does the rest for every modality alike.

Shapes used throughout:
- ``B`` samples in a batch, ``K`` keep-masks per sample, ``F`` the task's ``feature_shape``
  (e.g. ``(H, W)`` for pixels, ``(L,)`` for tokens, ``(E_max,)`` for edges).
- An explanation is a float tensor ``[B, *F]``: one score per feature, higher = more important.
- ``valid`` is a bool tensor ``[B, *F]`` marking the feature slots a sample really has (text and
  graphs are padded to a common size); metrics ignore the other slots. For graphs ``F`` is the
  largest edge count in the batch, so shapes come from ``Task.valid_features(inputs)``, not
  from ``feature_shape``.
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

Modality = Literal["image", "text", "graph"]
MODALITIES: tuple[Modality, ...] = ("image", "text", "graph")
#: ``built-in`` tasks run offline from a fresh clone (the default suite); ``hub`` tasks load
#: their data (and sometimes their model) from the Hugging Face hub or another public source.
Tier = Literal["built-in", "hub"]


@dataclass(frozen=True)
class TaskCard:
    """What a reader needs to trust a task's numbers (``xaiboard list tasks``, ``xaiboard task show``).

    ``dataset_revision`` pins hub data (a commit or tag; ``None`` for generated or packaged data),
    ``removal_baseline`` says what a removed feature becomes (the value metrics compare against),
    and ``splits`` says which samples trained the model and which are evaluated.
    """

    dataset: str
    model: str
    feature_space: str
    removal: str
    ground_truth: str
    licence: str
    test_accuracy: float | None = None
    dataset_revision: str | None = None
    removal_baseline: str = ""
    splits: str = ""
    notes: str = ""


@dataclass
class Batch:
    """``B`` evaluation samples of one task.

    ``inputs`` is whatever the task's model consumes (an image tensor, token ids with an
    attention mask, a batch of graphs); only the task itself looks inside it. ``targets`` is the
    class each explanation is asked for (the true label, so that ground truth applies).
    """

    inputs: Any
    targets: Tensor
    labels: Tensor
    valid: Tensor
    ground_truth: Tensor | None = None
    ids: Tensor | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """A copy on ``device``; ``inputs`` must implement ``.to`` (tensors and dataclasses do)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            inputs=self.inputs.to(device),
            targets=move(self.targets),
            labels=move(self.labels),
            valid=move(self.valid),
            ground_truth=move(self.ground_truth),
            ids=move(self.ids),
        )


@dataclass
class GradientSpec:
    """How gradient-based methods (Captum) see one batch of a task.

    ``forward(inputs, *additional_args) -> logits`` must accept any leading dimension that is a
    multiple of ``B``: Captum repeats ``inputs`` (integration steps, noise samples) and expands
    ``additional_args`` the same way, so per-sample context travels in ``additional_args``.
    ``baselines`` is the input with every feature removed, for Integrated Gradients.
    """

    forward: Callable[..., Tensor]
    inputs: Tensor
    baselines: Tensor
    additional_args: tuple[Tensor, ...] = ()


@dataclass
class GraphCall:
    """A batch of graphs as one disjoint union, for PyG's explainers.

    ``model_fn(x, edge_index, **kwargs) -> logits`` over the union's nodes (node tasks) or
    graphs (graph tasks); ``index`` selects the explained outputs (one per sample, in batch
    order); ``edge_slot`` is ``[E, 2]``: row ``e`` = ``(b, f)``, the sample and feature slot of edge ``e``.
    """

    model_fn: Callable[..., Tensor]
    x: Tensor
    edge_index: Tensor
    index: Tensor
    edge_slot: Tensor
    task_level: Literal["node", "graph"] = "node"
    kwargs: dict[str, Tensor] = field(default_factory=dict)


def source_hash(cls: type) -> str:
    """sha256 of the source of ``cls``'s module and of its base classes' modules.

    Used for tasks and metrics alike: editing the file that defines one (or a base it builds
    on) changes the hash, so cached explanations and stored results computed by the old code
    are never reused.
    """
    return modules_hash({inspect.getmodule(base) for base in cls.__mro__ if base.__module__ not in ("builtins", "abc")})


def modules_hash(modules: set[Any]) -> str:
    """sha256 of the sources of ``modules``, in name order."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


def model_source_hash(model: nn.Module) -> str:
    """sha256 of the source of every xaiboard module that defines a layer of ``model``."""
    return modules_hash({inspect.getmodule(type(m)) for m in model.modules() if type(m).__module__.startswith("xaiboard.")})


def parameter_hash(model: nn.Module) -> str:
    """sha256 over a model's parameters and buffers (names, dtypes, shapes, values), in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class Task(ABC):
    """One benchmark task. Subclasses set the class attributes and implement the methods."""

    name: str
    version: str
    modality: Modality
    num_classes: int
    card: TaskCard
    #: named missingness model, recorded in every result (e.g. ``zero``, ``mask-token``)
    removal_name: str
    #: file stem of the committed weights (``tasks/weights/<stem>.safetensors``)
    weights_stem: str
    #: the training recipe's hyperparameters, recorded in the weights card
    recipe: dict[str, Any] = {}
    has_ground_truth: bool = False
    #: ``built-in`` tasks form the default suite; ``hub`` tasks join it in ``--suite full``
    tier: Tier = "built-in"

    # ---- model and data -------------------------------------------------------------
    @property
    @abstractmethod
    def feature_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the (padded) feature space (graphs: the largest possible)."""

    @abstractmethod
    def valid_features(self, inputs: Any) -> Tensor:
        """Bool ``[B, *F]``: which feature slots of these inputs exist (all True for images)."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The untrained architecture; ``model()`` loads the committed weights into it."""

    @abstractmethod
    def model(self, device: torch.device | str = "cpu") -> nn.Module:
        """The trained model, in eval mode, on ``device``."""

    @abstractmethod
    def samples(self, split: str, n: int, seed: int) -> Batch:
        """``n`` samples of ``split`` (``"test"`` for evaluation), chosen deterministically by seed."""

    @abstractmethod
    def train_model(self, seed: int = 0, device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
        """Train the model by the task's recipe; returns it and its test accuracy."""

    def weights_card(self) -> dict[str, Any]:
        """Extra fields for the weights card written by ``xaiboard train-model`` (e.g. a checksum
        of generated data, so that drift in a generator is caught when the weights are loaded)."""
        return {}

    # ---- removal ----------------------------------------------------------------------
    @abstractmethod
    def remove(self, inputs: Any, keep: Tensor) -> Any:
        """Model-ready inputs for ``B*K`` rows, row ``b*K + k`` keeping ``keep[b, k]``.

        ``keep`` is bool ``[B, K, *F]``; features where it is False are removed by the task's
        missingness model. Padding slots (``valid`` False) are ignored.
        """

    @abstractmethod
    def predict(self, model: nn.Module, model_inputs: Any) -> Tensor:
        """Logits ``[N, num_classes]`` for model-ready inputs (as returned by ``remove``)."""

    def logits(self, model: nn.Module, inputs: Any) -> Tensor:
        """Logits ``[B, C]`` of the unmodified batch."""
        return self.predict(model, inputs)

    # ---- what explainers need -----------------------------------------------------------
    @abstractmethod
    def gradient_spec(self, model: nn.Module, inputs: Any) -> GradientSpec:
        """The continuous input that gradient methods attribute to (pixels, token embeddings,
        edge weights) and a forward function over it."""

    @abstractmethod
    def pool(self, attributions: Tensor, inputs: Any) -> Tensor:
        """Reduce attributions over ``GradientSpec.inputs`` to the feature space ``[B, *F]``
        (image: sum over channels; text: sum over the embedding dimension; graph: identity)."""

    def feature_groups(self, inputs: Any) -> Tensor:
        """Group id of every feature, ``[B, *F]`` (ids ``0..G-1`` per sample): the units that
        group-wise methods (feature ablation, LIME, KernelSHAP) switch on and off together.

        Each feature is its own group by default (tokens, edges); image tasks group pixels
        into superpixels. A group's score is spread back to every feature in it.
        """
        valid = self.valid_features(inputs)
        ids = torch.arange(valid[0].numel(), device=valid.device).view(valid.shape[1:])
        return ids.expand_as(valid)

    @abstractmethod
    def model_free_attribution(self, inputs: Any) -> Tensor:
        """A control that never looks at the model: the input's own magnitude per feature."""

    @abstractmethod
    def perturb(self, inputs: Any, radius: float, generator: torch.Generator) -> Any:
        """The inputs plus uniform noise in ``[-radius, radius]`` on their continuous part
        (pixels, token embeddings, node features), for robustness metrics."""

    def continuous_input(self, model: nn.Module, inputs: Any) -> tuple[Tensor, Tensor]:
        """The continuous input ``perturb`` adds noise to, as rows ``[N, ...]``, and the sample
        index ``[N]`` of each row: what robustness metrics measure input distances in.

        Default: ``GradientSpec.inputs``, one row per sample (pixels). Text keeps only the valid
        tokens' embeddings; graphs use node features, since their gradient input is edge gates.
        """
        with torch.no_grad():
            x = self.gradient_spec(model, inputs).inputs
        return x, torch.arange(x.shape[0], device=x.device)

    def cam_layer(self, model: nn.Module) -> nn.Module | None:
        """The layer Grad-CAM-style methods read (image tasks); ``None`` if not applicable."""
        return None

    def graph_call(self, model: nn.Module, inputs: Any) -> GraphCall | None:
        """The batch as one PyG call (graph tasks); ``None`` if not applicable."""
        return None

    def fingerprint(self, model: nn.Module | None = None) -> str:
        """Hash of the task's code (its module and its base classes'), removal and model: part of
        the explanation cache key and of every result record.

        ``version`` is what results cite, but a task under development (a plugin file being
        edited, a model retrained into the plugin's own folder) keeps its version while its data
        or model change; the fingerprint makes caches and stored results miss then instead of
        serving numbers of the old task. ``model`` is the model *as loaded* (its parameters and
        buffers are hashed), which covers weights wherever they come from, and the source of
        every xaiboard module that defines one of its layers (a model class may live outside the
        task's modules, as the GIN does; third-party layers are versioned by their package, which
        every record carries); without it, the committed weights file stands in.
        """
        digest = hashlib.sha256(source_hash(type(self)).encode())
        digest.update(self.removal_name.encode())
        if model is not None:
            digest.update(model_source_hash(model).encode())
            digest.update(parameter_hash(model).encode())
        else:
            digest.update(self._weights_bytes())
        return digest.hexdigest()[:12]

    def _weights_bytes(self) -> bytes:
        from xaiboard.tasks.weights import weights_path

        weights = weights_path(self.weights_stem) if getattr(self, "weights_stem", None) else None
        return weights.read_bytes() if weights is not None and weights.exists() else b""

    def __repr__(self) -> str:
        return f"<Task {self.name}@{self.version}>"
