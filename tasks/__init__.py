"""Built-in tasks. Importing this package registers them in ``TASKS``."""

from . import ba_shapes, planted_text, shapes  # noqa: F401  (registration side effects)
