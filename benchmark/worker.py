"""The sandbox worker: the child process in which one untrusted explanation method runs.

:class:`xaiboard.benchmark.sandbox.SandboxedExplainer` starts it as
``python -P -m xaiboard.benchmark.worker REQUEST_FD REPLY_FD``. The worker confines itself
*first*, before torch is imported: Landlock binds only the calling thread and the threads it
starts afterwards, so torch's thread pools must be born inside the ruleset. Then it imports the
trusted code (torch, the built-in registries, the plugins), then the submission, and serves
explain requests until its request pipe closes.

Both directions use one frame format: a 12-byte length prefix, a JSON header and a raw body.
Request bodies hold ``torch.save`` bytes, which the worker unpickles (it trusts the parent);
replies are JSON plus raw tensor bytes, because the parent must never unpickle anything that
the submission could have written. This module imports only the standard library at the top
level, so that the worker reads its first request and confines itself before anything it
imports can start a thread.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import inspect
import io
import json
import os
import resource
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

#: header length (uint32) and body length (uint64), network byte order
PREFIX = struct.Struct("!IQ")
#: largest JSON header either side accepts; headers carry names, shapes and messages only
MAX_HEADER = 1 << 20
#: module name of the submission in the worker (the parent never has such a module)
SUBMISSION_MODULE = "xaiboard_submission"
#: Landlock's write-type rights (ABI >= 3): creating, writing, truncating, removing, renaming
WRITE_RIGHTS = ("WRITE_FILE", "TRUNCATE", "REMOVE_DIR", "REMOVE_FILE", "MAKE_CHAR", "MAKE_DIR")
WRITE_RIGHTS += ("MAKE_REG", "MAKE_SOCK", "MAKE_FIFO", "MAKE_BLOCK", "MAKE_SYM", "REFER")
#: the rights of the above that Landlock accepts on a single (non-directory) file
FILE_RIGHTS = ("WRITE_FILE", "TRUNCATE")
#: files the worker may write besides its scratch directory; not ``/dev/shm``, which every
#: process shares (without it joblib warns and runs serially, torch.multiprocessing cannot share)
WRITABLE_DEVICES = ("/dev/null",)
TRACEBACK_LINES = 6


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    blob = json.dumps(header).encode()
    return PREFIX.pack(len(blob), len(body)) + blob + body


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("request pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_frame(fd: int) -> tuple[dict[str, Any], bytes]:
    header_len, body_len = PREFIX.unpack(_read_exact(fd, PREFIX.size))
    return json.loads(_read_exact(fd, header_len)), _read_exact(fd, body_len)


def confine(scratch: str, memory_mb: int, landlock: bool) -> None:
    """Cap the address space, forbid core dumps, and (``landlock``) writes outside ``scratch``.

    Reads stay unrestricted: torch, the tasks and their weights live all over the filesystem.
    """
    cap = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if landlock:
        _restrict_writes(scratch)


def _restrict_writes(scratch: str) -> None:
    from landlock import FSAccess, Ruleset

    def rights(names: tuple[str, ...]) -> FSAccess:
        flags = FSAccess(0)
        for name in names:
            flags |= FSAccess[name]
        return flags

    ruleset = Ruleset(restrict_rules=rights(WRITE_RIGHTS))
    ruleset.allow(scratch)
    for device in WRITABLE_DEVICES:
        ruleset.allow(device, rules=rights(FILE_RIGHTS))
    ruleset.apply()


def load_plugins(plugins: list[str]) -> None:
    """Import the built-ins and each plugin file under the name the harness gives it
    (``registry.load_plugin``), so that models pickled in the parent whose classes live in a
    plugin unpickle here."""
    import xaiboard.methods  # noqa: F401
    import xaiboard.tasks  # noqa: F401
    from xaiboard.benchmark.registry import load_plugin

    for path in plugins:
        load_plugin(path)


class InvalidSubmission(Exception):
    """The file does not define the one Explainer class it should: a user error, no traceback."""


def load_submission(path: str, code: bytes, class_name: str | None, params: dict[str, Any]):
    """Execute the submitted file's bytes (exactly those the parent hashed) and instantiate."""
    spec = importlib.util.spec_from_file_location(SUBMISSION_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[SUBMISSION_MODULE] = module
    exec(compile(code, path, "exec"), module.__dict__)
    return _pick_class(module, Path(path).name, class_name)(**params)


def _pick_class(module: Any, file: str, class_name: str | None) -> type:
    from xaiboard.methods.base import Explainer

    if class_name is not None:
        cls = getattr(module, class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Explainer)):
            raise InvalidSubmission(f"{file} defines no Explainer subclass named {class_name!r}")
        return cls
    defined = [
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, Explainer) and cls.__module__ == SUBMISSION_MODULE
    ]
    if len(defined) != 1:
        found = ", ".join(sorted(cls.__name__ for cls in defined)) or "none"
        raise InvalidSubmission(
            f"{file} must define exactly one Explainer subclass (found: {found}); "
            "name the one to run as FILE.py:Class"
        )
    return defined[0]


