"""Built-in explanation methods. Importing this package registers them in ``METHODS``."""

from . import controls, gnnexplainer, gradcam, gradient_shap, gradients, occlusion, propagation  # noqa: F401
