"""The files of a results folder: written atomically, read back with one-line errors.

Atomic writes: a reader sees the old file or the new one, never half of either.

Every file xaiboard publishes (result records, method cards, cached explanations) is written
to a temporary file in the target's own folder, flushed to disk, then renamed over the
target; ``os.replace`` is atomic within one filesystem, so a killed run leaves no torn file.
Reads (``read_json``) turn every way a file can be unreadable into one line naming it, so a bad
record or card is reported, never a traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Create ``path``'s folder, let ``write`` fill a temporary file there, rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            write(tmp)
            os.fchmod(tmp.fileno(), 0o644)  # a temp file is private (0600); a published file is not
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_json(path: Path, error: type[ValueError]) -> Any:
    """The JSON in ``path``, or ``error("<path>: <what is wrong>")``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
