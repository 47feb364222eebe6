"""Name -> factory registries for tasks, methods and metrics (HF ``datasets``-style).

Built-ins register themselves when their package is imported; users add their own with the
``register`` decorator or by passing a Python file to the CLI.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorate

    def factory(self, name: str) -> Callable[..., T]:
        """The registered class/factory, e.g. to read its metadata without instantiating it."""
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def create(self, name: str, **kwargs) -> T:
        return self.factory(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


TASKS: Registry = Registry("task")
METHODS: Registry = Registry("method")
METRICS: Registry = Registry("metric")
#: start of the module name a plugin file is imported under
PLUGIN_PREFIX = "xaiboard_plugin_"
#: per plugin file (resolved path), the names it registered when imported, by registry kind
_PLUGIN_NAMES: dict[Path, dict[str, list[str]]] = {}


def load_plugin(path: Path | str) -> ModuleType:
    """Import a plugin file once per process; its ``register`` calls fill the registries.

    The module's name is derived from the file's resolved path, so the harness and a sandboxed
    worker give a plugin the same name, and a model pickled in one whose class lives in a
    plugin unpickles in the other. A plugin that fails to import leaves no half module behind.
    What the file registered is remembered (:func:`plugin_names`).
    """
    path = Path(path).resolve()
    before = {registry.kind: set(registry.names()) for registry in (TASKS, METHODS, METRICS)}
    module = import_file(PLUGIN_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:12], path)
    if path not in _PLUGIN_NAMES:
        _PLUGIN_NAMES[path] = {kind: [n for n in registry.names() if n not in before[kind]]
                               for kind, registry in (("task", TASKS), ("method", METHODS), ("metric", METRICS))}
    return module


def plugin_names(kind: str, paths: Iterable[Path | str] | None = None) -> list[str]:
    """The names of ``kind`` (``task``, ``method``, ``metric``) that the plugin files ``paths``
    registered (default: every plugin file loaded in this process), file by file, each sorted."""
    chosen = _PLUGIN_NAMES if paths is None else [Path(p).resolve() for p in paths]
    return list(dict.fromkeys(name for path in chosen for name in _PLUGIN_NAMES.get(path, {}).get(kind, [])))


def import_file(name: str, path: Path) -> ModuleType:
    """Import the file ``path`` as module ``name``, once per process; a file that fails to
    import leaves no half module behind."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