def metadata(explainer: Any) -> dict[str, Any]:
    return {
        "name": str(getattr(explainer, "name", type(explainer).__name__)),
        "modalities": sorted(str(m) for m in explainer.modalities),
        "description": str(explainer.description),
        "params": json.loads(json.dumps(explainer.params, sort_keys=True, default=str)),
    }


def error_header(stage: str, exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(exc)
    return {
        "ok": False,
        "stage": stage,
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(lines[-TRACEBACK_LINES:]),
    }


class Server:
    """Holds the submission, the current model and the task instances between requests."""

    def __init__(self, explainer: Any) -> None:
        self.explainer = explainer
        self.model = None
        self.tasks: dict[str, Any] = {}

    def explain(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            model, inputs, targets, task = self._unpack(header, body)
        except Exception as exc:
            return error_header("input", exc), b""
        try:
            return self._run(model, inputs, targets, task, header["seed"], header.get("precision", "fp32"))
        except BaseException as exc:
            return error_header("explain", exc), b""

    def _unpack(self, header: dict[str, Any], body: bytes):
        import torch

        from xaiboard.benchmark.registry import TASKS

        model_len = header["model_bytes"]
        if model_len:
            self.model = torch.load(io.BytesIO(body[:model_len]), map_location="cpu", weights_only=False)
        inputs, targets = torch.load(io.BytesIO(body[model_len:]), map_location="cpu", weights_only=False)
        name = header["task"]
        if name not in self.tasks:
            self.tasks[name] = TASKS.create(name)
        return self.model, inputs, targets, self.tasks[name]

    def _run(self, model, inputs, targets, task, seed: int, precision: str) -> tuple[dict[str, Any], bytes]:
        import torch

        from xaiboard.benchmark.cost import count_passes
        from xaiboard.benchmark.precision import model_passes

        torch.manual_seed(seed)
        with count_passes(model) as cost, model_passes(model, torch.device("cpu"), precision):
            out = self.explainer.explain(model, inputs, targets, task)
        if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
            raise TypeError(f"explain returned {type(out).__name__} {getattr(out, 'dtype', '')}, not a float tensor")
        out = out.detach().cpu().contiguous()
        header = {
            "ok": True,
            "dtype": str(out.dtype).removeprefix("torch."),
            "shape": list(out.shape),
            "cost": {"forward_passes": cost.forward_passes, "backward_passes": cost.backward_passes, "seconds": cost.seconds},
        }
        return header, out.reshape(-1).view(torch.uint8).numpy().tobytes()


def serve(request_fd: int, reply_fd: int) -> None:
    """Start up as the first request says, then answer explain requests until EOF."""
    header, code = _read_frame(request_fd)
    try:
        confine(header["scratch"], header["memory_mb"], header["landlock"])
    except Exception as exc:
        _write_all(reply_fd, encode_frame(error_header("sandbox", exc)))
        return
    try:
        import torch

        torch.set_num_threads(header["threads"])
        load_plugins(header["plugins"])
    except Exception as exc:
        _write_all(reply_fd, encode_frame(error_header("setup", exc)))
        return
    try:
        explainer = load_submission(header["source"], code, header["class_name"], header["params"])
        ready = {"ok": True, "meta": metadata(explainer)}
    except InvalidSubmission as exc:
        ready, explainer = error_header("invalid", exc), None
    except BaseException as exc:
        ready, explainer = error_header("load", exc), None
    _write_all(reply_fd, encode_frame(ready))
    if explainer is None:
        return
    server = Server(explainer)
    while True:
        try:
            header, body = _read_frame(request_fd)
        except EOFError:
            return
        _write_all(reply_fd, encode_frame(*server.explain(header, body)))


def main() -> None:
    faulthandler.enable()
    request_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    for fd in (request_fd, reply_fd):
        os.set_inheritable(fd, False)
    serve(request_fd, reply_fd)


if __name__ == "__main__":
    main()
