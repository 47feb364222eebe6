"""The offline copy of TU Mutagenicity, laid out as ``TUDataset`` expects after a download.

``TUDataset(root, "Mutagenicity")`` loads without a download when the raw TU files sit under
``root/Mutagenicity/raw/``; the tests unzip the copy in ``../shared/data/`` there once per
session and point ``XAIBOARD_DATA`` at ``root``, so the task's real loading code runs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MUTAGENICITY_ZIP = SHARED_DATA / "pgexplainer-mutagenicity" / "Mutagenicity.zip"


def tu_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding ``Mutagenicity/raw/`` (shared by every test module of the session,
    so PyG processes the raw files once)."""
    if not MUTAGENICITY_ZIP.exists():
        pytest.skip(f"{MUTAGENICITY_ZIP}: offline copy of TU Mutagenicity not found")
    root = tmp_path_factory.getbasetemp() / "tu-data"
    raw = root / "Mutagenicity" / "raw"
    if not raw.is_dir():
        with zipfile.ZipFile(MUTAGENICITY_ZIP) as archive:
            archive.extractall(raw)
    return root


def raw_file(root: Path, suffix: str) -> Path:
    return root / "Mutagenicity" / "raw" / f"Mutagenicity_{suffix}.txt"
