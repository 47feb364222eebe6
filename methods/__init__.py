"""Built-in explanation methods. Importing this package registers them in ``METHODS``."""

from . import (  # noqa: F401
    attention,
    controls,
    gnnexplainer,
    gradcam,
    gradient_shap,
    gradients,
    normgrad,
    occlusion,
    pgexplainer,
    propagation,
    rise,
    surrogates,
)
