"""Built-in explanation methods. Importing this package registers them in ``METHODS``."""

from . import (  # noqa: F401
    amortised,
    attention,
    controls,
    gnnexplainer,
    gradcam,
    gradient_shap,
    gradients,
    normgrad,
    occlusion,
    propagation,
    rise,
    surrogates,
)
