"""Where results and caches live.

By default next to the code (the repository's ``submissions/`` folder, which is what the
leaderboard shows and what is committed); ``XAIBOARD_SUBMISSIONS`` and ``XAIBOARD_CACHE``
redirect them, e.g. for tests or for a private run.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def submissions_dir() -> Path:
    return Path(os.environ.get("XAIBOARD_SUBMISSIONS", REPO_ROOT / "submissions"))


def cache_dir() -> Path:
    return Path(os.environ.get("XAIBOARD_CACHE", REPO_ROOT / ".xaiboard-cache"))
