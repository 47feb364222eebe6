"""Built-in metrics. Importing this package registers them in ``METRICS``."""

from . import complexity, cost, ground_truth, perturbation_curves, randomisation, sensitivity  # noqa: F401
