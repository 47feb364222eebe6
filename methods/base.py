"""The explainer interface that every baseline and every submitted method implements.

Modelled on Captum's ``attr`` API: one class per method, one call. An explainer receives the
model, a batch of inputs, the classes to explain and the task (for its feature space, removal
operator and gradient access); it returns one score per feature, shaped like
``task.valid_features(inputs)`` (``[B, *task.feature_shape]`` except for graphs, whose edge
slots are padded per batch), higher meaning more important. It never sees ground-truth masks.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any, ClassVar

from torch import Tensor, nn

from xaiboard.benchmark.task import Batch, Modality, Task


class Explainer(ABC):
    """Subclasses set ``name`` and ``modalities`` and implement ``explain``.

    Hyperparameters are constructor keyword arguments stored in ``self.params``; they are
    recorded in every result and enter the code hash, so changing one invalidates caches.
    """

    name: ClassVar[str]
    modalities: ClassVar[frozenset[Modality]] = frozenset({"image", "text", "graph"})
    #: a control row on the leaderboard (random, model-independent), not a real method
    control: ClassVar[bool] = False
    description: ClassVar[str] = ""
    #: what a control is a control for (``random`` is the reference every method is tested against)
    control_kind: ClassVar[str] = ""
    #: shown on the method's card
    paper: ClassVar[str] = ""
    authors: ClassVar[str] = ""
    #: whether the method can explain new inputs; when False (precomputed explanations), metrics
    #: that re-run the method (robustness, sanity) are not applicable
    rerunnable: ClassVar[bool] = True
    #: how the method works (``benchmark.card.FAMILIES``), for ``xaiboard list methods`` and the board
    family: ClassVar[str] = ""
    #: how its cost grows per explained sample (``benchmark.card.COST_CLASSES``)
    cost_class: ClassVar[str] = ""
    #: model passes per explained sample, with ``{parameter}`` fields filled from ``params``
    passes: ClassVar[str] = ""
    #: ``default``: in every run; ``full``: only with ``--suite full`` or ``--methods`` (too slow
    #: for the default suite on a CPU)
    tier: ClassVar[str] = "default"

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        """Attributions shaped like ``task.valid_features(inputs)`` for ``targets`` ``[B]``."""

    def explain_batch(self, model: nn.Module, batch: Batch, task: Task) -> Tensor:
        """Attributions for a whole evaluation batch (``batch.targets``), shaped like ``batch.valid``.

        The runner explains evaluation batches through this rather than ``explain``, so that an
        explainer can use the sample ids (precomputed explanations are looked up by id);
        re-runs on perturbed inputs or randomised models go through ``explain``.
        """
        return self.explain(model, batch.inputs, batch.targets, task)

    def close(self) -> None:
        """Release what the method holds (a sandboxed method's worker process); nothing by default."""

    def passes_per_sample(self) -> str:
        """``passes`` with the method's parameters filled in, e.g. ``32 forward + backward``."""
        return self.passes.format(**self.params)

    def supports(self, task: Task) -> bool:
        return task.modality in self.modalities

    def code_hash(self) -> str:
        """Hash of the method's source, the method modules it builds on, and its parameters.

        The cache and result key. A method that imports a base class or helper from another
        method module (``gradient_shap`` from ``gradients``) computes with that module's code
        too, so editing the helper must invalidate its results as well.
        """
        own = inspect.getmodule(type(self))
        helpers = sorted(method_dependencies(own) - {own}, key=lambda m: m.__name__)
        source = "".join(inspect.getsource(m) for m in [own, *helpers])
        blob = source + json.dumps(self.params, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"<Explainer {self.name} {self.params}>"


def method_dependencies(module: ModuleType) -> set[ModuleType]:
    """``module`` and every ``xaiboard.methods`` module it draws names from, transitively.

    The interface module (this one) is left out: it defines no computation.
    """
    found, todo = {module}, [module]
    while todo:
        for value in vars(todo.pop()).values():
            source = value if isinstance(value, ModuleType) else inspect.getmodule(value)
            name = getattr(source, "__name__", "")
            if name.startswith(_METHODS_PACKAGE) and name != __name__ and source not in found:
                found.add(source)
                todo.append(source)
    return found


_METHODS_PACKAGE = __name__.rsplit(".", 1)[0] + "."
