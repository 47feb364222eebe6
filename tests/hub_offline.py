"""Hub tasks under test: read a local mirror, never the network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from xaiboard.tasks.hub import MIRROR_ENV


@contextmanager
def offline_hub(mirror: Path) -> Iterator[None]:
    """Within the block, hub tasks load from ``mirror`` with the HF hub switched off
    (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``), as a user without network would with a mirror."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv(MIRROR_ENV, str(mirror))
        yield
