"""Published tables rerun on our harness (``xaiboard reproduce``): one module per paper."""

from . import fastdnx_bashapes, gnnexplainer_table1, graphxai_benzene, pgexplainer_auc, robust_fidelity, sanity_checks  # noqa: F401
from .base import REPRODUCTIONS, Reproduction, format_rows, run_reproduction

__all__ = ["REPRODUCTIONS", "Reproduction", "format_rows", "run_reproduction"]
