"""Where results and caches live.

- **The committed board** (``submissions_dir``): the repository's ``submissions/`` folder, which
  the leaderboard shows by default. Only ``xaiboard submit`` or an explicit
  ``--results-dir submissions`` writes there, so everyday runs never rewrite published numbers.
- **Everyday results** (``results_dir``): ``./results`` in the working directory, or
  ``$XAIBOARD_RESULTS``; never inside the installed package (a wheel install would otherwise
  write into site-packages).
- **Caches** (``cache_dir``): explanations and downloaded data, ``$XAIBOARD_CACHE`` or the
  user's cache folder (``$XDG_CACHE_HOME/xaiboard``, default ``~/.cache/xaiboard``).

``XAIBOARD_SUBMISSIONS`` points the board at another folder (tests, a private board).

A results root holds one folder per method, plus ``reproductions/`` (``REPRODUCTIONS_FOLDER``):
the records of ``xaiboard reproduce``, which the board's Reproductions page shows and the result
store skips.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the folder of a results root that holds ``xaiboard reproduce``'s records (not a method's folder)
REPRODUCTIONS_FOLDER = "reproductions"


def submissions_dir() -> Path:
    return Path(os.environ.get("XAIBOARD_SUBMISSIONS", REPO_ROOT / "submissions"))


def results_dir() -> Path:
    return Path(os.environ.get("XAIBOARD_RESULTS", Path.cwd() / "results"))


def shared_data_dir() -> Path:
    """The read-only folder of offline third-party data copies that reproductions read (never
    copy): ``$XAIBOARD_SHARED_DATA``, or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("XAIBOARD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def cache_dir() -> Path:
    if "XAIBOARD_CACHE" in os.environ:
        return Path(os.environ["XAIBOARD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xaiboard"
