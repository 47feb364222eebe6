"""Built-in metrics. Importing this package registers them in ``METRICS``."""

from . import class_sensitivity, complexity, correlation, cost, eraser, fidelity, ground_truth, infidelity, perturbation_curves, randomisation, sensitivity  # noqa: F401
