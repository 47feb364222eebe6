"""Running an untrusted explanation method in an isolated worker process.

A submitted method is arbitrary Python, so the harness never imports it. A
:class:`SandboxedExplainer` is an :class:`~xaiboard.methods.base.Explainer` proxy: it starts
``xaiboard.benchmark.worker`` in a new session with its own scratch directory, and the worker
confines itself before it imports the submission:

- **writes**: Landlock lets it create, write, truncate, rename or delete files only beneath
  its scratch directory (and write ``/dev/null``); results, caches and the repository are
  read-only to it. Reads stay open (torch, the tasks and their weights live everywhere).
- **memory**: ``RLIMIT_AS`` caps its address space; no core dumps.
- **time**: each explain call has a wall-clock budget; past it the worker's process group is
  killed and the next call starts a fresh worker.
- **the pipe**: the parent sends pickles (the worker trusts the parent) but reads only JSON and
  raw tensor bytes back, validated, so nothing the submission writes is ever unpickled here.

Not covered: what the method may read, the network, signals to the user's other processes,
and processes it detaches with ``setsid`` (they escape the process-group kill). Pass counts are
made inside the worker, so they are as trustworthy as the method itself; its time is measured
by the parent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor, nn

from xaiboard.benchmark.card import NAME_PATTERN
from xaiboard.benchmark.cost import Cost
from xaiboard.benchmark.task import MODALITIES, Task
from xaiboard.benchmark.worker import MAX_HEADER, PREFIX, encode_frame
from xaiboard.methods.base import Explainer

log = logging.getLogger(__name__)

#: Landlock ABI 3 (Linux 6.2) is the first that can forbid truncating a file
MIN_LANDLOCK_ABI = 3
#: allowance for importing torch, the plugins and the submission, on top of the time budget
STARTUP_S = 300.0
#: how long a worker whose pipe closed may take to exit before it is called hung
EXIT_GRACE_S = 2.0
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
#: how torch and Python word a failed allocation under RLIMIT_AS
MEMORY_HINTS = ("can't allocate memory", "DefaultCPUAllocator", "std::bad_alloc")
#: cache and config variables pointed into the scratch directory, so libraries write there
SCRATCH_VARS = {
    "HOME": "",
    "TMPDIR": "",
    "TMP": "",
    "TEMP": "",
    "XDG_CACHE_HOME": ".cache",
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "XDG_STATE_HOME": ".local/state",
    "HF_HOME": ".cache/huggingface",
    "HF_HUB_CACHE": ".cache/huggingface/hub",
    "HF_DATASETS_CACHE": ".cache/huggingface/datasets",
    "TORCH_HOME": ".cache/torch",
    "MPLCONFIGDIR": ".config/matplotlib",
}


@dataclass(frozen=True)
class SandboxPolicy:
    """The limits a submitted method runs under.

    ``memory_mb`` caps the worker's *address space*, which counts reservations too. Measured in
    the worker with torch, transformers and torch_geometric imported, after a gradient over 64
    ``image/shapes`` images: VmPeak 1.3 GB with 1-2 torch threads, 1.5 GB with 16, 2.3 GB with
    64 (each thread reserves a stack; glibc's arenas are capped at two). So 8 GB leaves the
    method over 5.5 GB of its own, and torch's thread pools start fine under the cap.
    ``unsafe_no_sandbox`` runs without Landlock where the kernel lacks it; the rlimits still
    apply. ``time_budget_s`` bounds each explain call (one task batch), model transfer included.
    """

    time_budget_s: float = 600.0
    memory_mb: int = 8192
    unsafe_no_sandbox: bool = False


class SubmissionError(RuntimeError):
    """One-line, user-facing message naming the problem; ``details`` holds the traceback tail."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class MethodRaised(SubmissionError):
    pass


class BudgetExceeded(SubmissionError):
    pass


class MemoryCapExceeded(SubmissionError):
    pass


class WorkerDied(SubmissionError):
    pass


class SandboxUnavailable(SubmissionError):
    pass


@functools.cache
def sandbox_unavailable() -> str | None:
    """None when the kernel's Landlock works here; else the one-line reason."""
    if platform.system() != "Linux":
        return f"Landlock needs Linux, this is {platform.system()}"
    try:
        import landlock

        abi = landlock.landlock_abi_version()
    except Exception as exc:  # ImportError, or the syscall's SyscallError with its reason
        return _one_line(getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
    if abi < MIN_LANDLOCK_ABI:
        return f"the kernel's Landlock ABI is {abi}, and ABI {MIN_LANDLOCK_ABI} (Linux 6.2) is needed to forbid truncation"
    return None


def _one_line(text: str, limit: int = 300) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Worker:
    """One worker process with its pipes, scratch directory and log; killed on close or GC."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="xaiboard-sandbox-"))
        self.log = open(self.scratch / "worker.log", "w+b")  # noqa: SIM115 (closed by the finalizer)
        request_r, self.request = os.pipe()
        self.reply, reply_w = os.pipe()
        try:  # -P: the scratch dir (the cwd, writable by the method) is not on sys.path
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "xaiboard.benchmark.worker", str(request_r), str(reply_w)],
                pass_fds=(request_r, reply_w),
                cwd=self.scratch,
                env=_environment(self.scratch),
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            _release(self.request, self.reply, self.log, self.scratch)
            raise
        finally:
            os.close(request_r)
            os.close(reply_w)
        os.set_blocking(self.request, False)
        self._finalize = weakref.finalize(self, _shut_down, self.process, self.request, self.reply, self.log, self.scratch)

    def send(self, data: bytes, deadline: float) -> None:
        """Write ``data`` by ``deadline`` (TimeoutError), or EOFError if the worker is gone."""
        view = memoryview(data)
        poller = select.poll()
        poller.register(self.request, select.POLLOUT)
        while view:
            if not poller.poll(_millis(deadline)):
                raise TimeoutError
            try:
                view = view[os.write(self.request, view) :]
            except BrokenPipeError:
                raise EOFError from None
            except BlockingIOError:
                continue

    def receive(self, deadline: float, limit: int) -> tuple[dict[str, Any], bytes]:
        """One reply frame; ValueError when it is not one (too large, not a JSON object)."""
        header_len, body_len = PREFIX.unpack(self._read(PREFIX.size, deadline))
        if header_len > MAX_HEADER or body_len > limit:
            raise ValueError(f"a frame of {header_len} + {body_len} bytes")
        try:
            header = json.loads(self._read(header_len, deadline))
        except RecursionError:
            raise ValueError("a header nested too deeply") from None
        if not isinstance(header, dict):
            raise ValueError("a header that is not a JSON object")
        return header, self._read(body_len, deadline)

    def _read(self, n: int, deadline: float) -> bytes:
        buffer = bytearray()
        poller = select.poll()
        poller.register(self.reply, select.POLLIN)
        while len(buffer) < n:
            if not poller.poll(_millis(deadline)):
                raise TimeoutError
            chunk = os.read(self.reply, min(n - len(buffer), 1 << 20))
            if not chunk:
                raise EOFError
            buffer += chunk
        return bytes(buffer)

    def exit_status(self, grace: float) -> int | None:
        """The exit code (negative: signal) once the worker has exited, without reaping it.

        Not reaping keeps its pid, and so its process group, ours to kill.
        """
        deadline = time.monotonic() + grace
        while True:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                return -info.si_status if killed else info.si_status
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the worker's stdout/stderr, read through our own descriptor (the worker
        may replace the file's name, not our open file)."""
        end = os.fstat(self.log.fileno()).st_size
        return os.pread(self.log.fileno(), size, max(0, end - size)).decode(errors="replace")

    def close(self) -> None:
        self._finalize()


def _shut_down(process: subprocess.Popen, request: int, reply: int, log: BinaryIO, scratch: Path) -> None:
    """Kill the worker's process group (it is not reaped yet, so the group is still its own)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _release(request, reply, log, scratch)


def _release(request: int, reply: int, log: BinaryIO, scratch: Path) -> None:
    for fd in (request, reply):
        with contextlib.suppress(OSError):
            os.close(fd)
    log.close()
    shutil.rmtree(scratch, ignore_errors=True)


def _millis(deadline: float) -> int:
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))


def _environment(scratch: Path) -> dict[str, str]:
    """The parent's environment with homes, temp and cache folders inside ``scratch``.

    Libraries then write where Landlock lets them (bytecode caches it would deny are not
    attempted). ``MALLOC_ARENA_MAX`` bounds glibc's per-thread 64 MB arena reservations, which count
    against ``RLIMIT_AS`` without being used (measured: 0.9 GB saved at 64 threads).
    """
    env = dict(os.environ)
    env.update({name: str(scratch / sub) for name, sub in SCRATCH_VARS.items()})
    env.setdefault("MALLOC_ARENA_MAX", "2")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _dump(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@contextlib.contextmanager
def _hooks_detached(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with its hooks set aside while it is pickled: the parent's pass counter and
    Captum's hooks are closures that neither pickle nor mean anything in the worker, which
    counts its own passes."""
    names = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
             "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")
    saved = [(module, name, getattr(module, name)) for module in model.modules() for name in names if hasattr(module, name)]
    for module, name, value in saved:
        setattr(module, name, type(value)())
    try:
        yield model
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _model_signature(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """Where each parameter lives and its in-place version: randomising a layer changes it."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def _decode(reply: dict[str, Any], body: bytes) -> tuple[Tensor, Cost]:
    """The explanation and its cost from a success reply, checked field by field."""
    dtype = DTYPES.get(reply.get("dtype"))
    if dtype is None:
        raise ValueError(f"dtype {str(reply.get('dtype'))[:40]!r} is not a float type")
    shape = reply.get("shape")
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError("a shape that is not a list of sizes")
    if len(body) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{len(body)} bytes for shape {shape} of {dtype}")
    cost = reply.get("cost")
    counts = ("forward_passes", "backward_passes")
    if not (
        isinstance(cost, dict)
        and all(type(cost.get(k)) is int and cost[k] >= 0 for k in counts)
        and type(cost.get("seconds")) in (int, float)
        and cost["seconds"] >= 0
    ):
        raise ValueError("a cost that is not pass counts and seconds")
    flat = torch.frombuffer(bytearray(body), dtype=dtype) if body else torch.empty(0, dtype=dtype)
    return flat.reshape(shape), Cost(cost["forward_passes"], cost["backward_passes"], float(cost["seconds"]))


class SandboxedExplainer(Explainer):
    """An explainer whose code runs in a confined worker process; see the module docstring.

    ``name``, ``modalities``, ``description`` and ``params`` are what the worker reports for
    the submitted class (``name`` overrides its name); ``control`` is always False. Each
    ``explain`` call sends the batch, and the model only when it changed since the last call;
    ``last_cost`` holds the passes counted in the worker for the last call and the seconds the
    parent waited for it (transfers included: a method cannot under-report its time).
    """

    control = False

    def __init__(
        self,
        source: Path,
        class_name: str | None,
        policy: SandboxPolicy,
        plugins: Sequence[Path] = (),
        name: str | None = None,
        params: dict | None = None,
    ) -> None:
        reason = sandbox_unavailable()
        if reason is not None and not policy.unsafe_no_sandbox:
            raise SandboxUnavailable(f"no sandbox: {reason}; pass --unsafe-no-sandbox to run without one")
        if reason is not None:
            log.warning("no sandbox (%s): %s runs under rlimits only", reason, source)
        self.source = Path(source).resolve()
        try:
            self._code = self.source.read_bytes()
        except OSError as exc:
            raise SubmissionError(f"cannot read {source}: {exc.strerror}") from None
        self.class_name = class_name
        self.policy = policy
        self._landlock = reason is None
        self._plugins = [str(Path(p).resolve()) for p in plugins]
        self._requested = dict(params or {})
        self._worker: _Worker | None = None
        self._model_ref: weakref.ref | None = None
        self._model_signature: tuple | None = None
        self.last_cost = Cost()
        if name is not None:
            self.name = name
        meta = self._start()
        super().__init__(**meta["params"])
        self.name = name if name is not None else meta["name"]
        if not NAME_PATTERN.match(self.name):
            self.close()
            raise SubmissionError(f"method name {self.name!r} is not a plain name (letters, digits, _ . + -); pass --name")
        self.modalities = frozenset(meta["modalities"])
        self.description = meta["description"]

    def code_hash(self) -> str:
        """sha256 of the file's bytes and the requested params (the file holds the defaults)."""
        blob = self._code + json.dumps(self._requested, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def explain(self, model: nn.Module, inputs: Any, targets: Tensor, task: Task) -> Tensor:
        """Explain in the worker, seeded from the parent's generator, so that seeding the
        parent makes the call deterministic. The result comes back on the inputs' device (the
        targets' unless ``inputs`` is a tensor); the worker itself runs on the CPU, under bf16
        autocast when the caller's passes run under it (``precision.py``)."""
        seed = int(torch.randint(0, 2**62, (1,)))
        device = inputs.device if isinstance(inputs, Tensor) else targets.device
        if self._worker is None:
            self._start()
        signature = _model_signature(model)
        same = self._model_ref is not None and self._model_ref() is model and self._model_signature == signature
        with _hooks_detached(model):
            model_bytes = b"" if same else _dump(model)
        header = {"op": "explain", "task": task.name, "seed": seed, "model_bytes": len(model_bytes),
                  "precision": "bf16" if torch.is_autocast_enabled(device.type) else "fp32"}
        body = model_bytes + _dump((inputs, targets))
        budget = self.policy.time_budget_s
        start = time.perf_counter()
        reply, payload = self._exchange(header, body, budget, f"{self._subject} exceeded its time budget of {budget:g} s")
        if reply.get("stage") != "input":
            self._model_ref, self._model_signature = weakref.ref(model), signature
        if reply.get("ok") is not True:
            raise self._error(reply)
        try:
            out, self.last_cost = _decode(reply, payload)
        except ValueError as exc:
            self.close()
            raise SubmissionError(f"{self._subject}: the worker sent a malformed reply ({exc})") from None
        self.last_cost.seconds = time.perf_counter() - start  # the parent's clock, not the method's word
        return out.to(device)

    def close(self) -> None:
        """Kill the worker and remove its scratch directory; a later call starts a new one."""
        if self._worker is not None:
            self._worker.close()
        self._worker = None
        self._model_ref = self._model_signature = None

    def __reduce__(self) -> tuple:
        """Pickled as the recipe that starts it, not its process: a Ray worker that unpickles
        it starts a sandboxed worker of its own (the file is read again at the same path there)."""
        return SandboxedExplainer, (self.source, self.class_name, self.policy, self._plugins, self.name, self._requested)

    def __enter__(self) -> SandboxedExplainer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def _subject(self) -> str:
        return getattr(self, "name", None) or self.source.name

    def _start(self) -> dict[str, Any]:
        """Start a worker, have it load the submission, and return its validated metadata."""
        self._worker = _Worker()
        header = {
            "scratch": str(self._worker.scratch),
            "memory_mb": self.policy.memory_mb,
            "landlock": self._landlock,
            "threads": torch.get_num_threads(),
            "plugins": self._plugins,
            "source": str(self.source),
            "class_name": self.class_name,
            "params": self._requested,
        }
        timeout = STARTUP_S + self.policy.time_budget_s
        reply, _ = self._exchange(header, self._code, timeout, f"{self._subject} did not load within {timeout:g} s")
        if reply.get("ok") is not True:
            self.close()
            raise self._error(reply)
        try:
            return _metadata(reply.get("meta"))
        except ValueError as exc:
            self.close()
            raise SubmissionError(f"{self._subject}: the worker sent malformed metadata ({exc})") from None

    def _exchange(self, header: dict[str, Any], body: bytes, timeout: float, late: str) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait ``timeout`` s for its reply (else BudgetExceeded(``late``));
        a worker that fails here is killed, and the next call starts a fresh one."""
        worker, deadline = self._worker, time.monotonic() + timeout
        try:
            worker.send(encode_frame(header, body), deadline)
            return worker.receive(deadline, limit=self.policy.memory_mb << 20)
        except TimeoutError:
            self.close()
            raise BudgetExceeded(late) from None
        except EOFError:
            status, tail = worker.exit_status(EXIT_GRACE_S), worker.log_tail()
            self.close()
            raise self._death(status, tail) from None
        except ValueError as exc:
            self.close()
            raise SubmissionError(f"{self._subject}: the worker sent a malformed reply ({exc})") from None

    def _death(self, status: int | None, tail: str) -> SubmissionError:
        if status == -signal.SIGKILL:
            return MemoryCapExceeded(f"{self._subject} exceeded its memory cap of {self.policy.memory_mb} MB (killed by SIGKILL)", tail)
        if status is None:
            how = "closed its reply pipe"
        elif status < 0:
            how = f"signal {-status}, {signal.Signals(-status).name}"
        else:
            how = f"exit code {status}"
        return WorkerDied(f"{self._subject}: the worker process died ({how})", tail)

    def _error(self, reply: dict[str, Any]) -> SubmissionError:
        """The exception for a worker's error reply (its fields are untrusted strings)."""
        stage, kind = str(reply.get("stage")), _one_line(reply.get("type"), 80)
        full, details = str(reply.get("message")), str(reply.get("traceback", ""))[-4000:]
        message = _one_line(full)
        if stage in ("load", "explain") and (kind == "MemoryError" or any(h in full for h in MEMORY_HINTS)):
            return MemoryCapExceeded(f"{self._subject} exceeded its memory cap of {self.policy.memory_mb} MB", details)
        if stage == "explain":
            return MethodRaised(f"{self._subject} raised {kind}: {message}", details)
        if stage == "load":
            return MethodRaised(f"{self._subject} raised {kind} while loading: {message}", details)
        if stage == "invalid":
            return SubmissionError(message)
        if stage == "sandbox":
            return SandboxUnavailable(
                f"no sandbox: the worker could not confine itself ({kind}: {message}); "
                "pass --unsafe-no-sandbox to run without one",
                details,
            )
        return SubmissionError(f"{self._subject}: the worker failed at {_one_line(stage, 20)}: {kind}: {message}", details)


def _metadata(meta: Any) -> dict[str, Any]:
    """Check the worker's description of the submitted class, field by field."""
    if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    if not (isinstance(meta.get("name"), str) and isinstance(meta.get("description"), str)):
        raise ValueError("name and description must be strings")
    modalities = meta.get("modalities")
    if not (isinstance(modalities, list) and set(modalities) <= set(MODALITIES)):
        raise ValueError(f"modalities must be a subset of {', '.join(MODALITIES)}")
    if not isinstance(meta.get("params"), dict):
        raise ValueError("params must be an object")
    return meta
