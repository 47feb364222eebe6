"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every file xaiboard publishes (result records, method cards, cached explanations) is written
to a temporary file in the target's own folder, flushed to disk, then renamed over the
target; ``os.replace`` is atomic within one filesystem, so a killed run leaves no torn file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


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
