"""Built-in explanation methods. Importing this package registers them in ``METHODS``."""

from . import controls, gnnexplainer, gradcam, gradients, occlusion  # noqa: F401
