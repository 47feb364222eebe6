"""Built-in metrics. Importing this package registers them in ``METRICS``."""

from . import class_sensitivity, complexity, correlation, cost, eraser, fidelity, grid, ground_truth, infidelity, mprt_variants, perturbation_curves, randomisation, rationale, road, sensitivity, stability, unfaithfulness  # noqa: F401
