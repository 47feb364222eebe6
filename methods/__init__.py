"""Built-in explanation methods. Importing this package registers them in ``METHODS``."""

from . import (  # noqa: F401
    amortised,
    atman,
    attention,
    controls,
    fastdnx,
    gnnexplainer,
    goat,
    gradcam,
    gradcampp,
    gradient_shap,
    gradients,
    graph_gradcam,
    normgrad,
    occlusion,
    pgexplainer,
    propagation,
    rise,
    scorecam,
    surrogates,
)
