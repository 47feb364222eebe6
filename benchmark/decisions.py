"""Which model outputs compete for one decision: the predicted class of a target, per group.

Most tasks' outputs are one classifier, and "the model's decision" is the argmax over all of
them. Some are several classifiers side by side: ``image/digit-grid`` outputs, for each of the
four cells of a grid, that cell's 10 digit log-probabilities, and a sample's target is one
cell's digit. An argmax over all 40 outputs then asks which *cell* is most confident, not which
digit the target cell holds, and counts a correct cell as wrong whenever another cell is surer.

A task declares its groups with the optional class attribute ``decision_group_size`` (``G``):
outputs ``g*G .. g*G + G - 1`` form group ``g`` (digit-grid: ``G = 10``, group = cell). Without
it, all ``num_classes`` outputs form one group, which is the plain argmax, bit for bit. Every
decision below is taken within the group of the sample's target: the predicted class is the
argmax of that group's outputs, an "other class" is another output of that group.

Metrics whose score depends on such a decision derive from :class:`DecisionMetric` as well as
:class:`~.metric.Metric`. A metric's code hash covers the modules of the classes it derives
from (``source_hash``), not the modules it imports; deriving from ``DecisionMetric`` puts this
module among them, so editing the decision rule makes those metrics' stored records stale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .task import Task


class DecisionMetric:
    """Base of every metric whose score depends on the model's decision (see the module
    docstring): it makes the metric's code hash cover this module. It adds no behaviour."""


def group_size(task: Task) -> int:
    """``G``: how many consecutive outputs form one decision (all ``num_classes`` by default)."""
    size = getattr(task, "decision_group_size", task.num_classes)
    if not isinstance(size, int) or size < 1 or task.num_classes % size:
        raise ValueError(
            f"task {task.name}: decision_group_size must be a positive divisor of num_classes "
            f"({task.num_classes}), got {size!r}"
        )
    return size


def group_classes(task: Task, targets: Tensor) -> Tensor:
    """Long ``[*targets.shape, G]``: the classes of each target's group, in order."""
    size = group_size(task)
    start = targets - targets % size
    return start.unsqueeze(-1) + torch.arange(size, device=targets.device)


def in_target_group(task: Task, logits: Tensor, targets: Tensor) -> Tensor:
    """``logits [..., C]`` with every output outside its target's group set to ``-inf``.

    ``targets`` broadcasts against ``logits.shape[:-1]`` (e.g. ``[B]`` against ``[n, B, C]``).
    With one group nothing is masked, so an argmax over the result is the plain argmax, ties
    included (the first maximal index either way).
    """
    size = group_size(task)
    if size == task.num_classes:
        return logits
    groups = torch.arange(logits.shape[-1], device=logits.device) // size
    inside = groups == (targets // size).unsqueeze(-1)
    return logits.masked_fill(~inside, -torch.inf)


def predicted(task: Task, logits: Tensor, targets: Tensor) -> Tensor:
    """Long ``logits.shape[:-1]``: the class the model decides for in each target's group."""
    return in_target_group(task, logits, targets).argmax(dim=-1)
