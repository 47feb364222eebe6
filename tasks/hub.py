"""Loading hub data: one code path for real users and for offline tests.

Hub tasks load public data by id and pinned revision: Hugging Face datasets through
``datasets.load_dataset`` and PyG's TU graphs through ``TUDataset``, both cached by their
libraries. Two environment variables redirect the *source* without changing the code path:

- ``XAIBOARD_HUB_MIRROR``: a folder laid out like the hub (``<mirror>/<owner>/<name>/`` holding
  the dataset's files, e.g. parquet shards). When set, ``load_hub_dataset`` reads the repository
  from there instead of the network, the way an institutional mirror or an air-gapped copy is
  used. The tests build such a mirror from the copies in ``../shared/data/`` and set
  ``HF_HUB_OFFLINE=1``.
- ``XAIBOARD_DATA``: where downloaded non-HF data lives (default: ``<cache>/data``); a TU
  dataset whose raw files are already under ``<data>/<name>/raw/`` is loaded without a download.
"""

from __future__ import annotations

import os
from pathlib import Path

from xaiboard.benchmark.paths import cache_dir

MIRROR_ENV = "XAIBOARD_HUB_MIRROR"
DATA_ENV = "XAIBOARD_DATA"


def data_dir() -> Path:
    """Root folder for downloaded datasets that do not live in the HF cache."""
    return Path(os.environ.get(DATA_ENV, cache_dir() / "data"))


def hub_source(repo_id: str) -> str:
    """What to pass to ``load_dataset``: the repo id, or its folder in the mirror when one is set."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return repo_id
    local = Path(mirror) / repo_id
    if not local.is_dir():
        raise FileNotFoundError(f"{MIRROR_ENV}={mirror}: no folder {repo_id}/ for hub dataset {repo_id!r}")
    return str(local)


def load_hub_dataset(repo_id: str, revision: str, split: str, **kwargs):
    """``datasets.load_dataset(repo_id, revision=revision, split=split)``, mirror-aware.

    A mirror folder is a snapshot already, so ``revision`` is only passed to the hub; the card
    records it either way.
    """
    from datasets import load_dataset

    source = hub_source(repo_id)
    if source == repo_id:
        return load_dataset(repo_id, revision=revision, split=split, **kwargs)
    return load_dataset(source, split=split, **kwargs)
