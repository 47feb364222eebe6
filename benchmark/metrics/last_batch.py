"""A one-entry cache for work that several metrics or methods share on the same batch.

The runner evaluates every metric of a task against the same task, model and batch objects
(and every metric of one method with the same ``explain`` callable), so work that depends only
on those, such as infidelity's removal forwards or the robustness metrics' re-explanations, is
done once and read many times. The entry is matched by the *identity* of its key objects, which
it holds, so a freed object's id is never mistaken for a new one, and by equality of plain
values (seed, device, parameters). One entry is enough: the runner finishes a batch before the
next, and holding more would keep old batches' tensors alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LastBatch(Generic[T]):
    """``get(objects, values, compute)``: ``compute()``'s result, recomputed only when the key changes."""

    def __init__(self) -> None:
        self._entry: tuple[tuple[Any, ...], tuple[Any, ...], T] | None = None

    def get(self, objects: tuple[Any, ...], values: tuple[Any, ...], compute: Callable[[], T]) -> T:
        if not self._matches(objects, values):
            self._entry = (objects, values, compute())
        return self._entry[2]

    def _matches(self, objects: tuple[Any, ...], values: tuple[Any, ...]) -> bool:
        if self._entry is None:
            return False
        held, held_values, _ = self._entry
        return len(held) == len(objects) and all(a is b for a, b in zip(held, objects)) and held_values == values
